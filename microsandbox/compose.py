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
import stat
from dataclasses import dataclass
from pathlib import Path

from ._core.erofs import ErofsWriter, Node
from ._core.erofs_read import read_image
from .errors import InvalidLayerError
from .fsutil import atomic_output
from .gcpause import paused

BLOCK = 4096
SECTOR = 512
MAX_EXTENT_SECTORS = 4 << 20          # 2 GiB per extent line, as twoGbMaxExtentFlat writers do
_OVERLAY_XATTRS = (b"trusted.overlay.", b"user.overlay.")


@dataclass(frozen=True)
class ComposeResult:
    fsmeta_size: int
    disk_size: int
    layer_offsets: tuple[int, ...]
    """Byte offset of each layer inside the stitched disk."""
    entries: int


def compose_image(layers: list[Path], fsmeta_out: Path, vmdk_out: Path) -> ComposeResult:
    """Merge ``layers`` (bottom to top) into ``fsmeta_out`` and stitch ``vmdk_out``; both are
    published atomically. Raises ``InvalidLayerError`` for a damaged layer image."""
    if not layers:
        raise InvalidLayerError("an image needs at least one layer to compose")
    with paused():
        trees = [read_image(path) for path in layers]
        root, entries = _merge(trees)
        bases, at = [], 0          # each layer's first block, counted from the end of fsmeta
        for _, blocks in trees:
            bases.append(at)
            at += blocks
        with atomic_output(fsmeta_out) as out:
            size = ErofsWriter(out.fileno(), _to_node(root, bases, {}), chunks_after_image=True).finish()
    offsets = tuple(size + base * BLOCK for base in bases)
    write_vmdk(vmdk_out, [fsmeta_out, *layers])
    return ComposeResult(fsmeta_size=size, disk_size=size + at * BLOCK, layer_offsets=offsets, entries=entries)


def _merge(trees: list[tuple[Node, int]]) -> tuple[Node, int]:
    """The merged view as a tree of (layer index, source node) pairs wrapped in fresh dirs."""
    merged = _Dir(trees[0][0], 0)
    for index, (root, _) in enumerate(trees):
        merged.overlay(root, index)
    return merged, merged.count()


class _Dir:
    """A directory of the merged tree: its metadata's source and its children by name."""

    __slots__ = ("source", "layer", "children")

    def __init__(self, source: Node, layer: int) -> None:
        self.source, self.layer = source, layer
        self.children: dict[bytes, _Dir | tuple[int, Node]] = {}

    def overlay(self, upper: Node, layer: int) -> None:
        """Apply one layer's version of this directory on top of what lies below."""
        self.source, self.layer = upper, layer
        if b"y" in (upper.xattrs.get(b"trusted.overlay.opaque"), upper.xattrs.get(b"user.overlay.opaque")):
            self.children.clear()
        for name, node in upper.children.items():
            if _is_whiteout(node):
                self.children.pop(name, None)
            elif node.is_dir:
                below = self.children.get(name)
                if not isinstance(below, _Dir):   # new, or replacing a non-directory
                    below = self.children[name] = _Dir(node, layer)
                below.overlay(node, layer)
            else:
                self.children[name] = (layer, node)

    def count(self) -> int:
        return 1 + sum(c.count() if isinstance(c, _Dir) else 1 for c in self.children.values())


def _is_whiteout(node: Node) -> bool:
    return stat.S_ISCHR(node.mode) and node.rdev_major == 0 and node.rdev_minor == 0


def _to_node(d: _Dir, bases: list[int], shared: dict[tuple[int, int], Node]) -> Node:
    node = _copy_meta(d.source)
    for name, child in d.children.items():
        if isinstance(child, _Dir):
            node.children[name] = _to_node(child, bases, shared)
            continue
        layer, src = child
        key = (layer, id(src))
        if key not in shared:   # hard links inside one layer stay one inode
            shared[key] = _leaf(src, bases[layer])
        node.children[name] = shared[key]
    return node


def _copy_meta(src: Node) -> Node:
    node = Node(src.mode, src.uid, src.gid, src.mtime, src.mtime_nsec)
    node.xattrs = {k: v for k, v in src.xattrs.items() if not k.startswith(_OVERLAY_XATTRS)}
    return node


def _leaf(src: Node, base: int) -> Node:
    node = _copy_meta(src)
    node.rdev_major, node.rdev_minor, node.target = src.rdev_major, src.rdev_minor, src.target
    if stat.S_ISREG(src.mode):
        node.size = src.size
        if src.chunks is not None:
            node.chunk_bits = src.chunk_bits
            node.chunks = [c if c == 0xFFFFFFFF else c + base for c in src.chunks]
        elif src.size:
            blocks = (src.size + BLOCK - 1) // BLOCK
            node.chunk_bits = max(0, (blocks - 1).bit_length())   # one chunk covers the whole file
            node.chunks = [src.blkaddr + base]
    return node


def write_vmdk(dest: Path, files: list[Path]) -> None:
    """A twoGbMaxExtentFlat descriptor: each file in order as RDONLY FLAT extents of at most
    2 GiB, paths relative to ``dest``'s folder."""
    folder = dest.parent.resolve()
    extents, total = [], 0
    for path in files:
        size = path.stat().st_size
        if size % SECTOR:
            raise InvalidLayerError(f"{path} is not a whole number of 512-byte sectors")
        rel = os.path.relpath(path.resolve(), folder)
        if rel.startswith("..") or '"' in rel:
            raise InvalidLayerError(f"{path} must lie inside {folder} (VMDK extents are relative)")
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
