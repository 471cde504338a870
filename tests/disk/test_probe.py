"""microsandbox.disk.probe against images made by qemu-img, mkfs.* and the partitioners."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from microsandbox import DiskImageFormat, Image, InvalidDiskImageError
from microsandbox.disk import detect_format, probe

from tests.disk.images import CONTAINERS, FS_SIZES, FS_TOOLS, convert, make_fs, need, partitioned, qemu_info, run


def _format_of(name: str) -> DiskImageFormat:
    return {".img": DiskImageFormat.RAW, ".qcow2": DiskImageFormat.QCOW2,
            ".vmdk": DiskImageFormat.VMDK}[Path(name).suffix]


@pytest.mark.parametrize("kind", sorted(FS_SIZES))
def test_finds_each_file_system_on_a_whole_disk(images: Path, kind: str) -> None:
    need(FS_TOOLS[kind])
    path = make_fs(kind, images / f"whole-{kind}.img", FS_SIZES[kind])
    info = probe(path)
    assert (info.format, info.fstype, info.partition) == (DiskImageFormat.RAW, kind, None)
    assert info.virtual_size == qemu_info(path)["virtual-size"]


@pytest.mark.parametrize(("name", "opts"), CONTAINERS, ids=[c[0] for c in CONTAINERS])
def test_reads_the_file_system_through_every_container(images: Path, ext4_raw: Path,
                                                        name: str, opts: list[str]) -> None:
    path = convert(ext4_raw, images / "containers" / name, opts)
    info = probe(path)
    assert info.format == _format_of(name)
    assert info.fstype == "ext4" and info.partition is None
    assert info.virtual_size == qemu_info(path)["virtual-size"]
    assert detect_format(path) == _format_of(name)


@pytest.mark.parametrize("label", ["mbr", "gpt"])
@pytest.mark.parametrize(("name", "opts"), [CONTAINERS[0], CONTAINERS[3], CONTAINERS[6]],
                         ids=["raw", "compressed-qcow2", "stream-vmdk"])
def test_finds_the_linux_partition(images: Path, ext4_raw: Path, label: str, name: str,
                                   opts: list[str]) -> None:
    need("sfdisk" if label == "mbr" else "sgdisk")
    disk = partitioned(images / f"part-{label}.raw", label, ext4_raw)
    path = convert(disk, images / f"part-{label}" / name, opts)
    info = probe(path)
    assert (info.fstype, info.partition) == ("ext4", 2)
    assert info.virtual_size == 64 << 20


def test_only_partition_is_used_even_when_not_typed_linux(images: Path) -> None:
    need("sfdisk", "mkfs.vfat")
    fat = make_fs("vfat", images / "only-fat.img", 16)
    disk = images / "only-part.raw"
    with open(disk, "wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["sfdisk", "-q", str(disk)], input="label: dos\n1MiB,,c\n", text=True,
                   check=True, capture_output=True)
    run("dd", f"if={fat}", f"of={disk}", "bs=1M", "seek=1", "conv=notrunc,sparse", "status=none")
    assert (probe(disk).fstype, probe(disk).partition) == ("vfat", 1)


def test_backing_file_is_reported_and_never_opened(images: Path, ext4_raw: Path) -> None:
    base = convert(ext4_raw, images / "backing" / "base.qcow2", ["-O", "qcow2"])
    overlay = images / "backing" / "overlay.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", overlay)
    base.rename(base.with_suffix(".gone"))  # probing must not need it
    info = probe(overlay)
    assert info.backing_file == "base.qcow2"
    assert info.fstype is None  # every cluster is in the backing file, which is not read
    assert info.virtual_size == 32 << 20


def test_blank_disk_has_no_file_system(images: Path) -> None:
    path = images / "blank.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", path, "1G")
    info = probe(path)
    assert (info.format, info.virtual_size, info.fstype, info.partition) == ("qcow2", 1 << 30, None, None)


def test_image_disk_checks_the_bytes_against_the_extension(images: Path, ext4_raw: Path) -> None:
    qcow = convert(ext4_raw, images / "named" / "real.qcow2", ["-O", "qcow2"])
    assert Image.disk(str(qcow))._format == DiskImageFormat.QCOW2
    liar = images / "named" / "liar.raw"
    os.link(qcow, liar)
    with pytest.raises(InvalidDiskImageError, match="name says raw but the file is qcow2"):
        Image.disk(str(liar))
    raw_as_qcow = images / "named" / "raw-named.qcow2"
    os.link(ext4_raw, raw_as_qcow)
    with pytest.raises(InvalidDiskImageError, match="name says qcow2 but the file is raw"):
        Image.disk(str(raw_as_qcow))
    assert Image.disk(str(images / "named" / "not-yet.vmdk"))._format == DiskImageFormat.VMDK


def _msb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "microsandbox", *args], capture_output=True, text=True)


@pytest.mark.parametrize(("name", "opts"), CONTAINERS, ids=[c[0] for c in CONTAINERS])
def test_cli_json_matches_qemu_img(images: Path, ext4_raw: Path, name: str, opts: list[str]) -> None:
    path = convert(ext4_raw, images / "cli" / name, opts)
    done = _msb("disk", "probe", "--json", str(path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"format": str(_format_of(name)), "fstype": "ext4", "partition": None,
                                       "virtual_size": qemu_info(path)["virtual-size"]}


def test_cli_refuses_hostile_input_with_one_line(images: Path) -> None:
    bad = images / "cli-bad.qcow2"
    bad.write_bytes(b"QFI\xfb" + bytes(20))
    done = _msb("disk", "probe", str(bad))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "invalid_disk_image" in done.stderr and "truncated" in done.stderr
