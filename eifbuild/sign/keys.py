"""Local PEM keys and certificates: loading, algorithm choice, ECDSA in the COSE form.

The COSE algorithm follows the key's curve as AWS's tools choose it: P-256 -> ES256,
P-384 -> ES384, P-521 -> ES512. Only EC keys are supported.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

from eifbuild import smallfile
from eifbuild.errors import SigningError, VerificationError
from eifbuild.limits import DEFAULT_LIMITS
from eifbuild.sign.cose import Alg, alg_for_curve

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


class KeyBackend(Protocol):
    """Something that holds an EC private key: a PEM file or a KMS key."""

    @property
    def description(self) -> str: ...

    def public_key(self) -> ec.EllipticCurvePublicKey: ...

    def sign(self, alg: Alg, message: bytes) -> bytes:
        """ECDSA with ``alg``'s hash over ``message``; returns ``r || s`` (COSE form)."""
        ...


def read_pem_file(path: str | os.PathLike[str], what: str) -> bytes:
    """A key or certificate file, bounded by ``Limits.max_pem_bytes``; SigningError if not."""
    return smallfile.read_small_file(path, what, DEFAULT_LIMITS.max_pem_bytes, SigningError)


def alg_for_public_key(pub: object, what: str) -> Alg:
    """The COSE algorithm for an EC public key, or a SigningError naming ``what``."""
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        raise SigningError(f"{what}: not an EC key (only P-256, P-384 and P-521 are supported)")
    alg = alg_for_curve(pub.curve.name)
    if alg is None:
        raise SigningError(
            f"{what}: curve {pub.curve.name} is not supported (use P-256, P-384 or P-521)"
        )
    return alg


def raw_to_der(alg: Alg, raw: bytes) -> bytes:
    """COSE ``r || s`` -> DER ECDSA signature."""
    n = alg.coord_size
    if len(raw) != 2 * n:
        raise VerificationError(f"{alg.name} signature is {len(raw)} bytes, expected {2 * n}")
    return encode_dss_signature(int.from_bytes(raw[:n], "big"), int.from_bytes(raw[n:], "big"))


def der_to_raw(alg: Alg, der: bytes) -> bytes:
    """DER ECDSA signature -> COSE ``r || s``, each left-padded to the curve size."""
    try:
        r, s = decode_dss_signature(der)
    except ValueError:
        raise SigningError("ECDSA signature is not valid DER") from None
    n = alg.coord_size
    if r.bit_length() > 8 * n or s.bit_length() > 8 * n:
        raise SigningError(f"ECDSA signature values do not fit {alg.name}")
    return r.to_bytes(n, "big") + s.to_bytes(n, "big")


def verify_digest(pub: ec.EllipticCurvePublicKey, alg: Alg, digest: bytes, raw: bytes) -> bool:
    """True iff ``raw`` (``r || s``) is a valid ECDSA signature of ``digest`` under ``pub``."""
    if alg_for_curve(pub.curve.name) != alg:
        return False
    try:
        pub.verify(raw_to_der(alg, raw), digest, ec.ECDSA(Prehashed(_HASHES[alg.hash_name])))
    except (InvalidSignature, VerificationError):
        return False
    return True


@dataclass
class PemKey:
    """A local EC private key loaded from a PEM file (PKCS#8 or SEC1)."""

    key: ec.EllipticCurvePrivateKey
    description: str

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.key.public_key()

    def sign(self, alg: Alg, message: bytes) -> bytes:
        der = self.key.sign(alg.digest(message), ec.ECDSA(Prehashed(_HASHES[alg.hash_name])))
        return der_to_raw(alg, der)


def load_pem_key(path: str | os.PathLike[str]) -> PemKey:
    """Load an unencrypted PEM EC private key with a supported curve."""
    data = read_pem_file(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise SigningError(f"private key {path}: encrypted keys are not supported") from None
    except (ValueError, UnsupportedAlgorithm):
        raise SigningError(f"private key {path}: not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SigningError(f"private key {path}: not an EC key (only ECDSA keys are supported)")
    alg_for_public_key(key.public_key(), f"private key {path}")
    return PemKey(key=key, description=f"private key {path}")


def load_certificate(pem: bytes, what: str) -> x509.Certificate:
    """The first certificate of a PEM file (the one AWS's tools use)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
        # cryptography parses names and validity lazily: touch them here so that a malformed
        # field is this one error, not a ValueError/TypeError in whoever reads it later.
        _ = (cert.issuer, cert.subject, cert.not_valid_before_utc, cert.not_valid_after_utc)
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion):
        raise SigningError(f"{what}: not a PEM X.509 certificate") from None
    return cert


def certificate_public_key(cert: x509.Certificate, what: str) -> ec.EllipticCurvePublicKey:
    """The certificate's EC public key on a supported curve, or a SigningError."""
    try:
        pub = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SigningError(f"{what}: unusable public key ({exc})") from None
    alg_for_public_key(pub, what)
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    return pub


def same_public_key(a: ec.EllipticCurvePublicKey, b: ec.EllipticCurvePublicKey) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return a.public_bytes(enc, fmt) == b.public_bytes(enc, fmt)


def validity_problem(cert: x509.Certificate, now: dt.datetime) -> str | None:
    """None when ``now`` lies in the certificate's validity window, else a short reason."""
    nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < nb:
        return f"not valid before {nb:%Y-%m-%d %H:%M:%S} UTC"
    if now > na:
        return f"expired on {na:%Y-%m-%d %H:%M:%S} UTC"
    return None


def utc_now() -> dt.datetime:
    """The current time, for certificate validity checks only (never written to outputs)."""
    return dt.datetime.now(dt.UTC)
