"""``make demo``: the main job end to end, one named step at a time.

Each step prints what it did; any failure stops the demo with a non-zero exit status, and every
temporary file is removed.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .disk import probe
from .errors import MicrosandboxError

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


STEPS: list[Step] = [build_disk_image, probe_disk_image]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="msb-demo-") as tmp:
        work = Path(tmp)
        for step in STEPS:
            started = time.perf_counter()
            try:
                said = step(work)
            except (MicrosandboxError, RuntimeError, OSError, subprocess.CalledProcessError) as exc:
                print(f"demo: {step.__name__} failed: {exc}", file=sys.stderr)
                return 1
            print(f"[{step.__name__}] {said} ({(time.perf_counter() - started) * 1000:.1f} ms)")
    print("demo: all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
