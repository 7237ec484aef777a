"""`eifbuild policy lint` on key policies written by hand here, and IAM condition evaluation.

Every finding has a positive case (the policy that must raise it) and a negative case (the
nearest policy that must not). The expected operator semantics are the IAM User Guide's:
values of one key OR, keys and operators AND, IfExists and ForAllValues true on an absent key,
ForAnyValue false, negated operators true on an absent key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eifbuild.cli import main
from eifbuild.eif.metadata import encode_metadata
from eifbuild.eif.writer import write_eif
from eifbuild.policy.conditions import evaluate
from eifbuild.policy.document import Condition

ROLE = "arn:aws:iam::111122223333:role/parent"
ROOT = "arn:aws:iam::111122223333:root"
P0 = "3f" * 48
P1 = "a1" * 48
P2 = "0c" * 48
P8 = "77" * 48
KEY = "kms:RecipientAttestation:"

ADMIN = {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*",
         "Resource": "*"}  # fmt: skip


def allow(cond: dict[str, Any] | None, action: Any = "kms:Decrypt", sid: str = "Enclave",
          principal: Any = None) -> dict[str, Any]:  # fmt: skip
    st: dict[str, Any] = {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": principal if principal is not None else {"AWS": ROLE},
        "Action": action,
        "Resource": "*",
    }
    if cond is not None:
        st["Condition"] = cond
    return st


def pins(**kv: str) -> dict[str, dict[str, str]]:
    return {"StringEqualsIgnoreCase": {KEY + k: v for k, v in kv.items()}}


GOOD = allow(pins(PCR0=P0, PCR1=P1, PCR2=P2))

# code -> (policy statements that must raise it, nearest statements that must not)
CORPUS: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
    "unpinned-decrypt": (
        [ADMIN, allow(None)],
        [ADMIN, GOOD],
    ),
    "pcr8-alone": (
        [allow(pins(PCR8=P8))],
        [allow(pins(PCR0=P0, PCR1=P1, PCR2=P2, PCR8=P8))],
    ),
    "pcr0-without-pcr1-pcr2": (
        [allow(pins(PCR0=P0))],
        [allow(pins(PCR0=P0, PCR1=P1, PCR2=P2))],
    ),
    "bad-value": (
        [allow(pins(PCR0=P0[:-2], PCR1=P1, PCR2=P2))],
        [allow(pins(PCR0=P0.upper(), PCR1=P1, PCR2=P2))],  # IgnoreCase: uppercase is fine
    ),
    "case-mismatch": (
        [allow({"StringEquals": {KEY + "PCR0": P0.upper(), KEY + "PCR1": P1, KEY + "PCR2": P2}})],
        [allow({"StringEquals": {KEY + "PCR0": P0, KEY + "PCR1": P1, KEY + "PCR2": P2}})],
    ),
    "debug-zero-pcr": (
        [allow(pins(PCR0="0" * 96, PCR1=P1, PCR2=P2))],
        [allow(pins(PCR0=P0, PCR1=P1, PCR2=P2, PCR8=P8))],
    ),
    "set-operator": (
        [
            allow(
                {
                    "ForAllValues:StringEquals": {
                        KEY + "PCR0": P0,
                        KEY + "PCR1": P1,
                        KEY + "PCR2": P2,
                    }
                }
            )
        ],
        [GOOD],
    ),
    "unknown-operator": (
        [allow({"StringEqualsIgnoreCas": {KEY + "PCR0": P0, KEY + "PCR1": P1, KEY + "PCR2": P2}})],
        [allow({"StringLike": {KEY + "PCR0": P0, KEY + "PCR1": P1, KEY + "PCR2": P2}})],
    ),
    "unreachable-allow": (
        [
            GOOD,
            {
                "Sid": "NoDecrypt",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "kms:Decrypt",
                "Resource": "*",
            },
        ],
        [
            GOOD,
            {
                "Sid": "NoDecryptOutside",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {"Null": {KEY + "PCR0": "true"}},
            },
        ],
    ),
}
SEVERITY = {
    "pcr0-without-pcr1-pcr2": "warning",
    "unreachable-allow": "note",
}


def lint(tmp_path: Path, statements: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
         ) -> tuple[int, dict[str, Any]]:  # fmt: skip
    f = tmp_path / "policy.json"
    f.write_text(json.dumps({"Version": "2012-10-17", "Statement": statements}))
    rc = main(["policy", "lint", str(f), "--json"])
    out, _ = capsys.readouterr()
    return rc, json.loads(out)


@pytest.mark.parametrize("code", sorted(CORPUS))
def test_each_finding_positive_and_negative(
    code: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    positive, negative = CORPUS[code]
    rc, report = lint(tmp_path, positive, capsys)
    hits = [f for f in report["findings"] if f["code"] == code]
    assert hits, report
    severity = SEVERITY.get(code, "error")
    assert hits[0]["severity"] == severity
    assert rc == (1 if severity == "error" else 0), report
    assert hits[0]["statement"].startswith("statement ")
    rc, report = lint(tmp_path, negative, capsys)
    assert [f for f in report["findings"] if f["code"] == code] == [], report


@pytest.mark.parametrize(
    "statement",
    [
        allow(None, action="kms:GenerateDataKey*"),
        allow(None, action="kms:*"),
        allow(None, action="*"),
        allow(None, action=["kms:Encrypt", "kms:DeriveSharedSecret"]),
        allow(None, action="kms:GenerateRandom"),
        allow(None, principal="*"),
        allow(None, principal={"AWS": "*"}),
        {
            "Effect": "Allow",
            "NotPrincipal": {"AWS": ROOT},
            "Action": "kms:Decrypt",
            "Resource": "*",
        },
        {
            "Effect": "Allow",
            "Principal": {"AWS": ROLE},
            "NotAction": "kms:Encrypt",
            "Resource": "*",
        },
        allow(
            {
                "StringEqualsIgnoreCaseIfExists": {
                    KEY + "PCR0": P0,
                    KEY + "PCR1": P1,
                    KEY + "PCR2": P2,
                }
            }
        ),
    ],
)
def test_decrypt_class_grants_without_pins(
    statement: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, report = lint(tmp_path, [statement], capsys)
    assert rc == 1 and [f["code"] for f in report["findings"]] == ["unpinned-decrypt"], report


@pytest.mark.parametrize(
    "statement",
    [
        allow(None, action="kms:Encrypt"),  # not decrypt-class
        allow(None, principal={"AWS": ROOT}),  # the account root delegates to IAM
        allow(None, principal={"AWS": "111122223333"}),
        allow(pins(ImageSha384=P0, PCR1=P1, PCR2=P2)),  # ImageSha384 is PCR0
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "kms:*",
            "Resource": "*",
            "Condition": {"StringNotEqualsIgnoreCase": {KEY + "PCR0": P0}},
        },
    ],
)
def test_not_flagged(
    statement: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, report = lint(tmp_path, [statement], capsys)
    assert rc == 0 and report["findings"] == [], report


def test_text_output_names_statement_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "p.json"
    st = allow(pins(PCR8=P8))
    del st["Sid"]
    f.write_text(json.dumps({"Statement": [ADMIN, st]}))
    rc = main(["policy", "lint", str(f)])
    out, _ = capsys.readouterr()
    assert rc == 1 and out.count("\n") == 1
    assert out.startswith("statement #2: error: ") and "CVE-2025-64186" in out and "; fix: " in out


def test_our_rendered_policies_lint_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = encode_metadata("img", "1", "1970-01-01T00:00:00+00:00", "eifbuild", "0", "OS", "k")
    paths = []
    for i in range(2):
        p = tmp_path / f"{i}.eif"
        write_eif(p, kernel=b"K", cmdline="c", metadata=meta, ramdisks=[b"B", bytes([i])])
        paths.append(str(p))
    base = ["--account-id", "111122223333", "--role-arn", ROLE]
    for extra in ([], ["--actions", "kms:Decrypt,kms:GenerateDataKey"], [paths[1]]):
        out = tmp_path / "p.json"
        assert main(["policy", paths[0], *extra, *base, "-o", str(out)]) == 0
        capsys.readouterr()
        assert main(["policy", "lint", str(out)]) == 0
        stdout, err = capsys.readouterr()
        assert stdout == "" and "no findings" in err


def test_unreadable_policies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        "{": "not valid JSON",
        '{"Statement": {"Effect": "Allow"}}': "needs exactly one of Action and NotAction",
        '{"Statement": [{"Effect": "Allow", "Action": "x", "Condition": {"StringEquals": 1}}]}':
            "must map condition keys to values",
        '{"Statement": [], "Statement": []}': "duplicate key 'Statement'",
        "[" * 100000: "not valid JSON",
    }  # fmt: skip
    for text, message in cases.items():
        f = tmp_path / "p.json"
        f.write_text(text)
        rc = main(["policy", "lint", str(f)])
        _, err = capsys.readouterr()
        assert rc == 1 and message in err and err.count("\n") == 1, (text[:40], err)


# ------------------------------------------------------------------------------ operators


def ev(op: str, values: list[str], ctx: dict[str, tuple[str, ...]], key: str = "k") -> str:
    return evaluate(Condition(op, key, tuple(values)), ctx).outcome


@pytest.mark.parametrize(
    ("op", "values", "ctx", "want"),
    [
        ("StringEquals", ["abc"], {"k": ("abc",)}, "true"),
        ("StringEquals", ["ABC"], {"k": ("abc",)}, "false"),
        ("StringEquals", ["x", "abc"], {"k": ("abc",)}, "true"),  # values OR
        ("StringEquals", ["abc"], {}, "false"),  # absent key
        ("StringEqualsIfExists", ["abc"], {}, "true"),
        ("StringEqualsIfExists", ["abc"], {"k": ("x",)}, "false"),
        ("StringNotEquals", ["abc"], {}, "true"),  # negated: absent key satisfies
        ("StringNotEquals", ["abc", "x"], {"k": ("x",)}, "false"),
        ("StringEqualsIgnoreCase", ["ABC"], {"k": ("abc",)}, "true"),
        ("StringNotEqualsIgnoreCase", ["ABC"], {"k": ("abc",)}, "false"),
        ("StringLike", ["a*c"], {"k": ("abbbc",)}, "true"),
        ("StringLike", ["a?c"], {"k": ("abbc",)}, "false"),
        ("StringLike", ["a?c"], {"k": ("abc",)}, "true"),
        ("StringLike", ["a.c"], {"k": ("abc",)}, "false"),  # not a regex
        ("StringNotLike", ["a*"], {"k": ("abc",)}, "false"),
        ("Null", ["true"], {}, "true"),
        ("Null", ["false"], {}, "false"),
        ("Null", ["false"], {"k": ("v",)}, "true"),
        ("ForAllValues:StringEquals", ["a"], {}, "true"),  # vacuous: the trap
        ("ForAllValues:StringEquals", ["a", "b"], {"k": ("a", "b")}, "true"),
        ("ForAllValues:StringEquals", ["a"], {"k": ("a", "b")}, "false"),
        ("ForAnyValue:StringEquals", ["a"], {}, "false"),
        ("ForAnyValue:StringEquals", ["a"], {"k": ("b", "a")}, "true"),
        ("Bool", ["true"], {"k": ("true",)}, "true"),
        ("NumericLessThan", ["5"], {"k": ("3",)}, "unknown"),  # not evaluated: never passes
        ("NullIfExists", ["true"], {}, "unknown"),
    ],
)
def test_operator_semantics(
    op: str, values: list[str], ctx: dict[str, tuple[str, ...]], want: str
) -> None:
    assert ev(op, values, ctx) == want


def test_condition_key_names_ignore_case() -> None:
    assert ev("StringEquals", ["v"], {"kms:recipientattestation:pcr0": ("v",)},
              key="kms:RecipientAttestation:PCR0") == "true"  # fmt: skip


def test_check_keys_and_unknown_operator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Several keys AND; an unknown operator is reported and never satisfied."""
    m = tmp_path / "m.json"
    m.write_text(json.dumps({"PCR0": P0, "PCR1": P1, "PCR2": P2}))
    f = tmp_path / "p.json"
    st = allow({"StringEquals": {KEY + "PCR0": P0, KEY + "PCR1": P1, KEY + "PCR2": P1}})
    f.write_text(json.dumps({"Statement": [st]}))
    rc = main(["policy", "check", str(f), "--measurements", str(m), "--role-arn", ROLE])
    out, _ = capsys.readouterr()
    assert rc == 1 and "PCR2 differs" in out and "PCR0" not in out
    st = allow({"StringEqualz": {KEY + "PCR0": P0}})
    f.write_text(json.dumps({"Statement": [st]}))
    rc = main(["policy", "check", str(f), "--measurements", str(m), "--role-arn", ROLE])
    out, _ = capsys.readouterr()
    assert rc == 1 and "unknown condition operator 'StringEqualz'" in out
    deny = {"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
            "Condition": {"StringNotEqualsIgnoreCase": {KEY + "PCR0": P0}}}  # fmt: skip
    f.write_text(json.dumps({"Statement": [GOOD, deny]}))
    rc = main(["policy", "check", str(f), "--measurements", str(m), "--role-arn", ROLE])
    out, _ = capsys.readouterr()
    assert rc == 0, out
    m.write_text(json.dumps({"PCR0": P1, "PCR1": P1, "PCR2": P2}))
    rc = main(["policy", "check", str(f), "--measurements", str(m), "--role-arn", ROLE])
    out, _ = capsys.readouterr()
    assert rc == 1 and "explicitly denied by statement #2" in out
