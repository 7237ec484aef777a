"""Signature section CBOR: round trips, cross-check with cbor2, strict decoding of junk."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eifbuild.eif.signature import decode_signature_section, encode_signature_section
from eifbuild.errors import EifFormatError

entries_st = st.lists(
    st.tuples(st.binary(max_size=400), st.binary(max_size=300)), min_size=1, max_size=4
)


@given(entries_st)
def test_round_trip_and_cbor2_agrees(entries: list[tuple[bytes, bytes]]) -> None:
    data = encode_signature_section(entries)
    assert decode_signature_section(data) == entries
    # an independent decoder sees serde's shape: maps of arrays of small uints, in field order
    decoded = cbor2.loads(data)
    assert [list(m) for m in decoded] == [["signing_certificate", "signature"]] * len(entries)
    assert [(bytes(m["signing_certificate"]), bytes(m["signature"])) for m in decoded] == entries
    # and re-encoding with cbor2 (canonical-length heads) gives the same bytes
    assert cbor2.dumps(decoded) == data


def test_field_order_is_free_but_fields_are_strict() -> None:
    swapped = cbor2.dumps([{"signature": [1, 2], "signing_certificate": [3]}])
    assert decode_signature_section(swapped) == [(b"\x03", b"\x01\x02")]
    bad = [
        cbor2.dumps([{"signing_certificate": [1]}]),  # one field
        cbor2.dumps([{"signing_certificate": [1], "other": [2]}]),  # unknown field
        cbor2.dumps([{"signing_certificate": b"\x01", "signature": [2]}]),  # byte string
        cbor2.dumps([{"signing_certificate": [256], "signature": [2]}]),  # not a byte value
        cbor2.dumps([{"signing_certificate": [-1], "signature": [2]}]),
        cbor2.dumps({"signing_certificate": [1], "signature": [2]}),  # not a list
        cbor2.dumps([]),
        b"\x9f\xff",  # indefinite array
        b"\x81\xa2\x73signing_certificate\x9a\xff\xff\xff\xff",  # huge claimed length
        b"",
    ]
    for data in bad:
        with pytest.raises(EifFormatError):
            decode_signature_section(data)


@given(st.binary(max_size=300))
def test_junk_never_crashes(data: bytes) -> None:
    try:
        decode_signature_section(data)
    except EifFormatError as exc:
        assert "\n" not in str(exc)
