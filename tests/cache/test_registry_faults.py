"""A registry that misbehaves: garbage JSON, oversized manifests, redirects to blob storage, and
transient 5xx answers. A small HTTP server on 127.0.0.1 fronts the real registry."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from microsandbox import Image, ImagePullFailedError
from tests.oci_fixtures import Registry


@pytest.fixture
def faulty(registry: Registry) -> Iterator[tuple[str, dict]]:
    state = {"fail_left": 2, "redirects": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path
            if path == "/v2/":
                return self._send(200, b"{}")
            if path.startswith("/v2/garbage/manifests/"):
                return self._send(200, b"{ this is not json", {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
            if path.startswith("/v2/huge/manifests/"):
                return self._send(200, b" " * (5 << 20))
            if path.startswith("/v2/flaky/") and state["fail_left"] > 0:
                state["fail_left"] -= 1
                return self._send(503, b"busy", {"Retry-After": "0"})
            for prefix in ("/v2/flaky/", "/v2/redirect/"):
                if path.startswith(prefix):
                    state["redirects"] += prefix == "/v2/redirect/"
                    target = f"http://{registry.host}/v2/test/busybox/" + path[len(prefix):]
                    return self._send(307, b"", {"Location": target})
            return self._send(404, b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def pull(ref: str):
    return asyncio.run(Image.pull(ref))


def test_garbage_json_is_a_clear_error(faulty: tuple[str, dict], msb_home: Path) -> None:
    host, _ = faulty
    with pytest.raises(ImagePullFailedError, match="not valid JSON"):
        pull(f"{host}/garbage:1")
    assert asyncio.run(Image.list()) == []


def test_oversized_manifest_is_refused(faulty: tuple[str, dict], msb_home: Path) -> None:
    host, _ = faulty
    with pytest.raises(ImagePullFailedError, match="larger than"):
        pull(f"{host}/huge:1")


def test_redirects_are_followed(faulty: tuple[str, dict], msb_home: Path) -> None:
    host, state = faulty
    assert pull(f"{host}/redirect:1").layer_count == 1
    assert state["redirects"] >= 3   # manifest, config and layer all came through redirects


def test_transient_errors_are_retried(faulty: tuple[str, dict], msb_home: Path) -> None:
    host, state = faulty
    assert pull(f"{host}/flaky:1").layer_count == 1
    assert state["fail_left"] == 0
