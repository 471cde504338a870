"""microsandbox: OCI images to ready-to-boot microVM root filesystems, and the sandboxes that run them."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import (
    CacheCorruptError,
    ExecTimeoutError,
    ImageInUseError,
    ImageNotFoundError,
    ImagePullFailedError,
    InvalidConfigError,
    InvalidDiskImageError,
    InvalidLayerError,
    KvmUnavailableError,
    MicrosandboxError,
    SandboxAlreadyExistsError,
    SandboxNotFoundError,
    SandboxNotRunningError,
    StorageError,
    UnsupportedError,
    VmError,
)

if TYPE_CHECKING:   # what the lazy names below are, for type checkers and editors
    from .image import Image
    from .image_types import (DiskImageFormat, ImageConfigDetail, ImageDetail, ImageHandle, ImageLayerDetail,
                              ImagePruneReport, ImageSource, PullPolicy)
    from .pull import PullEvent
    from .sandbox.api import Sandbox
    from .sandbox.protocol import ExecOutput
    from .sandbox.records import SandboxInfo

# Everything else loads on first use (PEP 562), so that a process needing only part of the package
# (the microVM monitor, the CLI's quick commands) does not pay for importing all of it.
_LAZY = {
    "Image": ".image", "PullEvent": ".pull", "Sandbox": ".sandbox.api", "SandboxInfo": ".sandbox.records",
    "ExecOutput": ".sandbox.protocol", "DiskImageFormat": ".image_types", "ImageConfigDetail": ".image_types",
    "ImageDetail": ".image_types", "ImageHandle": ".image_types", "ImageLayerDetail": ".image_types",
    "ImagePruneReport": ".image_types", "ImageSource": ".image_types", "PullPolicy": ".image_types",
}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "CacheCorruptError",
    "DiskImageFormat",
    "ExecOutput",
    "ExecTimeoutError",
    "Image",
    "ImageConfigDetail",
    "ImageDetail",
    "ImageHandle",
    "ImageInUseError",
    "ImageLayerDetail",
    "ImageNotFoundError",
    "ImagePruneReport",
    "ImagePullFailedError",
    "ImageSource",
    "InvalidConfigError",
    "InvalidDiskImageError",
    "InvalidLayerError",
    "KvmUnavailableError",
    "MicrosandboxError",
    "PullEvent",
    "PullPolicy",
    "Sandbox",
    "SandboxAlreadyExistsError",
    "SandboxInfo",
    "SandboxNotFoundError",
    "SandboxNotRunningError",
    "StorageError",
    "UnsupportedError",
    "VmError",
]
