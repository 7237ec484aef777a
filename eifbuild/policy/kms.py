"""What KMS means by the parts of a key policy: actions, the account root, attestation keys.

KMS puts the enclave's measurements into the request context as
``kms:RecipientAttestation:PCR<n>`` and ``kms:RecipientAttestation:ImageSha384`` (= PCR0) when a
request carries a Recipient attestation document, as lowercase hex of the 48-byte SHA-384
registers (AWS KMS Developer Guide, "AWS KMS condition keys for AWS Nitro Enclaves").
"""

from __future__ import annotations

import re

from eifbuild.policy.conditions import like_regex
from eifbuild.policy.document import Principal, Statement

# Operations that hand out plaintext key material or randomness to the caller (KMS returns it
# encrypted to the enclave only when the request carries an attestation document).
DECRYPT_CLASS = (
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GenerateDataKeyPair",
    "kms:GenerateDataKeyPairWithoutPlaintext",
    "kms:DeriveSharedSecret",
    "kms:GenerateRandom",
)

ATTESTATION_PREFIX = "kms:RecipientAttestation:"
_ATTESTATION_KEY = re.compile(r"kms:recipientattestation:(?:pcr(\d{1,2})|(imagesha384))", re.I)
_ROOT = re.compile(r"(?:[0-9]{12}|arn:aws[a-z-]*:iam::[0-9]{12}:root)")
IMAGE_PINS = frozenset({"PCR0", "PCR1", "PCR2", "ImageSha384"})


def attestation_name(key: str) -> str | None:
    """``kms:RecipientAttestation:PCR2`` -> ``PCR2`` (``ImageSha384`` too); None otherwise."""
    m = _ATTESTATION_KEY.fullmatch(key)
    if m is None:
        return None
    return f"PCR{int(m[1])}" if m[1] is not None else "ImageSha384"


def action_matches(pattern: str, action: str) -> bool:
    """IAM action matching: case-insensitive, ``*`` and ``?`` wildcards."""
    return like_regex(pattern.lower()).fullmatch(action.lower()) is not None


def grants(stmt: Statement, action: str) -> bool:
    """Whether the statement's Action (or NotAction) covers ``action``."""
    if stmt.actions is not None:
        return any(action_matches(p, action) for p in stmt.actions)
    assert stmt.not_actions is not None
    return not any(action_matches(p, action) for p in stmt.not_actions)


def decrypt_actions(stmt: Statement) -> tuple[str, ...]:
    """The decrypt-class actions a statement covers."""
    return tuple(a for a in DECRYPT_CLASS if grants(stmt, a))


def is_root(kind: str, value: str) -> bool:
    """An account principal (``123456789012`` or ``arn:aws:iam::123456789012:root``)."""
    return kind == "AWS" and _ROOT.fullmatch(value) is not None


def only_root(principal: Principal | None) -> bool:
    """True when every principal named is an account root (IAM policies then decide)."""
    if principal is None or principal.any:
        return False
    return all(is_root(k, v) for k, v in principal.entries)


def short(value: str, n: int = 8) -> str:
    return value if len(value) <= n else value[:n] + "…"
