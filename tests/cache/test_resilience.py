"""Pulls under stress: auth, a connection cut mid-blob, a pull killed with SIGKILL, and four
processes pulling one image at once."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from microsandbox import Image, ImagePullFailedError, StorageError
from microsandbox.cache import Cache
from tests.oci_fixtures import Registry, free_port, need, push, run_registry


@pytest.fixture
def auth_registry(oci_layout: Path, tmp_path: Path) -> Iterator[Registry]:
    need("htpasswd")
    users = tmp_path / "htpasswd"
    users.write_text(subprocess.run(["htpasswd", "-Bbn", "alice", "s3cret"], capture_output=True, text=True,
                                    check=True).stdout)
    with run_registry(tmp_path / "auth-registry", htpasswd=users) as reg:
        push(oci_layout, "busybox", reg, "private/busybox:1", creds="alice:s3cret")
        yield reg


def test_basic_auth(auth_registry: Registry, msb_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = f"{auth_registry.host}/private/busybox:1"
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    with pytest.raises(ImagePullFailedError, match="needs credentials"):
        asyncio.run(Image.pull(ref))
    with pytest.raises(ImagePullFailedError, match="authentication failed"):
        asyncio.run(Image.pull(ref, auth=("alice", "wrong")))
    assert asyncio.run(Image.pull(ref, auth=("alice", "s3cret"))).layer_count == 1
    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / "config.json").write_text(json.dumps(
        {"auths": {auth_registry.host: {"auth": base64.b64encode(b"alice:s3cret").decode()}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    assert asyncio.run(Image.pull(ref, pull_policy="always")).layer_count == 1


class CuttingProxy:
    """Forwards 127.0.0.1 traffic to the registry, but cuts the first big blob response halfway."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rsplit(":", 1)
        self.port = free_port()
        self.cuts = 0
        self.server = socket.create_server(("127.0.0.1", self.port))
        self.server.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with client, socket.create_connection((self.upstream[0], int(self.upstream[1]))) as up:
            request = client.recv(65536)
            up.sendall(request)
            cut = self.cuts == 0 and b"/blobs/" in request and b"Range:" not in request
            sent = 0
            while True:
                data = up.recv(65536)
                if not data:
                    return
                if cut and sent + len(data) > 300_000:
                    client.sendall(data[:300_000 - sent])
                    self.cuts += 1
                    return
                client.sendall(data)
                sent += len(data)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.server.close()


def test_resumes_a_blob_cut_mid_stream(registry: Registry, msb_home: Path) -> None:
    proxy = CuttingProxy(registry.host)
    try:
        handle = asyncio.run(Image.pull(f"127.0.0.1:{proxy.port}/test/busybox:1"))
    finally:
        proxy.close()
    assert proxy.cuts == 1 and handle.layer_count == 1


def _pull_in_child(ref: str, home: Path) -> subprocess.Popen:
    code = f"import asyncio, microsandbox; asyncio.run(microsandbox.Image.pull({ref!r}))"
    return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "MSB_HOME": str(home)},
                            stderr=subprocess.PIPE)


def test_killed_pull_leaves_nothing_a_new_pull_trips_on(registry: Registry, msb_home: Path) -> None:
    ref = f"{registry.host}/test/two:1"
    layers = msb_home / "cache" / "layers"
    child = _pull_in_child(ref, msb_home)
    deadline = time.monotonic() + 20
    while not (layers.is_dir() and any(p.name.endswith(".tmp") for p in layers.iterdir())):
        assert child.poll() is None or time.monotonic() < deadline, "the pull finished before it could be killed"
        if child.poll() is not None:
            pytest.skip("the pull finished before a temp file was seen; nothing to kill")
        time.sleep(0.001)
    child.send_signal(signal.SIGKILL)
    child.wait()
    handle = asyncio.run(Image.pull(ref))
    assert handle.layer_count == 2
    assert not [p for p in layers.iterdir() if p.name.endswith(".tmp")]


def test_four_processes_pull_one_image(registry: Registry, msb_home: Path) -> None:
    ref = f"{registry.host}/test/two:1"
    children = [_pull_in_child(ref, msb_home) for _ in range(4)]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()
    index = json.loads(Cache().index_path.read_text())
    assert list(index["references"]) == [ref] and len(index["manifests"]) == 1
    layers = sorted(p.name for p in (msb_home / "cache" / "layers").iterdir())
    assert len(layers) == 2 and all(name.endswith(".erofs") for name in layers)


def _used_kib(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize // 1024


@contextlib.contextmanager
def _tmpfs(where: Path, size_kib: int) -> Iterator[None]:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "msb-full", str(where)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.mark.parametrize("short_kib", [4, 12, 36, None])
def test_a_full_disk_fails_cleanly_and_a_pull_after_freeing_space_works(
        registry: Registry, msb_home: Path, short_kib: int | None) -> None:
    """``$MSB_HOME`` on a tmpfs a little too small for the image (``short_kib`` less than a pull
    uses; ``None``: almost no room at all), so the space runs out at different artifacts (with the
    test image, measured: the index, a blob, fsmeta and a layer image). The pull fails with ``StorageError``, leaves no temp file
    and no unreadable index, and once there is room the same pull succeeds."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    ref = f"{registry.host}/test/two:1"
    with _tmpfs(msb_home, 64 << 10):
        asyncio.run(Image.pull(ref))
        needed = _used_kib(msb_home)
    with _tmpfs(msb_home, 8 if short_kib is None else needed - short_kib):
        with pytest.raises(StorageError, match="No space left on device; free some space"):
            asyncio.run(Image.pull(ref))
        assert not [p for p in msb_home.rglob("*") if p.name.endswith(".tmp")]
        Cache().read_index()   # absent or whole, never half-written
        subprocess.run(["mount", "-o", f"remount,size={needed + 64}k", str(msb_home)], check=True)
        handle = asyncio.run(Image.pull(ref))
        assert handle.layer_count == 2 and len(asyncio.run(Image.list())) == 1
        assert not [p for p in msb_home.rglob("*") if p.name.endswith(".tmp")]
