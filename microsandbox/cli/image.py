"""``msb pull`` and ``msb image ls|inspect|rm|prune``: the local image cache from a shell."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import datetime, timezone

from .. import image_cache
from ..cache import Cache
from ..image_types import PullPolicy
from ..pull import PullEvent, pull_image


def register(sub: argparse._SubParsersAction) -> None:
    pull = sub.add_parser("pull", help="fetch an image into the local cache")
    pull.add_argument("reference", metavar="REF")
    pull.add_argument("--platform", help="os/arch[/variant] to pick from a multi-platform index")
    pull.add_argument("--policy", choices=[p.value for p in PullPolicy], default=PullPolicy.IF_MISSING.value)
    pull.set_defaults(func=_pull)

    image = sub.add_parser("image", help="inspect and prune the local image cache")
    image_sub = image.add_subparsers(dest="image_command", metavar="COMMAND", required=True)
    ls = image_sub.add_parser("ls", help="list cached images, newest first")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_ls)
    inspect = image_sub.add_parser("inspect", help="config and layers of a cached image (JSON)")
    inspect.add_argument("reference", metavar="REF")
    inspect.set_defaults(func=_inspect)
    rm = image_sub.add_parser("rm", help="remove a cached image reference")
    rm.add_argument("reference", metavar="REF")
    rm.add_argument("--force", action="store_true", help="remove even while a sandbox uses it")
    rm.set_defaults(func=_rm)
    prune = image_sub.add_parser("prune", help="remove images no sandbox uses and unreachable data")
    prune.add_argument("--rebuild-index", action="store_true",
                       help="first rebuild a lost or damaged index from the cached artifacts")
    prune.set_defaults(func=_prune)


class _Reporter:
    """A one-line progress bar on a terminal, plain event lines otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.layers: dict[int, tuple[int, int]] = {}

    def __call__(self, event: PullEvent) -> None:
        if event.kind == "layer_download" and event.layer_index is not None:
            self.layers[event.layer_index] = (event.bytes_done or 0, event.bytes_total or 0)
            if self.tty:
                done = sum(d for d, _ in self.layers.values())
                total = sum(t for _, t in self.layers.values()) or 1
                bar = "#" * int(30 * done / total)
                print(f"\r{event.reference} [{bar:<30}] {done >> 20}/{total >> 20} MiB", end="", file=sys.stderr)
            return
        if self.tty and self.layers:
            print(file=sys.stderr)
            self.layers.clear()
        where = f" layer {event.layer_index + 1}/{event.layer_count}" if event.layer_index is not None else ""
        print(f"{event.kind}{where} {event.digest or event.reference}", file=sys.stderr)


def _pull(args: argparse.Namespace) -> int:
    handle = pull_image(args.reference, pull_policy=args.policy, platform=args.platform, progress=_Reporter())
    print(f"{handle.reference} {handle.manifest_digest}")
    return 0


def _when(ms: float | None) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def _ls(args: argparse.Namespace) -> int:
    handles = image_cache.list_images(Cache())
    if args.json:
        print(json.dumps([dataclasses.asdict(h) for h in handles]))
        return 0
    print(f"{'REFERENCE':<50} {'LAYERS':>6} {'SIZE':>10} {'CREATED (UTC)':<19}")
    for h in handles:
        print(f"{h.reference:<50} {h.layer_count:>6} {(h.size_bytes or 0) >> 20:>7} MiB {_when(h.created_at)}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    print(json.dumps(dataclasses.asdict(image_cache.inspect(Cache(), args.reference)), indent=2))
    return 0


def _rm(args: argparse.Namespace) -> int:
    image_cache.remove(Cache(), args.reference, force=args.force)
    return 0


def _prune(args: argparse.Namespace) -> int:
    cache = Cache()
    if args.rebuild_index:
        cache.rebuild_index()
    print(json.dumps(dataclasses.asdict(image_cache.prune(cache))))
    return 0
