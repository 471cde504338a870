"""``msb erofs from-tar`` from a file and from standard input, and its one-line refusals."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.rootfs import pack
from tests.layers.trees import fsck


def _msb(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "microsandbox", *args], input=stdin, capture_output=True)


def test_from_file_and_stdin_give_the_same_image(rootfs: Path, tmp_path: Path) -> None:
    layer = pack("gnutar-gzip", rootfs, tmp_path / "l.tgz")
    done = _msb("erofs", "from-tar", "--json", str(layer), str(tmp_path / "a.erofs"))
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["compression"] == "gzip" and facts["erofs_size"] == (tmp_path / "a.erofs").stat().st_size
    piped = _msb("erofs", "from-tar", "-", str(tmp_path / "b.erofs"), stdin=layer.read_bytes())
    assert piped.returncode == 0, piped.stderr
    assert (tmp_path / "a.erofs").read_bytes() == (tmp_path / "b.erofs").read_bytes()
    fsck(tmp_path / "b.erofs")


def test_refusal_is_one_line(tmp_path: Path) -> None:
    done = _msb("erofs", "from-tar", "-", str(tmp_path / "x.erofs"), stdin=b"\x1f\x8b" + b"\0" * 64)
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.count(b"\n") == 1 and b"invalid_layer" in done.stderr
    assert not (tmp_path / "x.erofs").exists()


def test_compose_cli(rootfs: Path, tmp_path: Path) -> None:
    layer = pack("gnutar-gzip", rootfs, tmp_path / "l.tgz")
    assert _msb("erofs", "from-tar", str(layer), str(tmp_path / "layers" / "base.erofs")).returncode == 0
    done = _msb("erofs", "compose", str(tmp_path / "disk.vmdk"), str(tmp_path / "layers" / "base.erofs"))
    assert done.returncode == 0, done.stderr
    probed = json.loads(_msb("disk", "probe", "--json", str(tmp_path / "disk.vmdk")).stdout)
    assert probed["format"] == "vmdk" and probed["fstype"] == "erofs"
    outside = _msb("erofs", "compose", str(tmp_path / "sub" / "d.vmdk"), str(tmp_path / "layers" / "base.erofs"))
    assert outside.returncode == 1 and b"must lie inside" in outside.stderr
