"""Pulling from a registry on 127.0.0.1: microsandbox vs skopeo (+ umoci), warm pulls, Image.list().

The image: the Debian 12 minbase root as layer 1 (93 MB gzip) and a second layer that deletes
and adds files, built by umoci and pushed by skopeo. A cold msb pull ends with ready-to-mount EROFS
layers; `skopeo copy` to an OCI layout only downloads and verifies; `+ umoci unpack` also extracts.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.settle import settled
from microsandbox import Image
from microsandbox.cache import Cache
from tests.debian_root import debian_root
from tests.oci_fixtures import Registry, push, run_registry, umoci_image


@pytest.fixture(scope="module")
def debian_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, str]]:
    work = tmp_path_factory.mktemp("bench-pull")
    base = debian_root()
    second = work / "second"
    subprocess.run(["cp", "-a", str(base), str(second)], check=True)
    shutil.rmtree(second / "usr/share/doc")
    subprocess.run(["cp", "-a", str(second / "usr/lib/x86_64-linux-gnu"), str(second / "opt/libcopy")], check=True)
    umoci_image(work / "layout", "debian", [base, second])
    with run_registry(work / "registry") as reg:
        push(work / "layout", "debian", reg, "bench/debian:12")
        yield reg, f"{reg.host}/bench/debian:12"


def _fresh_home(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ["MSB_HOME"] = str(path)


def test_msb_cold_pull(benchmark, debian_image, tmp_path: Path) -> None:
    benchmark.group = "cold pull, two-layer Debian image"
    _, ref = debian_image
    home = tmp_path / "home"

    def setup() -> None:
        settled(home)
        _fresh_home(home)

    benchmark.pedantic(lambda: asyncio.run(Image.pull(ref)), setup=setup, rounds=5, iterations=1)


def test_skopeo_copy(benchmark, debian_image, tmp_path: Path) -> None:
    benchmark.group = "cold pull, two-layer Debian image"
    _, ref = debian_image
    dest = tmp_path / "layout"
    benchmark.pedantic(subprocess.run, (["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                         f"docker://{ref}", f"oci:{dest}:t"],),
                       kwargs={"check": True}, setup=lambda: settled(dest), rounds=5, iterations=1)


def test_skopeo_copy_then_umoci_unpack(benchmark, debian_image, tmp_path: Path) -> None:
    benchmark.group = "cold pull, two-layer Debian image"
    _, ref = debian_image
    dest, bundle = tmp_path / "layout", tmp_path / "bundle"

    def run() -> None:
        subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}", f"oci:{dest}:t"],
                       check=True)
        subprocess.run(["umoci", "unpack", "--image", f"{dest}:t", str(bundle)], check=True, capture_output=True)

    benchmark.pedantic(run, setup=lambda: settled(dest, bundle), rounds=5, iterations=1)


def test_msb_warm_pull(benchmark, debian_image, tmp_path: Path) -> None:
    benchmark.group = "warm pull (cache hit)"
    _, ref = debian_image
    _fresh_home(tmp_path / "home")
    asyncio.run(Image.pull(ref))
    benchmark(lambda: asyncio.run(Image.pull(ref)))


def test_image_list_1000(benchmark, tmp_path: Path) -> None:
    benchmark.group = "Image.list() with 1,000 cached references"
    _fresh_home(tmp_path / "home")
    layer = {"blob_digest": "sha256:" + "1" * 64, "diff_id": "sha256:" + "2" * 64,
             "media_type": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 1000}
    with Cache().edit_index() as index:
        for i in range(1000):
            digest = f"sha256:{i:064x}"
            index["manifests"][digest] = {"config": "sha256:" + "3" * 64, "architecture": "amd64", "os": "linux",
                                          "layers": [layer], "size_bytes": 1000}
            index["references"][f"registry.example/app{i}:latest"] = {
                "manifest": digest, "created_at": 1e12 + i, "last_used_at": 1e12 + i}
    handles = benchmark(lambda: asyncio.run(Image.list()))
    assert len(handles) == 1000 and handles[0].reference == "registry.example/app999:latest"
