"""Real OCI parts for tests: the distribution registry on 127.0.0.1, images built by umoci, pushed
by skopeo. Reused by the cache, registry and sandbox tests."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)} (make installs them from system-packages.txt)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Registry:
    host: str
    storage: Path
    process: subprocess.Popen

    def blob_file(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


@contextlib.contextmanager
def run_registry(work: Path, *, htpasswd: Path | None = None) -> Iterator[Registry]:
    """``docker-registry serve`` with a generated config; stopped (and waited for) on exit."""
    need("docker-registry")
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    storage = work / "storage"
    auth = (f"auth:\n  htpasswd:\n    realm: msb-test\n    path: {htpasswd}\n" if htpasswd else "")
    config = work / "config.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n"
                      f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=open(work / "registry.log", "wb"))
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # 401 with auth: it is up
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"registry did not start: {(work / 'registry.log').read_text()}")
                time.sleep(0.05)
        yield Registry(f"127.0.0.1:{port}", storage, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def umoci_image(layout: Path, tag: str, rootfs_layers: list[Path], *, config: list[str] = (),
                arch: str | None = None) -> None:
    """An image in the OCI layout at ``layout`` whose layers are the successive states of the
    given folders (umoci records deletions between states as whiteouts)."""
    need("umoci")
    if os.geteuid() != 0:
        pytest.skip("umoci unpack/repack of a root-owned tree needs root")
    if not layout.exists():
        subprocess.run(["umoci", "init", "--layout", str(layout)], check=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:{tag}"], check=True)
    bundle = layout.parent / f"bundle-{tag}"
    shutil.rmtree(bundle, ignore_errors=True)
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)], check=True, capture_output=True)
    for state in rootfs_layers:
        subprocess.run(["rsync", "-aHAX", "--delete", f"{state}/", str(bundle / "rootfs") + "/"], check=True)
        subprocess.run(["umoci", "repack", "--refresh-bundle", "--image", f"{layout}:{tag}", str(bundle)],
                       check=True, capture_output=True)
    args = list(config) + ([f"--architecture={arch}"] if arch else [])
    if args:
        subprocess.run(["umoci", "config", "--image", f"{layout}:{tag}", *args], check=True, capture_output=True)
    shutil.rmtree(bundle)


def push(layout: Path, tag: str, registry: Registry, repo: str, *, v2s2: bool = False,
         creds: str | None = None, all_platforms: bool = False) -> None:
    need("skopeo")
    cmd = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
    if v2s2:
        cmd += ["--format", "v2s2"]
    if creds:
        cmd += ["--dest-creds", creds]
    if all_platforms:
        cmd += ["--all"]
    subprocess.run(cmd + [f"oci:{layout}:{tag}", f"docker://{registry.host}/{repo}"], check=True,
                   capture_output=True)


def multi_platform_index(layout: Path, tags: dict[str, str], new_tag: str) -> None:
    """Add ``new_tag`` to the layout: an image index over the manifests tagged ``tags``
    (tag -> "os/arch"), as a multi-platform image is published."""
    top = json.loads((layout / "index.json").read_text())
    by_tag = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in top["manifests"]}
    manifests = []
    for tag, plat in tags.items():
        desc = dict(by_tag[tag])
        desc.pop("annotations", None)
        os_name, arch = plat.split("/")
        desc["platform"] = {"os": os_name, "architecture": arch}
        manifests.append(desc)
    body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": manifests}).encode()
    import hashlib
    digest = hashlib.sha256(body).hexdigest()
    (layout / "blobs/sha256" / digest).write_bytes(body)
    top["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": f"sha256:{digest}",
                             "size": len(body), "annotations": {"org.opencontainers.image.ref.name": new_tag}})
    (layout / "index.json").write_text(json.dumps(top))
