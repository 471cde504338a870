"""virtio-console on synthetic guest memory (no guest needed): bytes each way, input kept until a
receive buffer exists, and hostile chains that stop the queue instead of reaching past RAM."""
from __future__ import annotations

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microsandbox._vmm import ffi, lib

from .virtq import HOSTILE, Guest

RX, TX = 0, 1


class Console:
    """A console whose host end is a socketpair; queue RX and TX each live in their own Guest
    layout (both over the same RAM would need two descriptor tables; separate RAM is simpler)."""

    def __init__(self) -> None:
        self.host, self.device = socket.socketpair()
        self.host.settimeout(5)
        self.rx, self.tx = Guest(), Guest()
        self.queues = ffi.new("struct msb_vq[2]")
        self.c = ffi.new("struct msb_console *", {"fd": self.device.fileno(), "queues": self.queues})

    def serve(self, which: int) -> int:
        g = self.rx if which == RX else self.tx
        self.queues[which] = g.q[0]
        rc = lib.msb_console_notify(self.c, ffi.addressof(self.queues, which), g.mem)
        g.q[0] = self.queues[which]
        return rc


@pytest.fixture
def console():
    c = Console()
    yield c
    c.host.close()
    c.device.close()


def test_guest_output_reaches_the_host(console: Console) -> None:
    for text in (b"hello ", b"world"):
        buf = console.tx.alloc(len(text))
        console.tx.view[buf:buf + len(text)] = text
        console.tx.submit([(buf, len(text), False)])
    assert console.serve(TX) == 2
    assert console.host.recv(100) == b"hello world"
    assert console.tx.used() == [(0, 0), (1, 0)] and console.c.to_host == 11


def test_host_input_fills_receive_buffers_in_order(console: Console) -> None:
    console.host.sendall(b"0123456789")
    assert lib.msb_console_pull(console.c) == 1
    first, second = console.rx.alloc(4), console.rx.alloc(64)
    console.rx.submit([(first, 4, True)])
    console.rx.submit([(second, 64, True)])
    assert console.serve(RX) == 2
    assert console.rx.used() == [(0, 4), (1, 6)]
    assert bytes(console.rx.view[first:first + 4]) + bytes(console.rx.view[second:second + 6]) == b"0123456789"
    assert console.c.in_len == 0 and console.c.to_guest == 10


def test_input_waits_for_buffers_and_buffers_wait_for_input(console: Console) -> None:
    buf = console.rx.alloc(16)
    console.rx.submit([(buf, 16, True)])
    assert console.serve(RX) == 0 and console.rx.used() == []      # nothing to deliver yet
    console.host.sendall(b"late")
    assert lib.msb_console_pull(console.c) == 1
    assert console.serve(RX) == 1 and console.rx.used() == [(0, 4)]


def test_wrong_direction_buffers_stop_the_queue(console: Console) -> None:
    console.host.sendall(b"x")
    lib.msb_console_pull(console.c)
    console.rx.submit([(console.rx.alloc(8), 8, False)])             # receive buffer the device may not write
    assert console.serve(RX) == -1
    console.tx.submit([(console.tx.alloc(8), 8, True)])              # transmit buffer marked device-writable
    assert console.serve(TX) == -1


def test_a_closed_host_drops_output_but_returns_buffers(console: Console) -> None:
    console.host.close()
    buf = console.tx.alloc(5)
    console.tx.submit([(buf, 5, False)])
    assert console.serve(TX) == 1 and console.c.host_closed == 1
    assert lib.msb_console_pull(console.c) == 0


@settings(max_examples=300, deadline=None)
@given(**HOSTILE, which=st.sampled_from([RX, TX]))
def test_hostile_chains_never_escape_guest_memory(descs, heads, idx: int, which: int) -> None:
    c = Console()
    with c.host, c.device:
        c.host.sendall(b"input for the guest")
        lib.msb_console_pull(c.c)
        # transmit buffers stay small: 16 of them must fit the socket's buffer, which nobody reads
        (c.rx if which == RX else c.tx).load_hostile(descs, heads, idx, max_len=1 << 12)
        rc = c.serve(which)
        assert rc == -1 or 0 <= rc <= 16
