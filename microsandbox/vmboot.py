"""Booting the guest kernel: the vmlinux's PVH entry, the image's stitched disk as /dev/vda.

The monitor loads every PT_LOAD segment at its physical address, writes ``hvm_start_info`` with an
e820 memory map and the command line, attaches the VMDK's FLAT extents as a virtio-mmio
virtio-blk device, and starts the vCPU in 32-bit flat mode at the entry (spec vmm.md 2.3).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

from ._core.diskprobe import flat_extents
from .kernel import pvh_entry
from .vmm import RunResult, Vm

START_INFO, MEMMAP, CMDLINE = 0x6000, 0x6100, 0x7000
DISK_BASE = 0xD0000000
PVH_MAGIC = 0x336EC578
E820_RAM = 1
# kvm-pvm emulates ring 0: hide CPU features whose instructions its emulator cannot run, and the
# costly byte-wise string instructions (spec vmm.md section 0). Harmless on hardware KVM.
PVM_FLAGS = ("noxsave mitigations=off init_on_alloc=0 clearcpuid=smap,cx16,fsgsbase,rdpid,invpcid,pcid,"
             "popcnt,erms,fsrm,ssse3,sse4_1,sse4_2,aes,pclmulqdq,sha_ni,gfni,vaes")


def kernel_cmdline(*, root_erofs: bool, extra: str = "") -> str:
    disk = f"virtio_mmio.device=512@0x{DISK_BASE:x}:5"
    root = "root=/dev/vda rootfstype=erofs ro" if root_erofs else ""
    return " ".join(p for p in ("console=ttyS0 nokaslr panic=-1 tsc=reliable", PVM_FLAGS, disk, root, extra) if p)


def _load_elf(vm: Vm, vmlinux: Path) -> None:
    data = vmlinux.read_bytes()
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, p_paddr, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 1:   # PT_LOAD; the rest of memsz is zero because guest RAM starts zeroed
            vm.load(p_paddr, data[p_offset:p_offset + p_filesz])


def prepare(vm: Vm, vmlinux: Path, *, disk: Path | None, cmdline: str, ram_bytes: int) -> list[int]:
    """Load the kernel, start_info, memory map and command line, attach ``disk``, set the vCPU at
    the PVH entry. Returns the disk's open fds, which must stay open while the VM runs."""
    fds: list[int] = []
    _load_elf(vm, vmlinux)
    vm.load(CMDLINE, cmdline.encode() + b"\0")
    memmap = struct.pack("<QQII", 0, 0x9FC00, E820_RAM, 0) + \
        struct.pack("<QQII", 0x100000, ram_bytes - 0x100000, E820_RAM, 0)
    vm.load(MEMMAP, memmap)
    vm.load(START_INFO, struct.pack("<IIIIQQQQII", PVH_MAGIC, 1, 0, 0, 0, CMDLINE, 0, MEMMAP, 2, 0))
    try:
        if disk is not None:
            extents = []
            for path, offset, length in flat_extents(str(disk)):
                fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
                extents.append((fds[-1], offset, length))
            vm.add_disk(DISK_BASE, extents)
        vm.enter_pvh(pvh_entry(vmlinux), START_INFO)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def boot(vmlinux: Path, *, disk: Path | None, cmdline: str, ram_bytes: int = 256 << 20,
         watch: bytes | None = None, max_exits: int = 50_000_000) -> RunResult:
    """Boot ``vmlinux`` and run until ``watch`` appears on the console, the guest stops, or fails."""
    with Vm(ram_bytes, irqchip=True) as vm:
        fds = prepare(vm, vmlinux, disk=disk, cmdline=cmdline, ram_bytes=ram_bytes)
        try:
            if watch:
                vm.watch(watch)
            return vm.run(max_exits)
        finally:
            for fd in fds:
                os.close(fd)
