"""Image.pull and the cache operations against a real registry, with the seeds' exact fields."""
from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from microsandbox import (CacheCorruptError, Image, ImageNotFoundError, ImagePullFailedError, PullEvent,
                          PullPolicy)
from microsandbox.cache import Cache
from tests.layers.trees import fsck, mounted, need_root
from tests.oci_fixtures import Registry


def pull(ref: str, **kw: object):
    return asyncio.run(Image.pull(ref, **kw))


@pytest.mark.parametrize("repo", ["test/busybox", "test/busybox-v2s2"])
def test_pull_fills_every_seed_field(registry: Registry, msb_home: Path, repo: str) -> None:
    events: list[PullEvent] = []
    ref = f"{registry.host}/{repo}:1"
    handle = pull(ref, progress=events.append)
    assert handle.reference == ref and handle.layer_count == 1
    assert (handle.os, handle.architecture) == ("linux", "amd64")
    assert handle.manifest_digest.startswith("sha256:") and handle.created_at == handle.last_used_at
    detail = asyncio.run(Image.inspect(ref))
    layer = detail.layers[0]
    assert handle.size_bytes == layer.compressed_size_bytes > 0
    assert layer.erofs_size_bytes == Cache().layer_path(layer.diff_id).stat().st_size
    assert layer.position == 0 and layer.media_type.endswith(("tar+gzip", "tar.gzip"))
    cfg = detail.config
    assert cfg.env == ["GREETING=hello", "PATH=/bin:/usr/bin"] and cfg.cmd == ["/bin/sh"]
    assert (cfg.working_dir, cfg.user, cfg.stop_signal) == ("/tmp", "0:0", "SIGTERM")
    assert cfg.labels == {"org.example.kind": "test"} and cfg.entrypoint is None
    kinds = [e.kind for e in events]
    assert kinds[0] == "resolving" and kinds[-1] == "complete" and "layer_materialized" in kinds
    assert "stitched" in kinds
    fsck(Cache().layer_path(layer.diff_id))
    assert asyncio.run(Image.get(ref)) == handle


def test_pull_ends_with_a_bootable_disk(registry: Registry, msb_home: Path) -> None:
    from microsandbox.disk import probe
    from microsandbox.image_cache import rootfs_for
    handle = pull(f"{registry.host}/test/two:1")
    rootfs = rootfs_for(Cache(), handle.reference)
    assert rootfs.manifest_digest == handle.manifest_digest and len(rootfs.layers) == 2
    assert probe(rootfs.vmdk).fstype == "erofs" and rootfs.config.cmd == ["/bin/sh"]
    assert rootfs.vmdk.parent == rootfs.fsmeta.parent.parent == rootfs.layers[0].parent.parent


def test_two_layers_keep_their_whiteouts(registry: Registry, msb_home: Path, tmp_path: Path) -> None:
    ref = f"{registry.host}/test/two:1"
    detail = asyncio.run(pull(ref).inspect())
    assert [layer.position for layer in detail.layers] == [0, 1]
    top = Cache().layer_path(detail.layers[1].diff_id)
    need_root("mounting the layer")
    with mounted(top, tmp_path / "top") as mnt:
        gone = os.lstat(mnt / "etc/hostname")
        assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
        assert (mnt / "added").read_text() == "from the second layer\n"


def test_pinned_digest_and_policies(registry: Registry, msb_home: Path) -> None:
    ref = f"{registry.host}/test/busybox:1"
    with pytest.raises(ImageNotFoundError, match="pull policy is 'never'"):
        pull(ref, pull_policy=PullPolicy.NEVER)
    first = pull(ref)
    pinned = pull(f"{registry.host}/test/busybox@{first.manifest_digest}")
    assert pinned.manifest_digest == first.manifest_digest
    again = pull(ref, pull_policy="never")
    assert again.created_at == first.created_at and again.last_used_at >= first.last_used_at
    with pytest.raises(ImagePullFailedError, match="not found on"):
        pull(f"{registry.host}/test/busybox@sha256:{'1' * 64}")


