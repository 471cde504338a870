"""Format details checked against the spec's own vectors and independent implementations."""
from __future__ import annotations

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from microsandbox._core.erofs import crc32c, xattr_filter_bit, xxh32

# shared/spec/erofs.md 6.6: the bit each name sets, as published with the kernel's filter
SPEC_BITS = {b"security.ima": 0, b"trusted.overlay.nlink": 2, b"user.overlay.nlink": 4,
             b"trusted.overlay.upper": 5, b"user.overlay.origin": 6, b"security.apparmor": 8,
             b"user.overlay.opaque": 10, b"security.selinux": 11, b"trusted.overlay.redirect": 17,
             b"trusted.overlay.origin": 18, b"trusted.overlay.opaque": 20, b"system.posix_acl_default": 21,
             b"user.mime_type": 23, b"security.capability": 29, b"system.posix_acl_access": 30,
             b"trusted.overlay.metacopy": 31, b"user.overlay.metacopy": 31}


@pytest.mark.parametrize(("name", "bit"), sorted(SPEC_BITS.items()))
def test_xattr_filter_bits_match_the_spec(name: bytes, bit: int) -> None:
    assert xattr_filter_bit(name) == bit


@given(data=st.binary(max_size=300), seed=st.integers(0, 2**32 - 1))
def test_xxh32_matches_the_reference_implementation(data: bytes, seed: int) -> None:
    assert xxh32(data, seed) == xxhash.xxh32_intdigest(data, seed)


def test_crc32c_convention() -> None:
    # the kernel's crc32c(~0, ...) without final inversion: ~standard CRC32C of "123456789"
    assert crc32c(b"123456789") ^ 0xFFFFFFFF == 0xE3069283
