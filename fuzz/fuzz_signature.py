"""Fuzz target ``signature``: the EIF signature-section CBOR decoder and what reads its entries.

Feeds ``decode_signature_section``, then each entry's COSE_Sign1 to ``decode_sign1``, its
payload to ``parse_pcr_info`` and its certificate to ``pcr8_from_pem``. Checks: only
EifbuildError escapes; decoding what the encoder makes of the decoded entries gives them back
(the decoder, like AWS's serde_cbor, accepts non-minimal CBOR heads, so the input itself need
not re-encode byte for byte).
"""

from __future__ import annotations

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contextlib

import _common
import _seeds

with atheris.instrument_imports(include=["eifbuild"]):
    from eifbuild.eif.signature import decode_signature_section, encode_signature_section
    from eifbuild.errors import EifbuildError
    from eifbuild.measure import pcr8_from_pem
    from eifbuild.sign.cose import decode_sign1, parse_pcr_info


def test_one(data: bytes) -> None:
    entries = decode_signature_section(data, "fuzz")
    again = decode_signature_section(encode_signature_section(entries), "re-encoded")
    assert again == entries, "decoded entries do not survive re-encoding"
    for pem, cose in entries:
        with contextlib.suppress(EifbuildError):
            parse_pcr_info(decode_sign1(cose).payload)
        pcr8_from_pem(pem, "fuzz certificate")


def seeds() -> list[bytes]:
    vec = _seeds.VECTORS["cbor_signature_list"]
    return [bytes.fromhex(vec["encoded"]), _seeds.signature_section()]


if __name__ == "__main__":
    _common.main("signature", test_one, seeds)
