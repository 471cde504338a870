"""virtio-mmio as a guest driver programs it, with virtio-blk behind it (no guest needed)."""
from __future__ import annotations

import os
import struct
from pathlib import Path

from microsandbox._vmm import ffi, lib
from tests.vmm.test_virtio_blk import blk
from tests.vmm.virtq import AVAIL, DESC, IN, USED, Guest

ACK, DRIVER, FEATURES_OK, DRIVER_OK = 1, 2, 8, 4


def device(tmp_path: Path, read_only: bool = True):
    disk = tmp_path / "disk.raw"
    disk.write_bytes(os.urandom(64 << 10))
    b, _ = blk([(disk, 0, 64 << 10)], read_only=read_only)
    config = ffi.new("uint8_t[]", 8)
    struct.pack_into("<Q", ffi.buffer(config), 0, b.capacity // 512)
    guest = Guest()
    m = ffi.new("struct msb_mmio *")
    features = lib.MSB_VIRTIO_BLK_F_FLUSH | (lib.MSB_VIRTIO_BLK_F_RO if read_only else 0)
    lib.msb_mmio_init(m, lib.MSB_VIRTIO_ID_BLOCK, features, 1, config, 8, b, lib.msb_blk_notify, guest.mem)
    return m, b, guest, disk, config


def rd(m, off: int, size: int = 4) -> int:
    return lib.msb_mmio_read(m, off, size)


def wr(m, off: int, value: int) -> None:
    lib.msb_mmio_write(m, off, value, 4)


def bring_up(m, features: int) -> None:
    wr(m, 0x070, 0)
    wr(m, 0x070, ACK)
    wr(m, 0x070, ACK | DRIVER)
    wr(m, 0x024, 0)
    wr(m, 0x020, features & 0xFFFFFFFF)
    wr(m, 0x024, 1)
    wr(m, 0x020, features >> 32)
    wr(m, 0x070, ACK | DRIVER | FEATURES_OK)
    wr(m, 0x030, 0)
    wr(m, 0x038, 16)
    for reg, addr in ((0x080, DESC), (0x090, AVAIL), (0x0A0, USED)):
        wr(m, reg, addr)
        wr(m, reg + 4, 0)
    wr(m, 0x044, 1)
    wr(m, 0x070, ACK | DRIVER | FEATURES_OK | DRIVER_OK)


def test_identity_features_and_config(tmp_path: Path) -> None:
    m, b, *_ = device(tmp_path)
    assert (rd(m, 0x000), rd(m, 0x004), rd(m, 0x008)) == (0x74726976, 2, 2)
    wr(m, 0x014, 0)
    low = rd(m, 0x010)
    wr(m, 0x014, 1)
    high = rd(m, 0x010)
    assert low & (1 << 5) and low & (1 << 9) and high & 1          # RO, FLUSH, VERSION_1
    assert rd(m, 0x100) | rd(m, 0x104) << 32 == b.capacity // 512   # capacity in sectors
    assert rd(m, 0x108) == 0 and rd(m, 0x000, 2) == 0               # past the config; sub-word register


def test_driver_sequence_and_a_read_request(tmp_path: Path) -> None:
    m, b, guest, disk, _ = device(tmp_path)
    bring_up(m, (1 << 32) | (1 << 5))
    assert rd(m, 0x070) & FEATURES_OK and rd(m, 0x034) == 256 and rd(m, 0x044) == 1
    _, buf = guest.request(IN, 2, 1024)
    wr(m, 0x050, 0)                                                # QueueNotify
    assert bytes(guest.view[buf:buf + 1024]) == disk.read_bytes()[1024:2048]
    assert rd(m, 0x060) == 1                                        # used-buffer interrupt
    wr(m, 0x064, 1)
    assert rd(m, 0x060) == 0


def test_features_not_offered_are_refused(tmp_path: Path) -> None:
    m, *_ = device(tmp_path)
    bring_up(m, (1 << 32) | (1 << 20))                              # bit 20 was never offered
    assert not rd(m, 0x070) & FEATURES_OK


def test_bad_queue_sizes_never_become_ready(tmp_path: Path) -> None:
    m, *_ = device(tmp_path)
    for size in (0, 3, 512):
        wr(m, 0x038, size)
        wr(m, 0x044, 1)
        assert rd(m, 0x044) == 0
    wr(m, 0x030, 5)                                                 # a queue that does not exist
    assert rd(m, 0x034) == 0


def test_a_malformed_queue_needs_reset_and_reset_clears_it(tmp_path: Path) -> None:
    m, b, guest, *_ = device(tmp_path)
    bring_up(m, 1 << 32)
    struct.pack_into("<QIHH", guest.view, DESC, 0x10000, 16, 1, 0)  # a descriptor that loops
    struct.pack_into("<HH", guest.view, AVAIL, 0, 1)
    wr(m, 0x050, 0)
    assert rd(m, 0x070) & lib.MSB_VIRTIO_STATUS_NEEDS_RESET and rd(m, 0x060) & 2
    requests = b.requests
    wr(m, 0x050, 0)                                                 # ignored until reset
    assert b.requests == requests
    wr(m, 0x070, 0)
    assert (rd(m, 0x070), rd(m, 0x060), rd(m, 0x044)) == (0, 0, 0)
