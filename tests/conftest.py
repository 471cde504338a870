"""Fixtures shared by every test area."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def msb_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private ``$MSB_HOME`` so tests never touch the user's cache."""
    home = tmp_path / "msb-home"
    home.mkdir()
    monkeypatch.setenv("MSB_HOME", str(home))
    yield home
