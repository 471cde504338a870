"""``Image``: explicit rootfs sources (sync) and the local image cache (async)."""
from __future__ import annotations

import os

from .disk import detect_format
from .errors import InvalidConfigError, InvalidDiskImageError
from .image_types import (
    DiskImageFormat,
    ImageDetail,
    ImageHandle,
    ImagePruneReport,
    ImageSource,
)

_DISK_EXTENSIONS = {
    ".qcow2": DiskImageFormat.QCOW2,
    ".raw": DiskImageFormat.RAW,
    ".img": DiskImageFormat.RAW,
    ".vmdk": DiskImageFormat.VMDK,
}

_CACHE_PENDING = "the image cache lands with the OCI acquisition issue (#3)"


def disk_format_from_name(path: str) -> DiskImageFormat:
    """The format a disk image's extension promises; ``InvalidDiskImageError`` for any other."""
    ext = os.path.splitext(path)[1].lower()
    try:
        return _DISK_EXTENSIONS[ext]
    except KeyError:
        known = ", ".join(sorted(_DISK_EXTENSIONS))
        raise InvalidDiskImageError(
            f"{path}: cannot tell the disk format from the extension {ext or '(none)'!r}; "
            f"rename it to one of {known}", path=path) from None


class Image:
    """Static namespace: rootfs source factories and local cache management."""

    @staticmethod
    def oci(reference: str, *, upper_size_mib: int | None = None) -> ImageSource:
        """An OCI image rootfs source; ``upper_size_mib`` sizes the writable overlay upper."""
        if not isinstance(reference, str) or not reference:
            raise InvalidConfigError("reference must be a non-empty string")
        if upper_size_mib is not None and (not isinstance(upper_size_mib, int) or upper_size_mib <= 0):
            raise InvalidConfigError(f"upper_size_mib must be a positive integer, got {upper_size_mib!r}")
        return ImageSource(_type="oci", _reference=reference, _upper_size_mib=upper_size_mib)

    @staticmethod
    def bind(path: str) -> ImageSource:
        """A host directory used as the guest root filesystem."""
        if not isinstance(path, str) or not path:
            raise InvalidConfigError("bind path must be a non-empty string")
        return ImageSource(_type="bind", _path=path)

    @staticmethod
    def disk(path: str, *, fstype: str | None = None) -> ImageSource:
        """A disk image rootfs; the format comes from the extension (``.qcow2``, ``.raw``/``.img``, ``.vmdk``).

        When the file exists its header is read: bytes that contradict the extension (a qcow2 named
        ``.raw`` would boot as raw and expose the host file's layout) raise ``InvalidDiskImageError``.
        """
        if not isinstance(path, str) or not path:
            raise InvalidConfigError("disk path must be a non-empty string")
        fmt = disk_format_from_name(path)
        if os.path.exists(path):
            actual = detect_format(path)
            if actual != fmt:
                raise InvalidDiskImageError(
                    f"{path}: the name says {fmt} but the file is {actual}; rename it to match its "
                    f"contents or convert it with qemu-img", path=path, expected=str(fmt), actual=str(actual))
        return ImageSource(_type="disk", _path=path, _fstype=fstype, _format=fmt)

    @staticmethod
    async def get(reference: str) -> ImageHandle:
        """One cached image; ``ImageNotFoundError`` when absent. Not implemented until #3 lands."""
        raise NotImplementedError(_CACHE_PENDING)

    @staticmethod
    async def list() -> list[ImageHandle]:
        """Every cached image, newest first. Not implemented until #3 lands."""
        raise NotImplementedError(_CACHE_PENDING)

    @staticmethod
    async def inspect(reference: str) -> ImageDetail:
        """Handle, parsed config and layers. Not implemented until #3 lands."""
        raise NotImplementedError(_CACHE_PENDING)

    @staticmethod
    async def remove(reference: str, *, force: bool = False) -> None:
        """Delete a cached image (``ImageInUseError`` unless ``force``). Not implemented until #3 lands."""
        raise NotImplementedError(_CACHE_PENDING)

    @staticmethod
    async def prune() -> ImagePruneReport:
        """Remove cached data no sandbox uses. Not implemented until #3 lands."""
        raise NotImplementedError(_CACHE_PENDING)

