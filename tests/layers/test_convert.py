"""Layers made by real tools convert to EROFS images that fsck.erofs accepts and the kernel
mounts with exactly the tree bsdtar extracts from the same layer."""
from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from microsandbox import InvalidLayerError
from microsandbox.layers import convert_layer
from tests.rootfs import CAPABILITY, pack
from tests.layers.trees import assert_same_tree, bsdtar_extract, fsck, mounted, need, need_root, snapshot

PRODUCERS = ["gnutar-gzip", "gnutar-gnu-zstd", "bsdtar-pax", "umoci"]


def check_against_bsdtar(layer: Path, tmp_path: Path, *, acls: bool = False) -> dict[str, tuple]:
    image = tmp_path / "layer.erofs"
    convert_layer(layer, image)
    fsck(image)
    need_root("comparing the kernel's mount with bsdtar's extraction")
    expected = snapshot(bsdtar_extract(layer, tmp_path / "bsdtar", acls=acls))
    with mounted(image, tmp_path / "mnt") as mnt:
        actual = snapshot(mnt)
    assert_same_tree(actual, expected)
    return actual


@pytest.mark.parametrize("producer", PRODUCERS)
def test_real_root_matches_bsdtar(rootfs: Path, tmp_path: Path, producer: str) -> None:
    need("bsdtar", "fsck.erofs")
    layer = pack(producer, rootfs, tmp_path / f"layer-{producer}")
    tree = check_against_bsdtar(layer, tmp_path)
    assert tree["bin/sh"][5] == "busybox"
    assert tree["etc/hostname"][9] == 2  # hard-linked with usr/bin/hostname-link
    if os.geteuid() == 0 and producer != "gnutar-gnu-zstd":
        assert ("security.capability", CAPABILITY) in tree["usr/bin/setuid"][8]


def test_layer_result_reports_digests(rootfs: Path, tmp_path: Path) -> None:
    layer = pack("gnutar-gzip", rootfs, tmp_path / "l.tgz")
    raw = layer.read_bytes()
    import gzip
    plain = gzip.decompress(raw)
    result = convert_layer(layer, tmp_path / "l.erofs")
    assert result.compressed_digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert result.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert (result.compressed_size, result.uncompressed_size) == (len(raw), len(plain))
    assert result.erofs_size == (tmp_path / "l.erofs").stat().st_size and result.erofs_size % 4096 == 0
    assert result.compression == "gzip"


def test_same_input_gives_the_same_bytes(rootfs: Path, tmp_path: Path) -> None:
    layer = pack("bsdtar-pax", rootfs, tmp_path / "l.tar")
    with open(layer, "rb") as f:
        convert_layer(f, tmp_path / "a.erofs")
    convert_layer(os.open(layer, os.O_RDONLY), tmp_path / "b.erofs")
    assert (tmp_path / "a.erofs").read_bytes() == (tmp_path / "b.erofs").read_bytes()


