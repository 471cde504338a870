"""Mutated real layers: the converter answers with an image or an InvalidLayerError, nothing else,
and never leaves a file behind when it refuses."""
from __future__ import annotations

import gzip
import io
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microsandbox import InvalidLayerError
from microsandbox.layers import convert_layer
from tests.rootfs import pack


@pytest.fixture(scope="module")
def seeds(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    work = tmp_path_factory.mktemp("fuzz-seeds")
    small = rootfs.parent / "small"
    small.mkdir(exist_ok=True)
    (small / "etc").mkdir(exist_ok=True)
    (small / "etc/passwd").write_bytes((rootfs / "etc/passwd").read_bytes())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(small, arcname=".")
    plain = buf.getvalue()
    return {"pax": plain, "gzip": gzip.compress(plain),
            "zstd": pack("gnutar-gnu-zstd", small, work / "l.zst").read_bytes()}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutations_fail_cleanly(seeds: dict[str, bytes], tmp_path: Path, data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(sorted(seeds)))
    blob = bytearray(seeds[kind])
    for _ in range(data.draw(st.integers(1, 6))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del blob[data.draw(st.integers(0, len(blob))):]
    out = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        result = convert_layer(io.BytesIO(bytes(blob)), out / "l.erofs")
    except InvalidLayerError:
        assert list(out.iterdir()) == []
    else:
        assert (out / "l.erofs").stat().st_size == result.erofs_size
