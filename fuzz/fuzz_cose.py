"""Fuzz target ``cose``: ``eifbuild.sign.cose.decode_sign1`` and ``parse_pcr_info``.

Checks: only EifbuildError escapes; an accepted message's signature has the algorithm's size
and its Sig_structure (``tbs``) can be built; an accepted PcrInfo re-encodes to its payload.
"""

from __future__ import annotations

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common
import _seeds

with atheris.instrument_imports(include=["eifbuild"]):
    from eifbuild.sign.cose import decode_sign1, parse_pcr_info, pcr_info


def test_one(data: bytes) -> None:
    msg = decode_sign1(data)
    assert len(msg.signature) == msg.alg.signature_size
    msg.tbs()
    index, value = parse_pcr_info(msg.payload)
    assert pcr_info(value, index) == msg.payload


def seeds() -> list[bytes]:
    from eifbuild.eif.signature import decode_signature_section

    vec = _seeds.VECTORS["cbor_signature_list"]
    real = decode_signature_section(_seeds.signature_section())[0][1]
    return [bytes.fromhex(vec["signature_hex"]), real, b"\xd2" + real]


if __name__ == "__main__":
    _common.main("cose", test_one, seeds)
