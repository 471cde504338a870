"""Probe time per disk image: microsandbox.disk.probe vs `qemu-img info` and `blkid -p`.

The alternatives are what a user would run to learn the same facts: qemu-img for the container
format and virtual size, blkid for the file system. Each group's table shows the three side by side.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from microsandbox.disk import probe
from tests.disk.images import convert, make_fs, partitioned

CASES = {
    "ext4.qcow2": ["-O", "qcow2"],
    "ext4-compressed.qcow2": ["-O", "qcow2", "-c"],
    "ext4-stream.vmdk": ["-O", "vmdk", "-o", "subformat=streamOptimized"],
    "gpt-ext4.raw": None,
}


@pytest.fixture(scope="module")
def disks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not (shutil.which("qemu-img") and shutil.which("blkid")):
        pytest.skip("qemu-img and blkid are needed for the comparison")
    root = tmp_path_factory.mktemp("bench-disks")
    fs = make_fs("ext4", root / "fs.raw", 256)
    out = {}
    for name, opts in CASES.items():
        out[name] = (partitioned(root / name, "gpt", make_fs("ext4", root / "p.raw", 32))
                     if opts is None else convert(fs, root / name, opts))
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_msb_probe(benchmark, disks: dict[str, Path], name: str) -> None:
    benchmark.group = f"probe {name}"
    info = benchmark(probe, disks[name])
    assert info.fstype == "ext4"


@pytest.mark.parametrize("name", sorted(CASES))
def test_qemu_img_info(benchmark, disks: dict[str, Path], name: str) -> None:
    benchmark.group = f"probe {name}"
    benchmark(subprocess.run, ["qemu-img", "info", "--output=json", str(disks[name])],
              check=True, capture_output=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_blkid(benchmark, disks: dict[str, Path], name: str) -> None:
    if not name.endswith(".raw"):
        pytest.skip("blkid reads raw block devices and files only; it cannot see inside qcow2/vmdk")
    benchmark.group = f"probe {name}"
    benchmark(subprocess.run, ["blkid", "-p", str(disks[name])], capture_output=True)
