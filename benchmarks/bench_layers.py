"""Layer conversion: the Debian 12 base layer (206 MB of tar, 6,768 files, ~93 MB gzip) -> EROFS.

Side by side in one run: microsandbox's one-pass converter, ``bsdtar -x`` + ``mkfs.erofs`` (what a
user scripts today), and Python's ``tarfile`` extraction + ``mkfs.erofs``. Each pipeline ends with
its EROFS image fsynced (msb does so before publishing), and every round starts with no dirty
pages left from an earlier one. A fourth benchmark measures peak memory while converting a 1 GiB
layer.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from benchmarks.settle import settled
from microsandbox.layers import convert_layer
from tests.debian_root import debian_root


@pytest.fixture(scope="module")
def debian_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = debian_root()
    layer = tmp_path_factory.mktemp("bench-layers") / "debian.tgz"
    subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-czf", str(layer), "."], check=True)
    return layer


def _fsync(path: Path) -> None:
    """Make an image durable, as msb does before it publishes one."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_msb_convert(benchmark, debian_layer: Path, tmp_path: Path) -> None:
    benchmark.group = "debian base layer -> EROFS"
    out = tmp_path / "msb.erofs"
    result = benchmark.pedantic(convert_layer, (debian_layer, out), setup=lambda: settled(out),
                                rounds=5, iterations=1)
    benchmark.extra_info["MB/s of tar"] = round(result.uncompressed_size / 1e6 / benchmark.stats["median"], 1)


def test_bsdtar_then_mkfs_erofs(benchmark, debian_layer: Path, tmp_path: Path) -> None:
    benchmark.group = "debian base layer -> EROFS"
    tree, image = tmp_path / "tree", tmp_path / "mkfs.erofs"

    def run() -> None:
        tree.mkdir()
        subprocess.run(["bsdtar", "-xpf", str(debian_layer), "--numeric-owner", "-C", str(tree)], check=True)
        subprocess.run(["mkfs.erofs", str(image), str(tree)], check=True, capture_output=True)
        _fsync(image)

    benchmark.pedantic(run, setup=lambda: settled(tree, image), rounds=3, iterations=1)


def test_tarfile_then_mkfs_erofs(benchmark, debian_layer: Path, tmp_path: Path) -> None:
    benchmark.group = "debian base layer -> EROFS"
    tree, image = tmp_path / "tree", tmp_path / "mkfs.erofs"

    def run() -> None:
        tree.mkdir()
        with tarfile.open(debian_layer) as tar:
            tar.extractall(tree, filter="fully_trusted", numeric_owner=True)
        subprocess.run(["mkfs.erofs", str(image), str(tree)], check=True, capture_output=True)
        _fsync(image)

    benchmark.pedantic(run, setup=lambda: settled(tree, image), rounds=1, iterations=1)


def test_peak_rss_for_a_1gib_layer(benchmark, tmp_path: Path) -> None:
    """A 1 GiB tar of 64 files converted in a fresh interpreter, which reports its own peak RSS
    (RUSAGE_CHILDREN would report the largest of every child this run started, skopeo included)."""
    benchmark.group = "peak memory, 1 GiB layer"
    src = tmp_path / "src"
    src.mkdir()
    chunk = bytes(range(256)) * 4096
    for i in range(64):
        with open(src / f"f{i:02d}", "wb") as f:
            f.writelines(chunk for _ in range(16))
    layer = tmp_path / "big.tar"
    subprocess.run(["tar", "-C", str(src), "-cf", str(layer), "."], check=True)
    code = ("import resource, sys; from microsandbox.layers import convert_layer; "
            "convert_layer(sys.argv[1], sys.argv[2]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    peaks = []

    def run() -> None:
        done = subprocess.run([sys.executable, "-c", code, str(layer), str(tmp_path / "big.erofs")],
                              check=True, capture_output=True, text=True)
        peaks.append(int(done.stdout) / 1024)

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["peak RSS MiB"] = round(max(peaks), 1)
    print(f"\npeak RSS of the converter process: {max(peaks):.1f} MiB")
