"""Sandboxes end with the process that created them, however it ends (SIGKILL included).

The creator holds the write end of one pipe per sandbox; the sandbox's supervisor (the microVM
monitor itself, or for the namespace backend a waiting ``msb-agent --on-eof``) holds the read end
and tears the sandbox down when it reads end-of-file, which the kernel delivers once every writer
is gone. The write ends are close-on-exec, so programs the creator runs do not keep sandboxes
alive; only the creator itself (and children it forks without exec) does.
"""
from __future__ import annotations

import contextlib
import os

_held: dict[str, int] = {}


def new(name: str) -> int:
    """A fresh lifeline for sandbox ``name``; returns the read end to hand to its supervisor (the
    caller closes it once the supervisor has it)."""
    release(name)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    _held[name] = write_end
    return read_end


def release(name: str) -> None:
    """Let go of ``name``'s lifeline: its supervisor, if still waiting, tears the sandbox down."""
    fd = _held.pop(name, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
