"""Session fixtures: a folder of disk images and a base ext4 file system."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.disk.images import make_fs, need


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("qemu-img")
    return tmp_path_factory.mktemp("disks")


@pytest.fixture(scope="session")
def ext4_raw(images: Path) -> Path:
    need("mkfs.ext4")
    return make_fs("ext4", images / "base-ext4.raw", 32)
