"""Nitro Enclaves attestation documents: parse, verify, and report them as plain data.

An attestation document is what an enclave gets from the Nitro Secure Module: a COSE_Sign1
(CBOR, tagged or not) whose payload is a CBOR map with ``module_id``, ``digest``
(``"SHA384"``), ``timestamp`` (milliseconds since the epoch), ``pcrs`` ({index: 48 bytes}),
``certificate`` (the DER leaf that signed it), ``cabundle`` (DER certificates from the root
down to the leaf's issuer) and the optional ``public_key``, ``user_data`` and ``nonce``
(AWS Nitro Enclaves User Guide, "Verifying the root of trust"; the NSM API's attestation
document definition).

Verification: the first ``cabundle`` certificate must be the trusted root (by default the
AWS Nitro Enclaves root G1 shipped in ``eifbuild/data/`` and pinned here by its SHA-256
fingerprint), each following certificate must be issued by the one before it and be a CA
within its path length, the leaf by the last one, every certificate valid at the given time
(leaf certificates live for about three hours, so old documents need an explicit time), and
the ES384 signature over the COSE Sig_structure must verify with the leaf's P-384 key.
A document whose PCR0, PCR1 and PCR2 are all zeros comes from a debug-mode enclave.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from eifbuild.errors import AttestationError, VerificationError
from eifbuild.limits import DEFAULT_LIMITS
from eifbuild.sign.cose import ES384, decode_sign1
from eifbuild.sign.keys import raw_to_der, utc_now, validity_problem
from eifbuild.smallfile import read_small_file

ROOT_PEM = Path(__file__).resolve().parent / "data" / "aws-nitro-enclaves-root-g1.pem"
# SHA-256 of the DER root certificate, as AWS publishes it for AWS_NitroEnclaves_Root-G1.
AWS_ROOT_SHA256 = "641A0321A3E244EFE456463195D606317ED7CDCC3C1756E09893F3C68F79BB5B"

MAX_DOCUMENT_FILE = DEFAULT_LIMITS.max_attestation_file_bytes
MAX_CERT_SIZE = DEFAULT_LIMITS.max_attestation_cert_bytes
MAX_CABUNDLE = DEFAULT_LIMITS.max_attestation_cabundle
MAX_FIELD = DEFAULT_LIMITS.max_attestation_field_bytes
PCR_SIZES = (32, 48, 64)
MAX_TIMESTAMP_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z: datetime's range ends there
DEBUG_PCRS = (0, 1, 2)


@dataclass(frozen=True)
class CertInfo:
    subject: str
    issuer: str
    serial: str
    not_before: str
    not_after: str

    def as_json(self) -> dict[str, str]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "not_before": self.not_before,
            "not_after": self.not_after,
        }


@dataclass(frozen=True)
class AttestationDocument:
    """A verified attestation document (bytes as lowercase hex)."""

    module_id: str
    digest: str
    timestamp_ms: int
    pcrs: dict[int, str]
    certificate: CertInfo
    cabundle: tuple[CertInfo, ...]
    public_key: str | None
    user_data: str | None
    nonce: str | None
    root_sha256: str
    root_is_aws: bool
    verified_at: str | None  # the --at time, when one was given
    warnings: tuple[str, ...] = field(default=())

    @property
    def time(self) -> str:
        t = dt.datetime.fromtimestamp(self.timestamp_ms / 1000, dt.UTC)
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.timestamp_ms % 1000:03d}Z"

    @property
    def debug_mode(self) -> bool:
        """PCR0, PCR1 and PCR2 all zeros: the enclave was started in debug mode."""
        return all(i in self.pcrs and set(self.pcrs[i]) == {"0"} for i in DEBUG_PCRS)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "module_id": self.module_id,
            "digest": self.digest,
            "timestamp": self.timestamp_ms,
            "time": self.time,
            "debug_mode": self.debug_mode,
            "pcrs": {str(i): v for i, v in sorted(self.pcrs.items())},
            "certificate": self.certificate.as_json(),
            "cabundle": [c.as_json() for c in self.cabundle],
            "public_key": self.public_key,
            "user_data": self.user_data,
            "nonce": self.nonce,
            "root": {"sha256": self.root_sha256, "aws_nitro_enclaves_root": self.root_is_aws},
            "warnings": list(self.warnings),
        }
        if self.verified_at is not None:
            out["verified_at"] = self.verified_at
        return out


# ------------------------------------------------------------------------------ inputs


def _fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest().upper()


def load_root(path: str | os.PathLike[str] | None = None) -> x509.Certificate:
    """The trust anchor: ``path`` (a PEM or DER certificate) or the pinned AWS root."""
    where = f"root certificate {os.fspath(path)}" if path is not None else "AWS root"
    raw = read_small_file(path or ROOT_PEM, "root certificate", MAX_CERT_SIZE * 2, AttestationError)
    try:
        if b"-----BEGIN" in raw:
            cert = x509.load_pem_x509_certificate(raw)
        else:
            cert = x509.load_der_x509_certificate(raw)
        _ = (cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc)
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion):
        raise AttestationError(f"{where}: not an X.509 certificate") from None
    if path is None:
        fp = _fingerprint(cert.public_bytes(serialization.Encoding.DER))
        if fp != AWS_ROOT_SHA256:
            raise AttestationError(
                f"{ROOT_PEM}: SHA-256 {fp} is not the AWS Nitro Enclaves root {AWS_ROOT_SHA256}"
            )
    return cert


def read_document(path: str | os.PathLike[str]) -> bytes:
    """The COSE_Sign1 bytes of a document file: raw CBOR, or base64 (any line breaks)."""
    raw = read_small_file(path, "attestation document", MAX_DOCUMENT_FILE, AttestationError)
    return decode_document(raw, os.fspath(path))


def decode_document(raw: bytes, where: str) -> bytes:
    if raw[:1] in (b"\x84", b"\xd2"):  # CBOR array(4), or tag 18 (COSE_Sign1)
        return raw
    text = b"".join(raw.split())
    try:
        alt = b"-_" if (b"-" in text or b"_" in text) else None
        data = base64.b64decode(text + b"=" * (-len(text) % 4), altchars=alt, validate=True)
    except (binascii.Error, ValueError):
        raise AttestationError(f"{where}: neither CBOR nor base64 of a COSE_Sign1") from None
    if data[:1] not in (b"\x84", b"\xd2"):
        raise AttestationError(f"{where}: neither CBOR nor base64 of a COSE_Sign1")
    return data


def parse_time(text: str) -> dt.datetime:
    """``--at``: an ISO 8601 time (UTC unless it says otherwise) or ``@EPOCH`` seconds."""
    try:
        if text.startswith("@"):
            return dt.datetime.fromtimestamp(float(text[1:]), dt.UTC)
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise AttestationError(
            f"time {text!r} is not ISO 8601 (2024-09-07T14:37:40Z) or @EPOCH"
        ) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


# ------------------------------------------------------------------------------ parsing


def _bytes(payload: Mapping[Any, Any], key: str, where: str, limit: int, optional: bool) -> Any:
    value = payload.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, bytes) or len(value) > limit or (not optional and not value):
        raise AttestationError(f"{where}: {key} is not a byte string of at most {limit} bytes")
    return value


def _cert(der: bytes, where: str, what: str) -> x509.Certificate:
    try:
        cert = x509.load_der_x509_certificate(der)
        _ = (cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc)
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion):
        raise AttestationError(f"{where}: {what} is not a DER X.509 certificate") from None
    return cert


def _info(cert: x509.Certificate) -> CertInfo:
    def name(n: x509.Name) -> str:
        return " ".join(n.rfc4514_string().split())

    return CertInfo(
        subject=name(cert.subject),
        issuer=name(cert.issuer),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        not_after=cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def _cn(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else cert.subject.rfc4514_string()
    return " ".join(str(value).split())[:100]


def _check_ca(cert: x509.Certificate, below: int, where: str, what: str) -> None:
    """A CA certificate with ``below`` CA certificates under it (the leaf not counted)."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise AttestationError(f"{where}: {what} ({_cn(cert)}) is not a CA certificate") from None
    except ValueError:
        raise AttestationError(f"{where}: {what} has malformed extensions") from None
    if not bc.ca:
        raise AttestationError(f"{where}: {what} ({_cn(cert)}) is not a CA certificate")
    if bc.path_length is not None and below > bc.path_length:
        raise AttestationError(
            f"{where}: {what} ({_cn(cert)}) allows {bc.path_length} CAs below it, has {below}"
        )
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not ku.key_cert_sign:
        raise AttestationError(f"{where}: {what} ({_cn(cert)}) may not sign certificates")


