"""The host KVM check names the real situation of this machine."""
from __future__ import annotations

import os

import pytest

from microsandbox import KvmUnavailableError
from microsandbox import kvm_host
from microsandbox.kvm_host import KvmKind, kvm_status, require_guest_userspace


def test_missing_device_is_reported_with_the_namespace_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kvm_host, "KVM_DEVICE", "/dev/definitely-not-kvm")
    with pytest.raises(KvmUnavailableError, match="does not exist.*isolation=\"namespace\"") as info:
        kvm_status()
    assert info.value.context["reason"] == "missing"


@pytest.mark.skipif(not os.path.exists("/dev/kvm"), reason="this host has no /dev/kvm")
def test_kind_matches_the_pvm_module() -> None:
    status = kvm_status()
    expected = KvmKind.PVM if os.path.isdir("/sys/module/kvm_pvm") else KvmKind.HARDWARE
    assert status.kind is expected and status.api_version == 12


@pytest.mark.skipif(not os.path.isdir("/sys/module/kvm_pvm"), reason="not a kvm-pvm host")
def test_pvm_host_refuses_a_non_pvm_guest_kernel() -> None:
    with pytest.raises(KvmUnavailableError, match="kvm-pvm") as info:
        require_guest_userspace(guest_kernel_is_pvm=False)
    assert info.value.context["reason"] == "pvm"
    assert require_guest_userspace(guest_kernel_is_pvm=True).kind is KvmKind.PVM
