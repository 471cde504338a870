"""Sandboxes: the guest agent's protocol, records, backends and the public ``Sandbox``.

The public names load on first use, so that the microVM monitor (``sandbox.monitor``) starts
without importing the pull pipeline.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .api import Sandbox
    from .protocol import ExecOutput
    from .records import SandboxInfo

_LAZY = {"Sandbox": ".api", "SandboxInfo": ".records", "ExecOutput": ".protocol"}
__all__ = ["ExecOutput", "Sandbox", "SandboxInfo"]


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value
