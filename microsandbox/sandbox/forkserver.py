"""Monitors start by fork from a warm, single-threaded server, not as new interpreters.

A new Python process costs ~60 ms to start and ~110 ms to import the monitor, more than the whole
budget for the monitor's share of a boot. So each creating process starts one fork server
(``python -m microsandbox.sandbox.forkserver FD``) on first use: it imports the monitor, keeps
the agent's initramfs and kernel segments built, and forks a monitor per request, which inherits
all of it. Forking is safe there because the server has one thread (forking the creator itself,
which may run any number of threads, would not be).

Requests arrive on a socketpair with the creator: the sandbox folder, and as SCM_RIGHTS the
sandbox's lifeline and its log file; the reply is the monitor's pid. The socketpair is also the
server's own lifeline: when the creator ends, the server reads end-of-file and exits.
"""
from __future__ import annotations

import array
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

from ..errors import VmError

PROCESS_NAME = "msb-monitor"   # /proc/<pid>/comm of every monitor (15 bytes at most)
SERVER_NAME = "msb-forkserver"
_REQUEST_MAX = 4096
_lock = threading.Lock()
_client: socket.socket | None = None
_process: subprocess.Popen[bytes] | None = None   # kept so that it is reaped, not reported as leaked


def is_monitor(pid: int) -> bool:
    """True while ``pid`` is a live monitor (its pid not reused by another program)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == PROCESS_NAME
    except OSError:
        return False


def _server() -> socket.socket:
    global _client, _process
    if _client is None:
        ours, theirs = socket.socketpair()
        _process = subprocess.Popen([sys.executable, "-m", __name__, str(theirs.fileno())],
                                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        _client = ours
    return _client


def spawn_monitor(folder: Path, lifeline: int, log: int) -> int:
    """Fork a monitor for ``folder``; returns its pid. Thread-safe."""
    global _client
    with _lock:
        for _ in range(2):   # a server that died (killed by someone) is replaced once
            try:
                sock = _server()
                sock.sendmsg([os.fsencode(folder)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                      array.array("i", [lifeline, log]))])
                reply = sock.recv(8)
                if len(reply) == 8 and struct.unpack("<q", reply)[0] > 0:
                    return struct.unpack("<q", reply)[0]
            except OSError:
                pass
            if _client is not None:
                _client.close()
                _client = None
                if _process is not None and _process.poll() is None:
                    _process.kill()
                    _process.wait()
    raise VmError("the microVM fork server is not answering; see the sandbox's monitor.log")


def _name(name: str) -> None:
    with open("/proc/self/comm", "w") as comm:
        comm.write(name)


def _child(folder: bytes, lifeline: int, log: int, server: socket.socket) -> None:
    from .monitor import main
    server.close()
    os.setsid()
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    code = 1
    try:
        code = main(["monitor", os.fsdecode(folder), str(lifeline)])
    finally:
        os._exit(code)


def serve(fd: int) -> None:
    from . import monitor
    _name(SERVER_NAME)
    monitor.warm_up()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # monitors are reaped by the kernel
    server = socket.socket(fileno=fd)
    while True:
        fds = array.array("i")
        try:
            data, ancdata, _, _ = server.recvmsg(_REQUEST_MAX, socket.CMSG_SPACE(2 * fds.itemsize))
        except InterruptedError:
            continue
        if not data:
            return   # the creator is gone
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
        if len(fds) != 2:
            for fd_ in fds:
                os.close(fd_)
            server.sendall(struct.pack("<q", -1))
            continue
        monitor.warm_up(Path(os.fsdecode(data)))
        _name(PROCESS_NAME)   # the child is born with its name: no moment where a live monitor looks dead
        pid = os.fork()
        if pid == 0:
            _child(data, fds[0], fds[1], server)
        _name(SERVER_NAME)
        for fd_ in fds:
            os.close(fd_)
        server.sendall(struct.pack("<q", pid))


if __name__ == "__main__":
    serve(int(sys.argv[1]))