def _issued(child: x509.Certificate, parent: x509.Certificate, where: str, what: str) -> None:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        raise AttestationError(
            f"{where}: {what} ({_cn(child)}) is not issued by {_cn(parent)} "
            "(certificates swapped or forged)"
        ) from None


def _valid(cert: x509.Certificate, at: dt.datetime, where: str, what: str) -> None:
    problem = validity_problem(cert, at)
    if problem is not None:
        raise AttestationError(
            f"{where}: {what} ({_cn(cert)}) {problem} (checked at "
            f"{at:%Y-%m-%d %H:%M:%S} UTC; an old document needs --at its time)"
        )


def verify_document(
    data: bytes,
    where: str,
    *,
    root: x509.Certificate | None = None,
    at: dt.datetime | str | None = None,
) -> AttestationDocument:
    """Verify a COSE_Sign1 attestation document and return its contents.

    ``root`` defaults to the pinned AWS Nitro Enclaves root. ``at`` is the time certificates
    must be valid at: a datetime, ``"document"`` (the document's own timestamp) or None
    (now). Any failure is an AttestationError with a one-line message naming ``where``.
    """
    try:
        msg = decode_sign1(data)
    except VerificationError as exc:
        raise AttestationError(f"{where}: {exc}") from None
    if msg.alg != ES384:
        raise AttestationError(f"{where}: signed with {msg.alg.name}; Nitro documents use ES384")
    try:
        payload = cbor2.loads(msg.payload)
    except Exception:
        raise AttestationError(f"{where}: payload is not valid CBOR") from None
    if not isinstance(payload, dict):
        raise AttestationError(f"{where}: payload is not a CBOR map")
    module_id = payload.get("module_id")
    if not isinstance(module_id, str) or not module_id or len(module_id) > 256:
        raise AttestationError(f"{where}: module_id is not a non-empty text string")
    digest = payload.get("digest")
    if digest != "SHA384":
        raise AttestationError(f"{where}: digest is {digest!r}, expected 'SHA384'")
    ts = payload.get("timestamp")
    if not isinstance(ts, int) or isinstance(ts, bool) or not 0 < ts < MAX_TIMESTAMP_MS:
        raise AttestationError(f"{where}: timestamp is not milliseconds before the year 10000")
    raw_pcrs = payload.get("pcrs")
    if not isinstance(raw_pcrs, dict) or not 1 <= len(raw_pcrs) <= 32:
        raise AttestationError(f"{where}: pcrs is not a map of 1 to 32 registers")
    pcrs: dict[int, str] = {}
    for k, v in raw_pcrs.items():
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < 32:
            raise AttestationError(f"{where}: PCR index {k!r} is not 0..31")
        if not isinstance(v, bytes) or len(v) not in PCR_SIZES:
            raise AttestationError(f"{where}: PCR{k} is not 32, 48 or 64 bytes")
        pcrs[k] = v.hex()
    leaf_der = _bytes(payload, "certificate", where, MAX_CERT_SIZE, False)
    bundle = payload.get("cabundle")
    if not isinstance(bundle, list) or not 1 <= len(bundle) <= MAX_CABUNDLE:
        raise AttestationError(f"{where}: cabundle is not a list of 1 to {MAX_CABUNDLE} certs")
    for i, der in enumerate(bundle):
        if not isinstance(der, bytes) or not 0 < len(der) <= MAX_CERT_SIZE:
            raise AttestationError(f"{where}: cabundle[{i}] is not a certificate")
    public_key = _bytes(payload, "public_key", where, MAX_FIELD, True)
    user_data = _bytes(payload, "user_data", where, MAX_FIELD, True)
    nonce = _bytes(payload, "nonce", where, MAX_FIELD, True)

    anchor = root if root is not None else load_root()
    anchor_der = anchor.public_bytes(serialization.Encoding.DER)
    anchor_fp = _fingerprint(anchor_der)
    if isinstance(at, str):
        if at != "document":
            raise AttestationError(f"unknown verification time {at!r}")
        when = dt.datetime.fromtimestamp(ts / 1000, dt.UTC)
    else:
        when = at if at is not None else utc_now()
    certs = [_cert(der, where, f"cabundle[{i}]") for i, der in enumerate(bundle)]
    leaf = _cert(leaf_der, where, "certificate")
    if bundle[0] != anchor_der:
        raise AttestationError(
            f"{where}: the chain does not start at the trusted root: cabundle[0] "
            f"({_cn(certs[0])}) has SHA-256 {_fingerprint(bundle[0])}, the root {anchor_fp}"
        )
    for i, cert in enumerate(certs):
        what = "root" if i == 0 else f"cabundle[{i}]"
        _check_ca(cert, len(certs) - 1 - i, where, what)
        _valid(cert, when, where, what)
        if i > 0:
            _issued(cert, certs[i - 1], where, what)
    _issued(leaf, certs[-1], where, "the signing certificate")
    _valid(leaf, when, where, "the signing certificate")
    pub = leaf.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name != ES384.curve:
        raise AttestationError(f"{where}: the signing certificate's key is not EC P-384")
    try:
        sig_der = raw_to_der(ES384, msg.signature)
        pub.verify(sig_der, msg.tbs(), ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, VerificationError, ValueError):
        raise AttestationError(
            f"{where}: the ES384 signature does not verify (payload altered, or signed by "
            "another key than the certificate's)"
        ) from None

    warnings: list[str] = []
    doc = AttestationDocument(
        module_id=" ".join(module_id.split()),
        digest=digest,
        timestamp_ms=ts,
        pcrs=pcrs,
        certificate=_info(leaf),
        cabundle=tuple(_info(c) for c in certs),
        public_key=public_key.hex() if public_key is not None else None,
        user_data=user_data.hex() if user_data is not None else None,
        nonce=nonce.hex() if nonce is not None else None,
        root_sha256=anchor_fp,
        root_is_aws=anchor_fp == AWS_ROOT_SHA256,
        verified_at=when.strftime("%Y-%m-%dT%H:%M:%SZ") if at is not None else None,
    )
    if doc.debug_mode:
        warnings.append(
            "debug-mode enclave: PCR0, PCR1 and PCR2 are all zeros (started with "
            "--debug-mode); its memory is readable from the parent and no key policy pinning "
            "real measurements lets it decrypt"
        )
    if not doc.root_is_aws:
        warnings.append(f"verified against root SHA-256 {anchor_fp}, not the AWS root")
    return replace(doc, warnings=tuple(warnings))


