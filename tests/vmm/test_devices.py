"""Device models and the guest-memory accessor, driven directly through cffi (no guest)."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from microsandbox._vmm import ffi, lib

THR, IER, IIR, LCR, MCR, LSR, MSR, SCR = range(8)


def uart(cap: int = 64):
    buf = ffi.new("uint8_t[]", cap)
    u = ffi.new("struct msb_uart *")
    lib.msb_uart_init(u, buf, cap)
    return u, buf


def test_uart_transmits_and_reports_an_empty_transmitter() -> None:
    u, buf = uart()
    for ch in b"boot ok":
        assert lib.msb_uart_read(u, LSR) & 0x60 == 0x60   # THRE | TEMT: always ready
        lib.msb_uart_write(u, THR, ch)
    assert bytes(ffi.buffer(buf, u.out_len)) == b"boot ok"
    assert lib.msb_uart_read(u, IIR) == 0xC1               # no interrupt pending, FIFOs on


def test_uart_divisor_latch_and_scratch() -> None:
    u, buf = uart()
    lib.msb_uart_write(u, LCR, 0x83)                        # DLAB on, 8N1
    lib.msb_uart_write(u, THR, 0x01)                        # DLL, not output
    lib.msb_uart_write(u, IER, 0x00)                        # DLM
    assert (lib.msb_uart_read(u, THR), lib.msb_uart_read(u, IER)) == (0x01, 0x00)
    lib.msb_uart_write(u, LCR, 0x03)
    lib.msb_uart_write(u, IER, 0xFF)
    assert lib.msb_uart_read(u, IER) == 0x0F and u.out_len == 0
    lib.msb_uart_write(u, SCR, 0x5A)
    assert lib.msb_uart_read(u, SCR) == 0x5A


def test_uart_loopback_mirrors_modem_control() -> None:
    u, _ = uart()
    lib.msb_uart_write(u, MCR, 0x10 | 0x0A)                 # loop + RTS + OUT2
    assert lib.msb_uart_read(u, MSR) == 0xA0
    lib.msb_uart_write(u, MCR, 0x00)
    assert lib.msb_uart_read(u, MSR) == 0xB0                # CTS, DSR, DCD


def test_uart_output_is_bounded() -> None:
    u, buf = uart(cap=4)
    for ch in b"overflowing":
        lib.msb_uart_write(u, THR, ch)
    assert u.out_len == 4 and bytes(ffi.buffer(buf, 4)) == b"over"


@given(size=st.integers(0, 1 << 40), gpa=st.integers(0, 2**64 - 1), length=st.integers(0, 2**64 - 1))
def test_guest_accessor_never_reaches_outside_ram(size: int, gpa: int, length: int) -> None:
    mem = ffi.new("struct msb_guest_mem *", {"host": ffi.cast("uint8_t *", 0x10000), "size": size})
    ptr = lib.msb_gpa_check(mem, gpa, length)
    inside = gpa + length <= size
    assert (ptr != ffi.NULL) == inside
    if inside:
        assert int(ffi.cast("uintptr_t", ptr)) == 0x10000 + gpa
