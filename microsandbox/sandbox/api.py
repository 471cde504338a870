"""``Sandbox``: create, exec, stop, remove, list; ``async with`` stops and removes.

The microVM (``isolation="vm"``) is the default and is never swapped for something weaker behind
the user's back: where it cannot run, ``create`` raises ``KvmUnavailableError`` naming
``isolation="namespace"``, the explicit opt-in to the runc backend. Either way a sandbox lives no
longer than the process that created it (``lifeline``).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

from .. import image_cache
from ..cache import Cache
from ..errors import (InvalidConfigError, SandboxAlreadyExistsError, SandboxNotFoundError,
                      SandboxNotRunningError, UnsupportedError)
from ..image import Image, disk_format_from_name
from ..image_types import ImageSource, PullPolicy
from ..kvm_host import require_guest_userspace
from ..pull import pull_image
from ..rootfs import ImageRootfs
from . import microvm, namespace, protocol, records
from .protocol import ExecOutput
from .records import SandboxInfo, SandboxRecord

ISOLATIONS = ("vm", "namespace")


class Sandbox:
    """A running sandbox; get one from ``await Sandbox.create(...)``."""

    def __init__(self, record: SandboxRecord) -> None:
        self._record = record

    @property
    def name(self) -> str:
        return self._record.name

    @staticmethod
    async def create(name: str, *, image: str | ImageSource, memory: int = 512, cpus: float = 1,
                     env: dict[str, str] | None = None, workdir: str | None = None,
                     pull_policy: PullPolicy | str = PullPolicy.IF_MISSING,
                     isolation: str | None = None) -> Sandbox:
        """Pull (through the cache) and start a sandbox named ``name``.

        Raises ``SandboxAlreadyExistsError``, ``KvmUnavailableError`` (isolation "vm" where KVM
        cannot run a guest's user space), ``ImagePullFailedError``/``ImageNotFoundError``.
        """
        return await asyncio.to_thread(_create, name, image, memory, cpus, env or {}, workdir,
                                       PullPolicy(pull_policy), isolation)

    async def exec(self, cmd: str, args: list[str] | None = None, *, env: dict[str, str] | None = None,
                   cwd: str | None = None, user: str | None = None, timeout: float | None = None,
                   stdin: bytes | str | None = None) -> ExecOutput:
        """Run ``cmd args...`` to completion; ``ExecTimeoutError`` kills it after ``timeout`` seconds
        (the sandbox stays usable)."""
        record = self._record
        if not record.alive():
            raise SandboxNotRunningError(f"sandbox {record.name!r} is not running", name=record.name)
        cfg = record.config
        merged = dict(item.split("=", 1) for item in cfg.get("image_env", []) if "=" in item)
        merged.update(cfg.get("env", {}))
        merged.update(env or {})
        data = stdin.encode() if isinstance(stdin, str) else stdin
        return await asyncio.to_thread(
            protocol.run, str(record.folder / "run" / "agent.sock"), [cmd, *(args or [])],
            env=[f"{k}={v}" for k, v in merged.items()], cwd=cwd or cfg.get("workdir") or "/",
            user=user if user is not None else cfg.get("user") or "", stdin=data, timeout=timeout)

    async def stop(self) -> None:
        self._record = await asyncio.to_thread(_stop, self._record)

    async def info(self) -> SandboxInfo:
        return _info(records.load(self.name))

    @staticmethod
    async def remove(name: str) -> None:
        """Stop (if needed) and delete a sandbox and its record."""
        await asyncio.to_thread(_remove, name)

    @staticmethod
    async def list() -> list[SandboxInfo]:
        return [_info(r) for r in await asyncio.to_thread(records.all_records)]

    @staticmethod
    async def get(name: str) -> Sandbox:
        return Sandbox(records.load(name))

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await Sandbox.remove(self.name)


def _info(record: SandboxRecord) -> SandboxInfo:
    state = record.state if record.alive() or record.state != "running" else "stopped"
    return SandboxInfo(record.name, record.backend, record.reference, record.manifest_digest, state,
                       record.pid if state == "running" else None, record.created_at)


def _create(name: str, image: str | ImageSource, memory: int, cpus: float, env: dict[str, str],
            workdir: str | None, policy: PullPolicy, isolation: str | None) -> Sandbox:
    records.check_name(name)
    isolation = isolation or os.environ.get("MSB_ISOLATION") or "vm"
    if isolation not in ISOLATIONS:
        raise InvalidConfigError(f"isolation must be 'vm' or 'namespace', not {isolation!r}")
    if records.exists(name):
        existing = records.load(name) if (records.folder_of(name) / "sandbox.json").exists() else None
        if existing is None or existing.alive():
            raise SandboxAlreadyExistsError(f"a sandbox named {name!r} already exists", name=name)
        _remove(name)   # a dead sandbox's leftovers: clean them, then reuse the name
    source = _source(image)
    if isolation == "vm":
        require_guest_userspace(guest_kernel_is_pvm=bool(os.environ.get("MSB_KERNEL_PVM")))
    rootfs = _rootfs(source, policy)
    folder = records.folder_of(name)
    folder.mkdir(parents=True)
    config = rootfs.config
    record = SandboxRecord(
        name=name, backend=isolation, reference=rootfs.reference, manifest_digest=rootfs.manifest_digest or None,
        state="starting", pid=None, created_at=time.time() * 1000,
        config={"env": env, "workdir": workdir or (config.working_dir if config else None),
                "user": config.user if config else None, "image_env": list(config.env) if config else [],
                "memory": memory, "cpus": cpus})
    record.save()   # the image is in use from here on, even while the sandbox starts
    supervisor = None
    try:
        if isolation == "vm":
            pid = microvm.start(folder, name, rootfs=rootfs, upper_size_mib=source._upper_size_mib,
                                memory_mib=memory, cpus=cpus, hostname=name)
        else:
            pid = namespace.start(folder, name, lowers=list(rootfs.layers), upper_size_mib=source._upper_size_mib,
                                  memory_mib=memory, cpus=cpus, hostname=name)
            supervisor = namespace.supervise(folder, name)
    except BaseException:
        _stop_backend(record)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    record = replace(record, state="running", pid=pid, config={**record.config, "supervisor": supervisor})
    record.save()
    return Sandbox(record)


def _source(image: str | ImageSource) -> ImageSource:
    if isinstance(image, ImageSource):
        return image
    if not isinstance(image, str) or not image:
        raise InvalidConfigError("image must be a reference, a local path or an ImageSource")
    if image.startswith(("/", "./", "../")):
        path = os.path.abspath(image)
        if os.path.isdir(path):
            return Image.bind(path)
        disk_format_from_name(path)
        return Image.disk(path)
    return Image.oci(image)


def _rootfs(source: ImageSource, policy: PullPolicy) -> ImageRootfs:
    if source._type == "oci":
        assert source._reference is not None
        handle = pull_image(source._reference, pull_policy=policy)
        return image_cache.rootfs_for(Cache(), handle.reference)
    if source._type == "bind":
        path = Path(source._path or "")
        if not path.is_dir():
            raise InvalidConfigError(f"bind source {path} is not a directory")
        return ImageRootfs(reference=str(path), manifest_digest="", layers=(path,), fsmeta=None, vmdk=None,
                           config=None)
    raise UnsupportedError("disk image sources are not supported by the namespace backend yet")


def _stop_backend(record: SandboxRecord, *, supervisor: bool = True) -> None:
    if record.backend == "vm":
        microvm.stop(record.folder, record.name, record.pid)
    else:
        namespace.stop(record.folder, record.name, record.config.get("supervisor") if supervisor else None)


def _stop(record: SandboxRecord) -> SandboxRecord:
    _stop_backend(record)
    stopped = replace(record, state="stopped", pid=None)
    stopped.save()
    return stopped


def _remove(name: str) -> None:
    remove_sandbox(name)


def remove_sandbox(name: str, *, supervisor: bool = True) -> None:
    """Stop and delete sandbox ``name``; ``supervisor=False`` when the supervisor itself calls."""
    folder = records.folder_of(name)
    try:
        record = records.load(name)
    except SandboxNotFoundError:   # no (readable) record: clean up whatever a namespace start left
        record = SandboxRecord(name=name, backend="namespace", reference=None, manifest_digest=None,
                               state="stopped", pid=None, created_at=0)
    _stop_backend(record, supervisor=supervisor)
    for leftover in ("rootfs", "upper"):
        if os.path.ismount(folder / leftover):
            raise SandboxNotRunningError(f"cannot unmount {folder / leftover}; it is still busy", name=name)
    shutil.rmtree(folder, ignore_errors=True)
