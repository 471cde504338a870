"""``make demo``: the main job end to end, one named step at a time.

Each step prints what it did; any failure stops the demo with a non-zero exit status, and every
temporary file is removed.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .cache import Cache
from .disk import probe
from .errors import MicrosandboxError
from .image import Image
from .image_cache import rootfs_for
from .sandbox.api import Sandbox

Step = Callable[[Path], str]


def build_disk_image(work: Path) -> str:
    """A 64 MiB ext4 file system converted to a compressed qcow2 with qemu-img."""
    raw = work / "root.raw"
    with open(raw, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "msb-demo", str(raw)], check=True)
    subprocess.run(["qemu-img", "convert", "-c", "-O", "qcow2", str(raw), str(work / "root.qcow2")], check=True)
    return f"built {work / 'root.qcow2'} ({(work / 'root.qcow2').stat().st_size} bytes on disk)"


def probe_disk_image(work: Path) -> str:
    """Read the qcow2 natively: container, virtual size and the ext4 inside it."""
    info = probe(work / "root.qcow2")
    if (info.format, info.fstype) != ("qcow2", "ext4"):
        raise RuntimeError(f"probe found {info}, expected an ext4 qcow2")
    return f"{info.format}, {info.virtual_size >> 20} MiB virtual, {info.fstype} on the whole disk"


def build_oci_image(work: Path) -> str:
    """A busybox-static root packed into an OCI image layout by umoci."""
    root = work / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy2("/bin/busybox", root / "bin/busybox")
    os.symlink("busybox", root / "bin/sh")
    (root / "etc/os-release").write_text('PRETTY_NAME="microsandbox demo (busybox)"\n')
    layout, bundle = work / "layout", work / "bundle"
    rootless = [] if os.geteuid() == 0 else ["--rootless"]
    _run("umoci", "init", "--layout", layout)
    _run("umoci", "new", "--image", f"{layout}:demo")
    _run("umoci", "unpack", *rootless, "--image", f"{layout}:demo", bundle)
    _run("cp", "-a", f"{root}/.", bundle / "rootfs")
    _run("umoci", "repack", "--image", f"{layout}:demo", bundle)
    _run("umoci", "config", "--image", f"{layout}:demo", "--config.cmd=/bin/sh", "--config.env=DEMO=1")
    return f"OCI layout {layout} with tag 'demo'"


def push_to_local_registry(work: Path) -> str:
    """docker-registry on 127.0.0.1, then skopeo copy of the image into it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (work / "registry.yml").write_text(
        f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {work / 'registry'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    _REGISTRY.append(subprocess.Popen(["docker-registry", "serve", str(work / "registry.yml")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("the local registry did not start") from None
            time.sleep(0.05)
    _run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{work / 'layout'}:demo",
         f"docker://127.0.0.1:{port}/demo/busybox:1")
    _REFERENCE.append(f"127.0.0.1:{port}/demo/busybox:1")
    return f"pushed {_REFERENCE[0]}"


def pull_image(work: Path) -> str:
    """Image.pull: verify every digest, convert the layer to EROFS, stitch fsmeta + VMDK."""
    os.environ["MSB_HOME"] = str(work / "msb-home")
    handle = asyncio.run(Image.pull(_REFERENCE[0]))
    detail = asyncio.run(Image.inspect(handle.reference))
    layer = detail.layers[0]
    return (f"{handle.reference} -> {handle.manifest_digest[:19]}..., {handle.layer_count} layer, "
            f"{layer.compressed_size_bytes} bytes gzip -> {layer.erofs_size_bytes} bytes EROFS, "
            f"cmd {detail.config.cmd}")


def inspect_boot_disk(work: Path) -> str:
    """The image's stitched disk, read natively: a VMDK whose file system is EROFS."""
    rootfs = rootfs_for(Cache(), _REFERENCE[0])
    info = probe(rootfs.vmdk)
    if (info.format, info.fstype) != ("vmdk", "erofs"):
        raise RuntimeError(f"the boot disk probes as {info}")
    said = f"{rootfs.vmdk.name}: {info.virtual_size} bytes, {info.fstype} root"
    if os.geteuid() == 0:
        mnt = work / "mnt"
        mnt.mkdir()
        _run("mount", "-t", "erofs", "-o", "loop,ro", rootfs.layers[0], mnt)
        try:
            said += f"; the kernel reads /etc/os-release: {(mnt / 'etc/os-release').read_text().strip()}"
        finally:
            _run("umount", mnt)
    return said


def run_in_a_sandbox(work: Path) -> str:
    """Sandbox.create from the pulled image and exec a command in it (namespace backend: this
    kind of host has no hardware KVM for the microVM)."""
    if os.geteuid() != 0:
        return "skipped: the namespace backend needs root (loop mounts, overlayfs, runc)"

    async def go() -> str:
        async with await Sandbox.create("demo", image=_REFERENCE[0], isolation="namespace") as sb:
            out = await sb.exec("sh", ["-c", "cat /etc/os-release; echo DEMO=$DEMO; exit 3"])
        if out.exit_code != 3 or "DEMO=1" not in out.stdout_text:
            raise RuntimeError(f"unexpected result {out}")
        return f"exit {out.exit_code}, stdout: {out.stdout_text.strip()!r}"

    return asyncio.run(go())


def _run(*cmd: object) -> None:
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True)


_REGISTRY: list[subprocess.Popen] = []
_REFERENCE: list[str] = []

STEPS: list[Step] = [build_disk_image, probe_disk_image, build_oci_image, push_to_local_registry, pull_image,
                     inspect_boot_disk, run_in_a_sandbox]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="msb-demo-") as tmp:
        work = Path(tmp)
        try:
            for step in STEPS:
                started = time.perf_counter()
                try:
                    said = step(work)
                except (MicrosandboxError, RuntimeError, OSError, subprocess.CalledProcessError) as exc:
                    detail = getattr(exc, "stderr", b"") or b""
                    print(f"demo: {step.__name__} failed: {exc} {detail.decode(errors='replace').strip()}",
                          file=sys.stderr)
                    return 1
                print(f"[{step.__name__}] {said} ({(time.perf_counter() - started) * 1000:.1f} ms)")
        finally:
            for proc in _REGISTRY:
                proc.terminate()
                proc.wait()
    print("demo: all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
