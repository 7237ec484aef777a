"""AWS KMS signing against moto's KMS emulator in server mode, over real HTTP on 127.0.0.1.

moto 5.2.5 ignores ``MessageType=DIGEST`` (it hashes the digest again); ``tests.kms_emulator``
shims DIGEST in as AWS documents it (emulator fidelity), so the default mode (Sign with
MessageType=DIGEST over the Sig_structure's hash) is signed and checked end to end, next to
``--kms-message-type raw``. With the shim switched off, moto's own answer to DIGEST is the
case of an endpoint that ignores it: eifbuild catches the wrong signature by verifying it.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID

from eifbuild.cli import main
from tests import sigref
from tests.kms_emulator import Emulator, moto_kms_server
from tests.test_sign_flow import make_eif

REGION = "eu-west-1"
# SigningAlgorithm -> (digest length, hash): AWS KMS API_Sign, MessageType=DIGEST
DIGESTS: dict[str, tuple[int, hashes.HashAlgorithm]] = {
    "ECDSA_SHA_256": (32, hashes.SHA256()),
    "ECDSA_SHA_384": (48, hashes.SHA384()),
    "ECDSA_SHA_512": (64, hashes.SHA512()),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with moto_kms_server() as emu:
        yield emu


@pytest.fixture
def kms_endpoint(emulator: Emulator) -> str:
    emulator.sign_requests.clear()
    return emulator.endpoint


@pytest.fixture
def moto_digest(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's own DIGEST answer (the digest hashed again), as an endpoint ignoring DIGEST."""
    if not emulator.shimmed:
        pytest.fail("moto now implements MessageType=DIGEST: these tests need another endpoint")
    monkeypatch.setattr(emulator, "honour_digest", False)


@pytest.fixture
def kms(kms_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    import boto3

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    return boto3.client("kms", region_name=REGION, endpoint_url=kms_endpoint)


def _create_key(
    kms: Any, spec: str = "ECC_NIST_P384", usage: str = "SIGN_VERIFY"
) -> dict[str, Any]:
    meta: dict[str, Any] = kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]
    return meta


def _cert_for_kms_key(kms: Any, key_id: str, tmp: Path, days: int = 365) -> Path:
    """A certificate for the KMS public key, issued by a local CA key."""
    der = kms.get_public_key(KeyId=key_id)["PublicKey"]
    pub = serialization.load_der_public_key(der)
    ca = ec.generate_private_key(ec.SECP384R1())
    now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kms signer")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(pub)  # type: ignore[arg-type]
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(ca, hashes.SHA384())
    )
    path = tmp / f"kms-{key_id[-6:]}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _sign(
    capsys: pytest.CaptureFixture[str],
    eif: Path,
    out: Path,
    cert: Path,
    key: str,
    endpoint: str,
    *extra: str,
) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(
        [
            "sign",
            str(eif),
            "-o",
            str(out),
            "--signing-certificate",
            str(cert),
            "--private-key",
            key,
            "--kms-endpoint",
            endpoint,
            *extra,
        ]
    )
    o, e = capsys.readouterr()
    return rc, o, e


