"""The cache operations behind ``Image.get/list/inspect/remove/prune`` (synchronous; the public
async methods run them in a worker thread)."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from .cache import Cache
from .errors import ImageInUseError, ImageNotFoundError
from .image_types import ImageConfigDetail, ImageDetail, ImageHandle, ImageLayerDetail, ImagePruneReport
from .paths import sandboxes_dir
from .pull import handle_from, ready
from .rootfs import ImageRootfs
from .reference import parse_reference
from .transports import is_local, parse_local


def sandboxes_using() -> dict[str, list[str]]:
    """manifest digest -> names of the sandboxes whose record (``sandboxes/<name>/sandbox.json``)
    still references it: the roots that keep images alive."""
    roots: dict[str, list[str]] = {}
    folder = sandboxes_dir()
    for record in sorted(folder.glob("*/sandbox.json")) if folder.is_dir() else []:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            data = json.loads(record.read_text())
            roots.setdefault(data["manifest_digest"], []).append(data.get("name", record.parent.name))
    return roots


def _entry(index: dict[str, Any], reference: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    key = str(parse_local(reference) if is_local(reference) else parse_reference(reference))
    entry = index["references"].get(key)
    record = index["manifests"].get(entry["manifest"]) if entry else None
    if record is None:
        raise ImageNotFoundError(f"{key} is not in the local cache; pull it first", reference=key)
    return key, entry, record


def _unlink_unless(paths: list[Path], live: set[Path], unlink) -> int:
    return sum(unlink(p) for p in paths if p not in live)


def rootfs_for(cache: Cache, reference: str) -> ImageRootfs:
    """The boot artifacts of a cached image (what the sandbox backends consume)."""
    index = cache.read_index()
    key, entry, record = _entry(index, reference)
    digest = entry["manifest"]
    if not ready(cache, digest, record):
        raise ImageNotFoundError(f"{key} is only partly in the cache; pull it again", reference=key)
    return ImageRootfs(reference=key, manifest_digest=digest,
                       layers=tuple(cache.layer_path(layer["diff_id"]) for layer in record["layers"]),
                       fsmeta=cache.fsmeta_path(digest), vmdk=cache.vmdk_path(digest),
                       config=inspect(cache, key).config)


def get(cache: Cache, reference: str) -> ImageHandle:
    key, entry, record = _entry(cache.read_index(), reference)
    return handle_from(key, entry, record)


def list_images(cache: Cache) -> list[ImageHandle]:
    index = cache.read_index()
    handles = [handle_from(key, entry, index["manifests"][entry["manifest"]])
               for key, entry in index["references"].items() if entry["manifest"] in index["manifests"]]
    return sorted(handles, key=lambda h: (-(h.created_at or 0), h.reference))


def inspect(cache: Cache, reference: str) -> ImageDetail:
    index = cache.read_index()
    key, entry, record = _entry(index, reference)
    config = index["configs"].get(record["config"])
    layers = []
    for position, layer in enumerate(record["layers"]):
        try:
            erofs_size: int | None = cache.layer_path(layer["diff_id"]).stat().st_size
        except FileNotFoundError:
            erofs_size = None
        layers.append(ImageLayerDetail(diff_id=layer["diff_id"], blob_digest=layer["blob_digest"],
                                       media_type=layer.get("media_type"),
                                       compressed_size_bytes=layer.get("size"),
                                       erofs_size_bytes=erofs_size, position=position))
    detail = None
    if config is not None:
        detail = ImageConfigDetail(digest=record["config"], env=list(config["env"]), cmd=config["cmd"],
                                   entrypoint=config["entrypoint"], working_dir=config["working_dir"],
                                   user=config["user"], labels=config["labels"], stop_signal=config["stop_signal"])
    return ImageDetail(handle=handle_from(key, entry, record), config=detail, layers=layers)


def remove(cache: Cache, reference: str, *, force: bool) -> None:
    with cache.edit_index() as index:
        key, entry, _ = _entry(index, reference)
        users = sandboxes_using().get(entry["manifest"], [])
        if users and not force:
            raise ImageInUseError(f"{key} is used by sandbox(es) {', '.join(users)}; remove them first "
                                  "or pass force=True", reference=key, sandboxes=users)
        del index["references"][key]
        if not any(e["manifest"] == entry["manifest"] for e in index["references"].values()):
            index["manifests"].pop(entry["manifest"], None)


def prune(cache: Cache) -> ImagePruneReport:
    """Drop every reference no sandbox uses, then whatever nothing reachable needs."""
    roots = sandboxes_using()
    reclaimed = [0]

    def unlink(path: Path) -> bool:
        try:
            st = path.stat()
            path.unlink()
        except FileNotFoundError:
            return False
        reclaimed[0] += st.st_blocks * 512
        return True

    with cache.edit_index() as index:
        refs = [k for k, e in index["references"].items() if e["manifest"] not in roots]
        for key in refs:
            del index["references"][key]
        live_manifests = {e["manifest"] for e in index["references"].values()} | set(roots)
        dead_manifests = [d for d in index["manifests"] if d not in live_manifests]
        for digest in dead_manifests:
            del index["manifests"][digest]
        live_configs = {m["config"] for m in index["manifests"].values()}
        for digest in [d for d in index["configs"] if d not in live_configs]:
            del index["configs"][digest]
        live_blobs = {cache.blob_path(d).name for d in [*index["manifests"], *index["configs"]]}
        blobs_dir = cache.root / "blobs" / "sha256"
        for path in sorted(blobs_dir.iterdir()) if blobs_dir.is_dir() else []:
            if path.name not in live_blobs and not path.name.startswith("."):
                unlink(path)
        live_layers = {cache.layer_path(layer["diff_id"]) for m in index["manifests"].values()
                       for layer in m["layers"]}
        layers_removed = _unlink_unless(sorted((cache.root / "layers").glob("*.erofs")), live_layers, unlink)
        fsmeta_removed = _unlink_unless(sorted((cache.root / "fsmeta").glob("*.erofs")),
                                        {cache.fsmeta_path(d) for d in index["manifests"]}, unlink)
        vmdk_removed = _unlink_unless(sorted(cache.root.glob("*.vmdk")),
                                      {cache.vmdk_path(d) for d in index["manifests"]}, unlink)
    _, tmp_bytes = cache.clean_tmp()
    return ImagePruneReport(image_refs_removed=len(refs), manifests_removed=len(dead_manifests),
                            layers_removed=layers_removed, fsmeta_removed=fsmeta_removed,
                            vmdk_removed=vmdk_removed,
                            bytes_reclaimed=reclaimed[0] + tmp_bytes)
