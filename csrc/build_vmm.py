"""cffi (API mode) build of the KVM monitor in csrc/vmm.

The C API Python may call is declared once, in ``csrc/vmm/cdef.h`` (plain declarations that
cffi's parser accepts); every ``csrc/vmm/*.c`` is compiled into ``microsandbox._vmm``.
"""
from __future__ import annotations

import glob
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
VMM = os.path.join(HERE, "vmm")

ffibuilder = FFI()
with open(os.path.join(VMM, "cdef.h"), encoding="utf-8") as f:
    ffibuilder.cdef(f.read())

ffibuilder.set_source(
    "microsandbox._vmm",
    '#include "vmm/api.h"\n',
    sources=sorted(os.path.relpath(p) for p in glob.glob(os.path.join(VMM, "*.c"))),
    include_dirs=[HERE],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror", "-pthread"],
    extra_link_args=["-pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