def _tar(entries: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, **fields: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = fields.pop("mode", 0o644)
    info.mtime = fields.pop("mtime", 1_700_000_000)
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def _file(name: str, data: bytes, **fields: object) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, size=len(data), **fields), data


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT], ids=["pax", "gnu"])
def test_edge_cases_match_bsdtar(tmp_path: Path, fmt: int) -> None:
    need("bsdtar", "fsck.erofs")
    long_name = "n" * 255
    deep = "/".join(f"{i:03d}" + "d" * 96 for i in range(40))  # a 4,000-byte path
    entries = [
        (_info("dir", tarfile.DIRTYPE, mode=0o755), None),
        _file(f"dir/{long_name}", b"longest name"),
        *[(_info("/".join(deep.split("/")[:i]), tarfile.DIRTYPE, mode=0o700), None) for i in range(1, 41)],
        _file(f"{deep}/leaf", b"deep"),
        _file("big-ids", b"x", uid=100000, gid=70000),
        _file("negative-mtime", b"y", mtime=-86400),
        _file("fractional-mtime", b"z", mtime=1_700_000_000 if fmt == tarfile.GNU_FORMAT else 1_700_000_000.5),
        (_info("dir/chr", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666), None),
        (_info("dir/blk", tarfile.BLKTYPE, devmajor=8, devminor=300, mode=0o660), None),
        (_info("dir/fifo", tarfile.FIFOTYPE), None),
        (_info("dir/sym", tarfile.SYMTYPE, linkname="../big-ids", mode=0o777), None),
        (_info("other", tarfile.DIRTYPE, mode=0o755), None),
        _file("other/original", b"shared bytes"),
        (_info("dir/hard", tarfile.LNKTYPE, linkname="other/original"), None),
        _file("replaced", b"first version"),
        _file("replaced", b"second version wins"),
        _file("exact-block", os.urandom(4096)),
        _file("spans-blocks", os.urandom(3 * 4096 + 17)),
    ]
    layer = tmp_path / "edge.tar"
    layer.write_bytes(_tar(entries, fmt))
    tree = check_against_bsdtar(layer, tmp_path)
    assert tree["dir/hard"][9] == 2 and tree["big-ids"][2:4] == (100000, 70000)


def test_negative_fractional_pax_mtime(tmp_path: Path) -> None:
    """PAX ``mtime=-86400.25`` is a quarter second before -86400 (libarchive reads it as after)."""
    layer = tmp_path / "t.tar"
    layer.write_bytes(_tar([_file("f", b"x", mtime=-86400.25)]))
    image = tmp_path / "t.erofs"
    convert_layer(layer, image)
    fsck(image)
    need_root("mounting the image")
    with mounted(image, tmp_path / "mnt") as mnt:
        assert os.lstat(mnt / "f").st_mtime_ns == -86_400_250_000_000


@pytest.mark.slow
def test_wide_and_deep_trees(tmp_path: Path) -> None:
    need("fsck.erofs")
    entries = [(_info("wide", tarfile.DIRTYPE, mode=0o755), None)]
    entries += [_file(f"wide/f{i:06d}", b"") for i in range(100_000)]
    path = "deep"
    for i in range(1500):
        entries.append((_info(path, tarfile.DIRTYPE, mode=0o755), None))
        path += f"/{i % 10}"
    layer = tmp_path / "wide.tar"
    layer.write_bytes(_tar(entries, tarfile.GNU_FORMAT))
    image = tmp_path / "wide.erofs"
    assert convert_layer(layer, image).entries == len(entries)
    fsck(image)
    need_root("mounting the image")
    with mounted(image, tmp_path / "mnt") as mnt:
        names = os.listdir(mnt / "wide")
        assert len(names) == 100_000 and sorted(names)[0] == "f000000"
        assert (mnt / "wide" / "f099999").exists() and (mnt / "wide" / "f054321").exists()
        assert os.path.isdir(mnt / path.rsplit("/", 1)[0])


def test_whiteouts_and_opaque_dirs_work_as_overlay_lowers(tmp_path: Path) -> None:
    need("fsck.erofs")
    lower = _tar([(_info("a", tarfile.DIRTYPE, mode=0o755), None), _file("a/keep", b"k"), _file("a/gone", b"g"),
                  (_info("b", tarfile.DIRTYPE, mode=0o755), None), _file("b/old", b"o")])
    upper = _tar([(_info("a", tarfile.DIRTYPE, mode=0o755), None), _file("a/.wh.gone", b""),
                  (_info("b", tarfile.DIRTYPE, mode=0o755), None), _file("b/.wh..wh..opq", b""),
                  _file("b/new", b"n")])
    images = []
    for name, data in (("lower", lower), ("upper", upper)):
        (tmp_path / f"{name}.tar").write_bytes(data)
        convert_layer(tmp_path / f"{name}.tar", tmp_path / f"{name}.erofs")
        fsck(tmp_path / f"{name}.erofs")
        images.append(tmp_path / f"{name}.erofs")
    need_root("mounting the layers under overlayfs")
    import subprocess
    with mounted(images[0], tmp_path / "lo") as lo, mounted(images[1], tmp_path / "up") as up:
        gone = os.lstat(up / "a/gone")
        assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
        assert os.getxattr(up / "b", "trusted.overlay.opaque") == b"y"
        assert os.getxattr(up / "a", "trusted.overlay.origin") == b""
        merged = tmp_path / "merged"
        merged.mkdir()
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={up}:{lo}", str(merged)], check=True)
        try:
            assert sorted(os.listdir(merged / "a")) == ["keep"]
            assert sorted(os.listdir(merged / "b")) == ["new"]
        finally:
            subprocess.run(["umount", str(merged)], check=True)


