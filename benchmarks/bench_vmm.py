"""Monitor setup and a tiny guest's run through KVM, on whatever /dev/kvm this host has.

There is no alternative monitor on these machines to run side by side (qemu-system is not part of
the project's packages), so the ratio reported is against the spec's measured Python-ctypes
monitor setup on the same kind of host (vmm.md section 0: 40-170 ms for 128-512 MiB)."""
from __future__ import annotations

import os

import pytest

from microsandbox.kvm_host import kvm_status
from microsandbox.vmm import Vm

pytestmark = pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="needs /dev/kvm")

HELLO = bytes([0xBA, 0xF8, 0x03]) + b"".join(bytes([0xB0, c, 0xEE]) for c in b"ok\n") + \
    bytes([0xBA, 0x01, 0x05, 0xB0, 0x00, 0xEE, 0xF4])


def test_monitor_setup_512mib(benchmark) -> None:
    """VM, 512 MiB of guest RAM, one vCPU and kvm_run mapped: everything before the first KVM_RUN."""
    benchmark.group = f"monitor setup (kvm: {kvm_status().kind})"
    benchmark(lambda: Vm(512 << 20).close())


def test_tiny_guest_to_stop(benchmark) -> None:
    """Setup, load, and run a guest that prints three bytes and stops (4 I/O exits)."""
    benchmark.group = f"setup + tiny guest run (kvm: {kvm_status().kind})"

    def once() -> None:
        with Vm(1 << 20) as vm:
            vm.load(0x1000, HELLO)
            vm.enter_real_mode(0, 0x1000)
            assert vm.run().console == b"ok\n"

    benchmark(once)
