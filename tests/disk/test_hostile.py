"""Hostile and damaged disk images: each is refused with InvalidDiskImageError, nothing else."""
from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microsandbox import InvalidDiskImageError
from microsandbox.disk import probe
from tests.disk.images import CONTAINERS, convert, partitioned


def _patched(src: Path, dest: Path, patches: dict[int, bytes]) -> Path:
    shutil.copyfile(src, dest)
    with open(dest, "r+b") as f:
        for off, data in patches.items():
            f.seek(off)
            f.write(data)
    return dest


@pytest.fixture(scope="module")
def qcow(images: Path, ext4_raw: Path) -> Path:
    return convert(ext4_raw, images / "hostile" / "good.qcow2", ["-O", "qcow2"])


@pytest.fixture(scope="module")
def sparse_vmdk(images: Path, ext4_raw: Path) -> Path:
    return convert(ext4_raw, images / "hostile" / "good.vmdk", ["-O", "vmdk"])


@pytest.mark.parametrize(("patch", "message"), [
    ({20: struct.pack(">I", 40)}, "cluster_bits 40"),
    ({20: struct.pack(">I", 8)}, "cluster_bits 8"),
    ({40: struct.pack(">Q", 1 << 50)}, "L1 table points past the end"),
    ({36: struct.pack(">I", 0xFFFFFFFF)}, "L1 table points past the end"),
    ({36: struct.pack(">I", 0)}, "L1 table has 0 entries"),
    ({32: struct.pack(">I", 1)}, "encrypted"),
    ({4: struct.pack(">I", 7)}, "unsupported qcow2 version 7"),
    ({72: struct.pack(">Q", 1 << 40)}, "unknown incompatible features"),
    ({72: struct.pack(">Q", 1 << 2)}, "external file"),
])
def test_qcow2_header_lies(qcow: Path, tmp_path: Path, patch: dict[int, bytes], message: str) -> None:
    bad = _patched(qcow, tmp_path / "bad.qcow2", patch)
    with pytest.raises(InvalidDiskImageError, match=message):
        probe(bad)


def test_qcow2_l2_table_past_the_end(qcow: Path, tmp_path: Path) -> None:
    l1_offset = struct.unpack(">Q", qcow.read_bytes()[40:48])[0]
    bad = _patched(qcow, tmp_path / "bad.qcow2", {l1_offset: struct.pack(">Q", (1 << 55) | (1 << 63))})
    with pytest.raises(InvalidDiskImageError, match="L2 table points past the end"):
        probe(bad)


def test_truncated_qcow2(qcow: Path, tmp_path: Path) -> None:
    for keep in (3 * 4096 + 100, 100, 50):
        bad = tmp_path / f"cut{keep}.qcow2"
        shutil.copyfile(qcow, bad)
        os.truncate(bad, keep)
        with pytest.raises(InvalidDiskImageError):
            probe(bad)


@pytest.mark.parametrize(("patch", "message"), [
    ({56: struct.pack("<Q", 1 << 40)}, "grain directory points past the end"),
    ({20: struct.pack("<Q", 3)}, "grain size of 3 sectors"),
    ({20: struct.pack("<Q", 1 << 20)}, "grain size"),
    ({44: struct.pack("<I", 1 << 30)}, "grain table size"),
    ({12: struct.pack("<Q", 1 << 60)}, "capacity"),
])
def test_vmdk_sparse_header_lies(sparse_vmdk: Path, tmp_path: Path, patch: dict[int, bytes],
                                 message: str) -> None:
    bad = _patched(sparse_vmdk, tmp_path / "bad.vmdk", patch)
    with pytest.raises(InvalidDiskImageError, match=message):
        probe(bad)


def test_stream_optimized_without_footer(images: Path, ext4_raw: Path, tmp_path: Path) -> None:
    good = convert(ext4_raw, images / "hostile" / "stream.vmdk", ["-O", "vmdk", "-o", "subformat=streamOptimized"])
    bad = _patched(good, tmp_path / "cut.vmdk", {56: struct.pack("<Q", 0xFFFFFFFFFFFFFFFF)})
    os.truncate(bad, os.path.getsize(good) - 1536)
    with pytest.raises(InvalidDiskImageError, match="no VMDK sparse header at byte"):
        probe(bad)


