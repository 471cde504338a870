"""Building a metadata tree makes thousands of small acyclic objects; the cycle collector would
only rescan them again and again while they are built, so tree builders pause it."""
from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No automatic cycle collection inside (left as it was found on exit)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
