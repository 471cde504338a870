"""microsandbox: OCI images to ready-to-boot microVM root filesystems, and the sandboxes that run them."""
from __future__ import annotations

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
from .image import Image
from .pull import PullEvent
from .sandbox import ExecOutput, Sandbox, SandboxInfo
from .image_types import (
    DiskImageFormat,
    ImageConfigDetail,
    ImageDetail,
    ImageHandle,
    ImageLayerDetail,
    ImagePruneReport,
    ImageSource,
    PullPolicy,
)

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
