"""Synthetic guest memory with one split virtqueue, laid out the way a driver would, for device
tests that need no guest."""
from __future__ import annotations

import struct

from hypothesis import strategies as st

from microsandbox._vmm import ffi

DESC, AVAIL, USED, DATA = 0x1000, 0x2000, 0x3000, 0x10000
IN, OUT, FLUSH, GET_ID = 0, 1, 4, 8
NEXT, WRITE = 1, 2


class Guest:
    """Guest RAM with one queue laid out the way a driver would."""

    def __init__(self, ram: int = 4 << 20, size: int = 16) -> None:
        self.ram = ffi.new("uint8_t[]", ram)
        self.view = memoryview(ffi.buffer(self.ram))
        self.mem = ffi.new("struct msb_guest_mem *", {"host": self.ram, "size": ram})
        self.q = ffi.new("struct msb_vq *", {"size": size, "desc": DESC, "avail": AVAIL, "used": USED})
        self.size, self.next_desc, self.avail_idx, self.free = size, 0, 0, DATA

    def alloc(self, n: int) -> int:
        gpa, self.free = self.free, self.free + (n + 15) // 16 * 16
        return gpa

    def submit(self, bufs: list[tuple[int, int, bool]]) -> int:
        head = self.next_desc
        for i, (gpa, length, writable) in enumerate(bufs):
            idx = (head + i) % self.size
            flags = (WRITE if writable else 0) | (NEXT if i + 1 < len(bufs) else 0)
            struct.pack_into("<QIHH", self.view, DESC + 16 * idx, gpa, length, flags, (idx + 1) % self.size)
        self.next_desc = (head + len(bufs)) % self.size
        struct.pack_into("<H", self.view, AVAIL + 4 + 2 * (self.avail_idx % self.size), head)
        self.avail_idx += 1
        struct.pack_into("<H", self.view, AVAIL + 2, self.avail_idx & 0xFFFF)
        return head

    def request(self, kind: int, sector: int, length: int, data: bytes | None = None) -> tuple[int, int]:
        """Queue one request; returns (header gpa, data gpa); status byte right after the data."""
        header = self.alloc(16)
        struct.pack_into("<IIQ", self.view, header, kind, 0, sector)
        buf = self.alloc(length + 1)
        if data is not None:
            self.view[buf:buf + len(data)] = data
        bufs = [(header, 16, False)] + ([(buf, length, kind != OUT)] if length else []) + [(buf + length, 1, True)]
        self.submit(bufs)
        return header, buf

    def used(self) -> list[tuple[int, int]]:
        idx = struct.unpack_from("<H", self.view, USED + 2)[0]
        return [struct.unpack_from("<II", self.view, USED + 4 + 8 * (i % self.size)) for i in range(idx)]

    def load_hostile(self, descs: list[tuple[int, int, int, int]], heads: list[int], idx: int, max_len: int) -> None:
        """Write fuzzed descriptors (addr, len, flags, next), avail ring heads and avail index. Most
        buffers are aimed into RAM and kept under ``max_len`` so that requests really run; every
        third lands anywhere."""
        for i, (addr, length, flags, nxt) in enumerate(descs):
            addr = DATA + addr % (1 << 19) if i % 3 else addr
            length = length % max_len if i % 3 else length
            struct.pack_into("<QIHH", self.view, DESC + 16 * i, addr, length, flags, nxt)
        for i, h in enumerate(heads):
            struct.pack_into("<H", self.view, AVAIL + 4 + 2 * i, h)
        struct.pack_into("<H", self.view, AVAIL + 2, idx)


# Strategies for ``Guest.load_hostile``: descriptor tables, avail heads and an avail index.
HOSTILE = {"descs": st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), st.integers(0, 7),
                                       st.integers(0, 40)), min_size=1, max_size=16),
           "heads": st.lists(st.integers(0, 40), min_size=1, max_size=20),
           "idx": st.integers(0, 2**16 - 1)}
