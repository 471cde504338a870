"""The microVM's initramfs: the static agent as ``/init`` and a console node, in the kernel's
``newc`` cpio format (spec vmm.md 6.3), uncompressed so that unpacking is a copy."""
from __future__ import annotations

import stat
from functools import lru_cache
from pathlib import Path

_TRAILER = "TRAILER!!!"


def _entry(ino: int, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> bytes:
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
    return head + bytes(-len(head) % 4) + data + bytes(-len(data) % 4)


def build(agent: bytes) -> bytes:
    entries = [("dev", stat.S_IFDIR | 0o755, b"", (0, 0)),
               ("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)),
               ("init", stat.S_IFREG | 0o755, agent, (0, 0))]
    out = b"".join(_entry(i + 1, name, mode, data, rdev) for i, (name, mode, data, rdev) in enumerate(entries))
    out += _entry(0, _TRAILER, 0)
    return out + bytes(-len(out) % 512)


def for_agent(agent: Path) -> bytes:
    """The initramfs for the agent binary at ``agent``, built once per version of that file."""
    return _for_agent(agent, agent.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _for_agent(agent: Path, mtime_ns: int) -> bytes:
    return build(agent.read_bytes())
