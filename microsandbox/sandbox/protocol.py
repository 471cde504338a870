"""The host side of the agent protocol (docs/protocol.md): frames, the EXEC request, and one exec
session over a stream socket."""
from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass

from ..errors import ExecTimeoutError, MicrosandboxError, SandboxNotRunningError

EXEC, STDIN, STDIN_EOF, SIGNAL = 1, 2, 3, 4
STARTED, STDOUT, STDERR, EXIT, ERROR = 10, 11, 12, 13, 14
MAX_PAYLOAD = 1 << 20
_HEAD = struct.Struct("<IB")


@dataclass(frozen=True, repr=False)
class ExecOutput:
    """What a command produced; a signal death has ``exit_code`` 128 + N."""

    exit_code: int
    stdout_bytes: bytes
    stderr_bytes: bytes
    signal: int | None = None

    def __repr__(self) -> str:
        """Sizes and the first bytes, not the whole output: a result holding megabytes is printed,
        logged and even repr()ed by asyncio itself (Python 3.11's ``asyncio.run`` reprs the main
        task's result on exit), and a full repr of 64 MiB costs seconds."""
        def preview(data: bytes) -> str:
            return f"{len(data)} bytes {data[:48]!r}{'...' if len(data) > 48 else ''}"
        return (f"ExecOutput(exit_code={self.exit_code}, stdout={preview(self.stdout_bytes)}, "
                f"stderr={preview(self.stderr_bytes)}, signal={self.signal})")

    @property
    def success(self) -> bool:
        return self.exit_code == 0

    @property
    def stdout_text(self) -> str:
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr_text(self) -> str:
        return self.stderr_bytes.decode("utf-8", "replace")


def frame(kind: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("frame payload over 1 MiB")
    return _HEAD.pack(len(payload) + 1, kind) + payload


def _string(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("<I", len(data)) + data


def exec_request(argv: list[str], env: list[str], cwd: str, user: str) -> bytes:
    return (struct.pack("<I", len(argv)) + b"".join(map(_string, argv)) +
            struct.pack("<I", len(env)) + b"".join(map(_string, env)) + _string(cwd) + _string(user))


class _Reader:
    """Frames from a stream socket; consumed bytes are dropped in bulk, not per frame."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf, self.pos = sock, bytearray(), 0

    def frame(self) -> tuple[int, bytes] | None:
        while True:
            if len(self.buf) - self.pos >= 5:
                length, kind = _HEAD.unpack_from(self.buf, self.pos)
                end = self.pos + 4 + length
                if len(self.buf) >= end:
                    payload = bytes(memoryview(self.buf)[self.pos + 5:end])
                    self.pos = end
                    return kind, payload
            if self.pos:
                del self.buf[:self.pos]
                self.pos = 0
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            self.buf += chunk


def run(socket_path: str, argv: list[str], *, env: list[str], cwd: str, user: str,
        stdin: bytes | None, timeout: float | None) -> ExecOutput:
    """One command, start to exit, through the agent listening at ``socket_path``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        dirfd = os.open(os.path.dirname(socket_path), os.O_PATH)
        try:   # through /proc/self/fd: socket paths are limited to 108 bytes, sandbox paths are not
            sock.connect(f"/proc/self/fd/{dirfd}/{os.path.basename(socket_path)}")
        finally:
            os.close(dirfd)
    except OSError as exc:
        sock.close()
        raise SandboxNotRunningError(f"the sandbox agent does not answer ({exc.strerror}); is the sandbox "
                                     "running?") from None
    with sock:
        sock.sendall(frame(EXEC, exec_request(argv, env, cwd, user)))
        if stdin is not None:
            for at in range(0, len(stdin), MAX_PAYLOAD):
                sock.sendall(frame(STDIN, stdin[at:at + MAX_PAYLOAD]))
        sock.sendall(frame(STDIN_EOF))
        return _collect(sock, argv, timeout)


def _collect(sock: socket.socket, argv: list[str], timeout: float | None) -> ExecOutput:
    reader = _Reader(sock)
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout if timeout is not None else None
    killed = False
    while True:
        if deadline is not None and not killed:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            got = reader.frame()
        except TimeoutError:
            sock.sendall(frame(SIGNAL, struct.pack("<I", 9)))
            killed = True
            sock.settimeout(10)
            continue
        if got is None:
            raise SandboxNotRunningError(f"the sandbox stopped while running {argv[0]!r}")
        kind, payload = got
        if kind == STDOUT:
            out += payload
        elif kind == STDERR:
            err += payload
        elif kind == EXIT:
            code, sig = struct.unpack("<ii", payload)
            if killed:
                raise ExecTimeoutError(f"{argv[0]!r} ran longer than {timeout} s and was killed",
                                       command=argv, timeout=timeout, stdout=bytes(out), stderr=bytes(err))
            return ExecOutput(code, bytes(out), bytes(err), sig or None)
        elif kind == ERROR:
            raise MicrosandboxError(f"the sandbox agent refused {argv[0]!r}: {payload.decode(errors='replace')}",
                                    command=argv)
