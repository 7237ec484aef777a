"""eifbuild.measure and eifbuild.crc against independent hashlib/zlib/base64 computations."""

from __future__ import annotations

import base64
import hashlib
import zlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from eifbuild.crc import Crc32, apply_operator, crc32_combine, shift_operator
from eifbuild.errors import SigningError
from eifbuild.measure import (
    HASH_ALGORITHM,
    FanOut,
    Measurements,
    PcrHasher,
    extend,
    file_pcr,
    pcr8_from_pem,
)
from tests.helpers.certs import self_signed


def make_cert(cn: str = "aws.nitro-enclaves") -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """A P-384 self-signed certificate (PEM) like nitro-cli's tests make, and its key."""
    return self_signed(cn=cn)


def der_of_first_pem(pem: bytes) -> bytes:
    """Independent PEM decoding: base64 of the first CERTIFICATE block."""
    text = pem.decode()
    body = text.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----", 1)[0]
    return base64.b64decode("".join(body.split()))


def ref_pcr(content: bytes) -> str:
    return hashlib.sha384(b"\0" * 48 + hashlib.sha384(content).digest()).hexdigest()


def test_extend_matches_hashlib() -> None:
    d = hashlib.sha384(b"abc").digest()
    assert extend(d) == hashlib.sha384(b"\0" * 48 + d).digest()
    assert extend(d, d) == hashlib.sha384(d + d).digest()
    with pytest.raises(ValueError):
        extend(b"short")


@given(st.lists(st.binary(max_size=300), max_size=8))
def test_pcr_hasher_streams(chunks: list[bytes]) -> None:
    h = PcrHasher()
    for c in chunks:
        h.update(c)
    joined = b"".join(chunks)
    assert h.hexdigest() == ref_pcr(joined)
    assert h.digest().hex() == ref_pcr(joined)
    assert h.content_digest() == hashlib.sha384(joined).digest()
    copy = h.copy()
    copy.update(b"x")
    assert copy.hexdigest() == ref_pcr(joined + b"x") and h.hexdigest() == ref_pcr(joined)


def test_fanout_parallel_hashers_agree() -> None:
    big = bytes(range(256)) * 4096  # 1 MiB, above the parallel threshold
    a, b = PcrHasher(), PcrHasher()
    seen: list[int] = []
    with FanOut() as fan:
        for _ in range(3):
            fan.update(big, [a, b], lambda c: seen.append(len(c)))
        fan.update(b"tail", [a, b])
    assert a.hexdigest() == b.hexdigest() == ref_pcr(big * 3 + b"tail")
    assert seen == [len(big)] * 3


def test_file_pcr(tmp_path: Path) -> None:
    p = tmp_path / "f"
    data = b"\x00\xff" * 700_000
    p.write_bytes(data)
    assert file_pcr(p) == ref_pcr(data)
    (tmp_path / "e").write_bytes(b"")
    assert file_pcr(tmp_path / "e") == ref_pcr(b"")
    seen: list[int] = []
    assert file_pcr(p, seen.append) == ref_pcr(data) and sum(seen) == len(data)


def test_pcr8_uses_der_of_first_certificate() -> None:
    pem1, _ = make_cert("first")
    pem2, _ = make_cert("second")
    expected = ref_pcr(der_of_first_pem(pem1))
    assert pcr8_from_pem(pem1) == expected
    assert pcr8_from_pem(pem1 + pem2) == expected
    assert pcr8_from_pem(pem2 + pem1) != expected


def test_pcr8_rejects_garbage() -> None:
    with pytest.raises(SigningError, match=r"cert\.pem: not a PEM X\.509 certificate"):
        pcr8_from_pem(b"hello", "cert.pem")


def test_measurements_as_nitro_order() -> None:
    m = Measurements("a", "b", "c")
    assert list(m.as_nitro().items()) == [
        ("HashAlgorithm", HASH_ALGORITHM),
        ("PCR0", "a"),
        ("PCR1", "b"),
        ("PCR2", "c"),
    ]
    assert list(Measurements("a", "b", "c", "d").as_nitro())[-1] == "PCR8"
    assert HASH_ALGORITHM == "Sha384 { ... }"


@given(st.binary(max_size=200), st.binary(max_size=2000))
def test_crc32_combine_matches_zlib(a: bytes, b: bytes) -> None:
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_crc32_combine_large_lengths() -> None:
    # zero bytes have a known CRC chain: combining with a run of zeros equals feeding them
    zeros = b"\0" * 100_003
    assert crc32_combine(zlib.crc32(b"x"), zlib.crc32(zeros), len(zeros)) == zlib.crc32(
        b"x" + zeros
    )
    assert zlib.crc32(b"123456789") == 0xCBF43926


@given(st.lists(st.tuples(st.binary(max_size=500), st.integers(0, 600), st.booleans()), max_size=8))
def test_split_crc_matches_zlib(parts: list[tuple[bytes, int, bool]]) -> None:
    crc, ref = Crc32(), 0
    for data, cut, split in parts:
        ref = zlib.crc32(data, ref)
        if split:
            k = min(cut, len(data))
            crc.join(crc.head(data, k), Crc32.tail(data, k), len(data) - k)
        else:
            crc.update(data)
        assert crc.value == ref


def test_shift_operator_matches_combine() -> None:
    a, b = b"header", b"\x5a" * 4099
    op = shift_operator(len(b))
    assert apply_operator(op, zlib.crc32(a)) ^ zlib.crc32(b) == zlib.crc32(a + b)
    assert apply_operator(shift_operator(0), 0x12345678) == 0x12345678


def test_fanout_splits_crc_across_threads() -> None:
    big = bytes(range(256)) * 4099  # not a multiple of 3
    a, b, crc = PcrHasher(), PcrHasher(), Crc32()
    with FanOut() as fan:
        for chunk in (big, b"small", big[:70_001]):
            fan.update(chunk, [a, b], crc=crc)
    joined = big + b"small" + big[:70_001]
    assert crc.value == zlib.crc32(joined)
    assert a.hexdigest() == b.hexdigest() == ref_pcr(joined)
