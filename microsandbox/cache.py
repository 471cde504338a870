"""The image cache on disk: content-addressed artifacts plus one flat JSON index.

Layout under ``$MSB_HOME/cache``::

    blobs/sha256/<hex>         manifests and configs, verified bytes as the registry sent them
    layers/<diff_id hex>.erofs one EROFS image per uncompressed layer
    fsmeta/<manifest hex>.erofs the merged metadata image of one manifest
    <manifest hex>.vmdk        fsmeta + layers stitched; extents relative, so the cache can move
    index.json                 references -> manifests -> configs and layers
    index.lock                 flock taken by writers

Every artifact is written to a temp file beside it (named with the writer's pid, so a later pull or
prune can tell a dead process's leftovers from a live one's), fsynced and renamed; the index is rewritten the same way
under the lock, so readers (which take no lock) always see a complete index.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import CacheCorruptError
from .fsutil import atomic_output, orphaned_temp, storage_error
from .paths import cache_dir

INDEX_VERSION = 1


def now_ms() -> float:
    return time.time() * 1000.0


def _hex(digest: str) -> str:
    algo, _, value = digest.partition(":")
    if algo != "sha256" or len(value) != 64 or not all(c in "0123456789abcdef" for c in value):
        raise CacheCorruptError(f"malformed digest {digest!r} in the cache")
    return value


class Cache:
    """Paths and index access for one ``$MSB_HOME``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_dir()
        self.index_path = self.root / "index.json"

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / _hex(digest)

    def layer_path(self, diff_id: str) -> Path:
        return self.root / "layers" / f"{_hex(diff_id)}.erofs"

    def fsmeta_path(self, manifest_digest: str) -> Path:
        return self.root / "fsmeta" / f"{_hex(manifest_digest)}.erofs"

    def vmdk_path(self, manifest_digest: str) -> Path:
        return self.root / f"{_hex(manifest_digest)}.vmdk"

    def write_blob(self, digest: str, data: bytes) -> None:
        path = self.blob_path(digest)
        if not path.exists():
            with atomic_output(path) as out:
                out.write(data)

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    # -- index ------------------------------------------------------------------------------------

    def read_index(self) -> dict[str, Any]:
        """The current index (empty when there is none); ``CacheCorruptError`` when unreadable."""
        try:
            data = self.index_path.read_bytes()
        except FileNotFoundError:
            return _empty_index()
        try:
            index = json.loads(data)
        except ValueError:
            raise CacheCorruptError(f"the cache index {self.index_path} is not valid JSON; run "
                                    "`msb image prune --rebuild-index` to rebuild it from the cached "
                                    "artifacts", path=str(self.index_path)) from None
        if not isinstance(index, dict) or index.get("version") != INDEX_VERSION or \
                not all(isinstance(index.get(k), dict) for k in ("references", "manifests", "configs")):
            raise CacheCorruptError(f"the cache index {self.index_path} has an unknown shape; run "
                                    "`msb image prune --rebuild-index`", path=str(self.index_path))
        return index

    @contextlib.contextmanager
    def _locked(self, index: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Hold the writers' lock around a change to ``index`` (the current one unless given),
        then publish it atomically."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(self.root / "index.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise storage_error(self.root / "index.lock", exc) from None
        with os.fdopen(lock_fd, "r+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            index = self.read_index() if index is None else index
            yield index
            with atomic_output(self.index_path) as out:
                out.write(json.dumps(index, sort_keys=True, separators=(",", ":")).encode())

    def edit_index(self) -> contextlib.AbstractContextManager[dict[str, Any]]:
        """Lock, read, let the caller change the index, then publish it atomically."""
        return self._locked()

    def rebuild_index(self) -> dict[str, int]:
        """Recreate manifests and configs from ``blobs/`` after the index was lost or damaged.

        References (names) live only in the index, so images come back unnamed until pulled again;
        their layers stay cached, which keeps that pull cheap.
        """
        docs = {}
        blobs = self.root / "blobs" / "sha256"
        for path in sorted(blobs.iterdir()) if blobs.is_dir() else []:
            with contextlib.suppress(ValueError):
                doc = json.loads(path.read_bytes())
                if isinstance(doc, dict):
                    docs[f"sha256:{path.name}"] = doc
        with self._locked(_empty_index()) as index:
            for digest, doc in docs.items():
                with contextlib.suppress(AttributeError, TypeError):
                    if "rootfs" in doc:
                        index["configs"][digest] = config_record(doc)
            for digest, doc in docs.items():
                with contextlib.suppress(KeyError, TypeError, AttributeError, ValueError):
                    config = index["configs"].get(doc["config"]["digest"]) if "layers" in doc else None
                    if config is not None:
                        index["manifests"][digest] = manifest_record(doc, config)
        return {"manifests": len(index["manifests"]), "configs": len(index["configs"])}

    def clean_tmp(self) -> tuple[int, int]:
        """Remove temp files whose writer died (killed mid-pull); returns (files, bytes)."""
        count = size = 0
        for folder in (self.root / "layers", self.root / "fsmeta", self.root / "blobs" / "sha256", self.root):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if orphaned_temp(path):
                    with contextlib.suppress(FileNotFoundError):
                        st = path.stat()
                        path.unlink()
                        count, size = count + 1, size + st.st_blocks * 512
        return count, size


def _empty_index() -> dict[str, Any]:
    return {"version": INDEX_VERSION, "references": {}, "manifests": {}, "configs": {}}


def config_record(config: dict[str, Any]) -> dict[str, Any]:
    """What the index keeps of an OCI image config."""
    cfg = config.get("config") or {}
    return {
        "architecture": config.get("architecture"),
        "os": config.get("os"),
        "env": list(cfg.get("Env") or []),
        "cmd": cfg.get("Cmd"),
        "entrypoint": cfg.get("Entrypoint"),
        "working_dir": cfg.get("WorkingDir") or None,
        "user": cfg.get("User") or None,
        "labels": cfg.get("Labels"),
        "stop_signal": cfg.get("StopSignal"),
        "diff_ids": list((config.get("rootfs") or {}).get("diff_ids") or []),
    }


def manifest_record(manifest: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """What the index keeps of an image manifest, joined with its config's diff_ids."""
    layers = [{"blob_digest": d["digest"], "media_type": d.get("mediaType"), "size": d.get("size"),
               "diff_id": diff_id}
              for d, diff_id in zip(manifest["layers"], config["diff_ids"], strict=True)]
    return {
        "config": manifest["config"]["digest"],
        "architecture": config.get("architecture"),
        "os": config.get("os"),
        "layers": layers,
        "size_bytes": sum(layer["size"] or 0 for layer in layers),
    }
