"""Image references, normalised the way Docker does it.

``python:3.12`` -> ``docker.io/library/python:3.12``; no tag means ``latest``; ``name@sha256:...``
pins a manifest digest; a first component with a dot, a colon or ``localhost`` names a registry.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidConfigError

DEFAULT_REGISTRY = "docker.io"
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]+)?$")


@dataclass(frozen=True)
class Reference:
    """A registry image reference; ``str()`` is the normalised form the cache is keyed by."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        name = f"{self.registry}/{self.repository}"
        if self.tag:
            name += f":{self.tag}"
        if self.digest:
            name += f"@{self.digest}"
        return name

    @property
    def api_host(self) -> str:
        """Where the distribution API lives (Docker Hub's API is not at docker.io)."""
        return "registry-1.docker.io" if self.registry == DEFAULT_REGISTRY else self.registry

    @property
    def manifest_ref(self) -> str:
        """What to ask ``/v2/<name>/manifests/`` for: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"


def parse_reference(text: str) -> Reference:
    """Parse and normalise ``text``; ``InvalidConfigError`` says what is wrong with it."""
    if not isinstance(text, str) or not text or text != text.strip():
        raise InvalidConfigError(f"invalid image reference {text!r}: it must be a non-empty name")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise InvalidConfigError(f"invalid image reference {text!r}: {digest!r} is not a sha256 digest")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidConfigError(f"invalid image reference {text!r}: bad tag {tag!r}")
    parts = rest.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"
                           or parts[0].startswith("[")):
        registry, path = parts[0], parts[1:]
        if not _HOST.match(registry):
            raise InvalidConfigError(f"invalid image reference {text!r}: bad registry {registry!r}")
    else:
        registry, path = DEFAULT_REGISTRY, parts
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and len(path) == 1:
        path = ["library", *path]
    for component in path:
        if not _COMPONENT.match(component):
            raise InvalidConfigError(f"invalid image reference {text!r}: {component!r} is not a valid "
                                     "repository name component (lowercase letters, digits, . _ -)")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, "/".join(path), tag, digest)


def is_loopback(host: str) -> bool:
    """Registries Docker talks to over plain HTTP without being told: localhost and 127.0.0.0/8, ::1."""
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:host.index("]")]
    return name == "localhost" or name.startswith("127.") or name == "::1"
