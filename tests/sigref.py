"""Independent reference checks of EIF signatures, written from docs/spec/eif.md §2, §6, §7.

Uses only the standard library, cbor2 and cryptography; it deliberately does not import
``eifbuild.sign`` (nor any eifbuild module), so a bug there cannot hide itself here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

# curve -> (protected header bytes, hash, coordinate size)   (docs/spec/eif.md §7.2 table)
CURVES = {
    "secp256r1": (bytes.fromhex("a10126"), hashes.SHA256(), 32),
    "secp384r1": (bytes.fromhex("a1013822"), hashes.SHA384(), 48),
    "secp521r1": (bytes.fromhex("a1013823"), hashes.SHA512(), 66),
}


def pcr(content: bytes) -> bytes:
    """PCR = SHA-384(48 zero bytes || SHA-384(content)) (docs/spec/eif.md §6.1)."""
    return hashlib.sha384(b"\0" * 48 + hashlib.sha384(content).digest()).digest()


def pcr8(cert_pem: bytes) -> bytes:
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return pcr(der)


def pcr_info(pcr0: bytes) -> bytes:
    """docs/spec/eif.md §7.3: map of two text keys; the value as an array of uints (cbor2 encodes ints minimally)."""
    return cbor2.dumps({"register_index": 0, "register_value": list(pcr0)})


def section(cert_pem: bytes, cose: bytes) -> bytes:
    """docs/spec/eif.md §7.1 outer structure for one entry."""
    return cbor2.dumps([{"signing_certificate": list(cert_pem), "signature": list(cose)}])


def parse_section(data: bytes) -> list[tuple[bytes, bytes]]:
    obj = cbor2.loads(data)
    assert isinstance(obj, list) and obj, "section is a non-empty array"
    out = []
    for entry in obj:
        assert list(entry) == ["signing_certificate", "signature"], entry.keys()
        out.append((bytes(entry["signing_certificate"]), bytes(entry["signature"])))
    assert cbor2.dumps(obj) == data, "section is not in serde's canonical encoding"
    return out


def verify_cose(cert_pem: bytes, cose: bytes, pcr0: bytes) -> None:
    """Assert ``cose`` is an AWS-style COSE_Sign1 over PcrInfo{0, pcr0} by the cert's key."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    pub = cert.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    protected, hash_alg, n = CURVES[pub.curve.name]
    msg = cbor2.loads(cose)
    assert not isinstance(msg, cbor2.CBORTag), "COSE_Sign1 must be untagged"
    assert isinstance(msg, list) and len(msg) == 4
    assert msg[0] == protected, msg[0].hex()
    assert msg[1] == {}
    assert msg[2] == pcr_info(pcr0), "payload is not PcrInfo{0, PCR0}"
    assert len(msg[3]) == 2 * n
    assert cbor2.dumps(msg) == cose, "COSE_Sign1 is not canonically encoded"
    tbs = cbor2.dumps(["Signature1", protected, b"", msg[2]])
    r, s = int.from_bytes(msg[3][:n], "big"), int.from_bytes(msg[3][n:], "big")
    pub.verify(encode_dss_signature(r, s), tbs, ec.ECDSA(hash_alg))  # raises InvalidSignature


@dataclass
class EifRef:
    """An EIF parsed independently: section types/data, PCRs and CRC."""

    version: int
    flags: int
    sections: list[tuple[int, bytes]] = field(default_factory=list)
    crc_ok: bool = False
    sizes_ok: bool = False

    def data(self, stype: int) -> list[bytes]:
        return [d for t, d in self.sections if t == stype]

    @property
    def pcr0(self) -> bytes:
        return pcr(b"".join(d for t, d in self.sections if t in (1, 2, 3)))

    @property
    def pcr1(self) -> bytes:
        return pcr(b"".join(self.data(1) + self.data(2) + self.data(3)[:1]))

    @property
    def pcr2(self) -> bytes:
        return pcr(b"".join(self.data(3)[1:]))


def read_eif(path: Path) -> EifRef:
    raw = path.read_bytes()
    magic, version, flags, _mem, _cpu, _res, nsec = struct.unpack(">4sHHQQHH", raw[:28])
    assert magic == b".eif"
    offsets = struct.unpack(">32Q", raw[28:284])
    sizes = struct.unpack(">32Q", raw[284:540])
    (crc,) = struct.unpack(">I", raw[544:548])
    ref = EifRef(version=version, flags=flags)
    pos = 548
    while pos + 12 <= len(raw):
        stype, _f, size = struct.unpack(">HHQ", raw[pos : pos + 12])
        ref.sections.append((stype, raw[pos + 12 : pos + 12 + size]))
        pos += 12 + size
    assert pos == len(raw), "sections do not end at EOF"
    ref.crc_ok = zlib.crc32(raw[:544] + raw[548:]) == crc
    ref.sizes_ok = (
        len(ref.sections) == nsec
        and all(sizes[i] == len(ref.sections[i][1]) for i in range(nsec))
        and offsets[0] == 548
    )
    return ref


def verify_eif(path: Path, cert_pem: bytes | None = None) -> EifRef:
    """Assert a signed EIF is consistent and its signature verifies; return the parse."""
    ref = read_eif(path)
    assert ref.crc_ok, "CRC mismatch"
    assert ref.sizes_ok, "header sizes/offsets disagree with the sections"
    sigs = ref.data(4)
    assert len(sigs) == 1 and ref.sections[-1][0] == 4, "one signature section, last"
    ((cert, cose),) = parse_section(sigs[0])
    if cert_pem is not None:
        assert cert == cert_pem, "certificate bytes are not the PEM file verbatim"
    verify_cose(cert, cose, ref.pcr0)
    return ref


def make_cert(
    tmp: Path,
    curve: ec.EllipticCurve | None = None,
    *,
    name: str = "signer",
    not_before: dt.datetime | None = None,
    days: int = 365,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[Path, Path]:
    """Write ``name.key`` (PKCS#8 PEM) and a self-signed ``name.pem``; return both paths.

    Like nitro-cli's test helper: CN aws.nitro-enclaves, SHA-384, one year by default.
    """
    key = key or ec.generate_private_key(curve or ec.SECP384R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Amazon"),
            x509.NameAttribute(NameOID.COMMON_NAME, "aws.nitro-enclaves"),
        ]
    )
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .sign(key, hashes.SHA384())
    )
    key_path, cert_path = tmp / f"{name}.key", tmp / f"{name}.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path
