"""The microVM monitor: one per sandbox, one microVM per process.

Sandboxes get theirs forked from the fork server (``forkserver``); ``python -m
microsandbox.sandbox.monitor FOLDER [LIFELINE_FD]`` runs one directly.

Reads ``FOLDER/vm.json``, boots the guest kernel with the image's stitched VMDK as /dev/vda (an
ext4 upper as /dev/vdb when asked), the agent's initramfs and the virtio-console channel, and then
only supervises: the vCPU runs in C on its own thread, the channel's host end is multiplexed onto
``FOLDER/run/agent.sock``, and the boot timeline goes to ``FOLDER/boot.json``. The process (and the
VM with it) ends on SIGTERM, when the guest stops or fails, or when the lifeline reaches EOF.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import initramfs
from ..errors import MicrosandboxError
from ..fsutil import atomic_output
from ..kvm_host import kvm_status
from ..kernel import kernel_path, load_image
from ..vmboot import Disk, kernel_cmdline, prepare
from ..vmm import Vm
from .channel import ChannelMux
from .namespace import agent_binary

ROOT_MOUNTED = b"msb-agent: root mounted"


def warm_up(folder: Path | None = None) -> None:
    """Build what monitors need (the agent's initramfs, the parsed kernel) before forking them: the
    fork server calls this at start for the default kernel and before each fork for the one the
    sandbox names, so each kernel is read once per server, not once per boot."""
    initramfs.for_agent(agent_binary())
    try:
        kernel = Path(json.loads((folder / "vm.json").read_text())["kernel"]) if folder else kernel_path()
        load_image(kernel)
    except (OSError, ValueError, KeyError, MicrosandboxError):
        pass   # the monitor itself reports what is wrong with its configuration


class Monitor:
    def __init__(self, folder: Path) -> None:
        self.started = time.perf_counter()
        self.folder = folder
        self.cfg = json.loads((folder / "vm.json").read_text())
        self.timeline: dict[str, Any] = {"kvm": str(kvm_status().kind)}
        self.host, guest = socket.socketpair()
        disks = [Disk(Path(self.cfg["disk"]))]
        if self.cfg.get("upper"):
            disks.append(Disk(Path(self.cfg["upper"]), read_only=False))
        ram = self.cfg["memory_mib"] << 20
        self.vm = Vm(ram, irqchip=True)
        quiet = "" if self.cfg.get("kernel_log") else "quiet"
        cmdline = kernel_cmdline(devices=len(disks) + 1, init_args="--vm",
                                 extra=f"{quiet} msb_hostname={self.cfg['hostname']}")
        self.fds = prepare(self.vm, Path(self.cfg["kernel"]), disks=disks, cmdline=cmdline, ram_bytes=ram,
                           console=guest, initrd=initramfs.for_agent(agent_binary()))
        self.timeline["monitor_setup_ms"] = self.ms()
        self.timeline["kernel_entry_ms"] = self.timeline["monitor_setup_ms"]   # PVH: the first KVM_RUN enters it

    def ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 2)

    def save(self) -> None:
        self.timeline.update(zip(("io_exits", "mmio_exits"), self.vm.exit_counts(), strict=True))
        with atomic_output(self.folder / "boot.json") as out:
            out.write(json.dumps(self.timeline, indent=1).encode())

    def run_vcpu(self) -> None:
        """The vCPU thread: notes when the agent has mounted the root, then runs until the guest ends."""
        self.vm.watch(ROOT_MOUNTED)
        if self.vm.run(1 << 62).stopped:
            return
        self.timeline["root_mounted_ms"] = self.ms()
        self.vm.watch(b"")
        self.vm.run(1 << 62)

    def vcpu_thread(self, loop: asyncio.AbstractEventLoop, end: Callable[[str], None]) -> None:
        """Not an executor thread: asyncio would wait for it at exit, and it never returns by itself."""
        try:
            self.run_vcpu()
            reason = "the guest ended: it stopped"
        except MicrosandboxError as exc:
            reason = f"the guest ended: {exc}"
        loop.call_soon_threadsafe(end, reason)

    async def keep_console_log(self) -> None:
        """Keeps ``console.log`` up with the guest's console (for diagnosis); the file appears as
        the vCPU starts."""
        (self.folder / "console.log").touch()
        while True:
            self.flush_console()
            await asyncio.sleep(0.2)

    def flush_console(self) -> None:
        """Appends what the guest printed since the log file last grew."""
        log = self.folder / "console.log"
        out = self.vm.console_output()
        written = log.stat().st_size if log.exists() else 0
        if len(out) > written:
            with open(log, "ab") as f:
                f.write(out[written:])

    def agent_ready(self) -> None:
        self.timeline["agent_ready_ms"] = self.ms()
        self.save()

    async def supervise(self, lifeline: int | None) -> str:
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[str] = loop.create_future()

        def end(reason: str) -> None:
            if not ended.done():
                ended.set_result(reason)

        run_dir = self.folder / "run"
        run_dir.mkdir(exist_ok=True)
        mux = asyncio.ensure_future(ChannelMux(self.host, run_dir / "agent.sock", self.agent_ready).serve())
        mux.add_done_callback(lambda _: end("the agent channel closed"))
        threading.Thread(target=self.vcpu_thread, args=(loop, end), name="vcpu", daemon=True).start()
        console_log = asyncio.ensure_future(self.keep_console_log())
        if lifeline is not None:
            loop.add_reader(lifeline, lambda: os.read(lifeline, 64) or end("its creator exited"))
        loop.add_signal_handler(signal.SIGTERM, end, "stopped")
        try:
            return await ended
        finally:
            console_log.cancel()
            self.flush_console()


def main(argv: list[str]) -> int:
    folder = Path(argv[1])
    lifeline = int(argv[2]) if len(argv) > 2 else None
    try:
        monitor = Monitor(folder)
    except (MicrosandboxError, OSError, KeyError, ValueError) as exc:
        with atomic_output(folder / "boot.json") as out:
            out.write(json.dumps({"error": f"cannot start the microVM: {exc}"}).encode())
        return 1
    reason = asyncio.run(monitor.supervise(lifeline))
    monitor.timeline["ended"] = reason
    monitor.save()
    sys.stdout.flush()
    os._exit(0 if reason == "stopped" else 1)   # the vCPU thread may still be in KVM_RUN: end it with the process


if __name__ == "__main__":
    sys.exit(main(sys.argv))
