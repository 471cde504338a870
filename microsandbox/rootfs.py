"""The hand-off between the image cache and the sandbox backends.

The cache produces one ``ImageRootfs`` per pulled image; the VM backend boots ``vmdk`` (fsmeta
then every layer, stitched read-only), the namespace backend overlays ``layers`` (each layer's
EROFS image is a valid overlayfs lower on its own). Nothing of the image is extracted on the host.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .image_types import ImageConfigDetail


@dataclass(frozen=True)
class ImageRootfs:
    """Ready-to-boot artifacts of one cached image (all paths inside ``$MSB_HOME/cache``)."""

    reference: str
    manifest_digest: str
    layers: tuple[Path, ...]
    """Per-layer EROFS images, bottom to top."""
    fsmeta: Path | None
    """Merged metadata-only EROFS whose files point into the layers (None until composed)."""
    vmdk: Path | None
    """VMDK descriptor stitching fsmeta and the layers as RDONLY FLAT extents."""
    config: ImageConfigDetail | None
