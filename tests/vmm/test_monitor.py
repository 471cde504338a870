"""The microVM monitor process, as a sandbox runs it: the guest kernel boots with the image's VMDK,
the agent's initramfs and the virtio-console channel, and the monitor ends with its creator.

On hardware KVM the agent comes up and says it is ready; on kvm-pvm guest user space cannot run,
so the test follows the boot up to the kernel starting ``/init`` from the initramfs (kernel mode)."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from microsandbox import MicrosandboxError
from microsandbox.compose import compose_image
from microsandbox.kernel import build_kernel
from microsandbox.kvm_host import kvm_status
from microsandbox.layers import convert_layer
from microsandbox.sandbox import forkserver
from microsandbox.sandbox.forkserver import is_monitor
from tests.vmm.test_kernel import CACHE

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="needs a usable /dev/kvm")]


def _image(work: Path) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("etc/hostname")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"guest\n"))
    layer = work / "layer.erofs"
    convert_layer(io.BytesIO(buf.getvalue()), layer)
    compose_image([layer], work / "fsmeta.erofs", work / "image.vmdk")
    return work / "image.vmdk"


def _wait(predicate, seconds: float, what: str, folder: Path) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            log = (folder / "console.log").read_bytes()[-1500:] if (folder / "console.log").exists() else b""
            pytest.fail(f"{what} within {seconds} s; console tail: {log.decode(errors='replace')}")
        time.sleep(0.2)


def test_monitor_boots_the_sandbox_kernel_and_ends_with_its_creator(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSB_KERNEL", raising=False)
    try:
        vmlinux = build_kernel(CACHE)
    except MicrosandboxError as exc:
        pytest.skip(f"no guest kernel: {exc}")
    folder = tmp_path / "sandbox"
    folder.mkdir()
    (folder / "vm.json").write_text(json.dumps({"kernel": str(vmlinux), "disk": str(_image(tmp_path)), "upper": None,
                                                "memory_mib": 256, "hostname": "t", "kernel_log": True}))
    read_end, write_end = os.pipe()
    with open(folder / "monitor.log", "wb") as log:
        pid = forkserver.spawn_monitor(folder, read_end, log.fileno())   # as Sandbox.create does
    os.close(read_end)
    console = folder / "console.log"
    try:
        if kvm_status().kind == "hardware":
            _wait(lambda: (folder / "run" / "agent.sock").exists(), 60, "the agent was not ready", folder)
        else:
            _wait(lambda: console.exists() and b"Run /init as init process" in console.read_bytes(), 600,
                  "the kernel did not start /init from the initramfs", folder)
        log = console.read_bytes()
        assert b"virtio_blk virtio0: [vda]" in log             # the stitched VMDK is the first disk
        assert is_monitor(pid)
    finally:
        os.close(write_end)                                     # the creator goes away ...
    _wait(lambda: not is_monitor(pid), 30, "the monitor outlived its lifeline", folder)   # ... and so does the VM
    boot = json.loads((folder / "boot.json").read_text())
    assert boot["ended"] == "its creator exited" and boot["kvm"] == str(kvm_status().kind)
    assert 0 < boot["monitor_setup_ms"] and boot["mmio_exits"] > 0


def test_a_monitor_that_cannot_start_says_why_and_the_server_ends_with_its_creator(tmp_path: Path) -> None:
    """No vm.json: the forked monitor records the reason and exits. The fork server belongs to the
    process that used it and exits with it."""
    code = f"""
import os, sys, time
from pathlib import Path
from microsandbox.sandbox import forkserver
from microsandbox.sandbox.forkserver import is_monitor
folder = Path({str(tmp_path)!r})
r, w = os.pipe()
pid = forkserver.spawn_monitor(folder, r, sys.stderr.fileno())
for _ in range(3000):
    if not is_monitor(pid):
        break
    time.sleep(0.01)
servers = [p for p in os.listdir("/proc") if p.isdigit() and os.path.exists(f"/proc/{{p}}/status")
           and f"PPid:\\t{{os.getpid()}}\\n" in open(f"/proc/{{p}}/status").read()]
print(is_monitor(pid), *servers, flush=True)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    alive, server = done.stdout.split()
    assert alive == "False"
    assert "cannot start the microVM" in json.loads((tmp_path / "boot.json").read_text())["error"]
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{server}"):
        assert time.monotonic() < deadline, "the fork server outlived its creator"
        time.sleep(0.05)
