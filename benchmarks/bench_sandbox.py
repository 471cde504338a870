"""Namespace-backend sandboxes: create -> first exec, exec round trips, output throughput, and the
same root started by hand with `runc run` (bundle + config.json, running `true`)."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from microsandbox import Image, Sandbox
from tests.rootfs import build_root
from tests.oci_fixtures import push, run_registry, umoci_image

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runc") is None,
                                reason="the namespace backend needs root and runc")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("bench-sandbox-home")
    os.environ["MSB_HOME"] = str(home)
    return build_root(tmp_path_factory.mktemp("bench-sandbox") / "root")


@pytest.fixture(scope="module")
def cached_image(root: Path, tmp_path_factory: pytest.TempPathFactory):
    """The same root as a one-layer image, pulled once from a loopback registry."""
    work = tmp_path_factory.mktemp("bench-sandbox-image")
    umoci_image(work / "layout", "b", [root])
    with run_registry(work / "registry") as reg:
        push(work / "layout", "b", reg, "bench/busybox:1")
        ref = f"{reg.host}/bench/busybox:1"
        asyncio.run(Image.pull(ref))
        yield ref


def test_create_to_first_exec(benchmark, cached_image: str) -> None:
    """From a cached image: mount its layers, overlay, start runc and the agent, run `true`."""
    benchmark.group = "create -> first exec result (namespace backend)"
    counter = iter(range(10_000))

    async def once() -> None:
        sb = await Sandbox.create(f"b{next(counter)}", image=cached_image, isolation="namespace")
        out = await sb.exec("true")
        assert out.success
        await Sandbox.remove(sb.name)

    benchmark.pedantic(lambda: asyncio.run(once()), rounds=10, iterations=1)


def test_runc_run_by_hand(benchmark, root: Path, tmp_path: Path) -> None:
    """What a user scripts without microsandbox: a bundle over the same root, `runc run true`."""
    benchmark.group = "create -> first exec result (namespace backend)"
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    spec = subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["root"] = {"path": str(root), "readonly": True}
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    (bundle / "config.json").write_text(json.dumps(config))
    counter = iter(range(10_000))
    benchmark.pedantic(lambda: subprocess.run(["runc", "run", "--bundle", str(bundle), f"hand-{next(counter)}"],
                                              check=True, stdin=subprocess.DEVNULL),
                       rounds=10, iterations=1)
    assert spec.returncode == 0


@pytest.fixture(scope="module")
def running(root: Path):
    sb = asyncio.run(Sandbox.create("bench-exec", image=str(root), isolation="namespace", cpus=2))
    yield sb
    asyncio.run(Sandbox.remove(sb.name))


def test_exec_true_round_trip(benchmark, running: Sandbox) -> None:
    benchmark.group = "exec('true') round trip"
    loop = asyncio.new_event_loop()
    benchmark(lambda: loop.run_until_complete(running.exec("true")))
    loop.close()


def test_100_sequential_execs(benchmark, running: Sandbox) -> None:
    benchmark.group = "100 sequential execs"

    async def hundred() -> None:
        for _ in range(100):
            await running.exec("true")

    benchmark.pedantic(lambda: asyncio.run(hundred()), rounds=3, iterations=1)


def test_stdout_throughput(benchmark, running: Sandbox) -> None:
    benchmark.group = "stdout throughput (64 MiB)"
    out = benchmark.pedantic(lambda: asyncio.run(running.exec("head", ["-c", str(64 << 20), "/dev/zero"])),
                             rounds=3, iterations=1)
    assert len(out.stdout_bytes) == 64 << 20
    benchmark.extra_info["MiB/s"] = round(64 / benchmark.stats["median"], 1)
