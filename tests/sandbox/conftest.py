"""Sandboxes need root, runc, loop devices and overlayfs; tests skip with that reason elsewhere."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest


@pytest.fixture(autouse=True)
def namespace_backend_available() -> None:
    if os.geteuid() != 0:
        pytest.skip("the namespace backend needs root (loop mounts, overlayfs, runc)")
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed (make installs it)")


def leftovers(home: str) -> list[str]:
    """Mounts, runc containers and cgroups that belong to sandboxes under ``home``."""
    mounts = [line for line in open("/proc/self/mounts") if home in line]
    containers = [line for line in subprocess.run(["runc", "list", "-q"], capture_output=True, text=True).stdout.split()
                  if line.startswith("msb-") and os.path.isdir(os.path.join(home, "sandboxes", line[4:]))]
    return mounts + containers
