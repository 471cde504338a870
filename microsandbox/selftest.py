"""``msb vm selftest``: can this host run the microVM? Boot the guest kernel on a small built-in
two-layer image, watch it mount the fsmeta EROFS root from the stitched VMDK and read a file of each
layer, and report the boot timeline.

Guest user space never runs (it cannot on kvm-pvm hosts), so the read is proved in kernel mode:
init is a script in the lower layer whose ``#!`` interpreter lives in the top layer and is not a
program. Exec must find and read both files to fail with ENOEXEC."""
from __future__ import annotations

import io
import os
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from .compose import compose_image
from .errors import VmError
from .kernel import build_kernel
from .kvm_host import kvm_status
from .layers import convert_layer
from .vmboot import Disk, kernel_cmdline, prepare
from .vmm import Vm

MOUNTED = b"VFS: Mounted root (erofs filesystem)"
READ_PROOF = b"Requested init /lower-script failed (error -8)"


def _layer(dest: Path, name: str, data: bytes) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    convert_layer(io.BytesIO(buf.getvalue()), dest)
    return dest


def run_selftest(kernel: Path | None = None, ram_bytes: int = 256 << 20) -> dict[str, Any]:
    kind = kvm_status().kind
    vmlinux = kernel or build_kernel()
    with tempfile.TemporaryDirectory(prefix="msb-selftest-") as tmp:
        work = Path(tmp)
        layers = [_layer(work / "layers" / "lower.erofs", "lower-script", b"#!/top-interp\n"),
                  _layer(work / "layers" / "top.erofs", "top-interp", b"plain text, not a program\n")]
        compose_image(layers, work / "fsmeta" / "image.erofs", work / "image.vmdk")
        started = time.perf_counter()
        with Vm(ram_bytes, irqchip=True) as vm:
            fds = prepare(vm, vmlinux, disks=[Disk(work / "image.vmdk")], ram_bytes=ram_bytes,
                          cmdline=kernel_cmdline(devices=1, root_erofs=True, extra="init=/lower-script"))
            setup_ms = (time.perf_counter() - started) * 1000
            report: dict[str, Any] = {"kvm": str(kind), "kernel": str(vmlinux), "monitor_setup_ms": round(setup_ms, 2),
                                      "root_mounted": False, "file_read": False}
            try:
                for key, text in (("root_mounted", MOUNTED), ("file_read", READ_PROOF)):
                    vm.watch(text)
                    result = vm.run(50_000_000)
                    report[key] = True
                    report[f"{key}_ms"] = round((time.perf_counter() - started) * 1000, 1)
                report.update(io_exits=result.io_exits, mmio_exits=result.mmio_exits)
            except VmError as exc:
                report["error"] = str(exc)
                report["console_tail"] = exc.context.get("console", b"")[-800:].decode(errors="replace")
            finally:
                for fd in fds:
                    os.close(fd)
    return report
