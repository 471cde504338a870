"""``msb disk probe``: what a disk image is, read natively without qemu-img."""
from __future__ import annotations

import argparse
import json

from ..disk import probe


def register(sub: argparse._SubParsersAction) -> None:
    disk = sub.add_parser("disk", help="inspect disk images")
    disk_sub = disk.add_subparsers(dest="disk_command", metavar="COMMAND", required=True)
    p = disk_sub.add_parser("probe", help="container format, virtual size and file system of a disk image")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_probe)


def _probe(args: argparse.Namespace) -> int:
    info = probe(args.path)
    if args.json:
        print(json.dumps(info.to_json()))
        return 0
    where = f"partition {info.partition}" if info.partition else "whole disk"
    print(f"format:       {info.format}")
    print(f"virtual size: {info.virtual_size} bytes")
    print(f"file system:  {info.fstype} ({where})" if info.fstype else "file system:  none found")
    if info.backing_file:
        print(f"backing file: {info.backing_file} (not opened)")
    return 0
