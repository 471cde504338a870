"""virtio-blk and split virtqueues on synthetic guest memory (no guest needed): requests served
from raw files and from a composed VMDK's FLAT extents, offsets past 2 and 4 GiB, read-only
disks, and hostile descriptor chains."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from microsandbox._core.diskprobe import flat_extents
from microsandbox._vmm import ffi, lib

from .virtq import AVAIL, DATA, DESC, FLUSH, GET_ID, HOSTILE, IN, NEXT, OUT, Guest

def blk(paths: list[tuple[Path, int, int]], read_only: bool = True):
    b = ffi.new("struct msb_blk *")
    b.read_only = int(read_only)
    fds = []
    for path, offset, length in paths:
        fd = os.open(path, os.O_RDONLY if read_only else os.O_RDWR)
        fds.append(fd)
        assert lib.msb_blk_add_extent(b, fd, offset, length) == 0
    return b, fds


@pytest.fixture
def two_files(tmp_path: Path) -> list[Path]:
    out = []
    for name in ("a", "b"):
        p = tmp_path / name
        p.write_bytes(os.urandom(1 << 20))
        out.append(p)
    return out


def test_reads_cross_extents(two_files: list[Path]) -> None:
    b, fds = blk([(p, 0, 1 << 20) for p in two_files])
    g = Guest()
    _, buf = g.request(IN, (1 << 20) // 512 - 4, 8192)        # 2 KiB before the boundary, 6 after
    assert lib.msb_blk_process(b, g.q, g.mem) == 1
    whole = two_files[0].read_bytes() + two_files[1].read_bytes()
    assert bytes(g.view[buf:buf + 8192]) == whole[(1 << 20) - 2048:(1 << 20) + 6144]
    assert g.view[buf + 8192] == 0 and g.used() == [(0, 8193)]
    assert b.capacity == 2 << 20 and b.requests == 1 and b.errors == 0


def test_writes_and_read_only(two_files: list[Path]) -> None:
    b, _ = blk([(two_files[0], 0, 1 << 20)], read_only=False)
    g = Guest()
    _, buf = g.request(OUT, 8, 512, b"w" * 512)
    assert lib.msb_blk_process(b, g.q, g.mem) == 1 and g.view[buf + 512] == 0
    assert two_files[0].read_bytes()[4096:4608] == b"w" * 512
    ro, _ = blk([(two_files[1], 0, 1 << 20)], read_only=True)
    g2 = Guest()
    _, buf2 = g2.request(OUT, 0, 512, b"x" * 512)
    assert lib.msb_blk_process(ro, g2.q, g2.mem) == 1 and g2.view[buf2 + 512] == 1   # IOERR
    assert ro.errors == 1 and not two_files[1].read_bytes().startswith(b"x" * 512)


def test_flush_reaches_the_backing_files(two_files: list[Path]) -> None:
    """FLUSH (the guest's sync on an ext4 upper) fsyncs every extent and reports success."""
    b, _ = blk([(two_files[0], 0, 1 << 20), (two_files[1], 0, 1 << 20)], read_only=False)
    g = Guest()
    g.request(OUT, 2048 + 1, 512, b"f" * 512)             # lands in the second file
    _, status = g.request(FLUSH, 0, 0)
    assert lib.msb_blk_process(b, g.q, g.mem) == 2
    assert g.view[status] == 0 and b.errors == 0
    assert two_files[1].read_bytes()[512:1024] == b"f" * 512


def test_past_the_end_unsupported_and_get_id(two_files: list[Path]) -> None:
    b, _ = blk([(two_files[0], 0, 1 << 20)])
    g = Guest()
    _, past = g.request(IN, (1 << 20) // 512 - 1, 1024)      # runs off the end
    _, unsupported = g.request(99, 0, 512)
    _, ident = g.request(GET_ID, 0, 20)
    assert lib.msb_blk_process(b, g.q, g.mem) == 3
    assert (g.view[past + 1024], g.view[unsupported + 512], g.view[ident + 20]) == (1, 2, 0)
    assert bytes(g.view[ident:ident + 8]) == b"msb-disk"


def test_offsets_past_2_and_4_gib(tmp_path: Path) -> None:
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(5 << 30)
        f.seek((4 << 30) + 4096)
        f.write(b"past 4 GiB in the file")
    tail = tmp_path / "tail"
    tail.write_bytes(b"second extent".ljust(4096, b"\0"))
    # extent 1: file bytes 1 GiB..5 GiB (4 GiB of disk); extent 2 starts at disk byte 4 GiB
    b, _ = blk([(big, 1 << 30, 4 << 30), (tail, 0, 4096)])
    g = Guest()
    _, first = g.request(IN, ((3 << 30) + 4096) // 512, 512)
    _, second = g.request(IN, (4 << 30) // 512, 512)
    assert lib.msb_blk_process(b, g.q, g.mem) == 2
    assert bytes(g.view[first:first + 22]) == b"past 4 GiB in the file"
    assert bytes(g.view[second:second + 13]) == b"second extent"


def test_a_composed_vmdk_serves_its_stitched_disk(tmp_path: Path) -> None:
    import io
    import tarfile

    from microsandbox.compose import compose_image
    from microsandbox.layers import convert_layer
    layers = []
    for i in range(2):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(f"file{i}")
            payload = os.urandom(20000)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        layers.append(tmp_path / "layers" / f"{i}.erofs")
        convert_layer(io.BytesIO(buf.getvalue()), layers[-1])
    result = compose_image(layers, tmp_path / "fsmeta" / "m.erofs", tmp_path / "disk.vmdk")
    extents = flat_extents(str(tmp_path / "disk.vmdk"))
    assert [Path(p).name for p, _, _ in extents] == ["m.erofs", "0.erofs", "1.erofs"]
    b, _ = blk([(Path(p), off, n) for p, off, n in extents])
    assert b.capacity == result.disk_size
    g = Guest(ram=result.disk_size + (1 << 20))
    _, buf = g.request(IN, 0, result.disk_size)
    assert lib.msb_blk_process(b, g.q, g.mem) == 1 and g.view[buf + result.disk_size] == 0
    stitched = b"".join(p.read_bytes() for p in [tmp_path / "fsmeta" / "m.erofs", *layers])
    assert bytes(g.view[buf:buf + result.disk_size]) == stitched


def test_loops_and_bad_indexes_stop_the_queue(two_files: list[Path]) -> None:
    b, _ = blk([(two_files[0], 0, 1 << 20)])
    g = Guest()
    struct.pack_into("<QIHH", g.view, DESC, DATA, 16, NEXT, 0)          # desc 0 -> desc 0 -> ...
    struct.pack_into("<HH", g.view, AVAIL, 0, 1)
    assert lib.msb_blk_process(b, g.q, g.mem) == -1
    g2 = Guest()
    struct.pack_into("<HHH", g2.view, AVAIL, 0, 1, 999)                  # head beyond the queue
    assert lib.msb_blk_process(b, g2.q, g2.mem) == -1
    g3 = Guest()
    struct.pack_into("<QIHH", g3.view, DESC, (4 << 20) - 8, 16, 0, 0)     # buffer runs off RAM
    struct.pack_into("<HH", g3.view, AVAIL, 0, 1)
    assert lib.msb_blk_process(b, g3.q, g3.mem) == -1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(**HOSTILE)
def test_hostile_queues_never_escape_guest_memory(two_files: list[Path], descs, heads, idx: int) -> None:
    b, _ = blk([(two_files[0], 0, 1 << 20)])
    g = Guest(ram=1 << 20)
    g.load_hostile(descs, heads, idx, max_len=1 << 20)
    rc = lib.msb_blk_process(b, g.q, g.mem)
    assert rc == -1 or 0 <= rc <= 16
