"""What this host's /dev/kvm can do, decided once and reported in words a user can act on.

Shared by the VM backend (which refuses to start where it cannot run a guest's user space) and by
``msb vm selftest`` (which reports the KVM kind in its timeline).
"""
from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass
from enum import StrEnum

from .errors import KvmUnavailableError

KVM_DEVICE = "/dev/kvm"
PVM_MODULE = "/sys/module/kvm_pvm"
_KVM_GET_API_VERSION = 0xAE00
_KVM_API_VERSION = 12
_NAMESPACE_HINT = ('pass isolation="namespace" (or set MSB_ISOLATION=namespace) to run the sandbox '
                   "in Linux namespaces instead, with weaker isolation")


class KvmKind(StrEnum):
    HARDWARE = "hardware"
    PVM = "pvm"


@dataclass(frozen=True)
class KvmStatus:
    kind: KvmKind
    api_version: int


def kvm_status() -> KvmStatus:
    """Open /dev/kvm and classify it; ``KvmUnavailableError`` says whether it is missing or denied."""
    try:
        fd = os.open(KVM_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KvmUnavailableError(f"{KVM_DEVICE} does not exist: this host has no KVM; {_NAMESPACE_HINT}",
                                  reason="missing") from None
    except PermissionError:
        raise KvmUnavailableError(
            f"no permission to open {KVM_DEVICE}: add this user to the 'kvm' group (or run as root); "
            f"{_NAMESPACE_HINT}", reason="permission") from None
    except OSError as exc:
        raise KvmUnavailableError(f"cannot open {KVM_DEVICE}: {os.strerror(exc.errno or errno.EIO)}; "
                                  f"{_NAMESPACE_HINT}", reason="open_failed") from None
    try:
        version = fcntl.ioctl(fd, _KVM_GET_API_VERSION)
    finally:
        os.close(fd)
    if version != _KVM_API_VERSION:
        raise KvmUnavailableError(f"{KVM_DEVICE} speaks KVM API {version}, not {_KVM_API_VERSION}; "
                                  f"{_NAMESPACE_HINT}", reason="api_version")
    kind = KvmKind.PVM if os.path.isdir(PVM_MODULE) else KvmKind.HARDWARE
    return KvmStatus(kind=kind, api_version=version)


def require_guest_userspace(*, guest_kernel_is_pvm: bool) -> KvmStatus:
    """The check ``isolation="vm"`` makes: KVM usable and able to run guest user space.

    On kvm-pvm hosts a guest kernel not built for PVM runs ring 0 through KVM's emulator and its
    user space cannot run at all, so only a PVM-enabled guest kernel (``MSB_KERNEL``) is accepted.
    """
    status = kvm_status()
    if status.kind is KvmKind.PVM and not guest_kernel_is_pvm:
        raise KvmUnavailableError(
            f"{KVM_DEVICE} here is kvm-pvm (no hardware virtualization): a guest kernel not built for "
            "PVM cannot run user space on it; point MSB_KERNEL at a PVM-enabled guest kernel, use a "
            f"host with hardware KVM, or {_NAMESPACE_HINT}", reason="pvm")
    return status
