"""The guest kernel: ``guest/kernel.config`` applied to Debian's linux-source-6.1, built once.

The result lives in ``<kernel dir>/<hash>/vmlinux``, where the hash covers the fragment and the
exact source package version, so a changed fragment or source builds anew and an unchanged one is
never rebuilt. ``MSB_KERNEL`` points at any other kernel instead. After Kconfig resolves
dependencies, every option the fragment sets (or unsets) is checked in the final ``.config``: a
dropped dependency fails the build here, not as a mysterious boot.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import MicrosandboxError, UnsupportedError
from .fsutil import atomic_output
from .paths import kernel_dir

FRAGMENT = Path(__file__).resolve().parent.parent / "guest" / "kernel.config"
SOURCE_PACKAGE = "linux-source-6.1"
SOURCE_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
_SET = re.compile(r"^(CONFIG_\w+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_\w+) is not set$")


def parse_config(text: str) -> dict[str, str | None]:
    """Kconfig lines as {option: value}, with None for ``# CONFIG_X is not set``."""
    out: dict[str, str | None] = {}
    for line in text.splitlines():
        if m := _SET.match(line.strip()):
            out[m.group(1)] = m.group(2)
        elif m := _UNSET.match(line.strip()):
            out[m.group(1)] = None
    return out


def missing_options(fragment: str, final: str) -> list[str]:
    """Options the fragment asks for that the final configuration does not have as asked."""
    got = parse_config(final)
    return [f"{k}={v}" if v is not None else f"{k} unset" for k, v in parse_config(fragment).items()
            if got.get(k) != v]


def source_version() -> str:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", SOURCE_PACKAGE], capture_output=True, text=True)
    if done.returncode != 0 or not SOURCE_TARBALL.exists():
        raise UnsupportedError(f"{SOURCE_PACKAGE} is not installed (apt-get install {SOURCE_PACKAGE}); "
                               "or point MSB_KERNEL at a guest kernel")
    return done.stdout.strip()


def config_hash() -> str:
    return hashlib.sha256(FRAGMENT.read_bytes() + source_version().encode()).hexdigest()[:16]


def kernel_path(root: Path | None = None) -> Path:
    """Where the built kernel lives (or ``MSB_KERNEL``)."""
    if os.environ.get("MSB_KERNEL"):
        return Path(os.environ["MSB_KERNEL"])
    return (root or kernel_dir()) / config_hash() / "vmlinux"


def build_kernel(root: Path | None = None, *, jobs: int | None = None,
                 log: Callable[[str], None] = lambda line: None) -> Path:
    """Build (once) and return the guest vmlinux; ``MicrosandboxError`` with the build's tail."""
    dest = kernel_path(root)
    if dest.exists():
        return dest
    jobs = jobs or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="msb-kernel-") as work:
        log(f"unpacking {SOURCE_TARBALL}")
        _run(["tar", "xf", str(SOURCE_TARBALL), "-C", work], "unpacking the kernel source")
        tree = Path(work) / "linux-source-6.1"
        log("configuring")
        _run(["make", "-s", "tinyconfig"], "make tinyconfig", cwd=tree)
        _run(["scripts/kconfig/merge_config.sh", "-m", ".config", str(FRAGMENT)], "merging guest/kernel.config", cwd=tree)
        _run(["make", "-s", "olddefconfig"], "make olddefconfig", cwd=tree)
        missing = missing_options(FRAGMENT.read_text(), (tree / ".config").read_text())
        if missing:
            raise MicrosandboxError("the guest kernel configuration lost options to unmet dependencies: "
                                    + ", ".join(missing))
        log(f"building vmlinux with {jobs} jobs (about 8 minutes on 2 cores)")
        _run(["make", "-s", f"-j{jobs}", "vmlinux"], "building the guest kernel", cwd=tree)
        with atomic_output(dest) as out, open(tree / "vmlinux", "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
        shutil.copyfile(tree / ".config", dest.with_name("config"))
    return dest


_XEN_ELFNOTE_PHYS32_ENTRY = 18


@dataclass(frozen=True)
class KernelImage:
    """What booting a vmlinux needs from it: its PT_LOAD segments as (physical address, file offset,
    bytes), the first byte above them, and the PVH entry."""

    path: Path
    segments: tuple[tuple[int, int, bytes], ...]
    end: int
    entry: int


def load_image(vmlinux: Path) -> KernelImage:
    """The parsed kernel, read once per file version (a fork server's monitors all share it)."""
    return _load_image(vmlinux, vmlinux.stat().st_mtime_ns)


@lru_cache(maxsize=2)
def _load_image(vmlinux: Path, mtime_ns: int) -> KernelImage:
    data = vmlinux.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise MicrosandboxError(f"{vmlinux} is not a 64-bit ELF kernel image (PVH needs the vmlinux, not a bzImage)")
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    segments, end, entry = [], 0, None
    for i in range(phnum):
        p_type, _, p_offset, _, p_paddr, p_filesz, p_memsz = struct.unpack_from("<IIQQQQQ", data, phoff + i * phentsize)
        if p_type == 1:     # PT_LOAD; the rest of memsz is zero because guest RAM starts zeroed
            segments.append((p_paddr, p_offset, data[p_offset:p_offset + p_filesz]))
            end = max(end, p_paddr + p_memsz)
        elif p_type == 4:   # PT_NOTE
            entry = _pvh_note(data, p_offset, p_offset + p_filesz) if entry is None else entry
    if entry is None:
        raise MicrosandboxError(f"{vmlinux} has no PVH entry note: build it with CONFIG_PVH=y")
    return KernelImage(vmlinux, tuple(segments), end, entry)


def _pvh_note(data: bytes, at: int, end: int) -> int | None:
    """The 32-bit PVH entry from a "Xen" ELF note (type 18): where the monitor starts a vmlinux
    without its decompressor (spec vmm.md 2.3)."""
    while at + 12 <= end:
        namesz, descsz, kind = struct.unpack_from("<III", data, at)
        name = data[at + 12:at + 12 + namesz].rstrip(b"\0")
        desc_at = at + 12 + (namesz + 3) // 4 * 4
        if name == b"Xen" and kind == _XEN_ELFNOTE_PHYS32_ENTRY:
            return int.from_bytes(data[desc_at:desc_at + min(descsz, 8)], "little")
        at = desc_at + (descsz + 3) // 4 * 4
    return None


def pvh_entry(vmlinux: Path) -> int:
    return load_image(vmlinux).entry


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise MicrosandboxError(f"{what} failed:\n{tail}")
