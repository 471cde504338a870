"""Hand-written real-mode guests run through real KVM_RUN (kvm-pvm emulates ring 0 slowly, so
they stay a few dozen instructions)."""
from __future__ import annotations

import os
import socket
import struct

import pytest

from microsandbox import InvalidConfigError, VmError
from microsandbox.vmm import Vm

from .guests import COM1, assemble, driver_setup, stop_with, wait_for_used

pytestmark = pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK),
                                reason="needs a usable /dev/kvm")


def out_str(port: int, data: bytes) -> bytes:
    code = bytes([0xBA, port & 0xFF, port >> 8])             # mov dx, port
    for ch in data:
        code += bytes([0xB0, ch, 0xEE])                       # mov al, ch; out dx, al
    return code


def stop(value: int) -> bytes:
    return bytes([0xBA, 0x01, 0x05, 0xB0, value, 0xEE, 0xF4])  # out 0x501, value; hlt


def test_guest_prints_on_the_console_and_stops() -> None:
    with Vm(1 << 20) as vm:
        vm.load(0x1000, out_str(0x3F8, b"hello from the guest\n") + stop(42))
        vm.enter_real_mode(0, 0x1000)
        result = vm.run()
    assert result.stopped and result.stop_value == 42
    assert result.console == b"hello from the guest\n"
    assert result.io_exits == len(b"hello from the guest\n") + 1


def test_guest_probes_the_uart_like_the_8250_driver() -> None:
    # write the scratch register, read it back, and print what came back
    code = bytes([0xBA, 0xFF, 0x03, 0xB0, 0x5A, 0xEE,        # out 0x3FF (SCR), 0x5A
                  0xEC,                                      # in al, dx
                  0xBA, 0xF8, 0x03, 0xEE])                   # out 0x3F8, al
    with Vm(1 << 20) as vm:
        vm.load(0x7C00, code + stop(0))
        vm.enter_real_mode(0, 0x7C00)
        assert vm.run().console == b"\x5a"


def test_halt_without_irqchip_returns() -> None:
    with Vm(1 << 20) as vm:
        vm.load(0x1000, b"\xF4")
        vm.enter_real_mode(0, 0x1000)
        result = vm.run()
    assert not result.stopped and result.console == b""


def test_mmio_outside_ram_is_reported() -> None:
    # mov ax, 0xF000; mov ds, ax; mov byte [0], 1  -> guest physical 0xF0000, beyond 64 KiB of RAM
    code = bytes([0xB8, 0x00, 0xF0, 0x8E, 0xD8, 0xC6, 0x06, 0x00, 0x00, 0x01]) + stop(0)
    with Vm(64 << 10) as vm:
        vm.load(0x1000, code)
        vm.enter_real_mode(0, 0x1000)
        with pytest.raises(VmError, match="unmapped MMIO at 0xf0000"):
            vm.run()


def test_exit_budget_ends_a_chatty_guest() -> None:
    loop = bytes([0xBA, 0xF8, 0x03, 0xB0, 0x2E, 0xEE, 0xEB, 0xFD])   # out '.' forever
    with Vm(1 << 20) as vm:
        vm.load(0x1000, loop)
        vm.enter_real_mode(0, 0x1000)
        with pytest.raises(VmError, match="did not stop within 50 exits"):
            vm.run(max_exits=50)


def test_loads_outside_ram_are_refused() -> None:
    with Vm(1 << 20) as vm:
        with pytest.raises(InvalidConfigError, match="do not fit"):
            vm.load((1 << 20) - 2, b"abcd")
        with pytest.raises(InvalidConfigError):
            vm.load(2**64 - 1, b"a")
    with pytest.raises(VmError, match="multiple of 4 KiB"):
        Vm(12345)


