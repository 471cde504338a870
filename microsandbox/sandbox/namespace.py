"""The namespace backend: the image's layers, overlaid, run by runc in new namespaces.

Each layer's EROFS image is loop-mounted read-only (every layer image is a valid overlayfs lower
by itself), an upper on tmpfs (or on a sparse ext4 file when ``upper_size_mib`` is given) goes on
top, and runc starts the agent as PID 1 in new mount, PID, UTS, IPC and network namespaces, with
Docker's default capabilities, ``no_new_privs``, a seccomp deny list and a cgroup holding the
memory and CPU limits. Nothing of the image is extracted onto the host. This host has no
device-mapper, so the stitched VMDK (the microVM's disk) is not used here.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..errors import InvalidConfigError, MicrosandboxError, UnsupportedError
from ..fsutil import atomic_output
from . import lifeline

AGENT_IN_SANDBOX = "/.msb/msb-agent"
SOCKET_DIR_IN_SANDBOX = "/run/msb"
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
# Kernel interfaces a sandboxed program has no business with (a subset of Docker's profile that
# needs no argument filters); everything else is allowed.
DENIED_SYSCALLS = ["acct", "add_key", "bpf", "delete_module", "finit_module", "init_module", "kexec_file_load",
                   "kexec_load", "keyctl", "lookup_dcookie", "mount", "move_mount", "open_by_handle_at",
                   "open_tree", "perf_event_open", "pivot_root", "quotactl", "reboot", "request_key", "setns",
                   "swapoff", "swapon", "syslog", "umount2", "unshare", "userfaultfd", "fsopen", "fsmount",
                   "fspick", "fsconfig"]


def agent_binary() -> Path:
    path = Path(__file__).resolve().parent.parent / "_bin" / "msb-agent"
    if not path.exists():
        raise UnsupportedError(f"the guest agent {path} is missing: rebuild the package (make build)")
    return path


def _run(*cmd: str | Path, what: str) -> str:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if done.returncode != 0:
        raise MicrosandboxError(f"{what} failed: {(done.stderr or done.stdout).strip()}", command=[str(c) for c in cmd])
    return done.stdout


def container_id(name: str) -> str:
    return f"msb-{name}"


def start(folder: Path, name: str, *, lowers: list[Path], upper_size_mib: int | None, memory_mib: int,
          cpus: float, hostname: str) -> int:
    """Mount the root and start the agent; returns the agent's host pid."""
    if os.geteuid() != 0:
        raise UnsupportedError("the namespace backend needs root (loop mounts, overlayfs and runc)")
    if shutil.which("runc") is None:
        raise UnsupportedError("runc is not installed (apt-get install runc)")
    try:
        rootfs = _mount_root(folder, lowers, upper_size_mib)
        run_dir = folder / "run"
        run_dir.mkdir(exist_ok=True)
        _write_spec(folder, rootfs, run_dir, memory_mib, cpus, hostname)
        with open(folder / "runc.log", "wb") as log:
            done = subprocess.run(["runc", "run", "--detach", "--pid-file", str(folder / "init.pid"),
                                   "--bundle", str(folder), container_id(name)],
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        if done.returncode != 0:
            raise MicrosandboxError(f"runc could not start the sandbox: {(folder / 'runc.log').read_text().strip()}")
        pid = int((folder / "init.pid").read_text())
        _wait_for_socket(run_dir / "agent.sock", pid)
        return pid
    except BaseException:
        stop(folder, name)
        raise


def make_upper_disk(folder: Path, size_mib: int) -> Path:
    """A sparse ext4 file of ``size_mib`` for the writable upper (both backends use it)."""
    disk = folder / "upper.ext4"
    with open(disk, "wb") as f:
        f.truncate(size_mib << 20)
    _run("mke2fs", "-q", "-F", "-t", "ext4", disk, what="formatting the writable upper")
    return disk


def _mount_root(folder: Path, lowers: list[Path], upper_size_mib: int | None) -> Path:
    layers = []
    for i, image in enumerate(lowers):
        target = folder / "layers" / str(i)
        target.mkdir(parents=True, exist_ok=True)
        if image.is_dir():   # a bind source: the host folder itself is the (read-only) lower
            layers.append(image)
            continue
        _run("mount", "-t", "erofs", "-o", "loop,ro", image, target, what=f"mounting layer {image.name}")
        layers.append(target)
    upper = folder / "upper"
    upper.mkdir(exist_ok=True)
    if upper_size_mib:
        disk = make_upper_disk(folder, upper_size_mib)
        _run("mount", "-o", "loop", disk, upper, what="mounting the writable upper")
    else:
        _run("mount", "-t", "tmpfs", "-o", "mode=0755", "msb-upper", upper, what="mounting the writable upper")
    (upper / "data").mkdir(exist_ok=True)
    (upper / "work").mkdir(exist_ok=True)
    rootfs = folder / "rootfs"
    rootfs.mkdir(exist_ok=True)
    lowerdir = ":".join(str(p) for p in reversed(layers))
    _run("mount", "-t", "overlay", "overlay", "-o",
         f"lowerdir={lowerdir},upperdir={upper / 'data'},workdir={upper / 'work'}", rootfs,
         what="mounting the overlay root")
    return rootfs


def _write_spec(folder: Path, rootfs: Path, run_dir: Path, memory_mib: int, cpus: float, hostname: str) -> None:
    if memory_mib < 16 or cpus <= 0:
        raise InvalidConfigError(f"memory must be at least 16 MiB and cpus positive (got {memory_mib}, {cpus})")
    caps = {k: DEFAULT_CAPS for k in ("bounding", "effective", "permitted")}
    spec = {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0},
                    "args": [AGENT_IN_SANDBOX, "--listen", f"{SOCKET_DIR_IN_SANDBOX}/agent.sock"],
                    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "cwd": "/",
                    "capabilities": caps, "noNewPrivileges": True},
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
            {"destination": AGENT_IN_SANDBOX, "type": "bind", "source": str(agent_binary()), "options": ["bind", "ro"]},
            {"destination": SOCKET_DIR_IN_SANDBOX, "type": "bind", "source": str(run_dir), "options": ["bind", "rw"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "cgroupsPath": f"/msb/{folder.name}",
            "resources": {"memory": {"limit": memory_mib << 20, "swap": memory_mib << 20},
                          "cpu": {"quota": int(cpus * 100000), "period": 100000},
                          "pids": {"limit": 4096}},
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/sys/firmware",
                            "/proc/scsi", "/proc/acpi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
            "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                        "syscalls": [{"names": DENIED_SYSCALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]},
        },
    }
    with atomic_output(folder / "config.json") as out:
        out.write(json.dumps(spec, indent=1).encode())


