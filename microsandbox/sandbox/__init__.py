"""Sandboxes: the guest agent's protocol, records, backends and the public ``Sandbox``."""
from .api import Sandbox, SandboxInfo
from .protocol import ExecOutput

__all__ = ["ExecOutput", "Sandbox", "SandboxInfo"]
