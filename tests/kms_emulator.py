"""moto's KMS in server mode (real HTTP on 127.0.0.1) for the KMS tests, with one shim.

Emulator fidelity: moto lacks DIGEST. moto 5.2.5 reads Sign's and Verify's ``MessageType``
and ignores it, so a ``MessageType=DIGEST`` request has its digest hashed again, and the
signature is over ``H(digest)`` instead of the digest (moto documents DIGEST as "not yet
implemented"; getmoto/moto PR #10202 proposes the fix). AWS documents DIGEST as: the
``Message`` is the already-computed digest, its length must match the signing algorithm's
hash (32/48/64 bytes for ECDSA_SHA_256/384/512, else ``ValidationException``), and KMS signs
it without hashing again. The shim does exactly that for the ECDSA algorithms, in this
process (the server runs in a thread of the test process): it wraps moto's Sign/Verify
request handlers and has moto's ECDSA key use ``Prehashed`` for a DIGEST request.

:func:`moto_honours_digest` probes the running emulator over HTTP first; the shim is
installed only if moto still gets DIGEST wrong, and ``test_kms`` asserts that it does (when
a future moto passes the probe, that test fails: drop the shim).
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

# SigningAlgorithm -> digest length AWS requires with MessageType=DIGEST
DIGEST_SIZES = {"ECDSA_SHA_256": 32, "ECDSA_SHA_384": 48, "ECDSA_SHA_512": 64}


@dataclass
class Emulator:
    endpoint: str
    shimmed: bool  # the DIGEST shim is installed: moto failed the probe
    honour_digest: bool = True  # a test may set False to get moto's own DIGEST answer back
    # (MessageType, SigningAlgorithm, len(Message)) of every Sign request the server saw
    sign_requests: list[tuple[str, str, int]] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def moto_honours_digest(endpoint: str) -> bool:
    """True if the emulator signs a DIGEST message as the digest itself (no second hash)."""
    import boto3

    client = boto3.client(
        "kms",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    key_id = client.create_key(KeySpec="ECC_NIST_P384", KeyUsage="SIGN_VERIFY")["KeyMetadata"][
        "KeyId"
    ]
    pub = serialization.load_der_public_key(client.get_public_key(KeyId=key_id)["PublicKey"])
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    digest = hashlib.sha384(b"probe").digest()
    sig = client.sign(
        KeyId=key_id, Message=digest, MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_384"
    )["Signature"]
    try:
        pub.verify(sig, digest, ec.ECDSA(Prehashed(hashes.SHA384())))
    except InvalidSignature:
        return False
    return True


def _message(response: Any) -> bytes:
    message = response._get_param("Message") or b""
    return message.encode() if isinstance(message, str) else bytes(message)


def _record_sign(mp: pytest.MonkeyPatch, seen: list[tuple[str, str, int]]) -> None:
    """Test instrumentation (not fidelity): note what each Sign request asked for."""
    from moto.kms.responses import KmsResponse

    handler = KmsResponse.sign

    def recording(self: Any) -> str:
        mtype = str(self._get_param("MessageType") or "RAW")
        seen.append((mtype, str(self._get_param("SigningAlgorithm")), len(_message(self))))
        return handler(self)

    mp.setattr(KmsResponse, "sign", recording)


def _install_digest_shim(mp: pytest.MonkeyPatch, emulator: Emulator) -> None:
    """Emulator fidelity: moto lacks DIGEST (see the module docstring)."""
    from moto.kms.exceptions import ValidationException
    from moto.kms.responses import KmsResponse
    from moto.kms.utils import ECDSAPrivateKey

    prehashed = threading.local()  # set while one DIGEST request's handler runs

    def wrap(handler: Callable[[Any], str]) -> Callable[[Any], str]:
        def digest_aware(self: Any) -> str:
            alg = str(self._get_param("SigningAlgorithm"))
            if not emulator.honour_digest or alg not in DIGEST_SIZES:
                return handler(self)
            if self._get_param("MessageType") != "DIGEST":
                return handler(self)
            if len(_message(self)) != DIGEST_SIZES[alg]:
                raise ValidationException(f"Digest is invalid length for algorithm {alg}.")
            prehashed.on = True
            try:
                return handler(self)
            finally:
                prehashed.on = False

        return digest_aware

    hash_for = ECDSAPrivateKey._ECDSAPrivateKey__hash_algorithm  # type: ignore[attr-defined]

    def hash_or_prehashed(self: Any, signing_algorithm: str) -> Any:
        algorithm = hash_for(self, signing_algorithm)
        return Prehashed(algorithm) if getattr(prehashed, "on", False) else algorithm

    mp.setattr(ECDSAPrivateKey, "_ECDSAPrivateKey__hash_algorithm", hash_or_prehashed)
    mp.setattr(KmsResponse, "sign", wrap(KmsResponse.sign))
    mp.setattr(KmsResponse, "verify", wrap(KmsResponse.verify))


@contextmanager
def moto_kms_server() -> Iterator[Emulator]:
    """Start moto's server on a free local port; shim DIGEST in if moto still lacks it."""
    from moto.server import ThreadedMotoServer  # a dev dependency: missing means a broken setup

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        emulator = Emulator(f"http://127.0.0.1:{port}", shimmed=False)
        with pytest.MonkeyPatch.context() as mp:
            if not moto_honours_digest(emulator.endpoint):
                _install_digest_shim(mp, emulator)
                emulator.shimmed = True
            _record_sign(mp, emulator.sign_requests)
            yield emulator
    finally:
        server.stop()
