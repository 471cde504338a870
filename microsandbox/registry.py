"""A client for the OCI distribution API on the standard library alone.

It negotiates anonymous bearer tokens and Basic auth from ``WWW-Authenticate`` challenges, follows
redirects to blob storage (dropping ``Authorization`` when the host changes), retries 429/5xx and
dropped connections with backoff, and resumes a blob that breaks off mid-stream with ``Range``.
Loopback registries are spoken to over HTTP, others over HTTPS unless listed in
``MSB_INSECURE_REGISTRIES``.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from .errors import ImagePullFailedError
from .reference import Reference, is_loopback

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_RETRY_STATUS = {429, 500, 502, 503, 504}
_BACKOFF = (0.2, 0.6, 1.5)
_MAX_MANIFEST = 4 << 20
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_NETWORK_ERRORS = (OSError, http.client.HTTPException)


def _insecure_hosts() -> set[str]:
    return {h.strip() for h in os.environ.get("MSB_INSECURE_REGISTRIES", "").split(",") if h.strip()}


def docker_config_auth(host: str) -> tuple[str, str] | None:
    """``user:pass`` for ``host`` from Docker's config.json (``$DOCKER_CONFIG`` or ``~/.docker``)."""
    folder = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker"))
    try:
        auths = json.loads((folder / "config.json").read_text()).get("auths", {})
    except (OSError, ValueError, AttributeError):
        return None
    for key in (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/"):
        entry = auths.get(key)
        if isinstance(entry, dict) and entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return user, password
    return None


class RegistryClient:
    """One repository on one registry; safe to share between threads for blob reads."""

    def __init__(self, ref: Reference, *, auth: tuple[str, str] | None = None, timeout: float = 60.0) -> None:
        self.ref = ref
        host = ref.api_host
        self.secure = not (is_loopback(host) or host in _insecure_hosts())
        self.base = f"{'https' if self.secure else 'http'}://{host}/v2/{ref.repository}"
        self.credentials = auth or docker_config_auth(ref.registry)
        self.timeout = timeout
        self._authorization: str | None = None

    # -- public calls ---------------------------------------------------------------------------

    def manifest(self, reference: str) -> tuple[bytes, str]:
        """The manifest or index body and its media type."""
        resp = self._request("GET", f"{self.base}/manifests/{reference}",
                             {"Accept": ", ".join(MANIFEST_TYPES)}, what=f"manifest {reference}")
        body = _read_bounded(resp, _MAX_MANIFEST, f"manifest {reference}")
        media = resp.getheader("Content-Type", "").split(";")[0].strip()
        return body, media

    def blob_bytes(self, digest: str, limit: int) -> bytes:
        """A small blob (an image config) read whole."""
        return _read_bounded(self.open_blob(digest), limit, f"blob {digest}")

    def open_blob(self, digest: str, offset: int = 0) -> http.client.HTTPResponse:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self._request("GET", f"{self.base}/blobs/{digest}", headers, what=f"blob {digest}")
        if offset and resp.status != 206:
            resp.close()
            raise ImagePullFailedError(f"registry {self.ref.registry} cannot resume blob {digest} "
                                       f"at byte {offset} (no Range support)", digest=digest)
        return resp

    def open_layer(self, digest: str, size: int, progress: Callable[[int], None] | None) -> BlobReader:
        """A layer blob as a resuming ``readinto`` stream."""
        return BlobReader(self, digest, size, progress)

    # -- transport --------------------------------------------------------------------------------

    def _request(self, method: str, url: str, headers: dict[str, str], *, what: str) -> http.client.HTTPResponse:
        """Send with auth, redirects and retries; returns a 2xx response whose body is unread."""
        attempt = 0
        authed = False
        while True:
            try:
                resp = self._follow(method, url, headers)
            except _NETWORK_ERRORS as exc:
                if attempt >= len(_BACKOFF):
                    raise ImagePullFailedError(f"cannot reach registry {self.ref.registry} for {what}: {exc}",
                                               reference=str(self.ref)) from None
                time.sleep(_BACKOFF[attempt])
                attempt += 1
                continue
            if resp.status == 401 and not authed:
                challenge = resp.getheader("WWW-Authenticate", "")
                resp.read()
                self._authorize(challenge)
                authed = True
                continue
            if resp.status in _RETRY_STATUS and attempt < len(_BACKOFF):
                resp.read()
                delay = _retry_after(resp) or _BACKOFF[attempt]
                time.sleep(min(delay, 10.0))
                attempt += 1
                continue
            if 200 <= resp.status < 300:
                return resp
            resp.read()
            raise ImagePullFailedError(_status_message(resp.status, self.ref, what), reference=str(self.ref),
                                       status=resp.status)

    def _follow(self, method: str, url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        """One request, following up to five redirects; ``Authorization`` stays on its own host."""
        origin = urllib.parse.urlsplit(url).netloc
        for _ in range(6):
            parts = urllib.parse.urlsplit(url)
            send = dict(headers)
            if self._authorization and parts.netloc == origin:
                send["Authorization"] = self._authorization
            conn = self._connect(parts)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            conn.request(method, target, headers=send)
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                resp.read()
                conn.close()
                url = urllib.parse.urljoin(url, resp.getheader("Location"))
                continue
            return resp
        raise ImagePullFailedError(f"registry {self.ref.registry} redirected more than five times")

    def _connect(self, parts: urllib.parse.SplitResult) -> http.client.HTTPConnection:
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.netloc, timeout=self.timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(parts.netloc, timeout=self.timeout)

    def _authorize(self, challenge: str) -> None:
        scheme, _, params_text = challenge.partition(" ")
        params = dict(_CHALLENGE.findall(params_text))
        if scheme.lower() == "basic":
            if not self.credentials:
                raise ImagePullFailedError(f"registry {self.ref.registry} needs credentials: pass auth= or "
                                           "log in with docker login", reference=str(self.ref))
            self._authorization = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
            return
        if scheme.lower() != "bearer" or "realm" not in params:
            raise ImagePullFailedError(f"registry {self.ref.registry} asks for unsupported auth {challenge!r}")
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        query.setdefault("scope", f"repository:{self.ref.repository}:pull")
        url = params["realm"] + ("&" if "?" in params["realm"] else "?") + urllib.parse.urlencode(query)
        headers = {}
        if self.credentials:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
        parts = urllib.parse.urlsplit(url)
        try:
            conn = self._connect(parts)
            conn.request("GET", parts.path + "?" + parts.query, headers=headers)
            resp = conn.getresponse()
            body = resp.read(1 << 20)
        except _NETWORK_ERRORS as exc:
            raise ImagePullFailedError(f"cannot reach the token service of {self.ref.registry}: {exc}") from None
        if resp.status != 200:
            raise ImagePullFailedError(f"authentication failed for {self.ref.registry}: the token service "
                                       f"answered {resp.status}", reference=str(self.ref), status=resp.status)
        try:
            token = json.loads(body).get("token") or json.loads(body).get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not token:
            raise ImagePullFailedError(f"the token service of {self.ref.registry} returned no token")
        self._authorization = f"Bearer {token}"


class BlobReader:
    """A blob as a ``readinto`` stream that reconnects with ``Range`` when the connection drops."""

    def __init__(self, client: RegistryClient, digest: str, size: int,
                 progress: Callable[[int], None] | None = None) -> None:
        self.client, self.digest, self.size, self.progress = client, digest, size, progress
        self.pos = 0
        self.resumes = 0
        self._resp = client.open_blob(digest)

    def readinto(self, buf: memoryview) -> int:
        while True:
            try:
                n = self._resp.readinto(buf)
            except (socket.timeout, *_NETWORK_ERRORS):
                n = -1
            if n > 0:
                self.pos += n
                if self.pos > self.size:
                    raise ImagePullFailedError(f"blob {self.digest} is longer than its descriptor says "
                                               f"({self.size} bytes)", digest=self.digest)
                if self.progress:
                    self.progress(n)
                return n
            if n == 0 and self.pos >= self.size:
                return 0
            self._resume()

    def _resume(self) -> None:
        self.resumes += 1
        if self.resumes > 5:
            raise ImagePullFailedError(f"blob {self.digest} kept breaking off at byte {self.pos}",
                                       digest=self.digest)
        self._resp.close()
        time.sleep(_BACKOFF[min(self.resumes - 1, len(_BACKOFF) - 1)])
        self._resp = self.client.open_blob(self.digest, self.pos)

    def close(self) -> None:
        self._resp.close()


def _read_bounded(resp: http.client.HTTPResponse, limit: int, what: str) -> bytes:
    try:
        body = resp.read(limit + 1)
    except _NETWORK_ERRORS as exc:
        raise ImagePullFailedError(f"connection lost while reading {what}: {exc}") from None
    if len(body) > limit:
        raise ImagePullFailedError(f"{what} is larger than {limit} bytes; refusing it")
    return body


def _retry_after(resp: http.client.HTTPResponse) -> float | None:
    try:
        return float(resp.getheader("Retry-After", ""))
    except ValueError:
        return None


def _status_message(status: int, ref: Reference, what: str) -> str:
    if status in (401, 403):
        return f"authentication failed for {ref.registry} ({status}) fetching {what}: check the credentials"
    if status == 404:
        return f"{ref} not found on {ref.registry} ({what})"
    return f"registry {ref.registry} answered {status} for {what}"
