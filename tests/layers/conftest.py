"""The busybox root the layer tests pack in several ways, built once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.rootfs import BUSYBOX, build_root


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not BUSYBOX.exists():
        pytest.skip("busybox-static is not installed (make installs it)")
    return build_root(tmp_path_factory.mktemp("rootfs") / "root")