def test_guest_drives_virtio_blk_through_mmio(tmp_path) -> None:
    """A real-mode guest negotiates, sets up a queue and notifies through the register window (MMIO
    exits in real KVM_RUN; the notify goes to the disk's thread by ioeventfd); it waits for the
    request to come back used and prints sector 1."""
    disk = tmp_path / "disk.raw"
    disk.write_bytes(bytes(512) + b"DISK SECTOR ONE!".ljust(512, b"\0") + bytes(1024))
    desc, avail, used, header, data, status = 0x4000, 0x5000, 0x6000, 0x7000, 0x8000, 0x8200
    prepared = bytearray(0x8400)
    struct.pack_into("<QIHH", prepared, desc, header, 16, 1, 1)          # header -> data
    struct.pack_into("<QIHH", prepared, desc + 16, data, 512, 3, 2)      # data (device writes) -> status
    struct.pack_into("<QIHH", prepared, desc + 32, status, 1, 2, 0)      # status (device writes)
    struct.pack_into("<HHH", prepared, avail, 0, 1, 0)                   # one request, head 0
    struct.pack_into("<IIQ", prepared, header, 0, 0, 1)                  # IN, sector 1
    prepared[status] = 0xFF
    registers = [(0x070, 0), (0x070, 1), (0x070, 3), (0x024, 0), (0x020, 0), (0x024, 1), (0x020, 1),
                 (0x070, 11), (0x030, 0), (0x038, 8), (0x080, desc), (0x084, 0), (0x090, avail), (0x094, 0),
                 (0x0A0, used), (0x0A4, 0), (0x044, 1), (0x070, 15), (0x050, 0)]
    code = assemble("mov ax, 0x8000\nmov ds, ax\n"                     # ds -> the device window at 0x80000
                    + "".join(f"mov dword ptr [{off:#x}], {val:#x}\n" for off, val in registers) + f"""
        xor ax, ax
        mov ds, ax
        {wait_for_used(used, or_stop=1)}
        mov si, {data:#x}
        mov cx, 16
        mov dx, {COM1}
    3:  lodsb
        out dx, al
        loop 3b
        mov al, byte ptr [{status:#x}]
        out dx, al
        {stop_with(7)}
    """, bits=16)
    fd = os.open(disk, os.O_RDONLY)
    try:
        with Vm(0x80000) as vm:
            vm.add_disk(0x80000, [(fd, 0, 2048)])
            vm.load(0, bytes(prepared))
            vm.load(0x1000, code)
            vm.enter_real_mode(0, 0x1000)
            result = vm.run()
    finally:
        os.close(fd)
    assert result.stopped and result.stop_value == 7
    assert result.console == b"DISK SECTOR ONE!\x00"      # the data, then status OK
    assert result.mmio_exits == len(registers) - 1        # every register write but the ioeventfd notify


def test_device_windows_must_lie_outside_ram() -> None:
    with Vm(0x80000) as vm:
        with pytest.raises(InvalidConfigError, match="outside RAM"):
            vm.add_disk(0x1000, [])
        vm.add_disk(0x80000, [])
        with pytest.raises(InvalidConfigError, match="overlap"):
            vm.add_disk(0x80000, [])


def test_long_mode_guest_prints_and_stops() -> None:
    code = assemble(f"""
        lea rsi, [rip + message]
        mov ecx, 12
        mov dx, {COM1}
    1:  lodsb
        out dx, al
        loop 1b
        mov rax, 0x123456789
        shr rax, 32             # only a 64-bit register keeps the high half
        {stop_with("al")}
    message: .ascii "64-bit hello"
    """)
    with Vm(1 << 20) as vm:
        vm.load(0x1000, code)
        vm.enter_long_mode(0x1000, rsp=0x8000)
        result = vm.run()
    assert result.stopped and result.stop_value == 1
    assert result.console == b"64-bit hello"


CONSOLE = 0x100000                     # the console's register window, just above 1 MiB of RAM
RX_DESC, RX_AVAIL, RX_USED, RX_BUF = 0x2000, 0x2100, 0x2200, 0x4000
TX_DESC, TX_AVAIL, TX_USED, TX_BUF = 0x3000, 0x3100, 0x3200, 0x5000


def console_memory(sent: bytes) -> bytes:
    """One 64-byte receive buffer posted on queue 0, ``sent`` queued for transmit on queue 1."""
    mem = bytearray(0x6000)
    struct.pack_into("<QIHH", mem, RX_DESC, RX_BUF, 64, 2, 0)     # device-writable
    struct.pack_into("<HHH", mem, RX_AVAIL, 0, 1, 0)
    struct.pack_into("<QIHH", mem, TX_DESC, TX_BUF, len(sent), 0, 0)
    struct.pack_into("<HHH", mem, TX_AVAIL, 0, 1, 0)
    mem[TX_BUF:TX_BUF + len(sent)] = sent
    return bytes(mem)


