"""Booting the guest kernel: the vmlinux's PVH entry, disks and the agent channel as virtio-mmio.

The monitor loads every PT_LOAD segment at its physical address, writes ``hvm_start_info`` with an
e820 memory map, the command line and (for sandboxes) the initramfs holding the agent, attaches the
disks (a VMDK's FLAT extents or a raw file) and the virtio-console, and starts the vCPU in 32-bit
flat mode at the entry (spec vmm.md 2.3). Device i has its window at ``device_window(i)`` and
interrupts on IRQ 5 + i; the kernel learns both from the command line.
"""
from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from ._core.diskprobe import flat_extents
from .errors import InvalidConfigError
from .kernel import load_image
from .vmm import Vm

START_INFO, MEMMAP, MODLIST, CMDLINE = 0x6000, 0x6100, 0x6200, 0x7000
DEVICE_BASE, DEVICE_STRIDE = 0xD0000000, 0x1000
PVH_MAGIC = 0x336EC578
E820_RAM = 1
# kvm-pvm emulates ring 0: hide CPU features whose instructions its emulator cannot run, and the
# costly byte-wise string instructions (spec vmm.md section 0). Harmless on hardware KVM.
PVM_FLAGS = ("noxsave mitigations=off init_on_alloc=0 clearcpuid=smap,cx16,fsgsbase,rdpid,invpcid,pcid,"
             "popcnt,erms,fsrm,ssse3,sse4_1,sse4_2,aes,pclmulqdq,sha_ni,gfni,vaes")


@dataclass(frozen=True)
class Disk:
    """A guest disk: a VMDK (its FLAT extents, stitched) or a raw file."""

    path: Path
    read_only: bool = True


def device_window(index: int) -> int:
    return DEVICE_BASE + index * DEVICE_STRIDE


def kernel_cmdline(*, devices: int, root_erofs: bool = False, extra: str = "", init_args: str = "") -> str:
    """The command line for ``devices`` virtio-mmio devices; ``init_args`` go to init (after ``--``)."""
    windows = " ".join(f"virtio_mmio.device=512@0x{device_window(i):x}:{5 + i}" for i in range(devices))
    root = "root=/dev/vda rootfstype=erofs ro" if root_erofs else ""
    parts = ("console=ttyS0 nokaslr panic=-1 tsc=reliable", PVM_FLAGS, windows, root, extra,
             f"-- {init_args}" if init_args else "")
    return " ".join(p for p in parts if p)


def _extents(disk: Disk, fds: list[int]) -> list[tuple[int, int, int]]:
    flags = (os.O_RDONLY if disk.read_only else os.O_RDWR) | os.O_CLOEXEC
    if disk.path.suffix == ".vmdk":
        parts = flat_extents(str(disk.path))
    else:
        parts = [(str(disk.path), 0, disk.path.stat().st_size // 512 * 512)]
    out = []
    for path, offset, length in parts:
        fds.append(os.open(path, flags))
        out.append((fds[-1], offset, length))
    return out


def prepare(vm: Vm, vmlinux: Path, *, disks: list[Disk], cmdline: str, ram_bytes: int,
            console: socket.socket | None = None, initrd: bytes | None = None) -> list[int]:
    """Load the kernel, start_info, memory map, command line and initramfs, attach the disks (in
    order: /dev/vda, /dev/vdb, ...) and then the console, and set the vCPU at the PVH entry.
    Returns the disks' open fds, which must stay open while the VM runs."""
    fds: list[int] = []
    kernel = load_image(vmlinux)
    fd = os.open(kernel.path, os.O_RDONLY | os.O_CLOEXEC)
    try:   # mapped, not copied: a fresh VM pays neither the copy nor zeroing its pages
        for paddr, offset, data in kernel.segments:
            vm.map_file(paddr, fd, offset, data)
    finally:
        os.close(fd)
    vm.load(CMDLINE, cmdline.encode() + b"\0")
    memmap = struct.pack("<QQII", 0, 0x9FC00, E820_RAM, 0) + \
        struct.pack("<QQII", 0x100000, ram_bytes - 0x100000, E820_RAM, 0)
    vm.load(MEMMAP, memmap)
    modules = 0
    if initrd:
        at = (ram_bytes - len(initrd)) & ~0xFFF      # at the top of RAM, clear of the kernel
        if at < kernel.end + (16 << 20):
            raise InvalidConfigError(f"{ram_bytes >> 20} MiB of guest RAM leave no room for a "
                                     f"{len(initrd)}-byte initramfs")
        vm.load(at, initrd)
        vm.load(MODLIST, struct.pack("<QQQQ", at, len(initrd), 0, 0))
        modules = 1
    vm.load(START_INFO, struct.pack("<IIIIQQQQII", PVH_MAGIC, 1, 0, modules, MODLIST if modules else 0,
                                    CMDLINE, 0, MEMMAP, 2, 0))
    try:
        for i, disk in enumerate(disks):
            vm.add_disk(device_window(i), _extents(disk, fds), read_only=disk.read_only)
        if console is not None:
            vm.add_console(device_window(len(disks)), console)
        vm.enter_pvh(kernel.entry, START_INFO)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds
