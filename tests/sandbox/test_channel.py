"""The microVM channel without a VM: the real agent serves multiplexed connections on one end of
a socketpair (as it does on /dev/hvc0) and the monitor's multiplexer turns the other end back into
the Unix socket ``Sandbox.exec`` talks to. Commands run on the host here, as the test user."""
from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from microsandbox.sandbox import protocol
from microsandbox.sandbox.channel import ChannelMux
from microsandbox.sandbox.namespace import agent_binary


@pytest.fixture
def agent_sock(tmp_path: Path) -> Iterator[Path]:
    host, guest = socket.socketpair()
    agent = subprocess.Popen([str(agent_binary()), "--channel-fd", str(guest.fileno())], pass_fds=(guest.fileno(),))
    guest.close()
    path = tmp_path / ("long-" * 30) / "agent.sock"    # beyond the 108 bytes of a socket address
    path.parent.mkdir()
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    mux = ChannelMux(host, path, ready.set)
    thread = threading.Thread(target=loop.run_until_complete, args=(mux.serve(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the agent never said it was ready"
    yield path
    agent.kill()
    agent.wait()
    thread.join(10)
    assert not thread.is_alive(), "the multiplexer did not end with the agent's stream"
    host.close()


def test_exec_over_the_channel(agent_sock: Path) -> None:
    out = protocol.run(str(agent_sock), ["sh", "-c", "echo out; echo err >&2; exit 3"], env=["PATH=/usr/bin:/bin"],
                       cwd="/", user="", stdin=None, timeout=10)
    assert (out.exit_code, out.stdout_bytes, out.stderr_bytes) == (3, b"out\n", b"err\n")


def test_concurrent_sessions_keep_their_own_streams(agent_sock: Path) -> None:
    def one(i: int) -> bytes:
        return protocol.run(str(agent_sock), ["sh", "-c", f"for n in 1 2 3; do echo {i}-$n; done"],
                            env=["PATH=/usr/bin:/bin"], cwd="/", user="", stdin=None, timeout=20).stdout_bytes
    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(one, range(16)))
    assert outputs == [f"{i}-1\n{i}-2\n{i}-3\n".encode() for i in range(16)]


def test_large_input_and_output_at_once_do_not_deadlock(agent_sock: Path) -> None:
    data = bytes(range(256)) * (16 << 10)        # 4 MiB through stdin and back through stdout
    out = protocol.run(str(agent_sock), ["cat"], env=["PATH=/usr/bin:/bin"], cwd="/", user="", stdin=data,
                       timeout=60)
    assert out.exit_code == 0 and out.stdout_bytes == data


def test_a_timeout_kills_the_command_and_the_channel_stays_usable(agent_sock: Path) -> None:
    from microsandbox import ExecTimeoutError
    with pytest.raises(ExecTimeoutError):
        protocol.run(str(agent_sock), ["sleep", "31.25"], env=["PATH=/usr/bin:/bin"], cwd="/", user="", stdin=None,
                     timeout=0.3)
    deadline = time.monotonic() + 5
    while subprocess.run(["pgrep", "-fx", "sleep 31.25"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "the timed-out command is still running"
        time.sleep(0.01)
    out = protocol.run(str(agent_sock), ["echo", "still here"], env=["PATH=/usr/bin:/bin"], cwd="/", user="",
                       stdin=None, timeout=10)
    assert out.stdout_bytes == b"still here\n"