def test_sign_by_key_arn_alias_arn_alias_name_and_key_id(
    kms: Any, kms_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = _create_key(kms)
    kms.create_alias(AliasName="alias/eif-signing", TargetKeyId=meta["KeyId"])
    alias_arn = meta["Arn"].replace(f"key/{meta['KeyId']}", "alias/eif-signing")
    cert = _cert_for_kms_key(kms, meta["KeyId"], tmp_path)
    eif = make_eif(tmp_path / "u.eif")
    cases = {
        "arn": (meta["Arn"],),
        "alias-arn": (alias_arn,),
        "alias-name": ("alias/eif-signing", "--kms-region", REGION),
        "key-id": (meta["KeyId"], "--kms-region", REGION),
    }
    for label, (ref, *region) in cases.items():
        out = tmp_path / f"{label}.eif"
        rc, stdout, err = _sign(
            capsys, eif, out, cert, ref, kms_endpoint, "--kms-message-type", "raw", *region
        )
        assert rc == 0, (label, err)
        ref_eif = sigref.verify_eif(out, cert.read_bytes())
        assert json.loads(stdout)["Measurements"]["PCR8"] == sigref.pcr8(cert.read_bytes()).hex()
        assert ref_eif.pcr0 == sigref.read_eif(eif).pcr0
        capsys.readouterr()
        assert main(["verify", str(out), "--certificate", str(cert)]) == 0


def test_moto_still_lacks_digest(
    emulator: Emulator, kms_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DIGEST shim is needed (moto alone fails the probe) and makes the probe pass."""
    from tests.kms_emulator import moto_honours_digest

    assert emulator.shimmed, "moto now implements MessageType=DIGEST: drop the shim"
    assert moto_honours_digest(kms_endpoint)
    monkeypatch.setattr(emulator, "honour_digest", False)
    assert not moto_honours_digest(kms_endpoint)


def test_default_digest_by_key_arn_and_alias(
    kms: Any,
    emulator: Emulator,
    kms_endpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No --kms-message-type: Sign(MessageType=DIGEST, ECDSA_SHA_384) over the 48-byte hash."""
    meta = _create_key(kms)
    kms.create_alias(AliasName="alias/eif-digest", TargetKeyId=meta["KeyId"])
    alias_arn = meta["Arn"].replace(f"key/{meta['KeyId']}", "alias/eif-digest")
    cert = _cert_for_kms_key(kms, meta["KeyId"], tmp_path)
    eif = make_eif(tmp_path / "u.eif")
    cases = {
        "arn": (meta["Arn"],),
        "alias-arn": (alias_arn,),
        "alias-name": ("alias/eif-digest", "--kms-region", REGION),
        "key-id-explicit": (meta["KeyId"], "--kms-region", REGION, "--kms-message-type", "digest"),
    }
    for label, (ref, *region) in cases.items():
        emulator.sign_requests.clear()
        out = tmp_path / f"{label}.eif"
        rc, stdout, err = _sign(capsys, eif, out, cert, ref, kms_endpoint, *region)
        assert rc == 0, (label, err)
        assert emulator.sign_requests == [("DIGEST", "ECDSA_SHA_384", 48)], label
        # the emulator signs the 48 bytes as given: this verifying over SHA-384(Sig_structure)
        # means eifbuild sent exactly that digest
        ref_eif = sigref.verify_eif(out, cert.read_bytes())
        assert ref_eif.pcr0 == sigref.read_eif(eif).pcr0
        assert json.loads(stdout)["Measurements"]["PCR8"] == sigref.pcr8(cert.read_bytes()).hex()
        capsys.readouterr()
        assert main(["verify", str(out), "--certificate", str(cert)]) == 0


@pytest.mark.parametrize(
    ("spec", "algorithm"),
    [
        ("ECC_NIST_P256", "ECDSA_SHA_256"),
        ("ECC_NIST_P384", "ECDSA_SHA_384"),
        ("ECC_NIST_P521", "ECDSA_SHA_512"),
    ],
)
def test_default_digest_per_curve(
    kms: Any,
    emulator: Emulator,
    kms_endpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    spec: str,
    algorithm: str,
) -> None:
    meta = _create_key(kms, spec=spec)
    cert = _cert_for_kms_key(kms, meta["KeyId"], tmp_path)
    eif = make_eif(tmp_path / "u.eif")
    out = tmp_path / "s.eif"
    rc, _, err = _sign(capsys, eif, out, cert, meta["Arn"], kms_endpoint)
    assert rc == 0, err
    assert emulator.sign_requests == [("DIGEST", algorithm, DIGESTS[algorithm][0])]
    sigref.verify_eif(out, cert.read_bytes())


def test_emulator_refuses_a_digest_of_wrong_length(kms: Any) -> None:
    """The shim behaves as AWS documents DIGEST: right length signed as is, else refused."""
    for spec, algorithm in (("ECC_NIST_P256", "ECDSA_SHA_256"), ("ECC_NIST_P384", "ECDSA_SHA_384")):
        key_id = _create_key(kms, spec=spec)["KeyId"]
        size, hash_alg = DIGESTS[algorithm]
        for bad in (size - 1, size + 1, 64):
            for call in (kms.sign, kms.verify):
                args = {"Signature": b"\x30\x00"} if call == kms.verify else {}
                with pytest.raises(kms.exceptions.ClientError) as info:
                    call(KeyId=key_id, Message=b"\x01" * bad, MessageType="DIGEST",
                         SigningAlgorithm=algorithm, **args)  # fmt: skip
                error = info.value.response["Error"]
                assert error["Code"] == "ValidationException", (spec, bad)
                assert f"Digest is invalid length for algorithm {algorithm}" in error["Message"]
        digest = b"\x02" * size
        sig = kms.sign(
            KeyId=key_id, Message=digest, MessageType="DIGEST", SigningAlgorithm=algorithm
        )["Signature"]
        pub = serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])
        assert isinstance(pub, ec.EllipticCurvePublicKey)
        pub.verify(sig, digest, ec.ECDSA(Prehashed(hash_alg)))
        assert kms.verify(
            KeyId=key_id,
            Message=digest,
            MessageType="DIGEST",
            Signature=sig,
            SigningAlgorithm=algorithm,
        )["SignatureValid"]