@pytest.mark.parametrize(("entries", "message"), [
    ([_file("../escape", b"x")], "climbs out of the layer"),
    ([_file("a/../../escape", b"x")], "climbs out of the layer"),
    ([(_info("link", tarfile.LNKTYPE, linkname="missing"), None)], "not an earlier file"),
    ([(_info("d", tarfile.DIRTYPE), None), (_info("l", tarfile.LNKTYPE, linkname="d"), None)], "not an earlier file"),
    ([(_info("s", tarfile.SYMTYPE, linkname="/etc"), None), _file("s/passwd", b"x")], "not a directory"),
])
def test_hostile_entries_are_refused_and_leave_nothing(tmp_path: Path, entries: list, message: str) -> None:
    layer = tmp_path / "bad.tar"
    layer.write_bytes(_tar(entries))
    out = tmp_path / "out"
    with pytest.raises(InvalidLayerError, match=message):
        convert_layer(layer, out / "bad.erofs")
    assert list(out.iterdir()) == []


def test_absolute_paths_are_confined_to_the_layer(tmp_path: Path) -> None:
    layer = tmp_path / "abs.tar"
    layer.write_bytes(_tar([_file("/etc/abs", b"inside")], tarfile.GNU_FORMAT))
    image = tmp_path / "abs.erofs"
    convert_layer(layer, image)
    fsck(image)
    need_root("mounting the image")
    with mounted(image, tmp_path / "mnt") as mnt:
        assert (mnt / "etc/abs").read_bytes() == b"inside"


def _damaged(kind: str, good: bytes) -> bytes:
    import gzip
    if kind == "truncated-gzip":
        return gzip.compress(good)[:-100]
    if kind == "corrupt-gzip":
        data = bytearray(gzip.compress(good))
        data[len(data) // 2] ^= 0xFF
        return bytes(data)
    if kind == "bad-checksum":
        data = bytearray(good)
        data[0] ^= 0x01
        return bytes(data)
    if kind == "truncated-data":
        return good[:512 + 100]
    if kind == "huge-pax":
        return b"0" * 100 + good[100:124] + b"77777777777\0" + good[136:156] + b"x" + good[157:]
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["truncated-gzip", "corrupt-gzip", "bad-checksum", "truncated-data", "huge-pax"])
def test_damaged_streams_fail_cleanly(tmp_path: Path, kind: str) -> None:
    good = _tar([_file("f", os.urandom(20000))], tarfile.GNU_FORMAT)
    layer = tmp_path / "bad"
    layer.write_bytes(_damaged(kind, good))
    out = tmp_path / "out"
    with pytest.raises(InvalidLayerError):
        convert_layer(layer, out / "bad.erofs")
    assert list(out.iterdir()) == []


def test_digest_mismatch_publishes_nothing(rootfs: Path, tmp_path: Path) -> None:
    layer = pack("gnutar-gzip", rootfs, tmp_path / "l.tgz")
    dest = tmp_path / "out" / "l.erofs"
    with pytest.raises(InvalidLayerError, match="diff_id"):
        convert_layer(layer, dest, expected_diff_id="sha256:" + "0" * 64)
    with pytest.raises(InvalidLayerError, match="blob digest"):
        convert_layer(layer, dest, expected_digest="sha256:" + "0" * 64)
    assert list(dest.parent.iterdir()) == []