def load_and_verify(
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    at: dt.datetime | str | None = None,
) -> AttestationDocument:
    """Read a document file (raw or base64) and verify it (see :func:`verify_document`)."""
    anchor = load_root(root) if root is not None else None
    return verify_document(read_document(path), os.fspath(path), root=anchor, at=at)


def summary_lines(doc: AttestationDocument, pcrs: Sequence[int] | None = None) -> list[str]:
    """A human description, one fact per line (used by ``eifbuild attestation``)."""
    lines = [
        f"module      {doc.module_id}",
        f"time        {doc.time} ({doc.timestamp_ms} ms)",
    ]
    shown = pcrs if pcrs is not None else sorted(doc.pcrs)
    for i in shown:
        if i in doc.pcrs and (i in (0, 1, 2, 3, 4, 8) or set(doc.pcrs[i]) != {"0"}):
            lines.append(f"PCR{i:<9d} {doc.pcrs[i]}")

    def field_line(label: str, value: str | None) -> str:
        if value is None:
            return f"{label:<11s} (none)"
        n = len(value) // 2
        shown = value if n <= 64 else value[:128] + "…"
        return f"{label:<11s} {shown} ({n} bytes)"

    lines.append(field_line("user data", doc.user_data))
    lines.append(field_line("nonce", doc.nonce))
    lines.append(field_line("public key", doc.public_key))
    lines.append(f"signed by   {doc.certificate.subject}")
    lines.append(f"            valid {doc.certificate.not_before} .. {doc.certificate.not_after}")
    root = "AWS Nitro Enclaves root G1" if doc.root_is_aws else "an overridden root"
    lines.append(
        f"chain       {len(doc.cabundle)} CA certificates to {root} (SHA-256 {doc.root_sha256})"
    )
    return lines
