"""``policy check``: would KMS allow this principal this action with these measurements?

Evaluation follows the IAM order: an explicit Deny that applies wins; else an Allow that
applies allows; else the request is denied, and the Allow statements for that principal and
action explain which condition failed ("PCR2 differs: policy pins 4f1c…, image has 9a07…").

Statements whose principal is the account root do not allow the role by themselves: they
delegate to the account's IAM policies, which this check cannot see; they are reported as a
note. Without a principal, principals are not compared (every statement is considered, except
those naming only the account root).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from eifbuild.policy.conditions import ConditionResult, Context, evaluate, parse_operator
from eifbuild.policy.document import PolicyDocument, Principal, Statement
from eifbuild.policy.kms import (
    ATTESTATION_PREFIX,
    attestation_name,
    grants,
    is_root,
    only_root,
    short,
)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    statement: str | None  # the statement that allowed, or the Deny that denied
    reasons: tuple[str, ...]  # why it was denied (empty when allowed)
    notes: tuple[str, ...]  # delegation to IAM, principal not compared, debug-mode PCRs…

    def as_json(self) -> dict[str, object]:
        return {
            "allowed": self.allowed,
            "statement": self.statement,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
        }


def attestation_context(pcrs: Mapping[int, str]) -> dict[str, tuple[str, ...]]:
    """The condition keys KMS derives from an attestation document with these PCRs."""
    ctx: dict[str, tuple[str, ...]] = {
        f"{ATTESTATION_PREFIX}PCR{i}".lower(): (v.lower(),) for i, v in pcrs.items()
    }
    if 0 in pcrs:
        ctx[f"{ATTESTATION_PREFIX}ImageSha384".lower()] = (pcrs[0].lower(),)
    return ctx


def _principal_applies(p: Principal, principal: str) -> bool:
    return p.any or any(kind == "AWS" and v == principal for kind, v in p.entries)


def _applies_to(stmt: Statement, principal: str | None) -> bool:
    if principal is None:
        return True
    if stmt.not_principal is not None:
        return not _principal_applies(stmt.not_principal, principal)
    return stmt.principal is not None and _principal_applies(stmt.principal, principal)


def _explain(r: ConditionResult, source: str) -> str:
    c = r.condition
    name = attestation_name(c.key) or c.key
    pinned = ", ".join(short(v) for v in c.values)
    pins = f"pins {pinned}" if len(c.values) == 1 else f"pins one of {pinned}"
    if r.outcome == "unknown":
        return f"unknown condition operator {c.operator!r} on {c.key}: treated as not satisfied"
    op = parse_operator(c.operator)
    if op.base == "Null":
        state = "absent" if r.present is None else "present"
        return f"{c.operator} {name} = {', '.join(c.values)} fails: {name} is {state}"
    if r.present is None:
        why = " (the image is not signed)" if name == "PCR8" and source == "image" else ""
        return f"{name} missing: policy {pins}, the {source} has no {name}{why}"
    has = ", ".join(short(v) for v in r.present)
    if op.negated:
        return f"{name} excluded: policy {c.operator} {pinned}, {source} has {has}"
    if op.case_sensitive and any(v.lower() == p.lower() for v in r.present for p in c.values):
        return f"{name} differs in case only: {c.operator} is case-sensitive, {source} has {has}"
    return f"{name} differs: policy {pins}, {source} has {has}"


def check(
    policy: PolicyDocument,
    *,
    action: str,
    context: Context,
    principal: str | None = None,
    source: str = "image",
) -> Decision:
    """Evaluate one request. ``context`` maps lower-cased condition keys to their values."""
    notes: list[str] = []
    if principal is None:
        notes.append("no --role-arn: statements were considered whatever their principal")
    candidates: list[tuple[Statement, list[ConditionResult]]] = []
    for stmt in policy.statements:
        if not grants(stmt, action):
            continue
        if principal is not None and stmt.not_principal is None and stmt.principal is not None:
            roots = [v for k, v in stmt.principal.entries if is_root(k, v)]
            if roots and stmt.effect == "Allow" and not _applies_to(stmt, principal):
                notes.append(
                    f"{stmt.label} allows {action} to account root {roots[0]}: the role gets it "
                    "only if its IAM policy allows it too (not checked here)"
                )
        if principal is None and stmt.not_principal is None and only_root(stmt.principal):
            notes.append(
                f"{stmt.label} names only the account root: it delegates to IAM policies "
                "(not checked here)"
            )
            continue
        if not _applies_to(stmt, principal):
            continue
        candidates.append((stmt, [evaluate(c, context) for c in stmt.conditions]))
    for stmt, results in candidates:
        if stmt.effect == "Deny" and all(r.outcome == "true" for r in results):
            reason = f"explicitly denied by {stmt.label}"
            return Decision(False, stmt.label, (reason,), tuple(notes))
        for r in results:
            if stmt.effect == "Deny" and r.outcome == "unknown":
                notes.append(f"{stmt.label} (Deny): {_explain(r, source)}")
    for stmt, results in candidates:
        if stmt.effect == "Allow" and all(r.outcome == "true" for r in results):
            return Decision(True, stmt.label, (), tuple(notes))
    reasons: list[str] = []
    for stmt, results in candidates:
        if stmt.effect != "Allow":
            continue
        failed = [_explain(r, source) for r in results if r.outcome != "true"]
        reasons.append(f"{stmt.label}: {'; '.join(failed)}")
    if not reasons:
        who = principal or "any principal"
        reasons.append(f"no statement allows {action} to {who}")
    return Decision(False, None, tuple(reasons), tuple(notes))
