"""PCR8 signing and signature checks for EIF files.

* :func:`open_key` loads a PEM EC private key or resolves an AWS KMS key;
* :class:`EifSigner` checks a certificate against the key up front and, called with the raw
  PCR0, returns the whole signature section (``signer(pcr0_raw) -> bytes``) that
  ``eifbuild.eif.writer.write_eif`` expects;
* :func:`sign_payload` signs detached ``PcrInfo`` payloads (``sign-payload``);
* :func:`verify_signature` / :func:`describe_signature` check a (certificate, COSE_Sign1) pair
  against the PCR0 recomputed from an EIF, never trusting the payload inside it.

Every signature made here is verified with the certificate's public key before it is
returned, so a faulty key backend can never produce a signed EIF that does not verify.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from eifbuild.errors import SigningError, VerificationError
from eifbuild.sign.cose import (
    Alg,
    decode_sign1,
    encode_sign1,
    parse_pcr_info,
    pcr_info,
    protected_header,
    sig_structure,
)
from eifbuild.sign.describe import certificate_info
from eifbuild.sign.keys import (
    KeyBackend,
    alg_for_public_key,
    certificate_public_key,
    load_certificate,
    load_pem_key,
    same_public_key,
    utc_now,
    validity_problem,
    verify_digest,
)

__all__ = [
    "EifSigner",
    "KeyBackend",
    "SignatureReport",
    "check_certificate",
    "describe_signature",
    "open_key",
    "sign_payload",
    "signature_section",
    "verify_signature",
]


def open_key(
    ref: str,
    *,
    kms_region: str | None = None,
    kms_endpoint: str | None = None,
    kms_message_type: str = "digest",
) -> KeyBackend:
    """A PEM key file, or a KMS key (ARN, alias ARN, alias name, key ID)."""
    from eifbuild.sign import kms

    if ref.startswith("arn:") or (not Path(ref).exists() and kms.looks_like_kms(ref)):
        return kms.open_kms_key(ref, kms_region, kms_endpoint, kms_message_type)
    if not Path(ref).exists():
        raise SigningError(f"private key {ref}: no such file, and not a KMS key ARN, alias or ID")
    return load_pem_key(ref)


def check_certificate(
    cert_pem: bytes,
    what: str,
    *,
    key: ec.EllipticCurvePublicKey | None = None,
    allow_expired: bool = False,
    now: dt.datetime | None = None,
) -> tuple[x509.Certificate, Alg]:
    """Load the first certificate in ``cert_pem`` and check it for signing.

    Checks: EC key on a supported curve, same public key as ``key`` (when given), and the
    validity window (unless ``allow_expired``).
    """
    cert = load_certificate(cert_pem, what)
    pub = certificate_public_key(cert, what)
    alg = alg_for_public_key(pub, what)
    if key is not None and not same_public_key(pub, key):
        raise SigningError(f"{what}: its public key does not match the private key")
    problem = validity_problem(cert, now or utc_now())
    if problem and not allow_expired:
        raise SigningError(f"{what}: certificate {problem} (use --allow-expired to sign anyway)")
    return cert, alg


def _sign_checked(
    backend: KeyBackend, pub: ec.EllipticCurvePublicKey, alg: Alg, payload: bytes
) -> bytes:
    tbs = sig_structure(protected_header(alg), payload)
    raw = backend.sign(alg, tbs)
    if not verify_digest(pub, alg, alg.digest(tbs), raw):
        hint = str(getattr(backend, "verify_hint", ""))
        raise SigningError(
            f"{backend.description}: produced a signature that does not verify{hint}"
        )
    return encode_sign1(alg, payload, raw)


@dataclass
class EifSigner:
    """Signs PCR0 with a checked (certificate, key) pair; callable as the writer's signer."""

    cert_pem: bytes
    backend: KeyBackend
    alg: Alg
    pub: ec.EllipticCurvePublicKey

    @classmethod
    def create(
        cls,
        cert_pem: bytes,
        backend: KeyBackend,
        *,
        cert_name: str = "signing certificate",
        allow_expired: bool = False,
        now: dt.datetime | None = None,
    ) -> EifSigner:
        """Validate everything that can be validated before any output is written."""
        pub = backend.public_key()
        alg_for_public_key(pub, backend.description)
        _, alg = check_certificate(
            cert_pem, cert_name, key=pub, allow_expired=allow_expired, now=now
        )
        return cls(cert_pem=cert_pem, backend=backend, alg=alg, pub=pub)

    def cose(self, pcr0_raw: bytes) -> bytes:
        """COSE_Sign1 over ``PcrInfo{0, pcr0_raw}``."""
        return _sign_checked(self.backend, self.pub, self.alg, pcr_info(pcr0_raw, 0))

    def __call__(self, pcr0_raw: bytes) -> bytes:
        return signature_section(self.cert_pem, self.cose(pcr0_raw))


