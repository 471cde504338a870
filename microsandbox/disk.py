"""Disk images: what container format a file is and which file system it carries.

The Cython prober reads only headers, table entries and superblocks (a few KiB, with ``pread``),
never the whole image, and never opens a qcow2 backing file or a VMDK extent outside the
descriptor's own folder.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from os import PathLike, fspath

from ._core import diskprobe
from .image_types import DiskImageFormat


@dataclass(frozen=True)
class DiskInfo:
    """What ``probe`` found. ``partition`` is the 1-based partition number holding ``fstype``,
    ``None`` when the file system spans the whole disk or none was found."""

    format: DiskImageFormat
    virtual_size: int
    fstype: str | None
    partition: int | None
    backing_file: str | None = None

    def to_json(self) -> dict[str, object]:
        """The ``msb disk probe --json`` object."""
        out = asdict(self)
        out["format"] = str(self.format)
        if out["backing_file"] is None:
            del out["backing_file"]
        return out


def probe(path: str | PathLike[str]) -> DiskInfo:
    """Container format, virtual size and file system of a disk image.

    Raises ``InvalidDiskImageError`` for unreadable, truncated, hostile or unsupported images.
    """
    fmt, size, fstype, partition, backing = diskprobe.probe(fspath(path))
    return DiskInfo(DiskImageFormat(fmt), size, fstype, partition, backing)


def detect_format(path: str | PathLike[str]) -> DiskImageFormat:
    """The container format the file's own bytes declare (raw when no header is recognised)."""
    return DiskImageFormat(diskprobe.container_format(fspath(path)))


def read_guest(path: str | PathLike[str], offset: int, length: int) -> bytes:
    """Bytes of the virtual disk as a guest sees them (through qcow2 tables or VMDK extents).

    Reads past the disk's end and damaged images raise ``InvalidDiskImageError``.
    """
    return diskprobe.read_guest(fspath(path), offset, length)
