"""Pull orchestration: reference -> verified manifest and config -> one EROFS image per layer.

Every byte is proved before it is published: manifest bytes against the digest asked for (or the
index's descriptor), the config against the manifest, each layer blob against its descriptor and
its uncompressed stream against the config's ``diff_id`` (both hashed by the converter as it
streams the blob straight from the registry). Layers convert in parallel; a layer already cached
by ``diff_id`` is never fetched again.
"""
from __future__ import annotations

import hashlib
import json
import platform as host_platform
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ._core.erofs import Node
from .cache import Cache, config_record, manifest_record, now_ms
from .compose import compose_image
from .errors import ImageNotFoundError, ImagePullFailedError, InvalidLayerError, MicrosandboxError
from .image_types import ImageHandle, PullPolicy
from .layers import convert_layer
from .reference import Reference, parse_reference
from .registry import RegistryClient
from .transports import DockerArchiveSource, LocalReference, OciLayoutSource, is_local, open_local, parse_local

INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json"}
MAX_CONFIG = 4 << 20
PARALLEL_LAYERS = 3
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


@dataclass(frozen=True)
class PullEvent:
    """Progress of one pull. ``kind`` is one of: resolving, resolved, layer_cached,
    layer_download (bytes_done/bytes_total), layer_materialized, stitched (fsmeta and VMDK
    written), complete."""

    kind: str
    reference: str
    digest: str | None = None
    layer_index: int | None = None
    layer_count: int | None = None
    bytes_done: int | None = None
    bytes_total: int | None = None


Progress = Callable[[PullEvent], None]


def pull_image(reference: str, *, pull_policy: PullPolicy | str = PullPolicy.IF_MISSING,
               platform: str | None = None, auth: tuple[str, str] | None = None,
               progress: Progress | None = None, cache: Cache | None = None) -> ImageHandle:
    """Make ``reference`` ready in the cache and return its handle (see ``Image.pull``)."""
    policy = PullPolicy(pull_policy)
    ref = parse_local(reference) if is_local(reference) else parse_reference(reference)
    cache = cache or Cache()
    emit = progress or (lambda event: None)
    if policy is not PullPolicy.ALWAYS:
        handle = _cached(cache, str(ref))
        if handle is not None:
            return handle
    if policy is PullPolicy.NEVER:
        raise ImageNotFoundError(f"{ref} is not in the local cache and the pull policy is 'never'",
                                 reference=str(ref))
    cache.clean_tmp()
    emit(PullEvent("resolving", str(ref)))
    client = open_local(ref) if isinstance(ref, LocalReference) else RegistryClient(ref, auth=auth)
    manifest_digest, manifest_bytes, manifest = _resolve(client, ref, platform)
    config_digest = manifest["config"]["digest"]
    config_bytes = client.blob_bytes(config_digest, MAX_CONFIG)
    _check_digest(config_bytes, config_digest, "config")
    config = config_record(_json(config_bytes, f"config {config_digest}"))
    if len(config["diff_ids"]) != len(manifest["layers"]):
        raise ImagePullFailedError(f"{ref}: the config lists {len(config['diff_ids'])} diff_ids for "
                                   f"{len(manifest['layers'])} layers", reference=str(ref))
    record = manifest_record(manifest, config)
    emit(PullEvent("resolved", str(ref), manifest_digest, layer_count=len(record["layers"])))
    converted = _materialize_layers(cache, client, ref, record["layers"], emit)
    stitch(cache, manifest_digest, record, converted)
    emit(PullEvent("stitched", str(ref), manifest_digest))
    cache.write_blob(config_digest, config_bytes)
    cache.write_blob(manifest_digest, manifest_bytes)
    stamp = now_ms()
    with cache.edit_index() as index:
        index["configs"][config_digest] = config
        index["manifests"][manifest_digest] = record
        previous = index["references"].get(str(ref), {})
        index["references"][str(ref)] = {"manifest": manifest_digest,
                                         "created_at": previous.get("created_at", stamp),
                                         "last_used_at": stamp}
    emit(PullEvent("complete", str(ref), manifest_digest))
    return handle_from(str(ref), index["references"][str(ref)], record)


def stitch(cache: Cache, manifest_digest: str, record: dict[str, Any],
           converted: dict[str, tuple[Node, int]] | None = None) -> None:
    """fsmeta and VMDK for a manifest whose layers are cached (rebuilt when either is missing).
    ``converted`` maps the diff_ids this pull just converted to their trees."""
    fsmeta, vmdk = cache.fsmeta_path(manifest_digest), cache.vmdk_path(manifest_digest)
    if not (fsmeta.exists() and vmdk.exists()):
        converted = converted or {}
        compose_image([cache.layer_path(layer["diff_id"]) for layer in record["layers"]], fsmeta, vmdk,
                      trees=[converted.get(layer["diff_id"]) for layer in record["layers"]])


def ready(cache: Cache, manifest_digest: str, record: dict[str, Any]) -> bool:
    """Every artifact a sandbox boots from is on disk."""
    return (all(cache.layer_path(layer["diff_id"]).exists() for layer in record["layers"]) and
            cache.fsmeta_path(manifest_digest).exists() and cache.vmdk_path(manifest_digest).exists())


def _cached(cache: Cache, key: str) -> ImageHandle | None:
    """The handle when every artifact of ``key`` is on disk; touches ``last_used_at``."""
    index = cache.read_index()
    entry = index["references"].get(key)
    record = index["manifests"].get(entry["manifest"]) if entry else None
    if record is None or not ready(cache, entry["manifest"], record):
        return None
    with cache.edit_index() as index:
        entry = index["references"].get(key)
        if entry is None:
            return None
        entry["last_used_at"] = now_ms()
    return handle_from(key, entry, record)


