"""The KVM monitor's Python face: configure a VM, start it, read what it did.

The run loop and the devices are C (``csrc/vmm``, bound with cffi in API mode); Python never sees
a guest exit. It runs small hand-written test guests (real and long mode, with the 16550 console,
virtio-blk and virtio-console) and boots the guest kernel through its PVH entry (``microsandbox.vmboot``).
"""
from __future__ import annotations

import socket
from dataclasses import dataclass

from ._vmm import ffi, lib
from .errors import InvalidConfigError, VmError
from .kvm_host import kvm_status

ABI_VERSION = 8
_ERR = 512


@dataclass(frozen=True)
class RunResult:
    stopped: bool
    """True when the guest asked to stop (wrote the stop port); False when it halted."""
    stop_value: int
    console: bytes
    io_exits: int
    mmio_exits: int


class Vm:
    """One VM with ``ram_bytes`` of guest RAM and one vCPU; use as a context manager."""

    def __init__(self, ram_bytes: int, *, irqchip: bool = False) -> None:
        if lib.msb_vmm_abi_version() != ABI_VERSION:
            raise VmError("the compiled monitor does not match this package: rebuild it (make build)")
        kvm_status()   # KvmUnavailableError with the reason when /dev/kvm cannot be used
        err = ffi.new("char[]", _ERR)
        vm = lib.msb_vm_create(ram_bytes, int(irqchip), err, _ERR)
        if vm == ffi.NULL:
            raise VmError(f"cannot create the VM: {ffi.string(err).decode()}")
        self._vm = ffi.gc(vm, lib.msb_vm_destroy)
        self._channels: list[socket.socket] = []
        self.ram_bytes = ram_bytes

    def load(self, gpa: int, data: bytes) -> None:
        """Copy ``data`` into guest RAM at ``gpa``; refuses anything outside guest RAM."""
        if gpa < 0 or lib.msb_vm_load(self._vm, gpa, data, len(data)) != 0:
            raise InvalidConfigError(f"{len(data)} bytes at guest address 0x{gpa:x} do not fit in "
                                     f"{self.ram_bytes} bytes of guest RAM")

    def map_file(self, gpa: int, fd: int, offset: int, data: bytes) -> None:
        """Put ``data`` (the bytes of ``fd`` at ``offset``) at ``gpa``: its whole pages mapped from the
        file copy-on-write, which costs no copy and no zeroing, the partial tail copied."""
        mapped = lib.msb_vm_map_file(self._vm, gpa, fd, offset, len(data)) if gpa % 4096 == offset % 4096 == 0 else 0
        if mapped < 0:
            raise InvalidConfigError(f"cannot map {len(data)} bytes of a file at guest address 0x{gpa:x}")
        if mapped < len(data):
            self.load(gpa + mapped, data[mapped:])

    def add_disk(self, base: int, extents: list[tuple[int, int, int]], *, read_only: bool = True) -> int:
        """A virtio-blk device with its register window at guest address ``base`` (outside RAM),
        backed by ``(fd, file offset, length)`` extents in disk order; returns its index."""
        index = lib.msb_vm_add_blk(self._vm, base, int(read_only))
        if index < 0:
            raise InvalidConfigError(f"no room for a device window at 0x{base:x} (it must lie outside RAM, "
                                     "be 0x200-aligned and not overlap another)")
        for fd, offset, length in extents:
            if lib.msb_vm_blk_add_extent(self._vm, index, fd, offset, length) != 0:
                raise InvalidConfigError(f"extent of {length} bytes at {offset} is not whole sectors, or too many")
        return index

    def add_console(self, base: int, channel: socket.socket) -> int:
        """A virtio-console device (the guest's ``/dev/hvc0``) at guest address ``base`` whose bytes
        flow to and from ``channel``, a connected stream socket; a C thread moves them."""
        if channel.type != socket.SOCK_STREAM:
            raise InvalidConfigError("the console channel must be a stream socket")
        index = lib.msb_vm_add_console(self._vm, base, channel.fileno())
        if index < 0:
            raise InvalidConfigError(f"no room for a device window at 0x{base:x} (it must lie outside RAM, "
                                     "be 0x200-aligned and not overlap another)")
        self._channels.append(channel)   # the device uses its fd until the VM is destroyed
        return index

    def console_bytes(self, index: int) -> tuple[int, int]:
        """Bytes the console device ``index`` has moved so far: (to the guest, to the host)."""
        counts = ffi.new("uint64_t[2]")
        if lib.msb_vm_console_bytes(self._vm, index, counts, counts + 1) != 0:
            raise InvalidConfigError(f"device {index} is not a console")
        return counts[0], counts[1]

    def watch(self, text: bytes) -> None:
        """Make ``run`` return (not stopped) as soon as the console output ends with ``text``."""
        if lib.msb_vm_watch(self._vm, text, len(text)) != 0:
            raise InvalidConfigError("the watched text is limited to 63 bytes")

    def enter_pvh(self, entry: int, start_info: int) -> None:
        if lib.msb_vm_enter_pvh(self._vm, entry, start_info) != 0:
            raise VmError("cannot set up the vCPU for the PVH entry (CPUID, MSRs, LAPIC or registers)")

    def enter_real_mode(self, cs: int, ip: int) -> None:
        if lib.msb_vm_enter_real_mode(self._vm, cs, ip) != 0:
            raise VmError("cannot set the vCPU's registers")

    def enter_long_mode(self, rip: int, rsp: int = 0) -> None:
        """64-bit mode at ``rip``, the first GiB identity-mapped (page tables at 0x9000-0xBFFF)."""
        if lib.msb_vm_enter_long_mode(self._vm, rip, rsp) != 0:
            raise VmError("cannot set up long mode (guest RAM must cover 0x9000-0xBFFF)")

    def run(self, max_exits: int = 100_000) -> RunResult:
        """Run until the guest stops or halts; ``VmError`` for a fault or too many exits."""
        err = ffi.new("char[]", _ERR)
        rc = lib.msb_vm_run(self._vm, max_exits, err, _ERR)
        if rc < 0:
            raise VmError(ffi.string(err).decode(), console=self.console_output())
        return RunResult(stopped=rc == lib.MSB_VM_STOPPED, stop_value=self._vm.stop_value,
                         console=self.console_output(), io_exits=self._vm.io_exits,
                         mmio_exits=self._vm.mmio_exits)

    def exit_counts(self) -> tuple[int, int]:
        """Port I/O and MMIO exits so far (readable while the vCPU runs)."""
        return self._vm.io_exits, self._vm.mmio_exits

    def console_output(self) -> bytes:
        """What the guest has written to its 16550 console so far (the kernel log)."""
        out = ffi.new("const uint8_t **")
        n = lib.msb_vm_console(self._vm, out)
        return bytes(ffi.buffer(out[0], n))

    def close(self) -> None:
        """Destroy the VM now (its fds and memory), instead of when it is garbage-collected."""
        if self._vm is not None:
            ffi.release(self._vm)   # joins the device threads before their sockets may close
            self._vm = None
            self._channels.clear()

    def __enter__(self) -> Vm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