def test_refusals_leave_no_file(
    kms: Any, kms_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eif = make_eif(tmp_path / "u.eif")
    good = _create_key(kms)
    cert = _cert_for_kms_key(kms, good["KeyId"], tmp_path)
    disabled = _create_key(kms)
    kms.disable_key(KeyId=disabled["KeyId"])
    cert_disabled = _cert_for_kms_key(kms, disabled["KeyId"], tmp_path)
    enc = _create_key(kms, spec="SYMMETRIC_DEFAULT", usage="ENCRYPT_DECRYPT")
    raw = ("--kms-message-type", "raw")
    cases = [
        (cert_disabled, disabled["Arn"], raw, "key state is Disabled"),
        (cert, enc["Arn"], raw, "key usage is ENCRYPT_DECRYPT"),
        (
            cert,
            "alias/does-not-exist",
            ("--kms-region", REGION, *raw),
            "DescribeKey failed: NotFoundException",
        ),
        (cert_disabled, good["Arn"], raw, "does not match the private key"),
        (cert, "arn:aws:kms:eu-west-1:123:key/x", raw, "not a KMS key ARN"),
    ]
    for cert_path, ref, extra, message in cases:
        out = tmp_path / "o.eif"
        rc, _, err = _sign(capsys, eif, out, cert_path, ref, kms_endpoint, *extra)
        assert rc == 1, (ref, err)
        assert message in err and "Traceback" not in err
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_endpoint_ignoring_digest_is_caught(
    kms: Any,
    kms_endpoint: str,
    moto_digest: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """moto's own DIGEST answer signs SHA-384(digest): eifbuild verifies before writing."""
    eif = make_eif(tmp_path / "u.eif")
    meta = _create_key(kms)
    cert = _cert_for_kms_key(kms, meta["KeyId"], tmp_path)
    out = tmp_path / "o.eif"
    rc, _, err = _sign(capsys, eif, out, cert, meta["Arn"], kms_endpoint)
    assert rc == 1 and "produced a signature that does not verify" in err, err
    assert "--kms-message-type raw" in err and "Traceback" not in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_unreachable_endpoint(kms: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    eif = make_eif(tmp_path / "u.eif")
    _, cert = sigref.make_cert(tmp_path)
    out = tmp_path / "o.eif"
    arn = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    rc, _, err = _sign(capsys, eif, out, cert, arn, f"http://127.0.0.1:{_free_port()}")
    assert rc == 1 and "DescribeKey failed" in err and not out.exists()


def test_alias_name_without_region_names_the_option(
    kms: Any,
    kms_endpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    eif = make_eif(tmp_path / "u.eif")
    meta = _create_key(kms)
    kms.create_alias(AliasName="alias/no-region", TargetKeyId=meta["KeyId"])
    cert = _cert_for_kms_key(kms, meta["KeyId"], tmp_path)
    out = tmp_path / "o.eif"
    rc, _, err = _sign(capsys, eif, out, cert, "alias/no-region", kms_endpoint)
    assert rc == 1 and not out.exists()
    assert err.count("\n") == 1 and "no AWS region: pass --kms-region REGION" in err
    # the environment variable the message names is the one boto3 reads
    assert "set AWS_DEFAULT_REGION," in err
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    raw = ("--kms-message-type", "raw")
    assert _sign(capsys, eif, out, cert, "alias/no-region", kms_endpoint, *raw)[0] == 0


def test_detached_sign_payload_with_kms_alias(
    kms: Any, kms_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = _create_key(kms)
    kms.create_alias(AliasName="alias/detached", TargetKeyId=meta["KeyId"])
    cert = _cert_for_kms_key(kms, meta["KeyId"], tmp_path)
    eif = make_eif(tmp_path / "d.eif")
    payload, sig = tmp_path / "p.cbor", tmp_path / "s.cose"
    assert main(["measure", str(eif), "--payload", str(payload)]) == 0
    rc = main(
        [
            "sign-payload",
            str(payload),
            "-o",
            str(sig),
            "--private-key",
            "alias/detached",
            "--kms-region",
            REGION,
            "--kms-endpoint",
            kms_endpoint,
            "--kms-message-type",
            "raw",
            "--signing-certificate",
            str(cert),
        ]
    )
    assert rc == 0
    sigref.verify_cose(cert.read_bytes(), sig.read_bytes(), sigref.read_eif(eif).pcr0)
    assert (
        main(
            [
                "attach-signature",
                str(eif),
                "--signature",
                str(sig),
                "--signing-certificate",
                str(cert),
            ]
        )
        == 0
    )
    sigref.verify_eif(eif, cert.read_bytes())


def test_detached_sign_payload_default_digest(
    kms: Any,
    emulator: Emulator,
    kms_endpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    meta = _create_key(kms)
    kms.create_alias(AliasName="alias/detached-digest", TargetKeyId=meta["KeyId"])
    cert = _cert_for_kms_key(kms, meta["KeyId"], tmp_path)
    eif = make_eif(tmp_path / "d.eif")
    payload, sig = tmp_path / "p.cbor", tmp_path / "s.cose"
    assert main(["measure", str(eif), "--payload", str(payload)]) == 0
    rc = main(["sign-payload", str(payload), "-o", str(sig), "--private-key",
               "alias/detached-digest", "--kms-region", REGION, "--kms-endpoint", kms_endpoint,
               "--signing-certificate", str(cert)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert emulator.sign_requests == [("DIGEST", "ECDSA_SHA_384", 48)]
    sigref.verify_cose(cert.read_bytes(), sig.read_bytes(), sigref.read_eif(eif).pcr0)


def test_missing_boto3_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # makes `import boto3` raise ImportError
    eif = make_eif(tmp_path / "u.eif")
    _, cert = sigref.make_cert(tmp_path)
    out = tmp_path / "o.eif"
    arn = "arn:aws:kms:eu-west-1:123456789012:alias/x"
    rc, _, err = _sign(capsys, eif, out, cert, arn, "http://127.0.0.1:1")
    assert rc == 1 and "pip install 'eifbuild[kms]'" in err and not out.exists()


def test_assemble_with_kms_alias_arn(
    kms: Any, kms_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = _create_key(kms)
    kms.create_alias(AliasName="alias/assemble", TargetKeyId=meta["KeyId"])
    alias_arn = meta["Arn"].replace(f"key/{meta['KeyId']}", "alias/assemble")
    cert = _cert_for_kms_key(kms, meta["KeyId"], tmp_path)
    for name, data in (("k", b"KERNEL" * 100), ("r0", b"R0" * 50), ("r1", b"R1" * 70)):
        (tmp_path / name).write_bytes(data)
    out = tmp_path / "a.eif"
    capsys.readouterr()
    rc = main(
        [
            "assemble",
            "--kernel",
            str(tmp_path / "k"),
            "--cmdline",
            "console=ttyS0",
            "--ramdisk",
            str(tmp_path / "r0"),
            "--ramdisk",
            str(tmp_path / "r1"),
            "--output",
            str(out),
            "--signing-certificate",
            str(cert),
            "--private-key",
            alias_arn,
            "--kms-endpoint",
            kms_endpoint,
            "--kms-message-type",
            "raw",
        ]
    )
    stdout, err = capsys.readouterr()
    assert rc == 0, err
    ref = sigref.verify_eif(out, cert.read_bytes())
    m = json.loads(stdout)["Measurements"]
    assert (
        m["PCR0"]
        == ref.pcr0.hex()
        == sigref.pcr(b"KERNEL" * 100 + b"console=ttyS0" + b"R0" * 50 + b"R1" * 70).hex()
    )
    assert m["PCR8"] == sigref.pcr8(cert.read_bytes()).hex()


def test_access_denied_by_iam_policy(
    kms: Any,
    kms_endpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A principal allowed to describe the key but not to use it for signing: KMS answers
    AccessDenied to Sign, after the preflight passed; no output file appears."""
    import boto3
    from moto import settings

    meta = _create_key(kms)
    cert = _cert_for_kms_key(kms, meta["KeyId"], tmp_path)
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=kms_endpoint)
    iam.create_user(UserName="builder")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["kms:DescribeKey", "kms:GetPublicKey"], "Resource": "*"},
        ],
    }
    iam.put_user_policy(UserName="builder", PolicyName="p", PolicyDocument=json.dumps(policy))
    creds = iam.create_access_key(UserName="builder")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"])
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # the server enforces IAM
    eif = make_eif(tmp_path / "u.eif")
    out = tmp_path / "o.eif"
    rc, _, err = _sign(
        capsys, eif, out, cert, meta["Arn"], kms_endpoint, "--kms-message-type", "raw"
    )
    assert rc == 1 and "Sign failed: AccessDenied" in err, err
    assert "not authorized to perform: kms:Sign" in err and "<" not in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    # and unknown credentials are refused before anything is written
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN000000000")
    rc, _, err = _sign(
        capsys, eif, out, cert, meta["Arn"], kms_endpoint, "--kms-message-type", "raw"
    )
    assert rc == 1 and "DescribeKey failed" in err and not out.exists()


def test_denied_in_place_resign_keeps_the_signed_input(
    kms: Any,
    kms_endpoint: str,
    moto_digest: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Replacing a signature in place with a KMS key that then fails to Sign (moto's DIGEST
    answer does not verify; a disabled key) never leaves the EIF unsigned or changed."""
    key, cert = sigref.make_cert(tmp_path, name="local")
    eif = make_eif(tmp_path / "s.eif")
    assert main(["sign", str(eif), "--signing-certificate", str(cert),
                 "--private-key", str(key)]) == 0  # fmt: skip
    before = eif.read_bytes()
    sigref.verify_eif(eif, cert.read_bytes())
    meta = _create_key(kms)
    kms_cert = _cert_for_kms_key(kms, meta["KeyId"], tmp_path)
    capsys.readouterr()
    rc = main(["sign", str(eif), "--signing-certificate", str(kms_cert), "--private-key",
               meta["Arn"], "--kms-endpoint", kms_endpoint])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "does not verify" in err and "Traceback" not in err
    assert eif.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
