"""``msb erofs``: build EROFS images and stitched disks outside a registry (like ``mkfs.erofs --tar``)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..compose import compose_image
from ..layers import convert_layer


def register(sub: argparse._SubParsersAction) -> None:
    erofs = sub.add_parser("erofs", help="build EROFS images from tar layers")
    erofs_sub = erofs.add_subparsers(dest="erofs_command", metavar="COMMAND", required=True)
    p = erofs_sub.add_parser("from-tar", help="convert a gzip, zstd or plain tar layer into an EROFS image")
    p.add_argument("layer", metavar="LAYER", help="the layer file, or - for standard input")
    p.add_argument("out", metavar="OUT", help="the EROFS image to write (replaced atomically)")
    p.add_argument("--json", action="store_true", help="print the digests and sizes as JSON")
    p.set_defaults(func=_from_tar)
    c = erofs_sub.add_parser("compose", help="stitch layer images into fsmeta + a VMDK disk",
                             description="Merge EROFS layer images (bottom to top) into a metadata-only "
                             "fsmeta image written beside OUT as <OUT stem>.fsmeta.erofs, and write OUT, "
                             "a VMDK whose extents are fsmeta then each layer. The layers must lie in "
                             "OUT's folder or below it: extent paths are relative.")
    c.add_argument("out", metavar="OUT.vmdk")
    c.add_argument("layers", metavar="LAYER.erofs", nargs="+")
    c.set_defaults(func=_compose)


def _compose(args: argparse.Namespace) -> int:
    out = Path(args.out)
    fsmeta = out.with_name(f"{out.stem}.fsmeta.erofs")
    result = compose_image([Path(p) for p in args.layers], fsmeta, out)
    print(f"{out}: {result.entries} entries, {result.disk_size} bytes ({fsmeta.name} + {len(args.layers)} layers)")
    return 0


def _from_tar(args: argparse.Namespace) -> int:
    src = sys.stdin.buffer if args.layer == "-" else args.layer
    result = convert_layer(src, args.out)
    if args.json:
        print(json.dumps(result.facts()))
    else:
        print(f"{args.out}: {result.entries} entries, {result.erofs_size} bytes "
              f"(diff_id {result.diff_id})")
    return 0
