"""COSE_Sign1, Sig_structure and PcrInfo against the spec's vectors (docs/spec/eif.md §14.1, §14.4)."""

from __future__ import annotations

import contextlib
import hashlib

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eifbuild.errors import VerificationError
from eifbuild.sign import cose

# docs/spec/eif.md §14.1: PcrInfo{0, bytes 0x00..0x2f}
PCRINFO_0_2F = bytes.fromhex(
    "a26e72656769737465725f696e646578006e72656769737465725f76616c75659830000102030405060708090a0b0c0d0e0f"
    "101112131415161718181819181a181b181c181d181e181f1820182118221823182418251826182718281829182a182b182c"
    "182d182e182f"
)
# docs/spec/eif.md §14.4: PCR0 of the synthetic EIF, its PcrInfo and the SHA-384 of the ES384 Sig_structure
PCR0_144 = bytes.fromhex(
    "61fd2b06210a933b3db5e15c5752e394894bb097f7f1d96ad1f55a7525d0d7aa2c63b235f44420b12d8376cc392bdefb"
)
PAYLOAD_144 = bytes.fromhex(
    "a26e72656769737465725f696e646578006e72656769737465725f76616c75659830186118fd182b0618210a1893183b183d"
    "18b518e1185c1857185218e318941889184b18b0189718f718f118d9186a18d118f5185a1875182518d018d718aa182c1863"
    "18b2183518f41844182018b1182d1883187618cc1839182b18de18fb"
)
DIGEST_144 = bytes.fromhex(
    "ba5823046e1bbcbbb5a4af68ccc4632c66cc9a7d7e03bc10378df5645874d709b1d5bcb7cb9a951213c5de6cde355b1e"
)
AUSTEN = (
    b"It is a truth universally acknowledged, that a single man in possession of a good fortune,"
    b" must be in want of a wife."
)


def test_pcr_info_vector_14_1() -> None:
    assert cose.pcr_info(bytes(range(48))) == PCRINFO_0_2F
    assert cose.parse_pcr_info(PCRINFO_0_2F) == (0, bytes(range(48)))


def test_pcr_info_roundtrip_index_3() -> None:
    data = cose.pcr_info(b"\xab" * 48, 3)
    assert cose.parse_pcr_info(data) == (3, b"\xab" * 48)


def test_signing_payload_and_digest_vector_14_4() -> None:
    assert len(PAYLOAD_144) == 128
    assert cose.pcr_info(PCR0_144) == PAYLOAD_144
    tbs = cose.sig_structure(cose.protected_header(cose.ES384), PAYLOAD_144)
    assert tbs == bytes.fromhex("846a5369676e61747572653144a1013822405880") + PAYLOAD_144
    assert cose.tbs_digest(cose.ES384, PAYLOAD_144) == DIGEST_144
    assert hashlib.sha384(tbs).digest() == DIGEST_144


def test_protected_headers() -> None:
    assert cose.protected_header(cose.ES256) == bytes.fromhex("a10126")
    assert cose.protected_header(cose.ES384) == bytes.fromhex("a1013822")
    assert cose.protected_header(cose.ES512) == bytes.fromhex("a1013823")


def test_sig_structure_text_vectors() -> None:
    assert (
        cose.sig_structure(b"", AUSTEN)
        == bytes.fromhex("846a5369676e61747572653140405875") + AUSTEN
    )
    assert (
        cose.sig_structure(cose.protected_header(cose.ES256), AUSTEN)
        == bytes.fromhex("846a5369676e617475726531")
        + bytes.fromhex("43a10126")
        + b"\x40\x58\x75"
        + AUSTEN
    )


def test_encode_sign1_layout() -> None:
    sig = bytes(range(96))
    msg = cose.encode_sign1(cose.ES384, PAYLOAD_144, sig)
    assert msg == (bytes.fromhex("8444a1013822a05880") + PAYLOAD_144 + bytes.fromhex("5860") + sig)
    d = cose.decode_sign1(msg)
    assert (d.alg, d.payload, d.signature) == (cose.ES384, PAYLOAD_144, sig)
    # tag 18 is accepted on input, as describe-eif does
    tagged = cbor2.dumps(cbor2.CBORTag(18, cbor2.loads(msg)))
    assert cose.decode_sign1(tagged).signature == sig


@pytest.mark.parametrize(
    "bad, why",
    [
        (cbor2.dumps([b"\xa1\x01\x38\x22", {}, b"x"]), "4 elements"),
        (cbor2.dumps(cbor2.CBORTag(98, [b"", {}, b"", b""])), "tag 98"),
        (cbor2.dumps([b"\xa1\x01\x26", {}, b"x", b"\0" * 96]), "expected 64"),
        (cbor2.dumps([b"\xa1\x01\x27", {}, b"x", b"\0" * 96]), "is not ES256"),
        (cbor2.dumps([b"\x80", {}, b"x", b"\0" * 96]), "not a map"),
        (cbor2.dumps(["a", {}, b"x", b"\0" * 96]), "not a byte string"),
        (b"\x84\x44", "not valid CBOR"),
    ],
)
def test_decode_sign1_rejects(bad: bytes, why: str) -> None:
    with pytest.raises(VerificationError, match=why):
        cose.decode_sign1(bad)


@pytest.mark.parametrize(
    "payload",
    [
        cbor2.dumps({"register_value": list(range(48)), "register_index": 0}),
        cbor2.dumps({"register_index": 0, "register_value": bytes(48)}),
        cbor2.dumps({"register_index": 0, "register_value": list(range(47))}),
        PCRINFO_0_2F + b"\0",
        bytes.fromhex("a26e72656769737465725f696e646578186e") + PCRINFO_0_2F[17:],
    ],
)
def test_parse_pcr_info_rejects(payload: bytes) -> None:
    with pytest.raises(VerificationError):
        cose.parse_pcr_info(payload)


@given(st.binary(max_size=300))
def test_decoders_never_crash(data: bytes) -> None:
    for fn in (cose.decode_sign1, cose.parse_pcr_info):
        with contextlib.suppress(VerificationError):
            fn(data)


@given(st.binary(min_size=48, max_size=48), st.integers(0, 31))
def test_pcr_info_matches_cbor2(value: bytes, index: int) -> None:
    expected = cbor2.dumps({"register_index": index, "register_value": list(value)})
    assert cose.pcr_info(value, index) == expected
