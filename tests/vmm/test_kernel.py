"""The guest kernel configuration and build."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from microsandbox import MicrosandboxError
from microsandbox.kernel import FRAGMENT, build_kernel, kernel_path, missing_options, parse_config, pvh_entry

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "microsandbox" / "kernel"


def test_fragment_asks_for_what_the_vm_needs() -> None:
    wanted = parse_config(FRAGMENT.read_text())
    for option in ("CONFIG_PVH", "CONFIG_KVM_GUEST", "CONFIG_SERIAL_8250_CONSOLE", "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES",
                   "CONFIG_VIRTIO_BLK", "CONFIG_VIRTIO_CONSOLE", "CONFIG_EROFS_FS", "CONFIG_EROFS_FS_XATTR",
                   "CONFIG_OVERLAY_FS", "CONFIG_EXT4_FS", "CONFIG_TMPFS", "CONFIG_DEVTMPFS", "CONFIG_CGROUPS",
                   "CONFIG_BLK_DEV_INITRD", "CONFIG_UNIX"):
        assert wanted[option] == "y", option
    for option in ("CONFIG_MODULES", "CONFIG_PCI", "CONFIG_ACPI", "CONFIG_INET"):
        assert wanted[option] is None, option


def test_missing_options_names_what_kconfig_dropped() -> None:
    fragment = "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n"
    final = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\n"
    assert missing_options(fragment, final) == ["CONFIG_B=y", "CONFIG_C unset"]
    assert missing_options(fragment, "CONFIG_A=y\nCONFIG_B=y\n") == []


def test_msb_kernel_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "vmlinux"
    monkeypatch.setenv("MSB_KERNEL", str(other))
    assert kernel_path() == other
    other.write_bytes(b"MZ not an ELF")
    with pytest.raises(MicrosandboxError, match="not a 64-bit ELF"):
        pvh_entry(other)


@pytest.mark.slow
def test_the_guest_kernel_builds_with_a_pvh_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Builds once into ~/.cache (about 8 minutes on 2 cores), then reuses it."""
    monkeypatch.delenv("MSB_KERNEL", raising=False)
    try:
        vmlinux = build_kernel(CACHE)
    except MicrosandboxError as exc:
        if "is not installed" in str(exc):
            pytest.skip(str(exc))
        raise
    assert vmlinux == kernel_path(CACHE) and vmlinux.stat().st_size > 1 << 20
    assert 0x1000000 <= pvh_entry(vmlinux) < 0x4000000
    assert missing_options(FRAGMENT.read_text(), vmlinux.with_name("config").read_text()) == []
