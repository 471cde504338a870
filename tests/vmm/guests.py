"""Test guests written in assembly and assembled by GNU as (binutils, which the build needs anyway),
so each guest reads as the program it is rather than as hand-encoded bytes."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

STOP_PORT = 0x501
COM1 = 0x3F8


def assemble(source: str, *, bits: int = 64) -> bytes:
    """Flat machine code for ``source`` (Intel syntax), to be loaded where its code expects."""
    with tempfile.TemporaryDirectory(prefix="msb-guest-") as tmp:
        src, obj, out = Path(tmp, "g.s"), Path(tmp, "g.o"), Path(tmp, "g.bin")
        src.write_text(f".intel_syntax noprefix\n.code{bits}\n{source}\n")
        subprocess.run(["as", "--64", "-o", str(obj), str(src)], check=True, capture_output=True)
        subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(obj), str(out)], check=True,
                       capture_output=True)
        return out.read_bytes()


def stop_with(value: str) -> str:
    """Asm that asks the monitor to stop with ``value`` (an immediate or al)."""
    load = "" if value == "al" else f"mov al, {value}\n"
    return f"{load}mov dx, {STOP_PORT}\nout dx, al\nhlt\n"


def wait_for_used(used: int, *, or_stop: int) -> str:
    """Asm that spins until the used ring at ``used`` holds one entry (a device thread completes
    requests asynchronously), or stops with ``or_stop`` after 50 million tries. Uses 9:/8:."""
    return f"""
        mov ecx, 50000000
    9:  cmp word ptr [{used + 2:#x}], 1
        je 8f
        pause
        dec ecx
        jnz 9b
        {stop_with(or_stop)}
    8:
"""


def driver_setup(base: int, queues: list[tuple[int, int, int, int]]) -> str:
    """Asm for the virtio-mmio driver sequence (reset, ACKNOWLEDGE, DRIVER, VERSION_1,
    FEATURES_OK, queues of (size, desc, avail, used), DRIVER_OK), register window at ``base``."""
    writes = [(0x070, 0), (0x070, 1), (0x070, 3), (0x024, 1), (0x020, 1), (0x070, 11)]
    for index, (size, desc, avail, used) in enumerate(queues):
        writes += [(0x030, index), (0x038, size), (0x080, desc), (0x084, 0), (0x090, avail), (0x094, 0),
                   (0x0A0, used), (0x0A4, 0), (0x044, 1)]
    writes.append((0x070, 15))
    return f"mov rbx, {base:#x}\n" + "".join(f"mov dword ptr [rbx + {off:#x}], {val:#x}\n" for off, val in writes)
