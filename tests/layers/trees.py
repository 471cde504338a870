"""Oracles for layer tests: kernel mounts, bsdtar extraction, and whole-tree snapshots."""
from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root (loop mounts); fsck.erofs still ran")


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)} (make installs them from system-packages.txt)")


def _unlimited_stack() -> None:
    resource.setrlimit(resource.RLIMIT_STACK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def fsck(image: Path) -> None:
    """fsck.erofs 1.5 recurses per directory level and overflows an 8 MiB stack past ~1,000
    nested directories (on mkfs.erofs's own images too), so it runs with an unlimited stack."""
    done = subprocess.run(["fsck.erofs", str(image)], capture_output=True, text=True,
                          preexec_fn=_unlimited_stack)
    assert done.returncode == 0, f"fsck.erofs rejected {image}: {done.stdout}{done.stderr}"


@contextlib.contextmanager
def mounted(image: Path, where: Path) -> Iterator[Path]:
    """The kernel's own view of an EROFS image (loop, read-only)."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "erofs", "-o", "loop,ro", str(image), str(where)], check=True,
                   capture_output=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def bsdtar_extract(archive: Path, dest: Path, *, acls: bool = False) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["bsdtar", "-x", "--xattrs", "-p", "--numeric-owner",
                    "--acls" if acls else "--no-acls", "-f", str(archive), "-C", str(dest)],
                   check=True, capture_output=True)
    return dest


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in sorted(names)}


def snapshot(root: Path, *, with_root: bool = False, skip_xattrs: tuple[str, ...] = ()) -> dict[str, tuple]:
    """Every entry below ``root``: type, mode, owner, size, content hash, link target, device,
    mtime (ns), xattrs and link count, keyed by relative path."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames] + ([""] if with_root and dirpath == str(root) else []):
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            kind = stat.S_IFMT(st.st_mode)
            content = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    content = hashlib.file_digest(f, "sha256").hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            xattrs = {k: v for k, v in _xattrs(path).items() if not k.startswith(skip_xattrs)}
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                        st.st_size if not stat.S_ISDIR(st.st_mode) else None, content,
                        st.st_rdev if kind in (stat.S_IFCHR, stat.S_IFBLK) else None,
                        st.st_mtime_ns if not stat.S_ISLNK(st.st_mode) else None,
                        tuple(xattrs.items()),
                        st.st_nlink if not stat.S_ISDIR(st.st_mode) else None)
    return out


def assert_same_tree(actual: dict[str, tuple], expected: dict[str, tuple]) -> None:
    assert sorted(actual) == sorted(expected), "the trees hold different paths"
    fields = ("type", "mode", "uid", "gid", "size", "content", "rdev", "mtime_ns", "xattrs", "nlink")
    for path in sorted(expected):
        for field, a, e in zip(fields, actual[path], expected[path]):
            assert a == e, f"{path}: {field} is {a!r}, the oracle gives {e!r}"


def stitch(parts: list[Path], dest: Path) -> Path:
    """``cat`` of the parts that keeps holes (a multi-GiB disk costs only its data)."""
    with open(dest, "wb") as out:
        at = 0
        for part in parts:
            with open(part, "rb") as src:
                size = os.fstat(src.fileno()).st_size
                pos = 0
                while pos < size:
                    try:
                        pos = os.lseek(src.fileno(), pos, os.SEEK_DATA)
                    except OSError:
                        break
                    end = os.lseek(src.fileno(), pos, os.SEEK_HOLE)
                    while pos < end:
                        chunk = os.pread(src.fileno(), min(8 << 20, end - pos), pos)
                        os.pwrite(out.fileno(), chunk, at + pos)
                        pos += len(chunk)
            at += size
        out.truncate(at)
    return dest
