"""fsmeta + VMDK: the stitched disk mounts as exactly what the kernel's overlayfs shows over the
same layer images, reads right past every 2 GiB boundary, and refuses damaged layers."""
from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from microsandbox import InvalidLayerError
from microsandbox.compose import compose_image
from microsandbox.disk import probe, read_guest
from microsandbox.layers import convert_layer
from tests.layers.trees import assert_same_tree, fsck, mounted, need, need_root, snapshot, stitch
from tests.rootfs import pack

OVERLAY = ("trusted.overlay.", "user.overlay.")


def _tar(entries: list[tuple[str, str, dict]]) -> bytes:
    """(name, kind, fields) entries; kind is file/dir/link/sym/chr/wh; file data in fields['data']."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, fields in entries:
            info = tarfile.TarInfo(name)
            info.mtime = fields.get("mtime", 1_700_000_000)
            info.mode = fields.get("mode", 0o755 if kind == "dir" else 0o644)
            info.pax_headers = fields.get("pax", {})
            data = fields.get("data")
            info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "link": tarfile.LNKTYPE,
                         "sym": tarfile.SYMTYPE, "chr": tarfile.CHRTYPE, "wh": tarfile.REGTYPE}[kind]
            info.linkname = fields.get("target", "")
            info.devmajor, info.devminor = fields.get("dev", (0, 0))
            info.size = len(data) if data else 0
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


LOWER = [
    ("a", "dir", {}), ("a/keep", "file", {"data": b"keep"}), ("a/gone", "file", {"data": b"gone"}),
    ("b", "dir", {}), ("b/hidden", "file", {"data": b"hidden by opaque"}), ("b/sub", "dir", {}),
    ("c", "file", {"data": b"c was a file"}), ("d", "dir", {}), ("d/inner", "file", {"data": b"in d"}),
    ("e", "file", {"data": b"e" * 10000, "pax": {"SCHILY.xattr.user.color": "blue"}}),
    ("e-link", "link", {"target": "e"}), ("sym", "sym", {"target": "a/keep", "mode": 0o777}),
    ("null", "chr", {"dev": (1, 3), "mode": 0o666}), ("empty", "file", {}),
    ("big", "file", {"data": os.urandom(3 * 4096 + 5)}),
]
UPPER = [
    ("a", "dir", {"mode": 0o700, "mtime": 1_700_000_100}), ("a/.wh.gone", "wh", {}),
    ("b", "dir", {}), ("b/.wh..wh..opq", "wh", {}), ("b/new", "file", {"data": b"new in b"}),
    ("c", "dir", {}), ("c/now-a-dir", "file", {"data": b"c is a dir now"}),
    ("d", "file", {"data": b"d was a dir"}),
    ("e", "file", {"data": b"e replaced", "pax": {"SCHILY.xattr.user.color": "red"}}),
    ("added", "file", {"data": b"added"}), ("added-link", "link", {"target": "added"}),
]


@pytest.fixture
def two_layers(tmp_path: Path) -> list[Path]:
    need("fsck.erofs")
    out = []
    for name, entries in (("lower", LOWER), ("upper", UPPER)):
        (tmp_path / f"{name}.tar").write_bytes(_tar(entries))
        out.append(tmp_path / "cache" / "layers" / f"{name}.erofs")
        convert_layer(tmp_path / f"{name}.tar", out[-1])
    return out


@pytest.fixture
def overlay_view(two_layers: list[Path], tmp_path: Path) -> Iterator[Path]:
    need_root("mounting layers under overlayfs")
    with mounted(two_layers[0], tmp_path / "l0") as l0, mounted(two_layers[1], tmp_path / "l1") as l1:
        merged = tmp_path / "overlay"
        merged.mkdir()
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={l1}:{l0}", str(merged)], check=True)
        try:
            yield merged
        finally:
            subprocess.run(["umount", str(merged)], check=True)


def test_stitched_disk_equals_the_kernels_overlay(two_layers: list[Path], overlay_view: Path, tmp_path: Path) -> None:
    cache = two_layers[0].parent.parent
    result = compose_image(two_layers, cache / "fsmeta" / "img.erofs", cache / "img.vmdk")
    disk = stitch([cache / "fsmeta" / "img.erofs", *two_layers], tmp_path / "disk.raw")
    assert disk.stat().st_size == result.disk_size
    fsck(disk)
    with mounted(disk, tmp_path / "disk") as mnt:
        actual = snapshot(mnt, with_root=True)
        assert (mnt / "c/now-a-dir").read_bytes() == b"c is a dir now"
        assert os.getxattr(mnt / "e", "user.color") == b"red"
    expected = snapshot(overlay_view, with_root=True, skip_xattrs=OVERLAY)
    assert sorted(actual) == sorted(expected)
    assert "a/gone" not in actual and "b/hidden" not in actual and "b/sub" not in actual
    # e and e-link were one inode below; the upper layer replaced e. overlayfs keeps reporting the
    # lower inode's link count (2); the merged image counts the links that really remain (1).
    assert (actual["e-link"][9], expected["e-link"][9]) == (1, 2)
    expected["e-link"] = expected["e-link"][:9] + (1,)
    assert_same_tree(actual, expected)


def test_vmdk_is_relative_and_reads_like_the_concatenation(two_layers: list[Path], tmp_path: Path) -> None:
    cache = two_layers[0].parent.parent
    fsmeta, vmdk = cache / "fsmeta" / "img.erofs", cache / "img.vmdk"
    result = compose_image(two_layers, fsmeta, vmdk)
    text = vmdk.read_text()
    assert 'RDONLY' in text and '"fsmeta/img.erofs"' in text and '"layers/lower.erofs"' in text
    assert str(tmp_path) not in text
    info = probe(vmdk)
    assert (info.format, info.fstype, info.virtual_size) == ("vmdk", "erofs", result.disk_size)
    disk = stitch([fsmeta, *two_layers], tmp_path / "disk.raw").read_bytes()
    for offset in (0, 1024, *result.layer_offsets, result.disk_size - 4096):
        assert read_guest(vmdk, offset, 4096) == disk[offset:offset + 4096]
    moved = tmp_path / "moved"
    cache.rename(moved)
    assert probe(moved / "img.vmdk").fstype == "erofs"


def test_rebuilding_from_cached_layers_is_deterministic(two_layers: list[Path]) -> None:
    cache = two_layers[0].parent.parent
    compose_image(two_layers, cache / "a.erofs", cache / "a.vmdk")
    compose_image(two_layers, cache / "b.erofs", cache / "b.vmdk")
    assert (cache / "a.erofs").read_bytes() == (cache / "b.erofs").read_bytes()


def test_the_converters_trees_compose_the_same_bytes(rootfs: Path, tmp_path: Path) -> None:
    """A pull composes from the trees its converter just wrote rather than reading the images
    back; both ways must give the same fsmeta, byte for byte."""
    need("bsdtar", "fsck.erofs")
    sources = [pack("bsdtar-pax", rootfs, tmp_path / "root.tar")]
    for name, entries in (("lower", LOWER), ("upper", UPPER)):
        sources.append(tmp_path / f"{name}.tar")
        sources[-1].write_bytes(_tar(entries))
    images = [tmp_path / f"{src.stem}.erofs" for src in sources]
    trees = [convert_layer(src, image).tree for src, image in zip(sources, images)]
    compose_image(images, tmp_path / "given.erofs", tmp_path / "given.vmdk", trees=trees)
    compose_image(images, tmp_path / "read.erofs", tmp_path / "read.vmdk")
    assert (tmp_path / "given.erofs").read_bytes() == (tmp_path / "read.erofs").read_bytes()
    fsck(stitch([tmp_path / "given.erofs", *images], tmp_path / "disk"))


def test_deep_nesting_composes(tmp_path: Path) -> None:
    """5,000 nested directories (a 10,000-byte path, well inside what the converter accepts):
    merging walks with explicit stacks, so depth costs no recursion."""
    need("fsck.erofs")
    depth = 5000
    entries = [("/".join(["d"] * i), "dir", {}) for i in range(1, depth + 1)]
    entries.append(("/".join(["d"] * depth) + "/leaf", "file", {"data": b"at the bottom"}))
    (tmp_path / "deep.tar").write_bytes(_tar(entries))
    layer = tmp_path / "cache" / "deep.erofs"
    convert_layer(tmp_path / "deep.tar", layer)
    result = compose_image([layer], tmp_path / "cache" / "f.erofs", tmp_path / "cache" / "d.vmdk")
    assert result.entries == depth + 2
    fsck(stitch([tmp_path / "cache" / "f.erofs", layer], tmp_path / "disk"))


class _BigTar(io.RawIOBase):
    """A tar streamed on the fly: one ``size``-byte file of zeros with markers, then ``tail``."""

    def __init__(self, size: int, markers: dict[int, bytes]) -> None:
        info = tarfile.TarInfo("big")
        info.size, info.mode, info.mtime = size, 0o644, 1_700_000_000
        self.parts = [(0, info.tobuf(tarfile.GNU_FORMAT))]
        self.header = len(self.parts[0][1])
        self.size, self.markers = size, markers
        self.total = self.header + size + (-size % 512) + 1024
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = min(len(buf), self.total - self.pos)
        view = memoryview(buf)[:n]
        view[:] = bytes(n)
        if self.pos < self.header:
            head = self.parts[0][1][self.pos:self.pos + n]
            view[:len(head)] = head
        for off, data in self.markers.items():
            at = self.header + off - self.pos
            if -len(data) < at < n:
                lo, hi = max(at, 0), min(at + len(data), n)
                view[lo:hi] = data[lo - at:hi - at]
        self.pos += n
        return n


@pytest.mark.slow
def test_layers_past_2gib_stay_right(tmp_path: Path) -> None:
    need("fsck.erofs")
    gib = 1 << 30
    markers = {0: b"start", 2 * gib - 3: b"across-2GiB", int(2.5 * gib): b"past-2.5GiB"}
    cache = tmp_path / "cache"
    big = cache / "layers" / "big.erofs"
    convert_layer(_BigTar(int(2.6 * gib), markers), big)
    assert big.stat().st_size > 2.5 * gib and big.stat().st_blocks * 512 < 64 << 20  # holes on the host
    (tmp_path / "small.tar").write_bytes(_tar([("after", "file", {"data": b"in a layer that starts past 2 GiB"})]))
    small = cache / "layers" / "small.erofs"
    convert_layer(tmp_path / "small.tar", small)
    result = compose_image([big, small], cache / "fsmeta" / "big.erofs", cache / "big.vmdk")
    assert result.layer_offsets[1] > 2.5 * gib
    assert (cache / "big.vmdk").read_text().count('FLAT "layers/big.erofs"') == 2   # split at 2 GiB
    small_head = small.read_bytes()[:8192]
    assert read_guest(cache / "big.vmdk", result.layer_offsets[1], 8192) == small_head
    disk = stitch([cache / "fsmeta" / "big.erofs", big, small], tmp_path / "disk.raw")
    need_root("mounting the stitched disk")
    with mounted(disk, tmp_path / "mnt") as mnt:
        assert (mnt / "after").read_bytes() == b"in a layer that starts past 2 GiB"
        with open(mnt / "big", "rb") as f:
            for off, data in markers.items():
                f.seek(off)
                assert f.read(len(data)) == data


@pytest.mark.parametrize("damage", ["garbage", "truncated", "bad-magic"])
def test_damaged_layer_images_are_refused(two_layers: list[Path], tmp_path: Path, damage: str) -> None:
    bad = tmp_path / "bad.erofs"
    data = bytearray(two_layers[0].read_bytes())
    if damage == "garbage":
        data = bytearray(os.urandom(len(data)))
    elif damage == "truncated":
        data = data[:4096 * 2]
    else:
        data[1024] ^= 0xFF
    bad.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(InvalidLayerError):
        compose_image([bad, two_layers[1]], out / "f.erofs", out / "d.vmdk")
    assert not out.exists() or list(out.iterdir()) == []
