"""The real guest kernel boots under the monitor with an image's stitched VMDK as /dev/vda and
mounts the fsmeta EROFS root. Guest user space cannot run on kvm-pvm, so reads are proved in kernel
mode: init is a script in the lower layer whose #! interpreter lives in the top layer and is not
an executable. Exec reads both files and fails with ENOEXEC (-8); a file it could not find or read
would give ENOENT (-2) or EIO (-5)."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from microsandbox import MicrosandboxError, VmError
from microsandbox.compose import compose_image
from microsandbox.kernel import build_kernel
from microsandbox.layers import convert_layer
from microsandbox.vmboot import boot, kernel_cmdline
from tests.vmm.test_kernel import CACHE

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="needs a usable /dev/kvm")]


def _layer(dest: Path, files: dict[str, bytes]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    convert_layer(io.BytesIO(buf.getvalue()), dest)
    return dest


def test_kernel_mounts_the_erofs_root_and_reads_both_layers(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MSB_KERNEL", raising=False)
    try:
        vmlinux = build_kernel(CACHE)
    except MicrosandboxError as exc:
        pytest.skip(f"no guest kernel: {exc}")
    lower = _layer(tmp_path / "layers" / "lower.erofs", {"lower-script": b"#!/top-interp\n"})
    top = _layer(tmp_path / "layers" / "top.erofs", {"top-interp": b"plain text, not a program\n"})
    compose_image([lower, top], tmp_path / "fsmeta" / "img.erofs", tmp_path / "img.vmdk")
    try:
        result = boot(vmlinux, disk=tmp_path / "img.vmdk", watch=b"Requested init /lower-script failed (error -8)",
                      cmdline=kernel_cmdline(root_erofs=True, extra="init=/lower-script"))
    except VmError as exc:   # anything else ends in the panic path, which kvm-pvm cannot emulate
        pytest.fail(f"{exc}; console:\n{exc.context['console'].decode(errors='replace')[-1500:]}")
    console = result.console.decode(errors="replace")
    assert "virtio_blk virtio0: [vda]" in console
    assert "erofs: (device vda): mounted" in console and "VFS: Mounted root (erofs filesystem)" in console
    assert "Requested init /lower-script failed (error -8)" in console, console[-2000:]
