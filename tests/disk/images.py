"""Disk images made at test time by the real tools (qemu-img, mkfs.*, sfdisk, sgdisk).

Built once per session; every file is sparse, so the whole set costs a few MiB of real disk.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

MiB = 1 << 20


def run(*cmd: str | Path, cwd: Path | None = None) -> str:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, cwd=cwd).stdout


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)} (make installs them from system-packages.txt)")


def qemu_info(path: Path) -> dict:
    return json.loads(run("qemu-img", "info", "--output=json", path))


def make_fs(kind: str, path: Path, size_mib: int) -> Path:
    """A file system image of ``kind`` (its own mkfs), ``size_mib`` sparse MiB (or content-sized)."""
    tree = path.parent / f"{path.stem}-tree"
    if kind in ("squashfs", "erofs"):
        tree.mkdir(exist_ok=True)
        (tree / "hello.txt").write_text("hello from microsandbox\n")
        if kind == "squashfs":
            run("mksquashfs", tree, path, "-noappend", "-quiet")
        else:
            run("mkfs.erofs", path, tree)
        return path
    with open(path, "wb") as f:
        f.truncate(size_mib * MiB)
    if kind in ("ext2", "ext3", "ext4"):
        run(f"mkfs.{kind}", "-q", "-F", path)
    elif kind == "xfs":
        run("mkfs.xfs", "-q", "-f", path)
    elif kind == "btrfs":
        run("mkfs.btrfs", "-q", "-f", path)
    elif kind == "vfat":
        run("mkfs.vfat", path)
    else:
        raise ValueError(kind)
    return path


FS_SIZES = {"ext2": 16, "ext3": 16, "ext4": 32, "xfs": 320, "btrfs": 128, "vfat": 16,
            "squashfs": 0, "erofs": 0}
FS_TOOLS = {"ext2": "mkfs.ext2", "ext3": "mkfs.ext3", "ext4": "mkfs.ext4", "xfs": "mkfs.xfs",
            "btrfs": "mkfs.btrfs", "vfat": "mkfs.vfat", "squashfs": "mksquashfs", "erofs": "mkfs.erofs"}

# (name, qemu-img convert options) for every container variant the prober must read.
CONTAINERS = [
    ("raw.img", ["-O", "raw"]),
    ("v3.qcow2", ["-O", "qcow2"]),
    ("v2.qcow2", ["-O", "qcow2", "-o", "compat=0.10"]),
    ("compressed.qcow2", ["-O", "qcow2", "-c"]),
    ("extl2.qcow2", ["-O", "qcow2", "-o", "extended_l2=on,cluster_size=128k"]),
    ("sparse.vmdk", ["-O", "vmdk", "-o", "subformat=monolithicSparse"]),
    ("stream.vmdk", ["-O", "vmdk", "-o", "subformat=streamOptimized"]),
    ("flat.vmdk", ["-O", "vmdk", "-o", "subformat=monolithicFlat"]),
    ("split-flat.vmdk", ["-O", "vmdk", "-o", "subformat=twoGbMaxExtentFlat"]),
    ("split-sparse.vmdk", ["-O", "vmdk", "-o", "subformat=twoGbMaxExtentSparse"]),
]


def convert(src: Path, dest: Path, opts: list[str]) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    run("qemu-img", "convert", "-f", "raw", *opts, src, dest)
    return dest


def partitioned(path: Path, label: str, fs: Path) -> Path:
    """A 64 MiB disk: partition 1 is a small non-Linux one, partition 2 (Linux) holds ``fs``."""
    with open(path, "wb") as f:
        f.truncate(64 * MiB)
    if label == "mbr":
        subprocess.run(["sfdisk", "-q", str(path)], input="label: dos\n1MiB,4MiB,c\n5MiB,,83\n",
                       text=True, check=True, capture_output=True)
    else:
        run("sgdisk", "-n", "1:1MiB:+4MiB", "-t", "1:ef00", "-n", "2:5MiB:0", "-t", "2:8300", path)
    run("dd", f"if={fs}", f"of={path}", "bs=1M", "seek=5", "conv=notrunc,sparse", "status=none")
    return path


