"""Sandbox.create/exec/stop/remove from images pulled from a real registry, on each backend: the
namespace backend everywhere it can run, the microVM where KVM runs guest user space (hardware KVM)."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from microsandbox import (ExecTimeoutError, Image, ImageInUseError, KvmUnavailableError, Sandbox,
                          SandboxAlreadyExistsError, SandboxNotRunningError)
from tests.oci_fixtures import Registry
from tests.sandbox.conftest import leftovers


def run(coro):
    return asyncio.run(coro)


async def _create(registry: Registry, name: str, repo: str = "test/busybox:1", **kw) -> Sandbox:
    """A sandbox on the backend the ``isolation`` fixture chose (through MSB_ISOLATION)."""
    return await Sandbox.create(name, image=f"{registry.host}/{repo}", **kw)


def test_exec_results(registry: Registry, msb_home: Path, isolation: str) -> None:
    async def body() -> None:
        async with await _create(registry, "results") as sb:
            out = await sb.exec("sh", ["-c", "echo out; echo err >&2; exit 7"])
            assert (out.exit_code, out.stdout_text, out.stderr_text, out.success) == (7, "out\n", "err\n", False)
            assert (await sb.exec("true")).success
            killed = await sb.exec("sh", ["-c", "kill -TERM $$"])
            assert (killed.exit_code, killed.signal) == (143, 15)
            echoed = await sb.exec("cat", stdin=b"\x00binary\xff" * 1000)
            assert echoed.stdout_bytes == b"\x00binary\xff" * 1000
            big = await sb.exec("sh", ["-c", "head -c 20000000 /dev/urandom | tee /tmp/big | md5sum; md5sum < /tmp/big"])
            sums = big.stdout_text.split("\n")
            assert sums[0].split()[0] == sums[1].split()[0]
            stream = await sb.exec("head", ["-c", "20000000", "/tmp/big"])
            assert len(stream.stdout_bytes) == 20_000_000
            missing = sb.exec("no-such-command")
            with pytest.raises(Exception, match="cannot start the command"):
                await missing
    run(body())
    assert leftovers(str(msb_home)) == []


def test_image_config_and_overrides(registry: Registry, msb_home: Path, isolation: str) -> None:
    async def body() -> None:
        async with await _create(registry, "config", env={"EXTRA": "1"}) as sb:
            out = await sb.exec("sh", ["-c", "pwd; echo $GREETING $EXTRA; id -u"])
            assert out.stdout_text == "/tmp\nhello 1\n0\n"
            out = await sb.exec("sh", ["-c", "pwd; id -u; id -g; echo $GREETING"], cwd="/etc", user="nobody",
                                env={"GREETING": "override"})
            assert out.stdout_text == "/etc\n65534\n65534\noverride\n"
    run(body())


def test_upper_is_writable_and_whiteouts_hold(registry: Registry, msb_home: Path, isolation: str) -> None:
    async def body() -> None:
        async with await _create(registry, "layers", "test/two:1") as sb:
            assert (await sb.exec("test", ["-e", "/etc/hostname"])).exit_code == 1   # deleted in layer 2
            assert (await sb.exec("cat", ["/added"])).stdout_text == "from the second layer\n"
            assert (await sb.exec("sh", ["-c", "echo changed > /etc/passwd; cat /etc/passwd"])).stdout_text == "changed\n"
            assert (await sb.exec("sh", ["-c", "echo new > /bin/new; cat /bin/new"])).stdout_text == "new\n"
        async with await _create(registry, "again", "test/two:1") as sb:
            assert "root:x:0:0" in (await sb.exec("cat", ["/etc/passwd"])).stdout_text   # lower untouched
    run(body())


def test_timeout_kills_and_the_sandbox_stays_usable(registry: Registry, msb_home: Path, isolation: str) -> None:
    async def body() -> None:
        async with await _create(registry, "timeout") as sb:
            with pytest.raises(ExecTimeoutError):
                await sb.exec("sh", ["-c", "echo started; sleep 30"], timeout=0.5)
            assert (await sb.exec("echo", ["alive"])).stdout_text == "alive\n"
            assert "sleep" not in (await sb.exec("ps")).stdout_text
    run(body())


def test_memory_limit_is_enforced_inside(registry: Registry, msb_home: Path, isolation: str) -> None:
    async def body() -> None:
        async with await _create(registry, "memory", memory=64) as sb:
            hog = await sb.exec("sh", ["-c", "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived"])
            assert hog.exit_code != 0 and "survived" not in hog.stdout_text
            small = await sb.exec("sh", ["-c", "x=$(head -c 1000000 /dev/zero | tr '\\0' a); echo ${#x}"])
            assert small.stdout_text == "1000000\n"
            assert (await sb.exec("echo", ["ok"])).stdout_text == "ok\n"
    run(body())


def test_four_sandboxes_at_once(registry: Registry, msb_home: Path, isolation: str) -> None:
    async def one(i: int) -> str:
        async with await _create(registry, f"many-{i}") as sb:
            return (await sb.exec("hostname")).stdout_text.strip()
    async def all_four() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(4)))
    assert run(all_four()) == [f"many-{i}" for i in range(4)]
    assert leftovers(str(msb_home)) == []


def test_images_in_use_and_records(registry: Registry, msb_home: Path, isolation: str) -> None:
    async def body() -> None:
        sb = await _create(registry, "keeper")
        with pytest.raises(SandboxAlreadyExistsError):
            await _create(registry, "keeper")
        ref = f"{registry.host}/test/busybox:1"
        with pytest.raises(ImageInUseError, match="keeper"):
            await Image.remove(ref)
        assert (await Image.prune()).image_refs_removed == 0
        record = json.loads((msb_home / "sandboxes/keeper/sandbox.json").read_text())
        assert record["backend"] == "namespace" and record["state"] == "running"
        assert [i.name for i in await Sandbox.list()] == ["keeper"]
        await sb.stop()
        assert (await sb.info()).state == "stopped"
        with pytest.raises(SandboxNotRunningError):
            await sb.exec("true")
        await Sandbox.remove("keeper")
        await Image.remove(ref)
    run(body())
    assert leftovers(str(msb_home)) == []


def test_a_dead_sandbox_reads_as_stopped_and_is_cleaned(registry: Registry, msb_home: Path, monkeypatch) -> None:
    monkeypatch.setenv("MSB_ISOLATION", "namespace")   # killed through runc
    sb = run(_create(registry, "dies"))
    subprocess.run(["runc", "kill", "msb-dies", "KILL"], check=True)
    for _ in range(200):
        if run(Sandbox.list())[0].state == "stopped":
            break
        run(asyncio.sleep(0.01))
    assert run(Sandbox.list())[0].state == "stopped"
    with pytest.raises(SandboxNotRunningError):
        run(sb.exec("true"))
    sb = run(_create(registry, "dies"))   # the name is free again once its leftovers are cleaned
    run(Sandbox.remove(sb.name))
    assert leftovers(str(msb_home)) == []


def test_a_killed_creator_leaves_nothing_behind(registry: Registry, msb_home: Path, isolation: str) -> None:
    code = (f"import asyncio, os, microsandbox; sb = asyncio.run(microsandbox.Sandbox.create('orphan', "
            f"image='{registry.host}/test/busybox:1', isolation='{isolation}')); print('up', flush=True); "
            "os.kill(os.getpid(), 9)")
    child = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MSB_HOME": str(msb_home)},
                           capture_output=True, text=True)
    assert child.returncode == -9 and child.stdout == "up\n", child.stderr
    for _ in range(1000):
        if not run(Sandbox.list()) and not leftovers(str(msb_home)):
            break
        run(asyncio.sleep(0.01))
    assert run(Sandbox.list()) == []
    assert leftovers(str(msb_home)) == []
    assert not os.path.isdir("/sys/fs/cgroup/memory/msb/orphan")


def test_default_isolation_refuses_on_kvm_pvm(registry: Registry, msb_home: Path, monkeypatch) -> None:
    if not os.path.isdir("/sys/module/kvm_pvm"):
        pytest.skip("this host is not kvm-pvm")
    monkeypatch.delenv("MSB_ISOLATION", raising=False)
    with pytest.raises(KvmUnavailableError, match='isolation="namespace"'):
        run(Sandbox.create("vm", image=f"{registry.host}/test/busybox:1"))
    assert not (msb_home / "sandboxes" / "vm").exists()


def test_msb_run_exits_with_the_commands_code(registry: Registry, msb_home: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "microsandbox", "run", "--isolation", "namespace",
                           f"{registry.host}/test/busybox:1", "--", "sh", "-c", "echo hi; exit 3"],
                          capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (3, "hi\n")
    assert "namespaces" in done.stderr
    assert leftovers(str(msb_home)) == []
