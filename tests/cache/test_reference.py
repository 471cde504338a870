"""Docker-style reference normalisation."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from microsandbox import InvalidConfigError
from microsandbox.reference import is_loopback, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("text", "normal"), [
    ("python:3.12", "docker.io/library/python:3.12"),
    ("python", "docker.io/library/python:latest"),
    ("library/python", "docker.io/library/python:latest"),
    ("docker.io/python", "docker.io/library/python:latest"),
    ("index.docker.io/library/python:3", "docker.io/library/python:3"),
    ("user/app", "docker.io/user/app:latest"),
    ("ghcr.io/org/app:v1", "ghcr.io/org/app:v1"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/a/b/c:t", "localhost:5000/a/b/c:t"),
    ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"),
    ("[::1]:5000/app:x", "[::1]:5000/app:x"),
    (f"python@{DIGEST}", f"docker.io/library/python@{DIGEST}"),
    (f"python:3.12@{DIGEST}", f"docker.io/library/python:3.12@{DIGEST}"),
])
def test_normalisation(text: str, normal: str) -> None:
    assert str(parse_reference(text)) == normal


@pytest.mark.parametrize("text", ["", " python", "Python", "python:", "python@sha256:12", "a//b",
                                  "python:bad tag", "-x", "host:port/app"])
def test_invalid_references(text: str) -> None:
    with pytest.raises(InvalidConfigError):
        parse_reference(text)


def test_api_host_and_manifest_ref() -> None:
    assert parse_reference("python").api_host == "registry-1.docker.io"
    assert parse_reference(f"python:1@{DIGEST}").manifest_ref == DIGEST
    assert parse_reference("python:1").manifest_ref == "1"
    assert is_loopback("localhost:5000") and is_loopback("127.0.0.2") and is_loopback("[::1]:80")
    assert not is_loopback("registry.example.com")


# no dots: a first component with a dot would (rightly) be read as a registry host
name = st.from_regex(r"[a-z0-9]+(?:[_-][a-z0-9]+){0,2}", fullmatch=True)
tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
host = st.sampled_from(["", "localhost/", "localhost:5000/", "ghcr.io/", "registry.example.com:443/"])


@given(host=host, path=st.lists(name, min_size=1, max_size=3), tag=st.none() | tag)
def test_normalising_is_idempotent(host: str, path: list[str], tag: str | None) -> None:
    text = host + "/".join(path) + (f":{tag}" if tag else "")
    once = parse_reference(text)
    assert parse_reference(str(once)) == once
    assert once.tag == (tag or "latest")
    assert str(once).startswith(host.rstrip("/") or "docker.io")
