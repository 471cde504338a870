"""``msb``: the command line. Each ``microsandbox/cli/<group>.py`` with a ``register`` function
adds its own subcommands, so a new command group is a new file, not an edit here."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from ..errors import MicrosandboxError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="msb", description="microsandbox command line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a ``MicrosandboxError`` becomes one line on stderr and exit status 1."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MicrosandboxError as exc:
        print(f"msb: {exc.code}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("msb: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141


if __name__ == "__main__":
    sys.exit(main())
