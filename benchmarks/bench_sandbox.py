"""Sandboxes: create -> first exec, exec round trips, output throughput, and the same root started by
hand with `runc run` (bundle + config.json, running `true`). The namespace backend everywhere; the
microVM backend where KVM runs guest user space; and the microVM's multiplexed agent channel alone
(agent on the host), which is what the VM adds on the host side of every exec."""
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
    # dd with 64 KiB writes: busybox `head -c` writes 4 KiB at a time and spends ~0.45 s of CPU on
    # 64 MiB by itself, which would measure head rather than the transport
    out = benchmark.pedantic(lambda: asyncio.run(running.exec("dd", ["if=/dev/zero", "bs=65536", "count=1024"])),
                             rounds=3, iterations=1)
    assert len(out.stdout_bytes) == 64 << 20
    benchmark.extra_info["MiB/s"] = round(64 / benchmark.stats["median"], 1)


def _microvm_or_skip() -> None:
    from microsandbox import KvmUnavailableError
    from microsandbox.kvm_host import require_guest_userspace
    try:
        require_guest_userspace(guest_kernel_is_pvm=bool(os.environ.get("MSB_KERNEL_PVM")))
    except KvmUnavailableError as exc:
        pytest.skip(f"the microVM backend cannot run sandboxes here: {exc}")
    if not os.environ.get("MSB_KERNEL"):
        from microsandbox.kernel import build_kernel
        from tests.vmm.test_kernel import CACHE
        os.environ["MSB_KERNEL"] = str(build_kernel(CACHE))


def test_vm_create_to_first_exec(benchmark, cached_image: str) -> None:
    """The microVM backend (hardware KVM only): fork the monitor, boot, agent ready, run `true`."""
    _microvm_or_skip()
    benchmark.group = "create -> first exec result (microVM backend)"
    counter = iter(range(10_000))

    async def once() -> None:
        sb = await Sandbox.create(f"v{next(counter)}", image=cached_image, isolation="vm")
        assert (await sb.exec("true")).success
        await Sandbox.remove(sb.name)

    benchmark.pedantic(lambda: asyncio.run(once()), rounds=10, iterations=1)


def test_vm_exec_true_round_trip(benchmark, cached_image: str) -> None:
    _microvm_or_skip()
    benchmark.group = "exec('true') round trip (microVM backend)"
    sb = asyncio.run(Sandbox.create("bench-vm-exec", image=cached_image, isolation="vm"))
    loop = asyncio.new_event_loop()
    try:
        benchmark(lambda: loop.run_until_complete(sb.exec("true")))
    finally:
        loop.close()
        asyncio.run(Sandbox.remove(sb.name))


@pytest.fixture(scope="module")
def channel_sock(tmp_path_factory: pytest.TempPathFactory):
    """The microVM's channel without the VM: the agent serving multiplexed connections on a
    socketpair (as on /dev/hvc0), the monitor's multiplexer making them a Unix socket again."""
    import socket
    import threading

    from microsandbox.sandbox.channel import ChannelMux
    from microsandbox.sandbox.namespace import agent_binary
    host, guest = socket.socketpair()
    agent = subprocess.Popen([str(agent_binary()), "--channel-fd", str(guest.fileno())], pass_fds=(guest.fileno(),))
    guest.close()
    path = tmp_path_factory.mktemp("bench-channel") / "agent.sock"
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_until_complete, args=(ChannelMux(host, path, ready.set).serve(),),
                     daemon=True).start()
    assert ready.wait(10)
    yield str(path)
    agent.kill()
    agent.wait()


def test_channel_exec_true_round_trip(benchmark, channel_sock: str) -> None:
    """`true` through the multiplexed channel (agent and command on the host): the host-side cost
    the microVM adds to an exec, next to the namespace backend's direct socket above."""
    from microsandbox.sandbox import protocol
    benchmark.group = "exec('true') round trip"
    benchmark(lambda: protocol.run(channel_sock, ["true"], env=["PATH=/usr/bin:/bin"], cwd="/", user="",
                                   stdin=None, timeout=None))


def test_channel_stdout_throughput(benchmark, channel_sock: str) -> None:
    from microsandbox.sandbox import protocol
    benchmark.group = "stdout throughput (64 MiB)"
    out = benchmark.pedantic(lambda: protocol.run(channel_sock, ["dd", "if=/dev/zero", "bs=65536", "count=1024"],
                                                  env=["PATH=/usr/bin:/bin"], cwd="/", user="", stdin=None,
                                                  timeout=None), rounds=3, iterations=1)
    assert len(out.stdout_bytes) == 64 << 20
    benchmark.extra_info["MiB/s"] = round(64 / benchmark.stats["median"], 1)
