"""The agent's protocol, spoken to the agent binary directly (no container needed): malformed or
fuzzed frames get an ERROR and the agent keeps serving."""
from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microsandbox.sandbox import protocol
from microsandbox.sandbox.namespace import agent_binary


@pytest.fixture(autouse=True)
def namespace_backend_available() -> None:
    """The agent runs as an ordinary process here; no root or runc needed."""


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    sock = tmp_path_factory.mktemp("agent") / "a.sock"
    proc = subprocess.Popen([str(agent_binary()), "--listen", str(sock)])
    deadline = time.monotonic() + 5
    while not sock.exists():
        assert time.monotonic() < deadline and proc.poll() is None, "the agent did not start"
        time.sleep(0.01)
    yield sock
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _exec(sock: Path, argv: list[str], **kw: object) -> protocol.ExecOutput:
    return protocol.run(str(sock), argv, env=["PATH=/usr/bin:/bin"], cwd="", user="", stdin=None,
                        timeout=10, **kw)


def _raw(sock: Path, data: bytes) -> list[tuple[int, bytes]]:
    """Send raw bytes, half-close, and read every frame the agent answers with."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        s.settimeout(5)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        reader = protocol._Reader(s)
        frames = []
        while (got := reader.frame()) is not None:
            frames.append(got)
        return frames


def test_exec_round_trip(agent: Path) -> None:
    out = _exec(agent, ["sh", "-c", "echo $PATH; echo e >&2; exit 4"])
    assert (out.exit_code, out.stdout_text, out.stderr_text) == (4, "/usr/bin:/bin\n", "e\n")


@pytest.mark.parametrize(("data", "message"), [
    (protocol.frame(protocol.STDIN, b"x"), b"first frame must be a well-formed EXEC"),
    (struct.pack("<IB", 0, 1), b"first frame must be a well-formed EXEC"),
    (struct.pack("<IB", (1 << 21), 1), b"first frame must be a well-formed EXEC"),
    (protocol.frame(protocol.EXEC, b"\x00\x00\x00\x00"), b"malformed EXEC: bad argv"),
    (protocol.frame(protocol.EXEC, struct.pack("<I", 1) + struct.pack("<I", 99) + b"ab"), b"malformed EXEC"),
    (protocol.frame(protocol.EXEC, protocol.exec_request(["true"], [], "", "") + b"junk"), b"trailing bytes"),
    (protocol.frame(protocol.EXEC, protocol.exec_request(["true"], [], "", "no-such-user")), b"unknown user"),
    (protocol.frame(protocol.EXEC, protocol.exec_request(["sleep", "5"], [], "", "")) +
     protocol.frame(99, b""), b"unexpected frame"),
    (protocol.frame(protocol.EXEC, protocol.exec_request(["sleep", "5"], [], "", "")) +
     protocol.frame(protocol.SIGNAL, struct.pack("<I", 999)), b"bad signal number"),
])
def test_malformed_frames_get_an_error_and_the_agent_keeps_serving(agent: Path, data: bytes, message: bytes) -> None:
    frames = _raw(agent, data)
    assert frames and frames[-1][0] == protocol.ERROR and message in frames[-1][1]
    assert _exec(agent, ["echo", "still here"]).stdout_text == "still here\n"


def test_signals_reach_the_process_group(agent: Path) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(agent))
        s.sendall(protocol.frame(protocol.EXEC, protocol.exec_request(["sh", "-c", "sleep 30 & wait"], [], "", "")))
        reader = protocol._Reader(s)
        assert reader.frame()[0] == protocol.STARTED
        s.sendall(protocol.frame(protocol.SIGNAL, struct.pack("<I", signal.SIGTERM)))
        kind, payload = reader.frame()
        assert kind == protocol.EXIT and struct.unpack("<ii", payload) == (128 + 15, 15)


def test_many_execs_at_once(agent: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda i: _exec(agent, ["sh", "-c", f"sleep 0.2; echo {i}"]), range(16)))
    assert [o.stdout_text for o in outs] == [f"{i}\n" for i in range(16)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.integers(0, 255), payload=st.binary(max_size=300), tail=st.binary(max_size=64))
def test_fuzzed_frames(agent: Path, kind: int, payload: bytes, tail: bytes) -> None:
    if kind == protocol.EXEC and len(payload) >= 8:
        return   # a random EXEC might be a valid command; malformed ones are covered above
    frames = _raw(agent, protocol.frame(kind, payload) + tail)
    assert all(k in (protocol.ERROR, protocol.STARTED, protocol.STDOUT, protocol.STDERR, protocol.EXIT)
               for k, _ in frames)
    assert os.path.exists(agent)
    assert _exec(agent, ["true"]).success


def test_exec_output_repr_stays_short_for_large_output() -> None:
    out = protocol.ExecOutput(0, b"x" * (64 << 20), b"oops\n")
    text = repr(out)
    assert len(text) < 300 and "67108864 bytes" in text and "b'oops\\n'" in text
