"""Real root trees and layers for tests and benchmarks: a busybox-static root, packed by GNU tar,
bsdtar or umoci."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

BUSYBOX = Path("/bin/busybox")
# A file capability (VFS_CAP_REVISION_2, effective, CAP_NET_RAW permitted): what `setcap
# cap_net_raw+ep` writes, and what the reference product loses by dropping PAX xattrs.
CAPABILITY = (0x02000001).to_bytes(4, "little") + (1 << 13).to_bytes(4, "little") + bytes(12)


def build_root(root: Path) -> Path:
    """A small but real root: busybox-static with applet links, config files, odd modes,
    a hard link across directories, xattrs, a file capability and (as root) device nodes."""
    for d in ("bin", "etc", "usr/bin", "var/empty", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", root / "bin" / applet)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    (root / "etc/hostname").write_text("msb\n")
    os.link(root / "etc/hostname", root / "usr/bin/hostname-link")
    (root / "usr/bin/setuid").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "usr/bin/setuid", 0o4755)
    os.chmod(root / "tmp", 0o1777)
    (root / "empty").write_bytes(b"")
    (root / "block-aligned").write_bytes(os.urandom(8192))
    os.setxattr(root / "etc/hostname", "user.origin", b"microsandbox")
    if os.geteuid() == 0:
        os.setxattr(root / "usr/bin/setuid", "security.capability", CAPABILITY)
        os.setxattr(root / "etc", "trusted.note", b"kept")
        os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(root / "sda300", stat.S_IFBLK | 0o660, os.makedev(8, 300))
        os.chown(root / "var/empty", 100000, 70000)
    os.mkfifo(root / "fifo")
    return root


def pack(producer: str, root: Path, dest: Path) -> Path:
    """Pack ``root`` the way each real tool would; returns the layer file."""
    if producer == "gnutar-gzip":
        subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--format=posix", "--numeric-owner",
                        "-czf", str(dest), "-C", str(root), "."], check=True)
    elif producer == "gnutar-gnu-zstd":
        subprocess.run(["tar", "--format=gnu", "--numeric-owner", "--zstd", "-cf", str(dest),
                        "-C", str(root), "."], check=True)
    elif producer == "bsdtar-pax":
        subprocess.run(["bsdtar", "--xattrs", "--format=pax", "--numeric-owner", "-cf", str(dest),
                        "-C", str(root), "."], check=True)
    elif producer == "umoci":
        dest = _umoci_layer(root, dest)
    else:
        raise ValueError(producer)
    return dest


def _umoci_layer(root: Path, dest: Path) -> Path:
    """The gzip layer blob umoci writes when it repacks ``root`` into an OCI image."""
    if os.geteuid() != 0 or shutil.which("umoci") is None:
        pytest.skip("umoci needs root and the umoci package to unpack and repack an image")
    work = dest.parent / "umoci"
    layout = work / "layout"
    subprocess.run(["umoci", "init", "--layout", str(layout)], check=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:t"], check=True)
    bundle = work / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:t", str(bundle)], check=True, capture_output=True)
    subprocess.run(["cp", "-a", f"{root}/.", str(bundle / "rootfs")], check=True)
    subprocess.run(["umoci", "repack", "--image", f"{layout}:t", str(bundle)], check=True, capture_output=True)
    blobs = sorted((layout / "blobs/sha256").iterdir(), key=lambda p: p.stat().st_size)
    shutil.copyfile(blobs[-1], dest)
    return dest
