"""AWS KMS signing backend (optional extra ``eifbuild[kms]``, boto3 imported lazily).

Accepted key references (``--private-key``):

* key ARN ``arn:<partition>:kms:<region>:<account>:key/<id>``;
* alias ARN ``arn:<partition>:kms:<region>:<account>:alias/<name>``;
* alias name ``alias/<name>`` or a bare key ID (UUID or ``mrk-...``), with ``--kms-region``
  (or the usual AWS region configuration).

Aliases are resolved with ``DescribeKey`` to the key ARN once, before anything is written,
so every later call (and the signature) uses one fixed key. The endpoint can be overridden
with ``--kms-endpoint`` or boto3's ``AWS_ENDPOINT_URL_KMS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from eifbuild.errors import SigningError
from eifbuild.sign.cose import Alg, alg_for_kms_spec
from eifbuild.sign.keys import alg_for_public_key, der_to_raw
from eifbuild.textescape import safe_text

_ARN = re.compile(
    r"arn:aws(?:-[a-z]+)*:kms:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"(?P<res>key[:/][A-Za-z0-9-]{1,64}|alias/[A-Za-z0-9/_-]{1,250})"
)
_KEY_ID = re.compile(
    r"(?:mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)
_ALIAS = re.compile(r"alias/[A-Za-z0-9/_-]{1,250}")
_XML_ERROR = re.compile(
    r"<Code>(?P<code>[^<]{1,100})</Code>\s*<Message>(?P<msg>[^<]{0,500})</Message>"
)
MESSAGE_TYPES = ("digest", "raw")
KMS_RAW_LIMIT = 4096  # KMS Sign accepts at most 4096 bytes with MessageType=RAW


def looks_like_kms(ref: str) -> bool:
    """True for strings that name a KMS key rather than a file (ARN, alias, key ID)."""
    return bool(ref.startswith("arn:") or _ALIAS.fullmatch(ref) or _KEY_ID.fullmatch(ref))


def parse_ref(ref: str, region: str | None) -> tuple[str, str | None]:
    """Validate a KMS key reference; return ``(key_id_for_api, region)``."""
    if ref.startswith("arn:"):
        m = _ARN.fullmatch(ref)
        if m is None:
            raise SigningError(f"KMS key {ref}: not a KMS key ARN or alias ARN")
        res = m["res"]
        if res.startswith("key:"):  # AWS's tools accept key:<id>; the KMS API wants key/<id>
            ref = ref[: m.start("res")] + "key/" + res[4:]
        return ref, m["region"]
    if _ALIAS.fullmatch(ref) or _KEY_ID.fullmatch(ref):
        return ref, region
    raise SigningError(f"KMS key {ref}: not a key ARN, alias ARN, alias name or key ID")


def _boto3() -> Any:
    try:
        import boto3
    except ImportError:
        raise SigningError(
            "AWS KMS signing needs boto3: install it with `pip install 'eifbuild[kms]'`"
        ) from None
    return boto3


def _client_error(ref: str, action: str, exc: Exception) -> SigningError:
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict):
        err = resp.get("Error", {})
        code, msg = str(err.get("Code", "Error")), str(err.get("Message", ""))
        xml = _XML_ERROR.search(msg)  # some endpoints answer JSON requests with an XML error
        if xml is not None:
            code, msg = xml["code"], xml["msg"]
        if len(msg) > 300:
            msg = msg[:300] + "..."
        return SigningError(f"KMS key {ref}: {action} failed: {code}: {msg}".rstrip(": "))
    return SigningError(f"KMS key {ref}: {action} failed: {exc}")


def _reply_bytes(reply: Any, key: str, ref: str, action: str) -> bytes:
    """A binary field of a KMS reply; a missing or non-binary one is a SigningError."""
    value = reply.get(key) if isinstance(reply, dict) else None
    if not isinstance(value, (bytes, bytearray)) or not value:
        raise SigningError(f"KMS key {ref}: {action} reply has no {key}")
    return bytes(value)


@dataclass
class KmsKey:
    """A KMS asymmetric ECC key usable for ECDSA signing."""

    ref: str
    arn: str
    alg: Alg
    pub: ec.EllipticCurvePublicKey
    client: Any = field(repr=False)
    message_type: str = "digest"

    @property
    def description(self) -> str:
        return f"KMS key {self.ref}"

    @property
    def verify_hint(self) -> str:
        if self.message_type == "digest":
            return " (an endpoint that ignores MessageType=DIGEST needs --kms-message-type raw)"
        return ""

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.pub

    def sign(self, alg: Alg, message: bytes) -> bytes:
        if alg != self.alg:
            raise SigningError(f"{self.description}: is {self.alg.name}, asked for {alg.name}")
        if self.message_type == "raw":
            if len(message) > KMS_RAW_LIMIT:
                raise SigningError(f"{self.description}: message too long for MessageType=RAW")
            kwargs = {"Message": message, "MessageType": "RAW"}
        else:
            kwargs = {"Message": alg.digest(message), "MessageType": "DIGEST"}
        try:
            resp = self.client.sign(KeyId=self.arn, SigningAlgorithm=alg.kms_alg, **kwargs)
        except Exception as exc:
            raise _client_error(self.ref, "Sign", exc) from None
        return der_to_raw(alg, _reply_bytes(resp, "Signature", self.ref, "Sign"))


def _describe(client: Any, ref: str, key_id: str) -> tuple[str, Alg]:
    try:
        meta = client.describe_key(KeyId=key_id).get("KeyMetadata")
    except Exception as exc:
        raise _client_error(ref, "DescribeKey", exc) from None
    if not isinstance(meta, dict):
        raise SigningError(f"KMS key {ref}: DescribeKey reply has no KeyMetadata")
    state = meta.get("KeyState", "Enabled" if meta.get("Enabled") else "Disabled")
    if state != "Enabled":
        raise SigningError(f"KMS key {ref}: key state is {state}, not Enabled")
    if meta.get("KeyUsage") != "SIGN_VERIFY":
        raise SigningError(f"KMS key {ref}: key usage is {meta.get('KeyUsage')}, not SIGN_VERIFY")
    spec = meta.get("KeySpec") or meta.get("CustomerMasterKeySpec") or ""
    alg = alg_for_kms_spec(spec) if isinstance(spec, str) else None
    if alg is None:
        shown = safe_text(str(spec).encode()[:80])
        raise SigningError(
            f"KMS key {ref}: key spec {shown} is not ECC_NIST_P256, ECC_NIST_P384 or ECC_NIST_P521"
        )
    arn = meta.get("Arn")
    if not isinstance(arn, str) or not arn.startswith("arn:"):
        raise SigningError(f"KMS key {ref}: DescribeKey reply has no key Arn")
    return arn, alg


def open_kms_key(
    ref: str,
    region: str | None = None,
    endpoint: str | None = None,
    message_type: str = "digest",
) -> KmsKey:
    """Resolve ``ref`` (ARN, alias ARN, alias name, key ID) and fetch its public key."""
    if message_type not in MESSAGE_TYPES:
        raise SigningError(f"KMS message type {message_type}: use digest or raw")
    key_id, region = parse_ref(ref, region)
    boto3 = _boto3()
    try:
        client = boto3.session.Session().client("kms", region_name=region, endpoint_url=endpoint)
    except Exception as exc:
        if type(exc).__name__ == "NoRegionError":  # botocore's, for a name or ID without region
            raise SigningError(
                f"KMS key {ref}: no AWS region: pass --kms-region REGION, set AWS_DEFAULT_REGION, "
                "or give the key or alias ARN"
            ) from None
        raise SigningError(f"KMS key {ref}: cannot create a KMS client: {exc}") from None
    arn, alg = _describe(client, ref, key_id)
    try:
        reply = client.get_public_key(KeyId=arn)
    except Exception as exc:
        raise _client_error(ref, "GetPublicKey", exc) from None
    der = _reply_bytes(reply, "PublicKey", ref, "GetPublicKey")
    try:
        pub = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        raise SigningError(f"KMS key {ref}: GetPublicKey returned an unreadable key") from None
    if alg_for_public_key(pub, f"KMS key {ref}") != alg or not isinstance(
        pub, ec.EllipticCurvePublicKey
    ):
        raise SigningError(f"KMS key {ref}: public key curve does not match its key spec")
    return KmsKey(ref=ref, arn=arn, alg=alg, pub=pub, client=client, message_type=message_type)
