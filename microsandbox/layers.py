"""Layer materialization: an OCI layer (gzip, zstd or plain tar) becomes one EROFS image.

``convert_layer`` streams the layer through the Cython converter in one pass (see
``microsandbox/_core/tarstream.pyx``) into a temp file beside ``dest``, checks the digests it was
given, then fsyncs and renames: ``dest`` appears complete or not at all.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import BinaryIO

from ._core import tarstream
from ._core.erofs import Node
from .errors import InvalidLayerError
from .fsutil import atomic_output


@dataclass(frozen=True)
class LayerResult:
    """What converting one layer produced and proved."""

    diff_id: str
    """sha256 of the uncompressed tar (the OCI config's ``rootfs.diff_ids`` entry)."""
    compressed_digest: str
    compressed_size: int
    uncompressed_size: int
    erofs_size: int
    entries: int
    compression: str
    """``gzip``, ``zstd`` or ``tar`` (uncompressed), from the stream's magic bytes."""
    skipped_xattrs: int
    """Extended attributes whose namespace EROFS cannot store (not user/trusted/security/ACL)."""
    tree: tuple[Node, int] = field(repr=False, compare=False)
    """The image's metadata as written (root ``Node``, image size in blocks): what
    ``compose_image`` would otherwise read back from the file."""

    def facts(self) -> dict[str, str | int]:
        """Digests, sizes and counts as plain values (what ``msb erofs from-tar --json`` prints)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "tree"}


Source = str | os.PathLike[str] | int | BinaryIO


def convert_layer(src: Source, dest: str | os.PathLike[str], *, expected_diff_id: str | None = None,
                  expected_digest: str | None = None) -> LayerResult:
    """Convert the layer read from ``src`` (a path, an open fd, or a binary file object read with
    ``readinto``) into the EROFS image ``dest``.

    Raises ``InvalidLayerError`` for a corrupt, truncated or hostile stream or a digest mismatch,
    ``StorageError`` when the image cannot be written; in every failure nothing appears at ``dest``.
    """
    with _reader(src) as reader, atomic_output(Path(dest)) as out:
        facts = tarstream.convert(reader, out.fileno())
        result = LayerResult(
            diff_id=facts["diff_id"], compressed_digest=facts["compressed_digest"],
            compressed_size=facts["compressed_size"], uncompressed_size=facts["uncompressed_size"],
            erofs_size=facts["erofs_size"], entries=facts["entries"], compression=facts["kind"],
            skipped_xattrs=facts["skipped_xattrs"], tree=facts["tree"])
        if expected_digest is not None and result.compressed_digest != expected_digest:
            raise InvalidLayerError(f"layer blob digest is {result.compressed_digest}, expected "
                                    f"{expected_digest}", digest=expected_digest)
        if expected_diff_id is not None and result.diff_id != expected_diff_id:
            raise InvalidLayerError(f"layer diff_id is {result.diff_id}, but the image config says "
                                    f"{expected_diff_id}", diff_id=expected_diff_id)
    return result


class _reader:
    """Context manager giving a ``readinto`` source for a path, an fd or a file object."""

    def __init__(self, src: Source) -> None:
        self._src, self._owned = src, None

    def __enter__(self) -> BinaryIO:
        if isinstance(self._src, int):
            self._owned = io.FileIO(self._src, "rb", closefd=False)
            return self._owned
        if isinstance(self._src, (str, os.PathLike)):
            try:
                self._owned = io.FileIO(os.fspath(self._src), "rb")
            except OSError as exc:
                raise InvalidLayerError(f"cannot open layer {self._src}: {exc.strerror}",
                                        path=os.fspath(self._src)) from None
            return self._owned
        return self._src

    def __exit__(self, *exc: object) -> None:
        if self._owned is not None:
            self._owned.close()