def test_warm_pull_needs_no_registry(fresh_registry: Registry, msb_home: Path) -> None:
    ref = f"{fresh_registry.host}/test/two:1"
    first = pull(ref)
    fresh_registry.process.terminate()
    fresh_registry.process.wait()
    assert pull(ref).manifest_digest == first.manifest_digest
    with pytest.raises(ImagePullFailedError, match="cannot reach registry"):
        pull(ref, pull_policy="always")


def test_platforms_from_an_index(registry: Registry, msb_home: Path) -> None:
    ref = f"{registry.host}/test/multi:1"
    assert pull(ref).architecture == "amd64"
    assert pull(ref, platform="linux/arm64", pull_policy="always").architecture == "arm64"
    with pytest.raises(ImagePullFailedError, match="available: linux/amd64, linux/arm64"):
        pull(ref, platform="linux/s390x", pull_policy="always")


def test_tampered_blob_publishes_nothing(fresh_registry: Registry, msb_home: Path) -> None:
    ref = f"{fresh_registry.host}/test/two:1"
    manifest = json.loads(subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"], capture_output=True,
        check=True).stdout)
    blob = fresh_registry.blob_file(manifest["layers"][1]["digest"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(ImagePullFailedError, match=manifest["layers"][1]["digest"]):
        pull(ref)
    cache = Cache()
    assert asyncio.run(Image.list()) == []
    leftovers = [p.name for p in (cache.root / "layers").iterdir()]
    assert all(name.endswith(".erofs") for name in leftovers) and len(leftovers) <= 1


def test_list_remove_and_prune(registry: Registry, msb_home: Path) -> None:
    names = [f"{registry.host}/test/busybox:1", f"{registry.host}/test/two:1", f"{registry.host}/test/busybox-v2s2:1"]
    for name in names:
        pull(name)
    listed = asyncio.run(Image.list())
    assert [h.reference for h in listed] == names[::-1]
    asyncio.run(Image.remove(names[0]))
    with pytest.raises(ImageNotFoundError):
        asyncio.run(Image.get(names[0]))
    layers_dir = Cache().root / "layers"
    before = {p: p.stat().st_blocks * 512 for p in layers_dir.iterdir()}
    report = asyncio.run(Image.prune())
    # remove() already dropped the first manifest (no other reference used it)
    assert report.image_refs_removed == 2 and report.manifests_removed == 2
    assert report.fsmeta_removed == report.vmdk_removed == 3
    # busybox:1 and two:1 may or may not share their base layer (umoci's tar of the same tree);
    # either way every layer file on disk must go
    assert report.layers_removed == len(before) and len(before) in (2, 3)
    assert report.bytes_reclaimed >= sum(before.values())
    assert list(layers_dir.iterdir()) == [] and asyncio.run(Image.list()) == []
    assert list((Cache().root / "blobs" / "sha256").iterdir()) == []


def test_sandbox_records_keep_images(registry: Registry, msb_home: Path) -> None:
    from microsandbox import ImageInUseError
    handle = pull(f"{registry.host}/test/busybox:1")
    record = msb_home / "sandboxes" / "api" / "sandbox.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"name": "api", "manifest_digest": handle.manifest_digest}))
    with pytest.raises(ImageInUseError, match="api"):
        asyncio.run(handle.remove())
    assert asyncio.run(Image.prune()).image_refs_removed == 0
    asyncio.run(handle.remove(force=True))


def test_corrupt_index_is_reported_and_rebuilt(registry: Registry, msb_home: Path) -> None:
    handle = pull(f"{registry.host}/test/two:1")
    index = Cache().index_path
    index.write_text("{ not json")
    with pytest.raises(CacheCorruptError, match="rebuild-index"):
        asyncio.run(Image.list())
    assert Cache().rebuild_index() == {"manifests": 1, "configs": 1}
    assert asyncio.run(Image.list()) == []
    assert handle.manifest_digest in json.loads(index.read_text())["manifests"]
