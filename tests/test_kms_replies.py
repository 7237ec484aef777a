"""Malformed KMS replies are one-line SigningErrors, never KeyError/TypeError tracebacks.

moto always answers well-formed, so these tests run a tiny KMS-shaped HTTP stub on
127.0.0.1 (AWS JSON 1.1 protocol: ``X-Amz-Target: TrentService.<Action>``, binary fields
base64) that answers each action with the reply a test gives it, and sign an EIF with it
through the real CLI and botocore.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID

from eifbuild.cli import main
from tests.test_diff import APP, cpio, eif

REGION = "eu-west-1"
ARN = f"arn:aws:kms:{REGION}:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
KEY = ec.generate_private_key(ec.SECP384R1())
PUB_DER = KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)


REAL_SIGNATURE = {"real": "signature"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def good_replies() -> dict[str, dict[str, Any]]:
    meta = {
        "KeyId": ARN.rsplit("/", 1)[1],
        "Arn": ARN,
        "KeyState": "Enabled",
        "Enabled": True,
        "KeyUsage": "SIGN_VERIFY",
        "KeySpec": "ECC_NIST_P384",
    }
    return {
        "DescribeKey": {"KeyMetadata": meta},
        "GetPublicKey": {"KeyId": ARN, "PublicKey": _b64(PUB_DER)},
        "Sign": {"KeyId": ARN, "Signature": _b64(b"\x30\x00"), "SigningAlgorithm": "x"},
    }


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict[str, Any]]]:
    replies: dict[str, Any] = good_replies()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            action = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
            reply = replies.get(action, {})
            if reply == REAL_SIGNATURE:  # sign the DIGEST message as KMS documents it
                digest = base64.b64decode(request["Message"])
                der = KEY.sign(digest, ec.ECDSA(Prehashed(hashes.SHA384())))
                reply = {"KeyId": ARN, "Signature": _b64(der), "SigningAlgorithm": "x"}
            body = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", replies
    finally:
        server.shutdown()
        server.server_close()


def _cert(tmp: Path) -> Path:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kms stub")])
    now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(KEY.public_key())
        .serial_number(3)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(KEY, hashes.SHA384())
    )
    path = tmp / "cert.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _sign(tmp: Path, endpoint: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    src = eif(tmp / "in.eif", cpio(APP))
    out = tmp / "out.eif"
    args = ["sign", src, "-o", str(out), "--signing-certificate", str(_cert(tmp))]
    rc = main([*args, "--private-key", ARN, "--kms-endpoint", endpoint])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if rc != 0:
        assert not out.exists() and not list(tmp.glob(".out.eif*"))
    return rc, err


def _edit(replies: dict[str, Any], action: str, drop: str = "", **set_: Any) -> None:
    target = replies[action]["KeyMetadata"] if action == "DescribeKey" else replies[action]
    target.pop(drop, None)
    target.update(set_)


@pytest.mark.parametrize(
    ("action", "drop", "set_", "needle"),
    [
        ("Sign", "Signature", {}, "Sign reply has no Signature"),
        ("Sign", "", {"Signature": 17}, "Sign failed"),  # botocore refuses it
        ("DescribeKey", "Arn", {}, "DescribeKey reply has no key Arn"),
        ("DescribeKey", "", {"Arn": ["x"]}, "DescribeKey reply has no key Arn"),
        ("DescribeKey", "", {"KeySpec": "ECC_SECG_P256K1"}, "key spec ECC_SECG_P256K1 is not"),
        ("DescribeKey", "", {"KeySpec": {"x": 1}}, "key spec {'x': 1} is not"),
        ("GetPublicKey", "PublicKey", {}, "GetPublicKey reply has no PublicKey"),
        ("Sign", "", {"Signature": _b64(b"not DER")}, "not valid DER"),
    ],
)
def test_malformed_kms_reply(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    stub: tuple[str, dict[str, Any]],
    action: str,
    drop: str,
    set_: dict[str, Any],
    needle: str,
) -> None:
    endpoint, replies = stub
    _edit(replies, action, drop, **set_)
    rc, err = _sign(tmp_path, endpoint, capsys)
    assert rc == 1 and err.startswith("eifbuild: error: ") and err.count("\n") == 1, err
    assert needle in err, err


def test_public_key_of_an_unknown_algorithm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stub: tuple[str, dict[str, Any]]
) -> None:
    endpoint, replies = stub
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    der = other.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    replies["GetPublicKey"]["PublicKey"] = _b64(der)
    rc, err = _sign(tmp_path, endpoint, capsys)
    assert rc == 1 and err.count("\n") == 1 and f"KMS key {ARN}" in err, err
    # an algorithm OID cryptography does not know at all
    replies["GetPublicKey"]["PublicKey"] = _b64(
        der.replace(bytes.fromhex("2b6570"), b"\x2b\x65\x7f")
    )
    rc, err = _sign(tmp_path, endpoint, capsys)
    assert rc == 1 and "GetPublicKey returned an unreadable key" in err, err


def test_stub_signs_when_the_reply_is_well_formed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stub: tuple[str, dict[str, Any]]
) -> None:
    """Control: with real signatures in its Sign replies the stub gives a signed EIF, so the
    failures above come from the malformed replies, not from the stub."""
    endpoint, replies = stub
    replies["Sign"] = REAL_SIGNATURE
    rc, err = _sign(tmp_path, endpoint, capsys)
    assert rc == 0, err
    assert main(["verify", str(tmp_path / "out.eif"), "--require-signature"]) == 0
