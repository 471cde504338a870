"""`msb vm selftest`: the real guest kernel boots under the monitor with a two-layer image's
stitched VMDK as /dev/vda, mounts the fsmeta EROFS root, and reads a file of each layer (proved in
kernel mode, since guest user space cannot run on kvm-pvm: see microsandbox/selftest.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from microsandbox import MicrosandboxError
from microsandbox.kernel import build_kernel
from tests.vmm.test_kernel import CACHE

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="needs a usable /dev/kvm")]


def test_selftest_boots_mounts_the_erofs_root_and_reads_both_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSB_KERNEL", raising=False)
    try:
        vmlinux = build_kernel(CACHE)
    except MicrosandboxError as exc:
        pytest.skip(f"no guest kernel: {exc}")
    done = subprocess.run([sys.executable, "-m", "microsandbox", "vm", "selftest", "--kernel", str(vmlinux)],
                          capture_output=True, text=True, timeout=600)
    report = json.loads(done.stdout)
    assert done.returncode == 0, report
    assert report["root_mounted"] and report["file_read"] and report["mmio_exits"] > 0
    assert report["kvm"] in ("hardware", "pvm") and report["monitor_setup_ms"] < report["root_mounted_ms"]