def _descriptor(folder: Path, extent_line: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "disk.vmdk"
    path.write_text('# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
                    'createType="monolithicFlat"\n\n# Extent description\n' + extent_line + "\n")
    return path


@pytest.mark.parametrize(("line", "message"), [
    ('RDONLY 2048 FLAT "/etc/passwd" 0', "absolute path"),
    ('RDONLY 2048 FLAT "../outside.img" 0', "leaves the descriptor's folder"),
    ('RDONLY 2048 FLAT "sub/../../outside.img" 0', "leaves the descriptor's folder"),
    ('RDONLY 2048 FLAT "disk.vmdk" 0', "refers to the descriptor itself"),
    ('RDONLY 2048 SPARSE "nested.vmdk"', "nested descriptors are refused"),
    ('RDONLY 999999 FLAT "short.img" 0', "shorter than the descriptor says"),
    ('RDONLY 2048 FLAT "missing.img" 0', "cannot open"),
    ('RDONLY 0 FLAT "short.img" 0', "out of range"),
    ("# no extents at all", "lists no extents"),
])
def test_vmdk_descriptor_escapes_and_lies(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "outside.img").write_bytes(bytes(2048 * 512))
    desc = _descriptor(tmp_path / "d", line)
    (desc.parent / "short.img").write_bytes(bytes(4096))
    _descriptor(tmp_path / "n", 'RDONLY 8 FLAT "short.img" 0').rename(desc.parent / "nested.vmdk")
    with pytest.raises(InvalidDiskImageError, match=message):
        probe(desc)


def test_vmdk_extent_symlink_escape(tmp_path: Path) -> None:
    (tmp_path / "outside.img").write_bytes(bytes(2048 * 512))
    desc = _descriptor(tmp_path / "d", 'RDONLY 2048 FLAT "inside.img" 0')
    (desc.parent / "inside.img").symlink_to(tmp_path / "outside.img")
    with pytest.raises(InvalidDiskImageError, match="leaves the descriptor's folder"):
        probe(desc)


def test_gpt_with_absurd_entry_count(images: Path, ext4_raw: Path, tmp_path: Path) -> None:
    disk = partitioned(images / "hostile-gpt.raw", "gpt", ext4_raw)
    bad = _patched(disk, tmp_path / "bad.raw", {512 + 80: struct.pack("<I", 0xFFFFFFFF)})
    with pytest.raises(InvalidDiskImageError, match="GPT header claims"):
        probe(bad)


def test_gpt_header_cut_short(images: Path, ext4_raw: Path, tmp_path: Path) -> None:
    disk = partitioned(images / "hostile-gpt-cut.raw", "gpt", ext4_raw)
    for keep in (520, 600, 1000):
        bad = tmp_path / f"cut{keep}.raw"
        bad.write_bytes(disk.read_bytes()[:keep])
        with pytest.raises(InvalidDiskImageError, match="complete GPT header"):
            probe(bad)


def test_partition_starting_past_the_end(images: Path, ext4_raw: Path, tmp_path: Path) -> None:
    disk = partitioned(images / "hostile-mbr.raw", "mbr", ext4_raw)
    bad = _patched(disk, tmp_path / "bad.raw", {446 + 16 + 8: struct.pack("<I", 0xFFFFFF00)})
    with pytest.raises(InvalidDiskImageError, match="starts past the end"):
        probe(bad)


def test_not_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidDiskImageError, match="not a regular file"):
        probe(tmp_path)
    with pytest.raises(InvalidDiskImageError, match="cannot open"):
        probe(tmp_path / "absent.qcow2")


# --- fuzzing: mutate the bytes a parser reads and demand a clean answer or a clean refusal ----

FUZZ_TARGETS = [c for c in CONTAINERS if c[0] in
                ("v3.qcow2", "compressed.qcow2", "extl2.qcow2", "sparse.vmdk", "stream.vmdk")]


@pytest.fixture(scope="module")
def fuzz_seeds(images: Path, ext4_raw: Path) -> dict[str, bytes]:
    seeds = {name: convert(ext4_raw, images / "fuzz" / name, opts).read_bytes()
             for name, opts in FUZZ_TARGETS}
    seeds["gpt.raw"] = partitioned(images / "fuzz-gpt.raw", "gpt", ext4_raw).read_bytes()[:1 << 20]
    return seeds


def _hot_offsets(data: bytes) -> list[int]:
    """Where the parsers look: headers, the first tables, the partition area, the footer."""
    tail = range(len(data) - 1536, len(data)) if len(data) > 4096 else range(0)
    return [*range(0, 1024), *tail]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_images_never_escape_as_anything_else(fuzz_seeds: dict[str, bytes], tmp_path: Path,
                                                      data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(fuzz_seeds)))
    blob = bytearray(fuzz_seeds[name])
    offsets = _hot_offsets(blob)
    for _ in range(data.draw(st.integers(1, 8))):
        off = data.draw(st.sampled_from(offsets))
        blob[off] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del blob[data.draw(st.integers(0, len(blob))):]
    path = tmp_path / name
    path.write_bytes(bytes(blob))
    try:
        info = probe(path)
    except InvalidDiskImageError as exc:
        assert str(exc).startswith(str(path))
    else:
        assert info.virtual_size >= 0


def test_stream_optimized_with_grain_directory_in_the_footer(images: Path, ext4_raw: Path,
                                                             tmp_path: Path) -> None:
    """VMware's own streamOptimized writers put the grain directory offset only in the footer."""
    good = convert(ext4_raw, images / "hostile" / "stream.vmdk", ["-O", "vmdk", "-o", "subformat=streamOptimized"])
    header = good.read_bytes()[:512]
    moved = _patched(good, tmp_path / "footer.vmdk", {56: struct.pack("<Q", 0xFFFFFFFFFFFFFFFF)})
    with open(moved, "ab") as f:
        f.write(struct.pack("<QII", 1, 0, 3).ljust(512, b"\0") + header + bytes(512))
    info = probe(moved)
    assert (info.fstype, info.virtual_size) == ("ext4", 32 << 20)
