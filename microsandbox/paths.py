"""Where microsandbox keeps its state: everything lives under ``$MSB_HOME``."""
from __future__ import annotations

import os
from pathlib import Path


def msb_home() -> Path:
    """``$MSB_HOME``, else ``~/.microsandbox``; read on every call so tests can redirect it."""
    env = os.environ.get("MSB_HOME")
    return Path(env) if env else Path.home() / ".microsandbox"


def cache_dir() -> Path:
    return msb_home() / "cache"


def sandboxes_dir() -> Path:
    return msb_home() / "sandboxes"


def kernel_dir() -> Path:
    return msb_home() / "kernel"