def _wait_for_socket(sock: Path, pid: int) -> None:
    deadline = time.monotonic() + 10
    while not sock.exists():
        if time.monotonic() > deadline or not Path(f"/proc/{pid}").exists():
            raise MicrosandboxError(f"the sandbox agent did not start listening at {sock}")
        time.sleep(0.001)


def supervise(folder: Path, name: str) -> int:
    """Start the sandbox's supervisor: it waits, costing nothing, until the lifeline ends and then
    runs the teardown. Returns its pid."""
    read_end = lifeline.new(name)
    try:
        with open(folder / "supervisor.log", "wb") as log:
            waiter = subprocess.Popen([str(agent_binary()), "--on-eof", str(read_end), sys.executable, "-m",
                                       "microsandbox.sandbox.teardown", name],
                                      pass_fds=(read_end,), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                      start_new_session=True)
    finally:
        os.close(read_end)
    return waiter.pid


def _end_supervisor(pid: int | None) -> None:
    try:
        if pid and b"--on-eof" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
            os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def stop(folder: Path, name: str, supervisor: int | None = None) -> None:
    """Kill the container and undo every mount; safe to call on a half-started or dead sandbox."""
    _end_supervisor(supervisor)   # first: once the lifeline is released, it would start a teardown
    lifeline.release(name)
    cid = container_id(name)
    subprocess.run(["runc", "kill", cid, "KILL"], capture_output=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if subprocess.run(["runc", "delete", "--force", cid], capture_output=True).returncode == 0:
            break
        state = subprocess.run(["runc", "state", cid], capture_output=True)
        if state.returncode != 0:
            break
        time.sleep(0.02)
    mounts = [folder / "rootfs", folder / "upper"] + sorted((folder / "layers").glob("*"), reverse=True) \
        if (folder / "layers").is_dir() else [folder / "rootfs", folder / "upper"]
    for target in mounts:
        if os.path.ismount(target):
            subprocess.run(["umount", str(target)], capture_output=True)
    with contextlib.suppress(FileNotFoundError):
        (folder / "upper.ext4").unlink()
