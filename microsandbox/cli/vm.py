"""``msb vm selftest``: whether this host can boot the microVM, with the boot timeline as JSON."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..selftest import run_selftest


def register(sub: argparse._SubParsersAction) -> None:
    vm = sub.add_parser("vm", help="the KVM microVM")
    vm_sub = vm.add_subparsers(dest="vm_command", metavar="COMMAND", required=True)
    test = vm_sub.add_parser("selftest", help="boot the guest kernel on a built-in image and report the timeline")
    test.add_argument("--kernel", type=Path, help="a vmlinux to boot (default: build or reuse msb's own)")
    test.set_defaults(func=_selftest)


def _selftest(args: argparse.Namespace) -> int:
    report = run_selftest(args.kernel)
    print(json.dumps(report, indent=2))
    return 0 if report["root_mounted"] and report["file_read"] else 1
