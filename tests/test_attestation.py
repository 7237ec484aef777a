"""Attestation documents: two real ones (tests/vectors/attestation/PROVENANCE.md), verified at
their own time against AWS's root, and documents built here with a test CA for the chain logic.

The test documents are assembled with cbor2 and cryptography directly (COSE_Sign1 per RFC 8152:
``[protected, {}, payload, signature]``, signature over ``["Signature1", protected, b"",
payload]``, ES384 as raw r||s), not with eifbuild's COSE helpers.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.helpers.cli import run_main

VECTORS = Path(__file__).resolve().parent / "vectors" / "attestation"
REAL = VECTORS / "nitro-2024-09-07.b64"
DEBUG = VECTORS / "nitro-debug-2024-09-07.b64"
ROOT_PEM = Path(__file__).resolve().parent.parent / "eifbuild/data/aws-nitro-enclaves-root-g1.pem"
AWS_FP = "641A0321A3E244EFE456463195D606317ED7CDCC3C1756E09893F3C68F79BB5B"  # AWS documents it
REAL_PCR0 = (
    "e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9f3857758992766f2"
    "d65710a27aa94ae3949dd54e7c9fe86a"
)
T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return run_main(capsys, *argv)


def test_shipped_root_is_the_published_one() -> None:
    cert = x509.load_pem_x509_certificate(ROOT_PEM.read_bytes())
    der = cert.public_bytes(serialization.Encoding.DER)
    assert hashlib.sha256(der).hexdigest().upper() == AWS_FP
    assert cert.subject.rfc4514_string() == "CN=aws.nitro-enclaves,OU=AWS,O=Amazon,C=US"


def test_real_document_verifies_at_its_time(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(["attestation", str(REAL), "--at", "document", "--json"], capsys)
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["module_id"] == "i-0a22e5c5f24d22174-enc0191cceb4289903f"
    assert doc["time"] == "2024-09-07T14:37:39.545Z" and doc["debug_mode"] is False
    assert doc["pcrs"]["0"] == REAL_PCR0 and len(doc["pcrs"]) == 16
    assert doc["root"] == {"sha256": AWS_FP, "aws_nitro_enclaves_root": True}
    assert doc["user_data"] == "01" * 1024 and len(doc["cabundle"]) == 4
    # the human form, at an explicit time inside the leaf's three hours
    rc, out, _ = run(["attestation", str(REAL), "--at", "2024-09-07T15:00:00Z"], capsys)
    assert rc == 0 and "signature and certificate chain verified" in out and REAL_PCR0 in out
    # today the leaf and the zonal certificates have long expired
    rc, out, err = run(["attestation", str(REAL)], capsys)
    assert rc == 1 and out == "" and err.count("\n") == 1 and "expired on 2024-09-" in err
    assert "--at" in err


def test_real_debug_document_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(["attestation", str(DEBUG), "--at", "document"], capsys)
    assert rc == 0 and "debug-mode enclave" in err
    rc, out, _ = run(["attestation", str(DEBUG), "--at", "document", "--json"], capsys)
    assert json.loads(out)["debug_mode"] is True


def test_real_document_raw_cbor_and_tampering(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = base64.b64decode(REAL.read_text())
    raw = tmp_path / "doc.cbor"
    raw.write_bytes(data)
    assert run(["attestation", str(raw), "--at", "document"], capsys)[0] == 0
    msg = cbor2.loads(data)
    payload = cbor2.loads(msg[2])
    payload["pcrs"][2] = bytes(48)  # claim another application
    msg[2] = cbor2.dumps(payload)
    bad = tmp_path / "tampered.cbor"
    bad.write_bytes(cbor2.dumps(msg))
    rc, _, err = run(["attestation", str(bad), "--at", "document"], capsys)
    assert rc == 1 and "ES384 signature does not verify" in err and err.count("\n") == 1


# ------------------------------------------------------------------------------ test CA


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    ca: bool,
    start: dt.datetime = T0 - dt.timedelta(days=1),
    days: float = 30,
) -> x509.Certificate:
    iname, ikey = issuer if issuer is not None else (_name(cn), key)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(iname)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return b.sign(ikey, hashes.SHA384())


class NitroTestCA:
    __test__ = False  # a helper, not a test class

    def __init__(self, leaf_days: float = 30) -> None:
        self.root_key = ec.generate_private_key(ec.SECP384R1())
        self.root = _cert("test-root", self.root_key, None, True)
        self.mid_key = ec.generate_private_key(ec.SECP384R1())
        self.mid = _cert("test-zonal", self.mid_key, (self.root.subject, self.root_key), True)
        self.leaf_key = ec.generate_private_key(ec.SECP384R1())
        self.leaf = _cert(
            "test-enclave", self.leaf_key, (self.mid.subject, self.mid_key), False, days=leaf_days
        )

    def pem(self, path: Path) -> str:
        path.write_bytes(self.root.public_bytes(serialization.Encoding.PEM))
        return str(path)

    def document(self, pcrs: dict[int, bytes], **over: Any) -> bytes:
        der = serialization.Encoding.DER
        payload = {
            "module_id": "i-test-enc0123",
            "digest": "SHA384",
            "timestamp": int(T0.timestamp() * 1000),
            "pcrs": pcrs,
            "certificate": self.leaf.public_bytes(der),
            "cabundle": [self.root.public_bytes(der), self.mid.public_bytes(der)],
            "public_key": None,
            "user_data": b"hello",
            "nonce": b"\x01\x02",
            **over,
        }
        protected = cbor2.dumps({1: -35})
        body = cbor2.dumps(payload)
        tbs = cbor2.dumps(["Signature1", protected, b"", body])
        r, s = decode_dss_signature(self.leaf_key.sign(tbs, ec.ECDSA(hashes.SHA384())))
        sig = r.to_bytes(48, "big") + s.to_bytes(48, "big")
        return cbor2.dumps(cbor2.CBORTag(18, [protected, {}, body, sig]))


PCRS = {0: b"\xaa" * 48, 1: b"\xbb" * 48, 2: b"\xcc" * 48, 8: bytes(48)}
AT = ["--at", "2025-03-01T12:00:00Z"]


def test_test_ca_document_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = NitroTestCA()
    doc = tmp_path / "doc.b64"
    doc.write_bytes(base64.b64encode(ca.document(PCRS)))
    root = ca.pem(tmp_path / "root.pem")
    rc, out, err = run(["attestation", str(doc), "--root", root, *AT, "--json"], capsys)
    assert rc == 0, err
    got = json.loads(out)
    assert got["pcrs"] == {str(i): v.hex() for i, v in PCRS.items()}
    assert got["user_data"] == b"hello".hex() and got["public_key"] is None
    assert got["root"]["aws_nitro_enclaves_root"] is False
    assert got["verified_at"] == "2025-03-01T12:00:00Z"
    # without --root: the chain does not start at AWS's root
    rc, _, err = run(["attestation", str(doc), *AT], capsys)
    assert rc == 1 and "does not start at the trusted root" in err and AWS_FP in err


def test_chain_failures_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = NitroTestCA()
    other = NitroTestCA()
    root = ca.pem(tmp_path / "root.pem")
    der = serialization.Encoding.DER
    cases: dict[str, tuple[bytes, list[str]]] = {
        "leaf from another CA": (
            ca.document(PCRS, certificate=other.leaf.public_bytes(der)),
            [*AT, "--root", root],
        ),
        "intermediate swapped": (
            ca.document(PCRS, cabundle=[ca.root.public_bytes(der), other.mid.public_bytes(der)]),
            [*AT, "--root", root],
        ),
        "wrong root": (ca.document(PCRS), [*AT, "--root", other.pem(tmp_path / "o.pem")]),
        "expired": (ca.document(PCRS), ["--at", "2026-01-01T00:00:00Z", "--root", root]),
        "not yet valid": (ca.document(PCRS), ["--at", "2020-01-01T00:00:00Z", "--root", root]),
        "garbage": (b"\x84\x01\x02", [*AT, "--root", root]),
        "no cabundle": (ca.document(PCRS, cabundle=[]), [*AT, "--root", root]),
        "short pcr": (ca.document({0: b"\x01" * 5}), [*AT, "--root", root]),
        # found by test_policy_hostile: a year beyond datetime's range was a ValueError
        "huge timestamp": (ca.document(PCRS, timestamp=2**62), ["--at", "document"]),
    }
    expected = {
        "leaf from another CA": "is not issued by test-zonal",
        "intermediate swapped": "cabundle[1] (test-zonal) is not issued by test-root",
        "wrong root": "does not start at the trusted root",
        "expired": "expired on",
        "not yet valid": "not valid before",
        "garbage": "COSE_Sign1",
        "no cabundle": "cabundle is not a list",
        "short pcr": "PCR0 is not 32, 48 or 64 bytes",
        "huge timestamp": "timestamp is not milliseconds before the year 10000",
    }
    for name, (data, extra) in cases.items():
        f = tmp_path / f"{name.replace(' ', '_')}.cbor"
        f.write_bytes(data)
        rc, out, err = run(["attestation", str(f), *extra], capsys)
        assert rc == 1 and out == "", name
        assert err.startswith("eifbuild: error: ") and err.count("\n") == 1, (name, err)
        assert expected[name] in err, (name, err)


def test_policy_check_with_attestation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = NitroTestCA()
    root = ca.pem(tmp_path / "root.pem")
    doc = tmp_path / "doc.cbor"
    doc.write_bytes(ca.document(PCRS))
    role = "arn:aws:iam::123456789012:role/parent"
    cond = {f"kms:RecipientAttestation:PCR{i}": PCRS[i].hex() for i in (0, 1, 2)}
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Enclave", "Effect": "Allow", "Principal": {"AWS": role},
             "Action": "kms:Decrypt", "Resource": "*",
             "Condition": {"StringEqualsIgnoreCase": cond}},
        ],
    }  # fmt: skip
    pol = tmp_path / "p.json"
    pol.write_text(json.dumps(policy))
    base = ["policy", "check", str(pol), "--attestation", str(doc), "--root", root, *AT]
    rc, out, _ = run([*base, "--role-arn", role], capsys)
    assert rc == 0 and "allowed by statement 'Enclave'" in out
    cond["kms:RecipientAttestation:PCR2"] = "4f1c" + "0" * 92
    pol.write_text(json.dumps(policy))
    rc, out, _ = run([*base, "--role-arn", role], capsys)
    assert rc == 1 and "PCR2 differs: policy pins 4f1c0000…, document has cccccccc…" in out
    # a debug-mode document (zero PCR0..2) is named as such
    dbg = tmp_path / "dbg.cbor"
    dbg.write_bytes(ca.document({0: bytes(48), 1: bytes(48), 2: bytes(48)}))
    rc, out, err = run(
        ["policy", "check", str(pol), "--attestation", str(dbg), "--root", root, *AT], capsys
    )
    assert rc == 1 and "debug-mode enclave" in err
