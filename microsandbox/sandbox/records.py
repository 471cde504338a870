"""Sandbox records: ``$MSB_HOME/sandboxes/<name>/sandbox.json``, written atomically.

They are what ``Image.remove``/``prune`` consult (``manifest_digest``) and how a sandbox is found
again after the process that created it is gone; a record whose process died reads as stopped.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidConfigError, SandboxNotFoundError
from ..fsutil import atomic_output
from ..paths import sandboxes_dir
from .forkserver import is_monitor

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class SandboxInfo:
    """What ``Sandbox.info``/``list`` report about one sandbox."""

    name: str
    backend: str
    reference: str | None
    manifest_digest: str | None
    state: str
    pid: int | None
    created_at: float


@dataclass(frozen=True)
class SandboxRecord(SandboxInfo):
    """The persisted form: the public fields plus the settings execs need (env, workdir, user)."""

    config: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return folder_of(self.name)

    def save(self) -> None:
        with atomic_output(self.folder / "sandbox.json") as out:
            out.write(json.dumps(asdict(self), sort_keys=True).encode())

    def alive(self) -> bool:
        """True while the sandbox's process (the agent, or the microVM's monitor) exists, and its
        pid is not reused by another program."""
        if self.state != "running" or not self.pid:
            return False
        if self.backend == "vm":   # monitors are forked, so they are known by name, not argv
            return is_monitor(self.pid)
        try:
            return Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0", 1)[0].endswith(b"msb-agent")
        except OSError:
            return False


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidConfigError(f"invalid sandbox name {name!r}: use 1-63 letters, digits, '.', '_' or '-', "
                                 "starting with a letter or digit")
    return name


def folder_of(name: str) -> Path:
    return sandboxes_dir() / check_name(name)


def load(name: str) -> SandboxRecord:
    try:
        data = json.loads((folder_of(name) / "sandbox.json").read_text())
        return SandboxRecord(**data)
    except FileNotFoundError:
        raise SandboxNotFoundError(f"no sandbox named {name!r}", name=name) from None
    except (ValueError, TypeError):
        raise SandboxNotFoundError(f"the record of sandbox {name!r} is damaged; remove it with "
                                   f"`msb rm {name}`", name=name) from None


def all_records() -> list[SandboxRecord]:
    folder = sandboxes_dir()
    out = []
    for path in sorted(folder.glob("*/sandbox.json")) if folder.is_dir() else []:
        try:
            out.append(load(path.parent.name))
        except (SandboxNotFoundError, InvalidConfigError):
            continue
    return out


def exists(name: str) -> bool:
    return (folder_of(name) / "sandbox.json").exists() or os.path.isdir(folder_of(name))
