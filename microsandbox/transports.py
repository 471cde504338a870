"""Local image sources with skopeo's names: ``oci:PATH[:TAG]`` (an OCI image layout folder) and
``docker-archive:PATH[:REF]`` (a ``docker save`` tarball). They feed the same pull pipeline as a
registry, with the same verification: every blob is checked against its digest as it streams.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from .errors import ImagePullFailedError, InvalidConfigError
from .reference import parse_reference

TRANSPORTS = ("oci:", "docker-archive:")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class LocalReference:
    """``transport:/absolute/path[:name]``; ``str()`` is the cache key."""

    transport: str
    path: str
    name: str | None

    def __str__(self) -> str:
        return f"{self.transport}:{self.path}" + (f":{self.name}" if self.name else "")

    @property
    def manifest_ref(self) -> str:
        return self.name or ""

    @property
    def digest(self) -> None:
        """Local references are never pinned by digest."""
        return None


def is_local(reference: str) -> bool:
    return reference.startswith(TRANSPORTS)


def parse_local(reference: str) -> LocalReference:
    transport, _, rest = reference.partition(":")
    path, name = rest, None
    if not os.path.exists(rest):
        # The name may hold colons itself (docker-archive:x.tar:repo:tag): split at the first colon
        # whose left side exists, else at the first colon (as skopeo does).
        cuts = [i for i, c in enumerate(rest) if c == ":"]
        cut = next((i for i in cuts if os.path.exists(rest[:i])), cuts[0] if cuts else None)
        if cut is not None:
            path, name = rest[:cut], rest[cut + 1:]
    if not path:
        raise ImagePullFailedError(f"{reference}: no path after '{transport}:'")
    return LocalReference(transport, os.path.abspath(path), name or None)


class _CheckedFile(io.RawIOBase):
    """A blob file read through ``readinto`` with a size limit and progress callbacks."""

    def __init__(self, raw: BinaryIO, digest: str, size: int, progress: Callable[[int], None] | None) -> None:
        self.raw, self.digest, self.size, self.progress, self.pos = raw, digest, size, progress, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = self.raw.readinto(buf)
        self.pos += n or 0
        if self.pos > self.size:
            raise ImagePullFailedError(f"blob {self.digest} is longer than its descriptor says", digest=self.digest)
        if n and self.progress:
            self.progress(n)
        return n or 0

    def close(self) -> None:
        self.raw.close()
        super().close()


class OciLayoutSource:
    """An OCI image layout: ``index.json`` names manifests by ``org.opencontainers.image.ref.name``."""

    def __init__(self, ref: LocalReference) -> None:
        self.ref = ref
        try:
            self.index = json.loads(open(os.path.join(ref.path, "index.json"), "rb").read())
        except (OSError, ValueError) as exc:
            raise ImagePullFailedError(f"{ref}: not a readable OCI image layout ({exc})") from None

    def _blob_path(self, digest: str) -> str:
        algo, _, hexd = digest.partition(":")
        if algo != "sha256" or len(hexd) != 64 or not all(c in "0123456789abcdef" for c in hexd):
            raise ImagePullFailedError(f"{self.ref}: malformed digest {digest!r}")
        return os.path.join(self.ref.path, "blobs", "sha256", hexd)

    def manifest(self, reference: str) -> tuple[bytes, str]:
        if reference.startswith("sha256:"):
            return self.blob_bytes(reference, 4 << 20), ""
        entries = self.index.get("manifests") or []
        chosen = [m for m in entries if (m.get("annotations") or {}).get(_REF_NAME) == reference] if reference \
            else entries
        if len(chosen) != 1:
            names = sorted((m.get("annotations") or {}).get(_REF_NAME, "?") for m in entries)
            raise ImagePullFailedError(f"{self.ref}: {'no' if not chosen else 'more than one'} image named "
                                       f"{reference or '(untagged)'}; the layout holds: {', '.join(names) or 'nothing'}")
        return self.blob_bytes(chosen[0]["digest"], 4 << 20), chosen[0].get("mediaType", "")

    def blob_bytes(self, digest: str, limit: int) -> bytes:
        try:
            with open(self._blob_path(digest), "rb") as f:
                data = f.read(limit + 1)
        except OSError as exc:
            raise ImagePullFailedError(f"{self.ref}: blob {digest} is missing ({exc.strerror})", digest=digest) from None
        if len(data) > limit:
            raise ImagePullFailedError(f"{self.ref}: blob {digest} is larger than {limit} bytes")
        return data

    def open_layer(self, digest: str, size: int, progress: Callable[[int], None] | None) -> _CheckedFile:
        try:
            return _CheckedFile(io.FileIO(self._blob_path(digest), "rb"), digest, size, progress)
        except OSError as exc:
            raise ImagePullFailedError(f"{self.ref}: blob {digest} is missing ({exc.strerror})", digest=digest) from None


class DockerArchiveSource:
    """A ``docker save`` tarball (``manifest.json`` + config + layer tars). It has no registry
    manifest, so one is derived from its config and layers: deterministic, so re-pulls match."""

    def __init__(self, ref: LocalReference) -> None:
        self.ref = ref
        try:
            self.tar = tarfile.open(ref.path)
            entries = json.load(self.tar.extractfile("manifest.json"))
        except (OSError, tarfile.TarError, KeyError, ValueError, AttributeError) as exc:
            raise ImagePullFailedError(f"{ref}: not a readable docker-archive ({exc})") from None
        wanted = [e for e in entries if not ref.name or _normal(ref.name) in map(_normal, e.get("RepoTags") or [])]
        if len(wanted) != 1:
            tags = sorted(t for e in entries for t in (e.get("RepoTags") or []))
            raise ImagePullFailedError(f"{ref}: name the image to take; the archive holds: {', '.join(tags) or 'untagged images'}")
        entry = wanted[0]
        self.members: dict[str, str] = {}
        config = self._read(entry["Config"])
        layers = []
        for member in entry["Layers"]:
            digest, size = self._digest(member)
            self.members[digest] = member
            layers.append({"mediaType": OCI_LAYER, "digest": digest, "size": size})
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        self.config = (config_digest, config)
        self.manifest_bytes = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": layers}, sort_keys=True, separators=(",", ":")).encode()

    def _member(self, name: str) -> BinaryIO:
        try:
            f = self.tar.extractfile(name)
        except KeyError:
            f = None
        if f is None:
            raise ImagePullFailedError(f"{self.ref}: {name} is missing from the archive")
        return f

    def _read(self, name: str) -> bytes:
        return self._member(name).read(4 << 20)

    def _digest(self, name: str) -> tuple[str, int]:
        f, h, size = self._member(name), hashlib.sha256(), 0
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
        return "sha256:" + h.hexdigest(), size

    def manifest(self, reference: str) -> tuple[bytes, str]:
        return self.manifest_bytes, OCI_MANIFEST

    def blob_bytes(self, digest: str, limit: int) -> bytes:
        if digest != self.config[0]:
            raise ImagePullFailedError(f"{self.ref}: no blob {digest}", digest=digest)
        return self.config[1]

    def open_layer(self, digest: str, size: int, progress: Callable[[int], None] | None) -> _CheckedFile:
        return _CheckedFile(self._member(self.members[digest]), digest, size, progress)


def _normal(name: str) -> str:
    """RepoTags and names as Docker normalises them (skopeo writes docker.io/test/two:1)."""
    try:
        return str(parse_reference(name))
    except InvalidConfigError:
        return name


def open_local(ref: LocalReference) -> OciLayoutSource | DockerArchiveSource:
    return OciLayoutSource(ref) if ref.transport == "oci" else DockerArchiveSource(ref)
