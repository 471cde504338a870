"""The public surface matches the user's documents (shared/seeds/000, spec/api.md) field for field."""
from __future__ import annotations

import dataclasses
import inspect
import pickle
import typing

import pytest

import microsandbox
from microsandbox import (
    DiskImageFormat,
    Image,
    ImageConfigDetail,
    ImageDetail,
    ImageHandle,
    ImageLayerDetail,
    ImagePruneReport,
    ImageSource,
    PullPolicy,
)


def _fields(cls: type) -> dict[str, str]:
    hints = typing.get_type_hints(cls)
    return {f.name: str(hints[f.name]) for f in dataclasses.fields(cls)}


def test_image_source_is_frozen_with_exactly_the_seed_fields() -> None:
    assert [f.name for f in dataclasses.fields(ImageSource)] == [
        "_type", "_path", "_reference", "_upper_size_mib", "_fstype", "_format"]
    src = Image.oci("python:3.12")
    with pytest.raises(dataclasses.FrozenInstanceError):
        src._type = "bind"  # type: ignore[misc]


def test_oci_factory() -> None:
    src = Image.oci("python:3.12", upper_size_mib=8192)
    assert (src._type, src._reference, src._upper_size_mib, src._path) == ("oci", "python:3.12", 8192, None)
    assert Image.oci("alpine")._upper_size_mib is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, "8"])
def test_oci_rejects_bad_upper_size(bad: object) -> None:
    with pytest.raises(microsandbox.InvalidConfigError):
        Image.oci("alpine", upper_size_mib=bad)  # type: ignore[arg-type]


def test_bind_factory() -> None:
    src = Image.bind("/srv/rootfs")
    assert (src._type, src._path, src._reference, src._format) == ("bind", "/srv/rootfs", None, None)


@pytest.mark.parametrize(("name", "fmt"), [
    ("/data/root.qcow2", DiskImageFormat.QCOW2),
    ("/data/root.raw", DiskImageFormat.RAW),
    ("/data/root.img", DiskImageFormat.RAW),
    ("/data/ROOT.VMDK", DiskImageFormat.VMDK),
])
def test_disk_factory_infers_format_from_extension(name: str, fmt: DiskImageFormat) -> None:
    src = Image.disk(name, fstype="ext4")
    assert (src._type, src._path, src._fstype, src._format) == ("disk", name, "ext4", fmt)


@pytest.mark.parametrize("name", ["/data/root.iso", "/data/root", "/data/root.qcow"])
def test_disk_factory_refuses_unknown_extension(name: str) -> None:
    with pytest.raises(microsandbox.InvalidDiskImageError, match="extension"):
        Image.disk(name)


def test_disk_image_format_is_a_str_enum() -> None:
    assert [m.value for m in DiskImageFormat] == ["qcow2", "raw", "vmdk"]
    assert DiskImageFormat("qcow2") == "qcow2"


def test_pull_policy_values() -> None:
    assert {m.value for m in PullPolicy} == {"always", "if-missing", "never"}
    assert PullPolicy("if-missing") is PullPolicy.IF_MISSING


def test_image_handle_fields_and_methods() -> None:
    assert _fields(ImageHandle) == {
        "reference": "<class 'str'>",
        "size_bytes": "int | None",
        "manifest_digest": "str | None",
        "architecture": "str | None",
        "os": "str | None",
        "layer_count": "<class 'int'>",
        "last_used_at": "float | None",
        "created_at": "float | None",
    }
    assert inspect.iscoroutinefunction(ImageHandle.inspect)
    assert inspect.iscoroutinefunction(ImageHandle.remove)
    assert inspect.signature(ImageHandle.remove).parameters["force"].default is False


def test_image_detail_and_config_fields() -> None:
    assert list(_fields(ImageDetail)) == ["handle", "config", "layers"]
    assert _fields(ImageConfigDetail) == {
        "digest": "<class 'str'>",
        "env": "list[str]",
        "cmd": "list[str] | None",
        "entrypoint": "list[str] | None",
        "working_dir": "str | None",
        "user": "str | None",
        "labels": "dict[str, typing.Any] | None",
        "stop_signal": "str | None",
    }


def test_layer_detail_fields() -> None:
    assert _fields(ImageLayerDetail) == {
        "diff_id": "<class 'str'>",
        "blob_digest": "<class 'str'>",
        "media_type": "str | None",
        "compressed_size_bytes": "int | None",
        "erofs_size_bytes": "int | None",
        "position": "<class 'int'>",
    }


def test_prune_report_fields() -> None:
    assert _fields(ImagePruneReport) == {
        "image_refs_removed": "<class 'int'>",
        "manifests_removed": "<class 'int'>",
        "layers_removed": "<class 'int'>",
        "fsmeta_removed": "<class 'int'>",
        "vmdk_removed": "<class 'int'>",
        "bytes_reclaimed": "int | None",
    }


@pytest.mark.parametrize("name", ["get", "list", "inspect", "remove", "prune"])
def test_cache_operations_are_async_static_methods(name: str) -> None:
    assert isinstance(inspect.getattr_static(Image, name), staticmethod)
    assert inspect.iscoroutinefunction(getattr(Image, name))


@pytest.mark.parametrize("name", ["oci", "bind", "disk"])
def test_source_factories_are_sync_static_methods(name: str) -> None:
    assert isinstance(inspect.getattr_static(Image, name), staticmethod)
    assert not inspect.iscoroutinefunction(getattr(Image, name))


ERROR_CODES = {
    "ImageNotFoundError": "image_not_found",
    "ImageInUseError": "image_in_use",
    "ImagePullFailedError": "image_pull_failed",
    "UnsupportedError": "unsupported",
    "InvalidDiskImageError": "invalid_disk_image",
    "InvalidConfigError": "invalid_config",
    "SandboxNotFoundError": "sandbox_not_found",
    "SandboxAlreadyExistsError": "sandbox_already_exists",
    "SandboxNotRunningError": "sandbox_not_running",
    "ExecTimeoutError": "exec_timeout",
    "KvmUnavailableError": "kvm_unavailable",
}


@pytest.mark.parametrize(("name", "code"), sorted(ERROR_CODES.items()))
def test_errors_have_stable_codes_and_keep_context(name: str, code: str) -> None:
    cls = getattr(microsandbox, name)
    assert issubclass(cls, microsandbox.MicrosandboxError)
    err = cls("boom: do this next", reference="docker.io/library/alpine:latest")
    assert err.code == code
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is cls and str(again) == "boom: do this next"
    assert again.context == {"reference": "docker.io/library/alpine:latest"}


def test_codes_are_unique() -> None:
    codes = [c.code for c in vars(microsandbox).values()
             if isinstance(c, type) and issubclass(c, microsandbox.MicrosandboxError)]
    assert len(codes) == len(set(codes))
