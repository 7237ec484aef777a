"""``policy lint``: findings about any KMS key policy that guards enclave secrets.

Each finding names the statement (Sid, else its position), says what is wrong and how to fix
it. Severities: ``error`` (the policy leaks or never works: exit 1), ``warning`` (a weaker pin
chosen on purpose, or a misleading form that still works), ``note`` (explanations, such as a
Deny that makes an Allow unreachable; never a failure).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from eifbuild.policy.conditions import parse_operator
from eifbuild.policy.document import Condition, PolicyDocument, Statement
from eifbuild.policy.kms import (
    IMAGE_PINS,
    action_matches,
    attestation_name,
    decrypt_actions,
    grants,
    is_root,
    only_root,
    short,
)

_HEX96 = re.compile(r"[0-9a-fA-F]{96}")

ERROR, WARNING, NOTE = "error", "warning", "note"


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    statement: str  # "statement 'Sid'" or "statement #3"
    message: str
    fix: str

    def line(self) -> str:
        fix = f"; fix: {self.fix}" if self.fix else ""
        return f"{self.statement}: {self.severity}: {self.message}{fix}"

    def as_json(self) -> dict[str, str]:
        return {
            "code": self.code,
            "severity": self.severity,
            "statement": self.statement,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class LintReport:
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> int:
        return sum(f.severity == ERROR for f in self.findings)

    @property
    def ok(self) -> bool:
        return self.errors == 0


def _pins(stmt: Statement) -> tuple[set[str], list[str]]:
    """Attestation keys a statement really pins, and why other attestation conditions do not.

    A pin is a positive string match (equals, ignore-case equals or like) without IfExists
    and without ForAllValues, both of which a request without an attestation satisfies.
    """
    pinned: set[str] = set()
    weak: list[str] = []
    for c in stmt.conditions:
        name = attestation_name(c.key)
        if name is None:
            continue
        op = parse_operator(c.operator)
        if not op.known or op.base in ("Null", "Bool") or op.negated:
            continue
        if op.if_exists:
            weak.append(f"{c.operator} on {name} (an absent attestation satisfies IfExists)")
        elif op.qualifier == "ForAllValues":
            weak.append(f"{c.operator} on {name} (ForAllValues is true when the key is absent)")
        else:
            pinned.add(name)
    return pinned, weak


def _principal_text(stmt: Statement) -> str:
    if stmt.not_principal is not None:
        return "everyone not named in NotPrincipal"
    p = stmt.principal
    if p is None:
        return "an unnamed principal (no Principal element)"
    if p.any:
        return "any principal (*)"
    return ", ".join(v for _, v in p.entries)


def _value_findings(stmt: Statement, c: Condition, name: str) -> list[Finding]:
    out: list[Finding] = []
    op = parse_operator(c.operator)
    label = stmt.label
    for v in c.values:
        if not _HEX96.fullmatch(v):
            shown = short(v, 24)
            out.append(
                Finding(
                    "bad-value",
                    ERROR,
                    label,
                    f"{c.operator} {name} value {shown!r} is not 96 hexadecimal digits "
                    "(a SHA-384 measurement), so no enclave matches it",
                    f"paste the full {name} from `eifbuild describe` or the build output",
                )
            )
            continue
        if set(v) == {"0"}:
            out.append(
                Finding(
                    "debug-zero-pcr",
                    ERROR,
                    label,
                    f"{name} is pinned to all zeros: only debug-mode enclaves attest zero PCRs, "
                    "and their memory is readable from the parent instance",
                    f"pin the {name} measured from the production EIF",
                )
            )
        if op.known and op.case_sensitive and v != v.lower():
            out.append(
                Finding(
                    "case-mismatch",
                    ERROR,
                    label,
                    f"{c.operator} compares case-sensitively and KMS presents {name} in "
                    f"lowercase hex, so {short(v, 12)!r} never matches",
                    "write the value in lowercase, or use StringEqualsIgnoreCase",
                )
            )
    if op.qualifier == "ForAllValues":
        out.append(
            Finding(
                "set-operator",
                ERROR,
                label,
                f"{c.operator} on the single-valued key {name}: ForAllValues is true when the "
                "request has no attestation document at all",
                f"use {op.base} without a qualifier",
            )
        )
    elif op.qualifier == "ForAnyValue":
        out.append(
            Finding(
                "set-operator",
                WARNING,
                label,
                f"{c.operator} on the single-valued key {name}: set qualifiers are meant for "
                "multivalued keys; it works here but misleads readers",
                f"use {op.base} without a qualifier",
            )
        )
    return out


def _statement_findings(stmt: Statement) -> list[Finding]:
    out: list[Finding] = []
    label = stmt.label
    for c in stmt.conditions:
        if not parse_operator(c.operator).known:
            out.append(
                Finding(
                    "unknown-operator",
                    ERROR,
                    label,
                    f"condition operator {c.operator!r} (key {c.key}) is not one eifbuild "
                    "evaluates, so it cannot tell whether the statement is safe",
                    "use StringEquals/StringEqualsIgnoreCase/StringLike (optionally IfExists), "
                    "Null or Bool, or check the operator name's spelling",
                )
            )
            continue
        name = attestation_name(c.key)
        if name is not None:
            out.extend(_value_findings(stmt, c, name))
    if stmt.effect != "Allow":
        return out
    granted = decrypt_actions(stmt)
    principal = stmt.principal if stmt.not_principal is None else None
    if not granted or only_root(principal):
        return out
    pinned, weak = _pins(stmt)
    who = _principal_text(stmt)
    acts = ", ".join(granted) if len(granted) <= 3 else f"{granted[0]} and {len(granted) - 1} more"
    if not pinned & IMAGE_PINS:
        if "PCR8" in pinned:
            out.append(
                Finding(
                    "pcr8-alone",
                    ERROR,
                    label,
                    f"allows {acts} to {who} pinning PCR8 alone: any image signed with that "
                    "certificate passes, including one built from other code (CVE-2025-64186)",
                    "also pin PCR0, or PCR1 and PCR2 (`eifbuild policy` pins 0, 1, 2 and 8)",
                )
            )
        else:
            why = f" ({'; '.join(weak)})" if weak else ""
            out.append(
                Finding(
                    "unpinned-decrypt",
                    ERROR,
                    label,
                    f"allows {acts} to {who} without a kms:RecipientAttestation:PCR0/PCR1/PCR2 "
                    f"or ImageSha384 condition{why}: code outside the enclave can get plaintext",
                    "add StringEqualsIgnoreCase conditions on PCR0, PCR1 and PCR2 "
                    "(`eifbuild policy IMAGE.eif` renders them)",
                )
            )
    elif pinned & {"PCR0", "ImageSha384"} and not {"PCR1", "PCR2"} <= pinned:
        missing = " and ".join(n for n in ("PCR1", "PCR2") if n not in pinned)
        out.append(
            Finding(
                "pcr0-without-pcr1-pcr2",
                WARNING,
                label,
                f"pins PCR0 without {missing}: PCR0 covers the whole image, but a reader cannot "
                "tell which half (kernel or application) changed when a release is denied",
                f"also pin {missing}",
            )
        )
    for w in weak if pinned & IMAGE_PINS else []:
        out.append(
            Finding(
                "optional-pin",
                WARNING,
                label,
                f"{w}: this condition never rejects a request",
                "drop IfExists/ForAllValues from attestation conditions",
            )
        )
    return out


def _covers(deny: Statement, allow: Statement) -> bool:
    """An unconditional Deny for the Allow's principals and every action it grants."""
    if deny.conditions or deny.not_principal is not None or deny.principal is None:
        return False
    if allow.principal is None or allow.not_principal is not None:
        return deny.principal.any
    if not deny.principal.any and not set(allow.principal.entries) <= set(deny.principal.entries):
        return False
    if allow.actions is None:
        return deny.actions is not None and "*" in deny.actions
    for a in allow.actions:
        concrete = "*" not in a and "?" not in a
        if concrete and not grants(deny, a):
            return False
        if not concrete and not (
            deny.actions is not None
            and any(d == "*" or ("*" in d and action_matches(d, a)) for d in deny.actions)
        ):
            return False
    return True


def lint(policy: PolicyDocument) -> LintReport:
    """All findings for a parsed key policy, in statement order."""
    findings: list[Finding] = []
    for stmt in policy.statements:
        findings.extend(_statement_findings(stmt))
    denies = [s for s in policy.statements if s.effect == "Deny"]
    for allow in policy.statements:
        if allow.effect != "Allow":
            continue
        for deny in denies:
            if _covers(deny, allow):
                findings.append(
                    Finding(
                        "unreachable-allow",
                        NOTE,
                        allow.label,
                        f"never takes effect: {deny.label} denies the same principals and "
                        "actions without conditions, and an explicit Deny always wins",
                        "",
                    )
                )
                break
    return LintReport(tuple(findings))


__all__ = ["ERROR", "NOTE", "WARNING", "Finding", "LintReport", "is_root", "lint"]
