"""The one error hierarchy every public call raises.

Each class carries a stable ``code`` string (for programs) and keyword context such as the
reference, digest, path or byte offset (for people); messages say what to do next.
"""
from __future__ import annotations

from typing import Any


class MicrosandboxError(Exception):
    """Base of every error microsandbox raises on purpose."""

    code: str = "microsandbox_error"

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context: dict[str, Any] = context

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps context across multiprocessing/pickle boundaries.
        return (_rebuild, (type(self), self.message, self.context))


def _rebuild(cls: type[MicrosandboxError], message: str, context: dict[str, Any]) -> MicrosandboxError:
    return cls(message, **context)


class ImageNotFoundError(MicrosandboxError):
    """The reference is not in the local cache (or, with pull policy ``never``, not pulled)."""

    code = "image_not_found"


class ImageInUseError(MicrosandboxError):
    """One or more sandboxes still reference the image; ``context['sandboxes']`` names them."""

    code = "image_in_use"


class ImagePullFailedError(MicrosandboxError):
    """Registry, network, auth, digest mismatch or bad layer while pulling."""

    code = "image_pull_failed"


class UnsupportedError(MicrosandboxError):
    """The operation needs a capability this backend or host does not have."""

    code = "unsupported"


class InvalidDiskImageError(MicrosandboxError):
    """A disk image is malformed, hostile, or not the format its name claims."""

    code = "invalid_disk_image"


class InvalidLayerError(MicrosandboxError):
    """A layer tar stream is corrupt, truncated, hostile or over a limit."""

    code = "invalid_layer"


class InvalidConfigError(MicrosandboxError):
    """An argument or configuration value is out of range or inconsistent."""

    code = "invalid_config"


class CacheCorruptError(MicrosandboxError):
    """The on-disk cache index cannot be read; it can be rebuilt from the artifacts."""

    code = "cache_corrupt"


class SandboxNotFoundError(MicrosandboxError):
    """No sandbox record exists under that name."""

    code = "sandbox_not_found"


class SandboxAlreadyExistsError(MicrosandboxError):
    """A sandbox with that name already exists."""

    code = "sandbox_already_exists"


class SandboxNotRunningError(MicrosandboxError):
    """The sandbox is stopped (or its process died) and cannot serve the request."""

    code = "sandbox_not_running"


class ExecTimeoutError(MicrosandboxError):
    """A command ran past its timeout; it was killed and the sandbox stays usable."""

    code = "exec_timeout"


class KvmUnavailableError(MicrosandboxError):
    """The microVM backend cannot run here; the message says why and what to use instead."""

    code = "kvm_unavailable"


class StorageError(MicrosandboxError):
    """The host could not store an artifact (disk full, read-only, permissions)."""

    code = "storage_error"


class VmError(MicrosandboxError):
    """The virtual machine monitor could not set up or run a guest."""

    code = "vm_error"