def signature_section(cert_pem: bytes, cose: bytes) -> bytes:
    """The signature section data (type 4) for one (certificate, COSE_Sign1) entry."""
    from eifbuild.eif.signature import encode_signature_section

    return encode_signature_section([(cert_pem, cose)])


def sign_payload(payload: bytes, backend: KeyBackend) -> bytes:
    """Sign a detached ``PcrInfo`` payload (as written by ``measure --payload``)."""
    index, value = parse_pcr_info(payload)
    if index != 0:
        raise SigningError(f"signing payload is for PCR{index}; only PCR0 is signed")
    if len(value) != 48:
        raise SigningError(f"signing payload holds a {len(value)}-byte value, not a SHA-384 PCR0")
    pub = backend.public_key()
    alg = alg_for_public_key(pub, backend.description)
    return _sign_checked(backend, pub, alg, payload)


@dataclass(frozen=True)
class SignatureReport:
    """Outcome of checking one signature entry against a recomputed PCR0."""

    alg: str
    payload_matches: bool  # COSE payload == PcrInfo{0, recomputed PCR0}, byte for byte
    validity_problem: str | None  # None when "now" is inside the certificate window
    certificate: x509.Certificate


def verify_signature(
    cert_pem: bytes, cose: bytes, pcr0_raw: bytes, *, now: dt.datetime | None = None
) -> SignatureReport:
    """Verify ``cose`` over ``PcrInfo{0, pcr0_raw}`` with the certificate's key.

    The signature is checked over the payload *rebuilt from pcr0_raw*, never over the payload
    carried in the message; a cryptographically bad signature raises VerificationError.
    """
    try:
        cert = load_certificate(cert_pem, "signing certificate")
        pub = certificate_public_key(cert, "signing certificate")
        cert_alg = alg_for_public_key(pub, "signing certificate")
    except SigningError as exc:
        raise VerificationError(str(exc)) from None
    msg = decode_sign1(cose)
    if msg.alg != cert_alg:
        raise VerificationError(
            f"signature algorithm {msg.alg.name} does not match the certificate's {cert_alg.name} key"
        )
    if not verify_digest(pub, msg.alg, msg.alg.digest(msg.tbs()), msg.signature):
        raise VerificationError("signature does not verify with the signing certificate's key")
    expected = pcr_info(pcr0_raw, 0)
    return SignatureReport(
        alg=msg.alg.name,
        payload_matches=msg.payload == expected,
        validity_problem=validity_problem(cert, now or utc_now()),
        certificate=cert,
    )


def describe_signature(
    cert_pem: bytes, cose: bytes, pcr0_raw: bytes
) -> tuple[dict[str, object], bool]:
    """nitro-cli ``describe-eif``'s ``SigningCertificate`` object and ``SignatureCheck``.

    Raises VerificationError for a signature that does not verify (describe-eif fails too).
    """
    report = verify_signature(cert_pem, cose, pcr0_raw)
    return certificate_info(report.certificate), report.payload_matches
