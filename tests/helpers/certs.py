"""Self-signed EC certificates for tests: the one place that builds an ordinary test cert.

Special-purpose certificates (patched encodings, CA-issued chains) are built where used;
``tests/sigref.py`` keeps its own builder, being an independent reference.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(
    key: ec.EllipticCurvePrivateKey | None = None,
    *,
    curve: ec.EllipticCurve | None = None,
    cn: str = "aws.nitro-enclaves",
    not_before: dt.datetime = dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    days: int = 3650,
    hash: hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None = None,
) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """A self-signed certificate (PEM) named ``CN=cn``, serial 1, and its key.

    A fresh key on ``curve`` (P-384 by default) unless ``key`` is given; valid from
    ``not_before`` for ``days`` days; signed with ``hash`` (SHA-384 by default).
    """
    key = key or ec.generate_private_key(curve or ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(not_before)
        .not_valid_after(not_before + dt.timedelta(days=days))
        .sign(key, hash or hashes.SHA384())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key
