"""Mutated layer images, as ``msb erofs compose`` may be handed: composing answers with a disk or
an InvalidLayerError, nothing else, and publishes nothing when it refuses."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microsandbox import InvalidLayerError
from microsandbox.compose import compose_image
from microsandbox.layers import convert_layer
from tests.layers.trees import fsck, need, stitch
from tests.rootfs import pack


@pytest.fixture(scope="module")
def seed(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real layer image (the busybox root: links, a device, xattrs)."""
    need("bsdtar", "fsck.erofs")
    work = tmp_path_factory.mktemp("image-fuzz")
    image = work / "root.erofs"
    convert_layer(pack("bsdtar-pax", rootfs, work / "root.tar"), image)
    return image


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_images_fail_cleanly(seed: Path, tmp_path: Path, data: st.DataObject) -> None:
    blob = bytearray(seed.read_bytes())
    meta_at = int.from_bytes(blob[1024 + 40:1024 + 44], "little") * 4096
    # Mostly the superblock and the metadata area, where the reader's decisions come from.
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.one_of(st.integers(1024, 1024 + 127), st.integers(meta_at, len(blob) - 1)))
        blob[at] = data.draw(st.integers(0, 255))
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    layer = work / "layers" / "layer.erofs"
    layer.parent.mkdir()
    layer.write_bytes(bytes(blob))
    out = work / "out"
    try:
        compose_image([layer], out / "f.erofs", work / "d.vmdk")
    except InvalidLayerError:
        assert not out.exists() and not (work / "d.vmdk").exists()
    else:   # what was accepted must make a disk fsck.erofs accepts too
        fsck(stitch([out / "f.erofs", layer], work / "disk"))
