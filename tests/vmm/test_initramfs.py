"""The initramfs is a newc archive that the standard cpio tool reads back exactly."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from microsandbox.initramfs import build


@pytest.mark.skipif(shutil.which("cpio") is None, reason="needs cpio (apt-get install cpio)")
def test_cpio_lists_and_extracts_the_agent(tmp_path: Path) -> None:
    agent = os.urandom(100_003)                      # odd size: padding must be right
    archive = build(agent)
    assert len(archive) % 512 == 0
    listing = subprocess.run(["cpio", "-t", "-v"], input=archive, capture_output=True, check=True).stdout.decode()
    names = [line.split()[-1] for line in listing.splitlines()]
    assert names == ["dev", "dev/console", "init"]
    assert "5,   1" in listing.splitlines()[1] and listing.splitlines()[2].startswith("-rwxr-xr-x")
    subprocess.run(["cpio", "-i", "-d", "--no-absolute-filenames", "--quiet"], input=archive, cwd=tmp_path,
                   check=True, capture_output=True)
    assert (tmp_path / "init").read_bytes() == agent
    assert stat.S_IMODE((tmp_path / "init").stat().st_mode) == 0o755
