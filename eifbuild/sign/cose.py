"""COSE_Sign1 (RFC 8152) as AWS's EIF tools write it, and the signed ``PcrInfo`` payload.

Byte layout (docs/spec/eif.md §7):

* ``PcrInfo`` = CBOR map ``{"register_index": uint, "register_value": [uint, ...]}`` with the
  raw PCR bytes as an array of unsigned integers (serde's encoding of ``Vec<u8>``);
* ``COSE_Sign1`` = untagged ``[protected bstr, {} , payload bstr, r || s bstr]``, where the
  protected header is the map ``{1: alg}``;
* the bytes signed are ``SHA-x(Sig_structure)``, ``Sig_structure = ["Signature1",
  protected, h'', payload]``.

Only the few CBOR forms needed are written here, by hand, so that the bytes are exactly the
ones AWS's encoders produce (definite lengths, shortest heads, text keys in field order).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from eifbuild.cbor import (
    cbor_array_head,
    cbor_bstr,
    cbor_int,
    cbor_map_head,
    cbor_text,
    cbor_uint_array,
)
from eifbuild.errors import VerificationError
from eifbuild.limits import DEFAULT_LIMITS

# Untagged COSE_Sign1 is what AWS writes; tag 18 is accepted when reading, as describe-eif does.
COSE_SIGN1_TAG = 18
SIG_CONTEXT = "Signature1"


@dataclass(frozen=True)
class Alg:
    """A COSE ECDSA algorithm tied to one NIST curve."""

    name: str  # "ES256" | "ES384" | "ES512"
    cose_id: int  # -7 | -35 | -36
    curve: str  # cryptography curve name: "secp256r1" | "secp384r1" | "secp521r1"
    hash_name: str  # hashlib name
    coord_size: int  # bytes of r and of s
    kms_spec: str  # AWS KMS KeySpec
    kms_alg: str  # AWS KMS SigningAlgorithm

    def digest(self, data: bytes) -> bytes:
        return hashlib.new(self.hash_name, data).digest()

    @property
    def signature_size(self) -> int:
        return 2 * self.coord_size


ES256 = Alg("ES256", -7, "secp256r1", "sha256", 32, "ECC_NIST_P256", "ECDSA_SHA_256")
ES384 = Alg("ES384", -35, "secp384r1", "sha384", 48, "ECC_NIST_P384", "ECDSA_SHA_384")
ES512 = Alg("ES512", -36, "secp521r1", "sha512", 66, "ECC_NIST_P521", "ECDSA_SHA_512")
ALGS: tuple[Alg, ...] = (ES256, ES384, ES512)


def alg_for_curve(curve_name: str) -> Alg | None:
    return next((a for a in ALGS if a.curve == curve_name), None)


def alg_for_id(cose_id: int) -> Alg | None:
    return next((a for a in ALGS if a.cose_id == cose_id), None)


def alg_for_kms_spec(spec: str) -> Alg | None:
    return next((a for a in ALGS if a.kms_spec == spec), None)


# --- PcrInfo ------------------------------------------------------------------------------


def pcr_info(pcr_raw: bytes, index: int = 0) -> bytes:
    """CBOR ``PcrInfo{register_index, register_value}``: the payload AWS signs (PCR0 raw bytes)."""
    return (
        cbor_map_head(2)
        + cbor_text("register_index")
        + cbor_int(index)
        + cbor_text("register_value")
        + cbor_uint_array(pcr_raw)
    )


def parse_pcr_info(payload: bytes) -> tuple[int, bytes]:
    """Decode a PcrInfo payload; it must re-encode to exactly the same bytes."""
    try:
        obj = cbor2.loads(payload)
    except Exception as exc:
        raise VerificationError(f"signing payload is not valid CBOR: {exc}") from None
    if (
        not isinstance(obj, dict)
        or list(obj) != ["register_index", "register_value"]
        or not isinstance(obj["register_index"], int)
        or not isinstance(obj["register_value"], list)
        or not all(isinstance(b, int) and 0 <= b <= 255 for b in obj["register_value"])
        or not 0 <= obj["register_index"] < 32
    ):
        raise VerificationError("signing payload is not a PcrInfo{register_index, register_value}")
    index, value = obj["register_index"], bytes(obj["register_value"])
    if len(value) not in (32, 48, 64):
        raise VerificationError(f"signing payload holds a {len(value)}-byte PCR value")
    if pcr_info(value, index) != payload:
        raise VerificationError("signing payload is not in the canonical PcrInfo encoding")
    return index, value


# --- COSE_Sign1 -----------------------------------------------------------------------------


def protected_header(alg: Alg) -> bytes:
    """Serialized protected header ``{1: alg}`` (the content of the bstr)."""
    return cbor_map_head(1) + cbor_int(1) + cbor_int(alg.cose_id)


def sig_structure(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """RFC 8152 Sig_structure for COSE_Sign1 (four elements)."""
    return (
        cbor_array_head(4)
        + cbor_text(SIG_CONTEXT)
        + cbor_bstr(protected)
        + cbor_bstr(external_aad)
        + cbor_bstr(payload)
    )


def tbs_digest(alg: Alg, payload: bytes) -> bytes:
    """The digest handed to ECDSA for ``payload`` under ``alg``."""
    return alg.digest(sig_structure(protected_header(alg), payload))


def encode_sign1(alg: Alg, payload: bytes, signature: bytes) -> bytes:
    """Untagged COSE_Sign1 with an empty unprotected map, as image-format writes it."""
    if len(signature) != alg.signature_size:
        raise ValueError(f"{alg.name} signature must be {alg.signature_size} bytes")
    return (
        cbor_array_head(4)
        + cbor_bstr(protected_header(alg))
        + cbor_map_head(0)
        + cbor_bstr(payload)
        + cbor_bstr(signature)
    )


@dataclass(frozen=True)
class Sign1:
    """A decoded COSE_Sign1 message."""

    protected: bytes
    alg: Alg
    payload: bytes
    signature: bytes

    def tbs(self) -> bytes:
        """The Sig_structure bytes that were signed (built from the protected bytes as received)."""
        return sig_structure(self.protected, self.payload)


def _loads(data: bytes, what: str) -> Any:
    try:
        return cbor2.loads(data)
    except Exception as exc:
        raise VerificationError(f"{what} is not valid CBOR: {exc}") from None


def decode_sign1(data: bytes) -> Sign1:
    """Parse a COSE_Sign1 (untagged or tag 18) and check its shape and algorithm."""
    limit = DEFAULT_LIMITS.max_cose_bytes
    if len(data) > limit:
        raise VerificationError(f"COSE_Sign1 is {len(data)} bytes, more than {limit}")
    obj = _loads(data, "COSE_Sign1")
    if isinstance(obj, cbor2.CBORTag):
        if obj.tag != COSE_SIGN1_TAG:
            raise VerificationError(f"COSE message has tag {obj.tag}, expected none or 18")
        obj = obj.value
    if not isinstance(obj, list | tuple) or len(obj) != 4:
        raise VerificationError("COSE_Sign1 is not an array of 4 elements")
    protected, unprotected, payload, signature = obj
    if not all(isinstance(x, bytes) for x in (protected, payload, signature)):
        raise VerificationError("COSE_Sign1 protected, payload or signature is not a byte string")
    if not isinstance(unprotected, Mapping):
        raise VerificationError("COSE_Sign1 unprotected header is not a map")
    header = _loads(protected, "COSE protected header") if protected else {}
    if not isinstance(header, Mapping):
        raise VerificationError("COSE protected header is not a map")
    alg_id = header.get(1)
    alg = alg_for_id(alg_id) if isinstance(alg_id, int) and not isinstance(alg_id, bool) else None
    if alg is None:
        raise VerificationError(f"COSE algorithm {alg_id!r} is not ES256, ES384 or ES512")
    if len(signature) != alg.signature_size:
        raise VerificationError(
            f"{alg.name} signature is {len(signature)} bytes, expected {alg.signature_size}"
        )
    return Sign1(protected=protected, alg=alg, payload=payload, signature=signature)
