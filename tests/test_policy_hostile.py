"""Hostile key policies and attestation documents: every input either works or is one
PolicyError/AttestationError, never another exception (property tests with hypothesis)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from eifbuild.attestation import verify_document
from eifbuild.errors import AttestationError, PolicyError
from eifbuild.policy import attestation_context, check, lint, parse_policy

REAL = Path(__file__).resolve().parent / "vectors" / "attestation" / "nitro-2024-09-07.b64"
DOC = base64.b64decode(REAL.read_text())

json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=8),
    st.sampled_from(["*", "Allow", "Deny", "kms:Decrypt", "kms:*", "StringEquals",
                     "ForAllValues:StringLike", "kms:RecipientAttestation:PCR0", "a" * 96]),
)  # fmt: skip
json_values = st.recursive(
    json_scalar,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "Sid",
                    "Effect",
                    "Principal",
                    "NotPrincipal",
                    "Action",
                    "NotAction",
                    "Resource",
                    "Condition",
                    "AWS",
                    "StringEqualsIgnoreCase",
                    "Null",
                    "kms:RecipientAttestation:PCR2",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, max_size=4))
def test_any_statement_list_is_linted_or_refused(statements: list[Any]) -> None:
    try:
        policy = parse_policy({"Statement": statements}, "p.json")
    except PolicyError as exc:
        assert "\n" not in str(exc)
        return
    lint(policy)
    ctx = attestation_context({0: "a" * 96, 1: "b" * 96, 2: "c" * 96})
    check(policy, action="kms:Decrypt", context=ctx, principal="arn:aws:iam::1:role/r")
    check(policy, action="kms:Decrypt", context=ctx)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(DOC) - 1), st.integers(1, 255))
def test_any_flipped_byte_of_a_real_document_is_refused(pos: int, xor: int) -> None:
    data = bytearray(DOC)
    data[pos] ^= xor
    try:
        verify_document(bytes(data), "doc", at="document")
    except AttestationError as exc:
        assert "\n" not in str(exc)
        return
    raise AssertionError(f"byte {pos} ^ {xor:#x} still verifies")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_are_refused(data: bytes) -> None:
    try:
        verify_document(b"\x84" + data, "doc", at="document")
    except AttestationError:
        return
    raise AssertionError("random bytes verified")
