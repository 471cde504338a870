"""``msb run | ps | stop | rm``: sandboxes from a shell."""
from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from dataclasses import asdict

from ..sandbox.api import Sandbox


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a command in a new sandbox and exit with its code")
    run.add_argument("--isolation", choices=["vm", "namespace"],
                     help="vm (default; needs hardware KVM) or namespace (runc; weaker isolation)")
    run.add_argument("--name", help="sandbox name (default: a random one)")
    run.add_argument("--keep", action="store_true", help="leave the sandbox running afterwards")
    run.add_argument("--memory", type=int, default=512, help="MiB (default 512)")
    run.add_argument("--cpus", type=float, default=1)
    run.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--timeout", type=float)
    run.add_argument("image", metavar="REF", help="image reference, or a local directory")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    run.set_defaults(func=_run)
    ps = sub.add_parser("ps", help="list sandboxes")
    ps.add_argument("--json", action="store_true")
    ps.set_defaults(func=_ps)
    for name, helptext, func in (("stop", "stop a sandbox", _stop), ("rm", "stop and remove a sandbox", _rm)):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("name", metavar="NAME")
        p.set_defaults(func=func)


def _run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("msb: run needs a command after --", file=sys.stderr)
        return 2
    env = dict(item.split("=", 1) for item in args.env if "=" in item)
    return asyncio.run(_run_async(args, command, env))


async def _run_async(args: argparse.Namespace, command: list[str], env: dict[str, str]) -> int:
    name = args.name or f"run-{secrets.token_hex(4)}"
    sb = await Sandbox.create(name, image=args.image, memory=args.memory, cpus=args.cpus, env=env,
                              isolation=args.isolation)
    try:
        info = await sb.info()
        if info.backend == "namespace":
            print(f"msb: sandbox {name} runs in Linux namespaces (runc), not a microVM", file=sys.stderr)
        out = await sb.exec(command[0], command[1:], timeout=args.timeout,
                            stdin=None if sys.stdin.isatty() else sys.stdin.buffer.read())
    finally:
        if not args.keep:
            await Sandbox.remove(name)
    sys.stdout.buffer.write(out.stdout_bytes)
    sys.stderr.buffer.write(out.stderr_bytes)
    return out.exit_code


def _ps(args: argparse.Namespace) -> int:
    infos = asyncio.run(Sandbox.list())
    if args.json:
        print(json.dumps([asdict(i) for i in infos]))
        return 0
    print(f"{'NAME':<24} {'STATE':<9} {'BACKEND':<10} IMAGE")
    for i in infos:
        print(f"{i.name:<24} {i.state:<9} {i.backend:<10} {i.reference or '-'}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    sb = asyncio.run(Sandbox.get(args.name))
    asyncio.run(sb.stop())
    return 0


def _rm(args: argparse.Namespace) -> int:
    asyncio.run(Sandbox.remove(args.name))
    return 0