def console_guest() -> bytes:
    """Kick both queues, wait for the receive buffer to come back used, print what it holds, and
    stop with 7 once the transmit buffer is back as well."""
    return assemble(driver_setup(CONSOLE, [(8, RX_DESC, RX_AVAIL, RX_USED), (8, TX_DESC, TX_AVAIL, TX_USED)]) + f"""
        mov dword ptr [rbx + 0x50], 1      # transmitq
        mov dword ptr [rbx + 0x50], 0      # receiveq
        {wait_for_used(RX_USED, or_stop=1)}
        mov ecx, dword ptr [{RX_USED + 8}]  # bytes the device wrote
        mov rsi, {RX_BUF}
        mov dx, {COM1}
    3:  lodsb
        out dx, al
        loop 3b
        {wait_for_used(TX_USED, or_stop=2)}     # the transmit buffer came back too
        {stop_with(7)}
    """)


def test_guest_talks_to_the_host_over_virtio_console() -> None:
    """Real KVM_RUN: the guest's transmit buffer reaches the host socket, and bytes the host sent
    land in the guest's receive buffer, moved by the device thread (kicked through ioeventfd)."""
    host, device = socket.socketpair()
    with host, device:
        host.sendall(b"pong from the host")
        with Vm(1 << 20) as vm:
            index = vm.add_console(CONSOLE, device)
            vm.load(0, console_memory(b"ping from the guest"))
            vm.load(0x1000, console_guest())
            vm.enter_long_mode(0x1000, rsp=0x8000)
            result = vm.run()
            moved = vm.console_bytes(index)
        host.settimeout(5)
        assert host.recv(100) == b"ping from the guest"
    assert result.stopped and result.stop_value == 7, result
    assert result.console == b"pong from the host"
    assert moved == (len(b"pong from the host"), len(b"ping from the guest"))
    assert result.mmio_exits == 25       # the register writes of the driver sequence; the kicks went by ioeventfd


def test_console_input_waits_for_a_receive_buffer() -> None:
    """Bytes that arrive before the guest posts a buffer are kept, not dropped, and a peer that
    hangs up does not stop the guest's transmissions from completing."""
    host, device = socket.socketpair()
    with device:
        host.sendall(b"early")
        host.close()
        with Vm(1 << 20) as vm:
            vm.add_console(CONSOLE, device)
            vm.load(0, console_memory(b"nobody listens"))
            vm.load(0x1000, console_guest())
            vm.enter_long_mode(0x1000, rsp=0x8000)
            result = vm.run()
    assert result.stopped and result.stop_value == 7
    assert result.console == b"early"


def test_long_mode_guest_reads_a_composed_vmdk_past_its_first_extent(tmp_path) -> None:
    """A 64-bit guest drives virtio-blk on a two-extent disk (as a stitched VMDK is) and prints the
    first bytes of sector 3, which lives in the second file."""
    first, second = tmp_path / "a.raw", tmp_path / "b.raw"
    first.write_bytes(bytes(1024))
    second.write_bytes(bytes(512) + b"SECOND EXTENT OK".ljust(512, b"\0"))
    disk, desc, avail, used, header, data, status = 0x100000, 0x2000, 0x2100, 0x2200, 0x3000, 0x4000, 0x4200
    mem = bytearray(0x5000)
    struct.pack_into("<QIHH", mem, desc, header, 16, 1, 1)
    struct.pack_into("<QIHH", mem, desc + 16, data, 512, 3, 2)
    struct.pack_into("<QIHH", mem, desc + 32, status, 1, 2, 0)
    struct.pack_into("<HHH", mem, avail, 0, 1, 0)
    struct.pack_into("<IIQ", mem, header, 0, 0, 3)                       # IN, sector 3
    mem[status] = 0xFF
    code = assemble(driver_setup(disk, [(8, desc, avail, used)]) + f"""
        mov dword ptr [rbx + 0x50], 0       # notify: the disk's thread serves it (ioeventfd)
        {wait_for_used(used, or_stop=1)}
        mov rsi, {data}
        mov ecx, 16
        mov dx, {COM1}
    1:  lodsb
        out dx, al
        loop 1b
        mov al, byte ptr [{status}]
        out dx, al
        {stop_with(7)}
    """)
    fds = [os.open(p, os.O_RDONLY) for p in (first, second)]
    try:
        with Vm(1 << 20) as vm:
            vm.add_disk(disk, [(fds[0], 0, 1024), (fds[1], 0, 1024)])
            vm.load(0, bytes(mem))
            vm.load(0x1000, code)
            vm.enter_long_mode(0x1000, rsp=0x8000)
            result = vm.run()
    finally:
        for fd in fds:
            os.close(fd)
    assert result.stopped and result.stop_value == 7
    assert result.console == b"SECOND EXTENT OK\x00"
