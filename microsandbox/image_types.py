"""The value types of the ``Image`` API, field for field as the user's documents define them."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any



class DiskImageFormat(StrEnum):
    """Disk image container format."""

    QCOW2 = "qcow2"
    RAW = "raw"
    VMDK = "vmdk"


class PullPolicy(StrEnum):
    """When ``pull`` talks to the registry."""

    ALWAYS = "always"
    IF_MISSING = "if-missing"
    NEVER = "never"


@dataclass(frozen=True)
class ImageSource:
    """Explicit rootfs source for ``Sandbox.create(image=...)``; treat the fields as opaque."""

    _type: str
    _path: str | None = None
    _reference: str | None = None
    _upper_size_mib: int | None = None
    _fstype: str | None = None
    _format: DiskImageFormat | None = None


@dataclass(frozen=True)
class ImageConfigDetail:
    """OCI image config fields extracted from the local cache."""

    digest: str
    env: list[str] = field(default_factory=list)
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    working_dir: str | None = None
    user: str | None = None
    labels: dict[str, Any] | None = None
    stop_signal: str | None = None


@dataclass(frozen=True)
class ImageLayerDetail:
    """Metadata for one image layer; ``position`` counts from the bottom (0)."""

    diff_id: str
    blob_digest: str
    media_type: str | None
    compressed_size_bytes: int | None
    erofs_size_bytes: int | None
    position: int


@dataclass(frozen=True)
class ImageHandle:
    """A cached image. Attributes are read-only; ``inspect`` and ``remove`` are async."""

    reference: str
    size_bytes: int | None
    manifest_digest: str | None
    architecture: str | None
    os: str | None
    layer_count: int
    last_used_at: float | None
    created_at: float | None

    async def inspect(self) -> ImageDetail:
        """Full detail for this image (same as ``Image.inspect(self.reference)``)."""
        from .image import Image

        return await Image.inspect(self.reference)

    async def remove(self, *, force: bool = False) -> None:
        """Delete this image; raises ``ImageInUseError`` while a sandbox uses it unless ``force``."""
        from .image import Image

        await Image.remove(self.reference, force=force)


@dataclass(frozen=True)
class ImageDetail:
    """Handle, parsed OCI config, and layers bottom to top."""

    handle: ImageHandle
    config: ImageConfigDetail | None
    layers: list[ImageLayerDetail]


@dataclass(frozen=True)
class ImagePruneReport:
    """What ``Image.prune`` removed; ``bytes_reclaimed`` is measured from the deleted files."""

    image_refs_removed: int = 0
    manifests_removed: int = 0
    layers_removed: int = 0
    fsmeta_removed: int = 0
    vmdk_removed: int = 0
    bytes_reclaimed: int | None = None
