"""Build the Cython hot paths in microsandbox/_core and the cffi VMM binding.

Every ``microsandbox/_core/*.pyx`` is compiled; a module names the C libraries it links with a
``# distutils: libraries = ...`` header line, so adding a module never touches this file.
Optional accelerators found at build time are announced to every module as macros.
"""
from __future__ import annotations

import glob
import os
import subprocess

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

AGENT_SOURCES = sorted(glob.glob("csrc/agent/*.c"))


def _have_header(name: str) -> bool:
    return any(os.path.exists(os.path.join(d, name)) for d in ("/usr/include", "/usr/local/include"))


def _core_extensions() -> list[Extension]:
    macros, libraries = [("CYTHON_TRACE", "0")], []
    if _have_header("isa-l/igzip_lib.h"):
        macros.append(("MSB_HAVE_ISAL", "1"))
        libraries.append("isal")
    exts = []
    for pyx in sorted(glob.glob("microsandbox/_core/*.pyx")):
        name = pyx[:-4].replace(os.sep, ".")
        exts.append(Extension(name, [pyx], define_macros=macros, include_dirs=["csrc"], libraries=libraries,
                              extra_compile_args=["-O2", "-fno-strict-aliasing"],
                              extra_link_args=["-Wl,--as-needed"]))
    # Bounds checks and negative indexing stay on: most of this code indexes Python objects built
    # from untrusted input, where an unchecked index would be a crash. C hot loops use pointers.
    return cythonize(exts, language_level=3)


class BuildWithAgent(build_ext):
    """Also builds the guest agent, a static binary so it runs inside any image."""

    def run(self) -> None:
        super().run()
        out_dir = os.path.join("microsandbox" if self.inplace else os.path.join(self.build_lib, "microsandbox"),
                               "_bin")
        os.makedirs(out_dir, exist_ok=True)
        target = os.path.join(out_dir, "msb-agent")
        newest = max(os.path.getmtime(p) for p in AGENT_SOURCES + glob.glob("csrc/agent/*.h"))
        if self.force or not os.path.exists(target) or os.path.getmtime(target) < newest:
            subprocess.run([os.environ.get("CC", "cc"), "-static", "-O2", "-Wall", "-Wextra", "-Werror",
                            "-o", target, *AGENT_SOURCES], check=True)


setup(
    cmdclass={"build_ext": BuildWithAgent},
    ext_modules=_core_extensions(),
    cffi_modules=["csrc/build_vmm.py:ffibuilder"],
)
