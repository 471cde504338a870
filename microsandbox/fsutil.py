"""Atomic publication: a file appears complete (fsynced, renamed, directory fsynced) or not at all."""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import StorageError


@contextlib.contextmanager
def atomic_output(dest: Path) -> Iterator[BinaryIO]:
    """A temp file beside ``dest``; on a clean exit it is fsynced and renamed over ``dest``.

    On any exception the temp file is removed and ``dest`` is left as it was. An ``OSError`` while
    creating, writing, syncing or renaming (a full disk, a read-only or failing file system) becomes
    a ``StorageError`` naming ``dest``.
    """
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=dest.parent)
    except OSError as exc:
        raise storage_error(dest, exc) from None
    try:
        with os.fdopen(fd, "w+b") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise storage_error(dest, exc) from None
        raise


def storage_error(path: Path, exc: OSError) -> StorageError:
    """What a user reads when ``path`` could not be written: the path and the system's reason."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += "; free some space there (`msb image prune` removes images no sandbox uses)"
    return StorageError(f"cannot write {path}: {reason}", path=str(path), errno=exc.errno or errno.EIO)


TMP_SUFFIX = ".tmp"


def orphaned_temp(path: Path) -> bool:
    """True for an ``atomic_output`` temp file whose writing process no longer exists."""
    parts = path.name.split(".")
    if not (path.name.startswith(".") and path.name.endswith(TMP_SUFFIX) and len(parts) >= 4):
        return False
    try:
        pid = int(parts[-3])
    except ValueError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
