"""Benchmarks run our code and the tool a user would otherwise use, side by side, in one run."""
from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long-running benchmark")
