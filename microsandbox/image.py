"""``Image``: explicit rootfs sources (sync) and the local image cache (async)."""
from __future__ import annotations

import asyncio
import os

from . import image_cache
from .cache import Cache
from .disk import detect_format
from .errors import InvalidConfigError, InvalidDiskImageError
from .image_types import (
    DiskImageFormat,
    ImageDetail,
    ImageHandle,
    ImagePruneReport,
    ImageSource,
    PullPolicy,
)
from .pull import Progress, pull_image

_DISK_EXTENSIONS = {
    ".qcow2": DiskImageFormat.QCOW2,
    ".raw": DiskImageFormat.RAW,
    ".img": DiskImageFormat.RAW,
    ".vmdk": DiskImageFormat.VMDK,
}


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
    async def pull(reference: str, *, pull_policy: PullPolicy | str = PullPolicy.IF_MISSING,
                   platform: str | None = None, auth: tuple[str, str] | None = None,
                   progress: Progress | None = None) -> ImageHandle:
        """Fetch, verify and convert ``reference`` into the cache; see ``PullPolicy`` and ``PullEvent``.

        Raises ``ImagePullFailedError`` (registry, network, auth, digest, bad layer) or, with policy
        ``never``, ``ImageNotFoundError``. ``platform`` is ``"os/arch[/variant]"``.
        """
        return await asyncio.to_thread(pull_image, reference, pull_policy=pull_policy, platform=platform,
                                       auth=auth, progress=progress)

    @staticmethod
    async def get(reference: str) -> ImageHandle:
        """One cached image; ``ImageNotFoundError`` when it is not in the local cache."""
        return await asyncio.to_thread(image_cache.get, Cache(), reference)

    @staticmethod
    async def list() -> list[ImageHandle]:
        """Every cached image, newest ``created_at`` first."""
        return await asyncio.to_thread(image_cache.list_images, Cache())

    @staticmethod
    async def inspect(reference: str) -> ImageDetail:
        """Handle metadata plus the parsed OCI config and per-layer detail, bottom to top."""
        return await asyncio.to_thread(image_cache.inspect, Cache(), reference)

    @staticmethod
    async def remove(reference: str, *, force: bool = False) -> None:
        """Delete a cached reference; ``ImageInUseError`` while a sandbox uses it, unless ``force``.
        Layer files are reclaimed by ``prune``."""
        await asyncio.to_thread(image_cache.remove, Cache(), reference, force=force)

    @staticmethod
    async def prune() -> ImagePruneReport:
        """Remove every image no sandbox uses and the data nothing reachable needs."""
        return await asyncio.to_thread(image_cache.prune, Cache())
