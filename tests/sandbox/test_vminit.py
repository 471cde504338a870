"""The agent as the microVM's init, without a VM: ``/init --vm`` runs as PID 1 of new PID, mount and
UTS namespaces, chrooted into an initramfs-like folder, with a loop device over the image's
stitched disk (fsmeta + layers, byte for byte what the VM sees as /dev/vda) and the channel on an
inherited socket instead of /dev/hvc0. It mounts the EROFS root and the overlay, switches into
it and serves execs through the monitor's multiplexer: the guest side of the VM backend, here."""
from __future__ import annotations

import asyncio
import io
import os
import shutil
import socket
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from microsandbox._core.diskprobe import flat_extents
from microsandbox.compose import compose_image
from microsandbox.layers import convert_layer
from microsandbox.sandbox import protocol
from microsandbox.sandbox.channel import ChannelMux
from microsandbox.sandbox.namespace import agent_binary, make_upper_disk
from tests.rootfs import build_root, pack

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="needs root and unshare (util-linux) for PID and mount namespaces")


def _stitched_disk(work: Path) -> Path:
    """The two-layer image's disk as the VM gets it: the VMDK's FLAT extents, concatenated."""
    lower = pack("gnutar-gzip", build_root(work / "root"), work / "lower.tgz")
    top = io.BytesIO()
    with tarfile.open(fileobj=top, mode="w") as tar:
        for name, data in (("etc/motd", b"from the top layer\n"), (".wh.empty", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    layers = [work / "lower.erofs", work / "top.erofs"]
    convert_layer(lower, layers[0])
    convert_layer(io.BytesIO(top.getvalue()), layers[1])
    compose_image(layers, work / "fsmeta.erofs", work / "image.vmdk")
    disk = work / "disk.img"
    with open(disk, "wb") as out:
        for path, offset, length in flat_extents(str(work / "image.vmdk")):
            with open(path, "rb") as part:
                part.seek(offset)
                out.write(part.read(length))
    return disk


def _loop(path: Path, *, read_only: bool) -> str:
    done = subprocess.run(["losetup", "-f", "--show", *(["-r"] if read_only else []), str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"no loop device: {done.stderr.strip()}")
    return done.stdout.strip()


@pytest.fixture(params=["tmpfs", "ext4"])
def guest(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A running init; with "ext4" the sandbox has a sized upper disk (the VM's /dev/vdb)."""
    devices = [_loop(_stitched_disk(tmp_path), read_only=True)]
    env = {"msb_disk": devices[0], "msb_hostname": "vm-test", "msb_upper": "/dev/none"}
    if request.param == "ext4":
        devices.append(_loop(make_upper_disk(tmp_path, 64), read_only=False))
        env["msb_upper"] = devices[1]
    initrd = tmp_path / "initrd"
    initrd.mkdir()
    shutil.copy2(agent_binary(), initrd / "init")
    host, channel = socket.socketpair()
    env["msb_channel_fd"] = str(channel.fileno())
    chroot = shutil.which("chroot") or "chroot"
    init = subprocess.Popen(["unshare", "--mount", "--pid", "--uts", "--fork", "--kill-child", chroot, str(initrd),
                             "/init", "--vm"], env=env, pass_fds=(channel.fileno(),), stderr=subprocess.PIPE)
    channel.close()
    sock = tmp_path / "agent.sock"
    ready = threading.Event()
    loop_ = asyncio.new_event_loop()
    mux = threading.Thread(target=loop_.run_until_complete, args=(ChannelMux(host, sock, ready.set).serve(),),
                           daemon=True)
    mux.start()
    try:
        became_ready = ready.wait(20)
        if became_ready:
            yield sock
    finally:
        init.kill()
        _, log = init.communicate()
        mux.join(10)
        host.close()
        for device in devices:
            subprocess.run(["losetup", "-d", device], check=False)
    assert became_ready, f"the agent never became ready: {log.decode(errors='replace')}"
    assert b"msb-agent: root mounted" in log and b"msb-agent: ready" in log, log


def _sh(sock: Path, script: str) -> protocol.ExecOutput:
    return protocol.run(str(sock), ["sh", "-c", script], env=["PATH=/bin:/usr/bin"], cwd="/", user="",
                        stdin=None, timeout=20)


def test_init_mounts_the_stitched_root_and_serves(guest: Path) -> None:
    assert _sh(guest, "cat /etc/hostname /etc/motd").stdout_bytes == b"msb\nfrom the top layer\n"
    assert _sh(guest, "test -e /empty").exit_code == 1                      # the top layer's whiteout
    assert _sh(guest, "hostname").stdout_bytes == b"vm-test\n"
    assert _sh(guest, "tr '\\0' ' ' < /proc/1/cmdline").stdout_bytes == b"/init --vm "
    out = _sh(guest, "echo written > /etc/hostname && cat /etc/hostname && grep ' / ' /proc/mounts")
    assert out.stdout_text.startswith("written\noverlay / overlay rw")         # a writable overlay root
    assert _sh(guest, "ls -a /").stdout_text.split().count("lower") == 0      # the initramfs is gone


@pytest.mark.parametrize("guest", ["ext4"], indirect=True)
def test_an_ext4_upper_keeps_the_writes(guest: Path, tmp_path: Path) -> None:
    assert _sh(guest, "echo kept > /new-file && sync").exit_code == 0
    check = subprocess.run(["debugfs", "-R", "cat /data/new-file", str(tmp_path / "upper.ext4")],
                           capture_output=True, text=True)
    assert check.stdout == "kept\n", check.stderr
