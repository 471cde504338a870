"""Sandboxes need root, runc, loop devices and overlayfs; tests skip with that reason elsewhere."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from microsandbox import KvmUnavailableError, MicrosandboxError
from microsandbox.kernel import build_kernel
from microsandbox.kvm_host import require_guest_userspace
from microsandbox.sandbox.forkserver import PROCESS_NAME
from tests.vmm.test_kernel import CACHE as KERNEL_CACHE


@pytest.fixture(autouse=True)
def namespace_backend_available() -> None:
    if os.geteuid() != 0:
        pytest.skip("the namespace backend needs root (loop mounts, overlayfs, runc)")
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed (make installs it)")


@pytest.fixture(params=["namespace", "vm"])
def isolation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once per backend; the microVM where this host's KVM runs guest user space."""
    if request.param == "vm":
        try:
            require_guest_userspace(guest_kernel_is_pvm=bool(os.environ.get("MSB_KERNEL_PVM")))
        except KvmUnavailableError as exc:
            pytest.skip(f"the microVM backend cannot run sandboxes here: {exc}")
        if not os.environ.get("MSB_KERNEL"):   # the kernel built once into ~/.cache, not per MSB_HOME
            try:
                monkeypatch.setenv("MSB_KERNEL", str(build_kernel(KERNEL_CACHE)))
            except MicrosandboxError as exc:
                pytest.skip(f"no guest kernel: {exc}")
    monkeypatch.setenv("MSB_ISOLATION", request.param)
    return request.param


def leftovers(home: str) -> list[str]:
    """Mounts, runc containers and processes (microVM monitors, supervisors) that belong to
    sandboxes under ``home``."""
    mounts = [line for line in open("/proc/self/mounts") if home in line]
    containers = [line for line in subprocess.run(["runc", "list", "-q"], capture_output=True, text=True).stdout.split()
                  if line.startswith("msb-") and os.path.isdir(os.path.join(home, "sandboxes", line[4:]))]
    return mounts + containers + _processes(home)


def _processes(home: str) -> list[str]:
    """Supervisors and teardowns (by argv and environment) and microVM monitors (forked, so known
    by name and by the sandbox files they hold open)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read()
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            comm = open(f"/proc/{pid}/comm").read().strip()
            files = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")] \
                if comm == PROCESS_NAME else []
        except OSError:
            continue
        helper = (b"--on-eof" in argv or b"sandbox.teardown" in argv) and f"MSB_HOME={home}".encode() in env
        monitor = any(f.startswith(home) for f in files)
        if helper or monitor:
            out.append(f"process {pid} ({comm}): " + argv.replace(b"\0", b" ").decode(errors="replace"))
    return out
