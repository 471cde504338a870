"""``msb kernel build``: make the microVM's guest kernel (once per configuration)."""
from __future__ import annotations

import argparse
import sys

from ..kernel import build_kernel


def register(sub: argparse._SubParsersAction) -> None:
    kernel = sub.add_parser("kernel", help="the microVM guest kernel")
    kernel_sub = kernel.add_subparsers(dest="kernel_command", metavar="COMMAND", required=True)
    build = kernel_sub.add_parser("build", help="build guest/kernel.config from linux-source-6.1 into $MSB_HOME/kernel")
    build.add_argument("--jobs", type=int, help="parallel make jobs (default: all cores)")
    build.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    path = build_kernel(jobs=args.jobs, log=lambda line: print(f"msb: {line}", file=sys.stderr))
    print(path)
    return 0
