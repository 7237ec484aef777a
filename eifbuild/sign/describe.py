"""nitro-cli's ``SigningCertificate`` description of an X.509 certificate.

Field texts follow OpenSSL: attribute and algorithm long names, ``ASN1_TIME_print`` dates
(``"Jan  1 00:00:00 2025 GMT"``) and uppercase colon-separated hex for the certificate's
own signature. Formatting is fixed here (no locale).
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

# OpenSSL long names (LN_*) for the name attributes seen in certificates.
_ATTR_LONG_NAMES: dict[str, str] = {
    "2.5.4.3": "commonName",
    "2.5.4.4": "surname",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "countryName",
    "2.5.4.7": "localityName",
    "2.5.4.8": "stateOrProvinceName",
    "2.5.4.9": "streetAddress",
    "2.5.4.10": "organizationName",
    "2.5.4.11": "organizationalUnitName",
    "2.5.4.12": "title",
    "2.5.4.17": "postalCode",
    "2.5.4.42": "givenName",
    "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier",
    "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym",
    "0.9.2342.19200300.100.1.1": "userId",
    "0.9.2342.19200300.100.1.25": "domainComponent",
    "1.2.840.113549.1.9.1": "emailAddress",
    "2.5.4.97": "organizationIdentifier",
}
_SIG_LONG_NAMES: dict[str, str] = {
    "1.2.840.10045.4.3.1": "ecdsa-with-SHA224",
    "1.2.840.10045.4.3.2": "ecdsa-with-SHA256",
    "1.2.840.10045.4.3.3": "ecdsa-with-SHA384",
    "1.2.840.10045.4.3.4": "ecdsa-with-SHA512",
    "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
    "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
    "1.2.840.113549.1.1.12": "sha384WithRSAEncryption",
    "1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
    "1.2.840.113549.1.1.10": "rsassaPss",
    "1.3.101.112": "ED25519",
}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _long_name(oid: ObjectIdentifier, table: dict[str, str]) -> str:
    return table.get(oid.dotted_string, oid.dotted_string)


def openssl_time(t: dt.datetime) -> str:
    """``ASN1_TIME_print`` form: ``"Mar  5 07:08:09 2025 GMT"``."""
    t = t.astimezone(dt.UTC)
    return f"{_MONTHS[t.month - 1]} {t.day:2d} {t:%H:%M:%S} {t.year} GMT"


def colon_hex(data: bytes) -> str:
    return ":".join(f"{b:02X}" for b in data)


def certificate_info(cert: x509.Certificate) -> dict[str, object]:
    """``SigningCertificate`` as nitro-cli prints it (IssuerName sorted by long name)."""
    issuer: dict[str, str] = {}
    for attr in cert.issuer:
        value = attr.value if isinstance(attr.value, str) else attr.value.hex()
        issuer[_long_name(attr.oid, _ATTR_LONG_NAMES)] = value  # later duplicates win
    return {
        "IssuerName": dict(sorted(issuer.items())),
        "Algorithm": _long_name(cert.signature_algorithm_oid, _SIG_LONG_NAMES),
        "NotBefore": openssl_time(cert.not_valid_before_utc),
        "NotAfter": openssl_time(cert.not_valid_after_utc),
        "Signature": colon_hex(cert.signature),
    }
