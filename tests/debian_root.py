"""A real Debian 12 minbase root made by debootstrap, built once and kept in ~/.cache between runs
(about 40 s and 206 MB; it needs Debian's package mirror, which `make` uses anyway)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "microsandbox"
MIRROR = "http://deb.debian.org/debian"


def debian_root() -> Path:
    """The cached root, debootstrapping it first when missing (root only)."""
    root = CACHE / "deb-rootfs"
    if (root / "etc/debian_version").exists():
        return root
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        pytest.skip("building the Debian root needs root and debootstrap")
    partial = CACHE / "deb-rootfs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(partial), MIRROR],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"debootstrap could not build a Debian root: {done.stdout[-500:]}{done.stderr[-500:]}")
    partial.rename(root)
    return root