def handle_from(key: str, entry: dict[str, Any], record: dict[str, Any]) -> ImageHandle:
    return ImageHandle(reference=key, size_bytes=record["size_bytes"], manifest_digest=entry["manifest"],
                       architecture=record.get("architecture"), os=record.get("os"),
                       layer_count=len(record["layers"]), last_used_at=entry.get("last_used_at"),
                       created_at=entry.get("created_at"))


Source = RegistryClient | OciLayoutSource | DockerArchiveSource


def _resolve(client: Source, ref: Reference | LocalReference, platform: str | None) -> tuple[str, bytes, dict]:
    """(digest, bytes, parsed) of the image manifest, choosing a platform from an index."""
    body, media = client.manifest(ref.manifest_ref)
    digest = _digest(body)
    if ref.digest and digest != ref.digest:
        raise ImagePullFailedError(f"{ref}: the registry's manifest hashes to {digest}, not the "
                                   f"pinned {ref.digest}", reference=str(ref), digest=ref.digest)
    doc = _json(body, f"manifest of {ref}")
    if media in INDEX_TYPES or "manifests" in doc:
        chosen = _choose_platform(doc, ref, platform)
        body, _ = client.manifest(chosen)
        _check_digest(body, chosen, "platform manifest")
        digest, doc = chosen, _json(body, f"manifest {chosen}")
    _validate_manifest(doc, ref)
    return digest, body, doc


def _choose_platform(index: dict, ref: Reference, wanted: str | None) -> str:
    want_os, want_arch, want_variant = _platform_triple(wanted)
    available = []
    for desc in index.get("manifests") or []:
        plat = desc.get("platform") or {}
        available.append("/".join(p for p in (plat.get("os"), plat.get("architecture"), plat.get("variant")) if p))
        if plat.get("os") == want_os and plat.get("architecture") == want_arch and \
                (want_variant is None or plat.get("variant") == want_variant):
            return desc["digest"]
    raise ImagePullFailedError(f"{ref} has no image for {want_os}/{want_arch}"
                               f"{'/' + want_variant if want_variant else ''}; available: "
                               f"{', '.join(a for a in available if a) or 'none'}; pass platform=",
                               reference=str(ref))


def _platform_triple(wanted: str | None) -> tuple[str, str, str | None]:
    if wanted:
        parts = wanted.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ImagePullFailedError(f"platform {wanted!r} is not os/arch[/variant]")
        return parts[0], parts[1], parts[2] if len(parts) == 3 else None
    machine = host_platform.machine()
    return "linux", _ARCH.get(machine, machine), None


def _validate_manifest(doc: dict, ref: Reference) -> None:
    try:
        ok = (doc.get("schemaVersion") == 2 and isinstance(doc["config"]["digest"], str) and
              all(isinstance(layer["digest"], str) and isinstance(layer.get("size"), int)
                  for layer in doc["layers"]))
    except (KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise ImagePullFailedError(f"{ref}: the registry sent a manifest that is not an OCI or Docker v2 "
                                   "image manifest", reference=str(ref))


def _materialize_layers(cache: Cache, client: Source, ref: Reference | LocalReference, layers: list[dict],
                        emit: Progress) -> dict[str, tuple[Node, int]]:
    """Convert the layers not yet cached, in parallel; returns the trees of those converted."""
    converted: dict[str, tuple[Node, int]] = {}

    def one(i: int) -> None:
        layer = layers[i]
        dest = cache.layer_path(layer["diff_id"])
        if dest.exists():
            emit(PullEvent("layer_cached", str(ref), layer["blob_digest"], i, len(layers)))
            return
        done = [0]

        def downloaded(n: int) -> None:
            done[0] += n
            emit(PullEvent("layer_download", str(ref), layer["blob_digest"], i, len(layers),
                           done[0], layer["size"]))

        reader = client.open_layer(layer["blob_digest"], layer["size"], downloaded)
        try:
            result = convert_layer(reader, dest, expected_digest=layer["blob_digest"],
                                   expected_diff_id=layer["diff_id"])
        except InvalidLayerError as exc:
            raise ImagePullFailedError(f"{ref}: layer {layer['blob_digest']}: {exc}", reference=str(ref),
                                       digest=layer["blob_digest"]) from None
        finally:
            reader.close()
        converted[layer["diff_id"]] = result.tree
        emit(PullEvent("layer_materialized", str(ref), layer["blob_digest"], i, len(layers)))

    with ThreadPoolExecutor(max_workers=PARALLEL_LAYERS) as pool:
        futures = [pool.submit(one, i) for i in range(len(layers))]
        errors = [f.exception() for f in futures]
    for error in errors:
        if isinstance(error, MicrosandboxError):
            raise error
        if error is not None:
            raise ImagePullFailedError(f"{ref}: {error}", reference=str(ref)) from error
    return converted


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _check_digest(data: bytes, expected: str, what: str) -> None:
    actual = _digest(data)
    if actual != expected:
        raise ImagePullFailedError(f"{what} hashes to {actual}, not {expected}: the registry sent "
                                   "different bytes", digest=expected)


def _json(data: bytes, what: str) -> dict:
    try:
        doc = json.loads(data)
    except ValueError:
        raise ImagePullFailedError(f"{what} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ImagePullFailedError(f"{what} is not a JSON object")
    return doc
