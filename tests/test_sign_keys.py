"""Local PEM keys: algorithm per curve, certificate checks, signatures checked by tests/sigref.py."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from eifbuild.errors import SigningError, VerificationError
from eifbuild.sign import (
    EifSigner,
    cose,
    describe_signature,
    open_key,
    sign_payload,
    verify_signature,
)
from tests import sigref

PCR0 = hashlib.sha384(b"pcr0").digest()


@pytest.mark.parametrize(
    "curve, alg, sig_len",
    [(ec.SECP256R1(), "ES256", 64), (ec.SECP384R1(), "ES384", 96), (ec.SECP521R1(), "ES512", 132)],
)
def test_sign_each_curve_verified_independently(
    tmp_path: Path, curve: ec.EllipticCurve, alg: str, sig_len: int
) -> None:
    key, cert = sigref.make_cert(tmp_path, curve)
    signer = EifSigner.create(cert.read_bytes(), open_key(str(key)))
    assert signer.alg.name == alg
    msg = signer.cose(PCR0)
    sigref.verify_cose(cert.read_bytes(), msg, PCR0)
    assert len(cose.decode_sign1(msg).signature) == sig_len
    report = verify_signature(cert.read_bytes(), msg, PCR0)
    assert report.payload_matches and report.alg == alg and report.validity_problem is None


def test_sec1_key_accepted(tmp_path: Path) -> None:
    k = ec.generate_private_key(ec.SECP384R1())
    key, cert = sigref.make_cert(tmp_path, key=k)
    key.write_bytes(
        k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    assert b"BEGIN EC PRIVATE KEY" in key.read_bytes()
    sigref.verify_cose(
        cert.read_bytes(), EifSigner.create(cert.read_bytes(), open_key(str(key))).cose(PCR0), PCR0
    )


def test_certificate_of_another_key_refused(tmp_path: Path) -> None:
    key, _ = sigref.make_cert(tmp_path, name="a")
    _, cert = sigref.make_cert(tmp_path, name="b")
    with pytest.raises(SigningError, match="does not match the private key"):
        EifSigner.create(cert.read_bytes(), open_key(str(key)))


def test_expired_and_future_certificates(tmp_path: Path) -> None:
    old = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    key, cert = sigref.make_cert(tmp_path, not_before=old, days=30)
    with pytest.raises(SigningError, match=r"expired on 2020-01-31 00:00:00 UTC.*--allow-expired"):
        EifSigner.create(cert.read_bytes(), open_key(str(key)))
    signer = EifSigner.create(cert.read_bytes(), open_key(str(key)), allow_expired=True)
    sigref.verify_cose(cert.read_bytes(), signer.cose(PCR0), PCR0)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=10)
    key2, cert2 = sigref.make_cert(tmp_path, name="f", not_before=future)
    with pytest.raises(SigningError, match="not valid before"):
        EifSigner.create(cert2.read_bytes(), open_key(str(key2)))


def test_unsupported_keys(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p = tmp_path / "rsa.pem"
    p.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(SigningError, match="not an EC key"):
        open_key(str(p))
    k224 = ec.generate_private_key(ec.SECP224R1())
    p.write_bytes(
        k224.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(SigningError, match="curve secp224r1 is not supported"):
        open_key(str(p))
    k = ec.generate_private_key(ec.SECP384R1())
    p.write_bytes(
        k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    with pytest.raises(SigningError, match="encrypted keys are not supported"):
        open_key(str(p))
    p.write_bytes(b"hello")
    with pytest.raises(SigningError, match="not a PEM private key"):
        open_key(str(p))
    with pytest.raises(SigningError, match="no such file"):
        open_key(str(tmp_path / "missing.pem"))
    key, _ = sigref.make_cert(tmp_path)
    with pytest.raises(SigningError, match=r"not a PEM X.509 certificate"):
        EifSigner.create(b"not a cert", open_key(str(key)))


def test_sign_payload_detached(tmp_path: Path) -> None:
    key, cert = sigref.make_cert(tmp_path)
    msg = sign_payload(cose.pcr_info(PCR0), open_key(str(key)))
    sigref.verify_cose(cert.read_bytes(), msg, PCR0)
    with pytest.raises(SigningError, match="for PCR3"):
        sign_payload(cose.pcr_info(PCR0, 3), open_key(str(key)))
    with pytest.raises(SigningError, match="32-byte value"):
        sign_payload(cose.pcr_info(PCR0[:32]), open_key(str(key)))
    with pytest.raises(VerificationError, match=r"not valid CBOR|not a PcrInfo"):
        sign_payload(b"\xff\x00", open_key(str(key)))


def test_verify_signature_failures(tmp_path: Path) -> None:
    key, cert = sigref.make_cert(tmp_path)
    pem = cert.read_bytes()
    msg = EifSigner.create(pem, open_key(str(key))).cose(PCR0)
    # another PCR0: the signature is valid but over another image
    report = verify_signature(pem, msg, hashlib.sha384(b"other").digest())
    assert not report.payload_matches
    # a flipped bit in r
    bad = bytearray(msg)
    bad[-50] ^= 1
    with pytest.raises(VerificationError, match="does not verify"):
        verify_signature(pem, bytes(bad), PCR0)
    # the certificate of another key
    _, other = sigref.make_cert(tmp_path, name="o")
    with pytest.raises(VerificationError, match="does not verify"):
        verify_signature(other.read_bytes(), msg, PCR0)
    # a P-256 certificate with an ES384 message
    _, p256 = sigref.make_cert(tmp_path, ec.SECP256R1(), name="p")
    with pytest.raises(VerificationError, match="does not match the certificate"):
        verify_signature(p256.read_bytes(), msg, PCR0)


def test_describe_signature_fields(tmp_path: Path) -> None:
    start = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    key, cert = sigref.make_cert(tmp_path, not_before=start, days=3650)
    pem = cert.read_bytes()
    msg = EifSigner.create(pem, open_key(str(key))).cose(PCR0)
    info, check = describe_signature(pem, msg, PCR0)
    assert check is True
    assert info["IssuerName"] == {
        "commonName": "aws.nitro-enclaves",
        "countryName": "US",
        "organizationName": "Amazon",
    }
    assert list(info) == ["IssuerName", "Algorithm", "NotBefore", "NotAfter", "Signature"]
    assert info["Algorithm"] == "ecdsa-with-SHA384"
    assert info["NotBefore"] == "Jan  2 03:04:05 2025 GMT"
    assert info["NotAfter"] == "Dec 31 03:04:05 2034 GMT"
    sig = str(info["Signature"])
    assert sig.startswith("30:") and sig == sig.upper()
    from cryptography import x509

    assert bytes.fromhex(sig.replace(":", "")) == x509.load_pem_x509_certificate(pem).signature
    _, check = describe_signature(pem, msg, hashlib.sha384(b"x").digest())
    assert check is False
