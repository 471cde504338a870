"""Fixtures shared by every test area, among them a registry on 127.0.0.1 holding images umoci
built from a busybox-static root and pushed by skopeo."""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rootfs import BUSYBOX, build_root
from tests.oci_fixtures import Registry, multi_platform_index, push, run_registry, umoci_image


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox root with hard links, a device, a file capability and odd names, built once."""
    if not BUSYBOX.exists():
        pytest.skip("busybox-static is not installed (make installs it)")
    return build_root(tmp_path_factory.mktemp("rootfs") / "root")


@pytest.fixture
def msb_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private ``$MSB_HOME`` so tests never touch the user's cache."""
    home = tmp_path / "msb-home"
    home.mkdir()
    monkeypatch.setenv("MSB_HOME", str(home))
    yield home


CONFIG = ["--config.env=GREETING=hello", "--config.env=PATH=/bin:/usr/bin", "--config.cmd=/bin/sh",
          "--config.workingdir=/tmp", "--config.user=0:0", "--config.label=org.example.kind=test",
          "--config.stopsignal=SIGTERM"]


@pytest.fixture(scope="session")
def oci_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tags: busybox (1 layer), two (a second layer deleting etc/hostname and adding /added),
    amd and arm (one layer each, for a two-platform index ``multi``)."""
    if not BUSYBOX.exists():
        pytest.skip("busybox-static is not installed (make installs it)")
    work = tmp_path_factory.mktemp("oci")
    base = build_root(work / "base")
    second = work / "second"
    subprocess.run(["cp", "-a", str(base), str(second)], check=True)
    (second / "etc/hostname").unlink()
    (second / "usr/bin/hostname-link").unlink()
    (second / "added").write_text("from the second layer\n")
    layout = work / "layout"
    umoci_image(layout, "busybox", [base], config=CONFIG)
    umoci_image(layout, "two", [base, second], config=CONFIG)
    umoci_image(layout, "amd", [base], arch="amd64")
    umoci_image(layout, "arm", [second], arch="arm64")
    multi_platform_index(layout, {"amd": "linux/amd64", "arm": "linux/arm64"}, "multi")
    return layout


@pytest.fixture(scope="session")
def registry(oci_layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("registry")) as reg:
        push(oci_layout, "busybox", reg, "test/busybox:1")
        push(oci_layout, "busybox", reg, "test/busybox-v2s2:1", v2s2=True)
        push(oci_layout, "two", reg, "test/two:1")
        push(oci_layout, "multi", reg, "test/multi:1", all_platforms=True)
        yield reg


@pytest.fixture
def fresh_registry(oci_layout: Path, tmp_path: Path) -> Iterator[Registry]:
    """A registry of the test's own, for tests that damage or stop it."""
    with run_registry(tmp_path / "own-registry") as reg:
        push(oci_layout, "two", reg, "test/two:1")
        yield reg
