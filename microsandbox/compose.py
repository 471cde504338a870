"""fsmeta + VMDK: the ordered layer images become one bootable, read-only disk.

The disk is ``fsmeta`` followed by every layer image, back to back (each a multiple of 4 KiB).
``fsmeta`` is a metadata-only EROFS of the merged tree (OCI overlay rules applied: whiteouts delete,
opaque directories hide what lies below, upper metadata wins) whose regular files are CHUNK_BASED
and point at their blocks inside the layers by absolute block address in that disk, with no device
table (shared/spec/erofs.md 7.5, option B): Linux 6.1 guests mount it as their root, and
``fsck.erofs`` checks the concatenation. The VMDK descriptor stitches the files with RDONLY FLAT
extents whose paths are relative to the descriptor, so the cache can move as a whole.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ._core.erofs import ErofsWriter, Node
from ._core.erofs_read import read_image
from ._core.overlay import merge
from .errors import InvalidLayerError
from .fsutil import atomic_output
from .gcpause import paused

BLOCK = 4096
SECTOR = 512
MAX_EXTENT_SECTORS = 4 << 20          # 2 GiB per extent line, as twoGbMaxExtentFlat writers do


@dataclass(frozen=True)
class ComposeResult:
    fsmeta_size: int
    disk_size: int
    layer_offsets: tuple[int, ...]
    """Byte offset of each layer inside the stitched disk."""
    entries: int


def compose_image(layers: list[Path], fsmeta_out: Path, vmdk_out: Path, *,
                  trees: list[tuple[Node, int] | None] | None = None) -> ComposeResult:
    """Merge ``layers`` (bottom to top) into ``fsmeta_out`` and stitch ``vmdk_out``; both are
    published atomically. Raises ``InvalidLayerError`` for a damaged layer image.

    ``trees`` may hold, per layer, the metadata its converter just wrote (``LayerResult.tree``),
    which spares reading that image back; ``None`` entries are read from the file.
    """
    if not layers:
        raise InvalidLayerError("an image needs at least one layer to compose")
    given = trees or [None] * len(layers)
    if len(given) != len(layers):
        raise ValueError("compose_image needs one tree entry per layer")
    extent_paths(vmdk_out, [fsmeta_out, *layers])   # refuse before anything is written
    with paused():
        loaded = [tree or read_image(path) for path, tree in zip(layers, given)]
        root, entries = merge(loaded)
        with atomic_output(fsmeta_out) as out:
            size = ErofsWriter(out.fileno(), root, chunks_after_image=True).finish()
    offsets, at = [], size
    for _, blocks in loaded:
        offsets.append(at)
        at += blocks * BLOCK
    write_vmdk(vmdk_out, [fsmeta_out, *layers])
    return ComposeResult(fsmeta_size=size, disk_size=at, layer_offsets=tuple(offsets), entries=entries)


def write_vmdk(dest: Path, files: list[Path]) -> None:
    """A twoGbMaxExtentFlat descriptor: each file in order as RDONLY FLAT extents of at most
    2 GiB, paths relative to ``dest``'s folder."""
    extents, total = [], 0
    for path, rel in zip(files, extent_paths(dest, files)):
        size = path.stat().st_size
        if size % SECTOR:
            raise InvalidLayerError(f"{path} is not a whole number of 512-byte sectors")
        sectors = size // SECTOR
        for offset in range(0, sectors, MAX_EXTENT_SECTORS):
            extents.append(f'RDONLY {min(MAX_EXTENT_SECTORS, sectors - offset)} FLAT "{rel}" {offset}')
        total += sectors
    cid = hashlib.sha256("\n".join(extents).encode()).hexdigest()[:8]
    text = "\n".join([
        "# Disk DescriptorFile", "version=1", f"CID={cid}", "parentCID=ffffffff",
        'createType="twoGbMaxExtentFlat"', "", "# Extent description", *extents, "",
        "# The Disk Data Base", "#DDB", 'ddb.virtualHWVersion = "4"',
        f'ddb.geometry.cylinders = "{-(-total // (16 * 63))}"', 'ddb.geometry.heads = "16"',
        'ddb.geometry.sectors = "63"', 'ddb.adapterType = "ide"', ""])
    with atomic_output(dest) as out:
        out.write(text.encode())


def extent_paths(dest: Path, files: list[Path]) -> list[str]:
    """Each file's path relative to the descriptor's folder, where it must lie."""
    folder = dest.parent.resolve()
    paths = []
    for path in files:
        rel = os.path.relpath(path.resolve(), folder)
        if rel.startswith("..") or '"' in rel:
            raise InvalidLayerError(f"{path} must lie inside {folder} (VMDK extents are relative)")
        paths.append(rel)
    return paths
