"""IAM condition operators, evaluated as the IAM documentation describes them.

Covered: ``StringEquals``, ``StringNotEquals``, ``StringEqualsIgnoreCase``,
``StringNotEqualsIgnoreCase``, ``StringLike``, ``StringNotLike`` (``*`` any run of characters,
``?`` one character), the ``Arn*`` forms (matched like ``StringLike``), ``Bool`` and ``Null``;
the ``…IfExists`` suffix (an absent key satisfies the condition); the set qualifiers
``ForAnyValue:`` and ``ForAllValues:``. The rules, from the IAM User Guide's reference
on condition operators and on multivalued context keys:

* several values for one key: OR (any value may match);
* several keys, or several operators: AND (every one must hold);
* an absent key fails a positive operator and satisfies a negated one (``StringNotEquals``);
* ``ForAnyValue`` over an absent key is false; ``ForAllValues`` over an absent key is TRUE,
  which is why it must not guard a single-valued key such as a PCR;
* condition key names compare case-insensitively, values per operator.

An operator this module does not know evaluates to ``unknown``: the caller reports it and
never treats it as satisfied.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from eifbuild.policy.document import Condition

QUALIFIERS = ("ForAnyValue:", "ForAllValues:")
# base operator -> (kind, negated)
_OPERATORS: dict[str, tuple[str, bool]] = {
    "StringEquals": ("equals", False),
    "StringNotEquals": ("equals", True),
    "StringEqualsIgnoreCase": ("iequals", False),
    "StringNotEqualsIgnoreCase": ("iequals", True),
    "StringLike": ("like", False),
    "StringNotLike": ("like", True),
    "ArnEquals": ("like", False),
    "ArnLike": ("like", False),
    "ArnNotEquals": ("like", True),
    "ArnNotLike": ("like", True),
    "Bool": ("bool", False),
}

# Request context: lower-cased condition key -> the values the request carries.
Context = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Operator:
    """A parsed operator name: ``[qualifier:]base[IfExists]``; ``known`` False if not parsed."""

    name: str
    base: str
    qualifier: str | None  # "ForAnyValue" / "ForAllValues"
    if_exists: bool
    known: bool

    @property
    def negated(self) -> bool:
        return self.known and self.base in _OPERATORS and _OPERATORS[self.base][1]

    @property
    def case_sensitive(self) -> bool:
        return self.base in ("StringEquals", "StringNotEquals", "StringLike", "StringNotLike")


def parse_operator(name: str) -> Operator:
    rest = name
    qualifier = None
    for q in QUALIFIERS:
        if rest.startswith(q):
            qualifier, rest = q[:-1], rest[len(q) :]
            break
    if_exists = False
    if rest.endswith("IfExists") and rest != "IfExists":
        if_exists, rest = True, rest[: -len("IfExists")]
    known = rest in _OPERATORS or (rest == "Null" and not if_exists and qualifier is None)
    return Operator(name, rest, qualifier, if_exists, known)


@lru_cache(maxsize=256)
def like_regex(pattern: str) -> re.Pattern[str]:
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.DOTALL)


def _match(kind: str, value: str, pattern: str) -> bool:
    if kind == "equals":
        return value == pattern
    if kind == "iequals":
        return value.lower() == pattern.lower()
    if kind == "bool":
        return value.lower() == pattern.lower()
    return like_regex(pattern).fullmatch(value) is not None


@dataclass(frozen=True)
class ConditionResult:
    condition: Condition
    outcome: str  # "true", "false" or "unknown"
    present: tuple[str, ...] | None  # the request's values for the key (None: key absent)


def evaluate(cond: Condition, context: Context) -> ConditionResult:
    """Evaluate one ``operator: {key: values}`` entry against the request context."""
    op = parse_operator(cond.operator)
    present = context.get(cond.key.lower())
    if present is not None and not present:
        present = None  # an empty set of values behaves as an absent key

    def result(ok: bool) -> ConditionResult:
        return ConditionResult(cond, "true" if ok else "false", present)

    if not op.known:
        return ConditionResult(cond, "unknown", present)
    if op.base == "Null":
        want = {v.lower() for v in cond.values}
        if not want <= {"true", "false"}:
            return ConditionResult(cond, "unknown", present)
        return result(("true" if present is None else "false") in want)
    kind, negated = _OPERATORS[op.base]

    def hit(value: str) -> bool:
        return any(_match(kind, value, p) for p in cond.values)

    if present is None:
        if op.if_exists:
            return result(True)
        if op.qualifier == "ForAllValues":
            return result(True)  # vacuously true: the documented trap
        if op.qualifier == "ForAnyValue":
            return result(False)
        return result(negated)
    if op.qualifier == "ForAllValues":
        return result(all(hit(v) != negated for v in present))
    # Single-valued keys and ForAnyValue: some request value decides.
    if negated and op.qualifier is None:
        return result(not any(hit(v) for v in present))
    return result(any(hit(v) != negated for v in present))
