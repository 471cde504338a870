"""The microVM backend, host side: start a monitor process for the sandbox and wait for its agent.

The monitor (``microsandbox.sandbox.monitor``, forked by ``forkserver``) is the sandbox's only
process on the host: it holds the VM, multiplexes the agent channel onto ``run/agent.sock`` (the
socket ``Sandbox.exec`` uses for every backend) and ends with its creator through the lifeline.
The guest gets the image's stitched VMDK read-only as /dev/vda and, when ``upper_size_mib`` asks,
a sparse ext4 file as /dev/vdb.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from ..errors import InvalidConfigError, UnsupportedError, VmError
from ..fsutil import atomic_output
from ..kernel import kernel_path
from ..rootfs import ImageRootfs
from . import forkserver, lifeline
from .forkserver import is_monitor
from .namespace import make_upper_disk


def boot_timeout() -> float:
    return float(os.environ.get("MSB_BOOT_TIMEOUT", "30"))


def start(folder: Path, name: str, *, rootfs: ImageRootfs, upper_size_mib: int | None, memory_mib: int,
          cpus: float, hostname: str) -> int:
    """Boot the sandbox's microVM; returns the monitor's pid once the agent serves."""
    if rootfs.vmdk is None:
        raise UnsupportedError(f"{rootfs.reference} has no stitched disk for the microVM (a bind source is a "
                               "host folder); use isolation=\"namespace\" for it")
    if cpus > 1:
        raise UnsupportedError("the microVM has one vCPU; ask for cpus=1 or use isolation=\"namespace\"")
    if memory_mib < 64:
        raise InvalidConfigError(f"the microVM needs at least 64 MiB of memory (got {memory_mib})")
    kernel = kernel_path()
    if not kernel.exists():
        raise UnsupportedError(f"no guest kernel at {kernel}: build it once with `msb kernel build` (about 8 "
                               "minutes on 2 cores), or point MSB_KERNEL at one")
    upper = make_upper_disk(folder, upper_size_mib) if upper_size_mib else None
    config = {"kernel": str(kernel), "disk": str(rootfs.vmdk), "upper": str(upper) if upper else None,
              "memory_mib": memory_mib, "hostname": hostname}
    with atomic_output(folder / "vm.json") as out:
        out.write(json.dumps(config).encode())
    read_end = lifeline.new(name)
    try:
        with open(folder / "monitor.log", "wb") as log:
            pid = forkserver.spawn_monitor(folder, read_end, log.fileno())
    finally:
        os.close(read_end)
    try:
        _wait_for_agent(folder, pid)
    except BaseException:
        stop(folder, name, pid)
        raise
    return pid


def _wait_for_agent(folder: Path, pid: int) -> None:
    sock, deadline = folder / "run" / "agent.sock", time.monotonic() + boot_timeout()
    while not sock.exists():
        if not is_monitor(pid):
            raise VmError(f"the microVM did not start: {_why(folder)}")
        if time.monotonic() > deadline:
            raise VmError(f"the microVM's agent was not ready within {boot_timeout():g} s (MSB_BOOT_TIMEOUT); "
                          f"console: {_console_tail(folder)}")
        time.sleep(0.001)


def _why(folder: Path) -> str:
    try:
        boot = json.loads((folder / "boot.json").read_text())
    except (OSError, ValueError):
        boot = {}
    reason = boot.get("error") or boot.get("ended") or (folder / "monitor.log").read_text(errors="replace")[-500:]
    return f"{reason}; console: {_console_tail(folder)}"


def _console_tail(folder: Path) -> str:
    try:
        return (folder / "console.log").read_bytes()[-600:].decode(errors="replace") or "(empty)"
    except OSError:
        return "(none yet)"


def stop(folder: Path, name: str, pid: int | None) -> None:
    """End the monitor (and so the VM); safe on a dead or half-started sandbox."""
    lifeline.release(name)
    if pid and is_monitor(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while is_monitor(pid) and time.monotonic() < deadline:
            time.sleep(0.005)
        if is_monitor(pid):
            os.kill(pid, signal.SIGKILL)
    (folder / "upper.ext4").unlink(missing_ok=True)
