"""``oci:PATH[:TAG]`` and ``docker-archive:PATH[:REF]`` pull into the same cache as a registry."""
from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from microsandbox import Image, ImagePullFailedError
from microsandbox.cache import Cache
from microsandbox.image_cache import rootfs_for
from tests.oci_fixtures import Registry, need


def pull(ref: str, **kw):
    return asyncio.run(Image.pull(ref, **kw))


def test_oci_layout(oci_layout: Path, registry: Registry, msb_home: Path) -> None:
    local = pull(f"oci:{oci_layout}:two")
    assert local.reference == f"oci:{oci_layout}:two" and local.layer_count == 2
    remote = pull(f"{registry.host}/test/two:1")
    local_layers = [layer.diff_id for layer in asyncio.run(Image.inspect(local.reference)).layers]
    assert local_layers == [layer.diff_id for layer in asyncio.run(Image.inspect(remote.reference)).layers]
    assert rootfs_for(Cache(), local.reference).vmdk.exists()
    assert pull(f"oci:{oci_layout}:multi", platform="linux/arm64").architecture == "arm64"
    with pytest.raises(ImagePullFailedError, match="no image named nope"):
        pull(f"oci:{oci_layout}:nope")
    with pytest.raises(ImagePullFailedError, match="not a readable OCI image layout"):
        pull(f"oci:{msb_home}/missing:x")


def test_docker_archive(oci_layout: Path, msb_home: Path, tmp_path: Path) -> None:
    need("skopeo")
    archive = tmp_path / "saved.tar"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{oci_layout}:two", f"docker-archive:{archive}:test/two:1"],
                   check=True)
    handle = pull(f"docker-archive:{archive}")
    again = pull(f"docker-archive:{archive}:test/two:1")
    assert handle.layer_count == again.layer_count == 2
    assert handle.manifest_digest == again.manifest_digest   # the derived manifest is deterministic
    detail = asyncio.run(Image.inspect(handle.reference))
    assert detail.config.cmd == ["/bin/sh"] and all(layer.erofs_size_bytes for layer in detail.layers)
    oci = pull(f"oci:{oci_layout}:two")
    assert [layer.diff_id for layer in detail.layers] == \
        [layer.diff_id for layer in asyncio.run(Image.inspect(oci.reference)).layers]
    with pytest.raises(ImagePullFailedError, match="name the image"):
        pull(f"docker-archive:{archive}:other/name:2")
