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


@pytest.fixture(scope="module")
def sandbox_vm(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """What a sandbox's monitor boots: the built guest kernel, a one-layer image's VMDK, 512 MiB."""
    from microsandbox.kernel import build_kernel
    from tests.vmm.test_kernel import CACHE
    from tests.vmm.test_monitor import _image
    if not any(CACHE.glob("*/vmlinux")):
        pytest.skip("the guest kernel is not built (make test builds it)")
    work = tmp_path_factory.mktemp("bench-monitor")
    return {"kernel": str(build_kernel(CACHE)), "disk": str(_image(work)), "upper": None, "memory_mib": 512,
            "hostname": "bench"}


def test_sandbox_monitor_setup(benchmark, sandbox_vm: dict) -> None:
    """Everything a sandbox's monitor does before the first KVM_RUN, in process: VM with irqchip and
    512 MiB, kernel ELF and agent initramfs loaded, VMDK disk and virtio-console attached, PVH entry."""
    import socket
    from pathlib import Path

    from microsandbox import initramfs
    from microsandbox.sandbox.namespace import agent_binary
    from microsandbox.vmboot import Disk, kernel_cmdline, prepare
    benchmark.group = f"sandbox monitor setup (kvm: {kvm_status().kind})"
    agent = agent_binary()

    def once() -> None:
        host, guest = socket.socketpair()
        with host, guest, Vm(512 << 20, irqchip=True) as vm:
            fds = prepare(vm, Path(sandbox_vm["kernel"]), disks=[Disk(Path(sandbox_vm["disk"]))], ram_bytes=512 << 20,
                          cmdline=kernel_cmdline(devices=2, init_args="--vm"), console=guest,
                          initrd=initramfs.for_agent(agent))
            for fd in fds:
                os.close(fd)

    benchmark(once)


def _time_monitor_starts(benchmark, sandbox_vm: dict, tmp_path, start, alive, rounds: int) -> None:
    """Times ``start(folder, lifeline_read_end)`` until the monitor's console log appears (its
    vCPU is running); each monitor is ended through its lifeline in the next round's setup, and
    ``alive(handle)`` tells when it is gone."""
    import json
    import time
    running: list[tuple[object, int]] = []

    def end_previous() -> None:
        while running:
            handle, write_end = running.pop()
            os.close(write_end)
            while alive(handle):
                time.sleep(0.001)

    def setup():
        end_previous()
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        (folder / "vm.json").write_text(json.dumps(sandbox_vm))
        return (folder,), {}

    def once(folder) -> None:
        read_end, write_end = os.pipe()
        running.append((start(folder, read_end), write_end))
        os.close(read_end)
        while not (folder / "console.log").exists():
            time.sleep(0.0005)

    once(setup()[0][0])   # a first start outside the timing (for the fork server: its one-off start)
    benchmark.pedantic(once, setup=setup, rounds=rounds, iterations=1)
    end_previous()


def test_monitor_process_to_first_kvm_run(benchmark, sandbox_vm: dict, tmp_path) -> None:
    """The monitor started as a new interpreter (``python -m microsandbox.sandbox.monitor``):
    import, set up, start the vCPU. The reference for the forked start below."""
    import subprocess
    import sys
    benchmark.group = f"monitor start -> first KVM_RUN (kvm: {kvm_status().kind})"

    def start(folder, read_end):
        return subprocess.Popen([sys.executable, "-m", "microsandbox.sandbox.monitor", str(folder), str(read_end)],
                                pass_fds=(read_end,))

    _time_monitor_starts(benchmark, sandbox_vm, tmp_path, start, lambda proc: proc.poll() is None, rounds=5)


def test_forked_monitor_to_first_kvm_run(benchmark, sandbox_vm: dict, tmp_path) -> None:
    """What ``Sandbox.create`` pays: a monitor forked by the warm fork server, from the request to
    its vCPU running."""
    from microsandbox.sandbox import forkserver
    benchmark.group = f"monitor start -> first KVM_RUN (kvm: {kvm_status().kind})"

    def start(folder, read_end):
        with open(folder / "monitor.log", "wb") as log:
            return forkserver.spawn_monitor(folder, read_end, log.fileno())

    _time_monitor_starts(benchmark, sandbox_vm, tmp_path, start, forkserver.is_monitor, rounds=8)
