"""Reading any AWS key policy (JSON) into plain, typed statements.

The policy grammar is IAM's: ``Statement`` is one object or a list; ``Principal``,
``Action``, ``Resource`` (and their ``Not`` forms) hold a string or a list; ``Condition`` maps
an operator to ``{condition key: value or list of values}``. Only the parts the linter and
the checker need are typed; each statement keeps its raw JSON so a merge can write it back
unchanged. Input is hostile: bounded size, no duplicate keys, one-line errors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eifbuild.errors import PolicyError
from eifbuild.limits import DEFAULT_LIMITS
from eifbuild.smallfile import read_small_file


@dataclass(frozen=True)
class Condition:
    """One ``operator: {key: values}`` entry of a statement's Condition block."""

    operator: str
    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Principal:
    """Who a statement names: ``any`` for ``"*"``, else (type, value) pairs such as AWS/ARN."""

    any: bool
    entries: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Statement:
    index: int  # 0-based position in Statement
    sid: str | None
    effect: str  # "Allow" or "Deny"
    principal: Principal | None
    not_principal: Principal | None
    actions: tuple[str, ...] | None  # None when the statement uses NotAction
    not_actions: tuple[str, ...] | None
    conditions: tuple[Condition, ...]
    raw: Mapping[str, Any]

    @property
    def label(self) -> str:
        """How findings name the statement: its Sid, else its 1-based position."""
        return f"statement {self.sid!r}" if self.sid else f"statement #{self.index + 1}"


@dataclass(frozen=True)
class PolicyDocument:
    raw: Mapping[str, Any]
    statements: tuple[Statement, ...]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def loads_json(text: str | bytes, where: str) -> Any:
    """JSON without duplicate keys (IAM rejects them; a duplicate hides which one counts)."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        msg = " ".join(str(exc).split())[:200]
        raise PolicyError(f"{where}: not valid JSON ({msg})") from None


def _strings(value: Any, where: str, field: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise PolicyError(f"{where}: {field} must be a string or a non-empty list of strings")


def _condition_values(value: Any, where: str) -> tuple[str, ...]:
    # IAM accepts numbers and booleans as condition values and compares their text.
    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if isinstance(v, bool):
            out.append("true" if v else "false")
        elif isinstance(v, str | int | float):
            out.append(str(v))
        else:
            raise PolicyError(f"{where}: condition values must be strings, numbers or booleans")
    if not out:
        raise PolicyError(f"{where}: condition has an empty list of values")
    return tuple(out)


def _principal(value: Any, where: str, field: str) -> Principal:
    if value == "*":
        return Principal(any=True, entries=())
    if not isinstance(value, dict) or not value:
        raise PolicyError(f'{where}: {field} must be "*" or an object such as {{"AWS": ARN}}')
    entries: list[tuple[str, str]] = []
    for kind, ids in value.items():
        for ident in _strings(ids, where, f"{field}.{kind}"):
            entries.append((kind, ident))
    return Principal(any=any(v == "*" for _, v in entries), entries=tuple(entries))


def parse_statement(raw: Any, index: int, where: str) -> Statement:
    here = f"{where}: Statement[{index}]"
    if not isinstance(raw, dict):
        raise PolicyError(f"{here} is not an object")
    sid = raw.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise PolicyError(f"{here}: Sid is not a string")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f'{here}: Effect must be "Allow" or "Deny"')
    if ("Action" in raw) == ("NotAction" in raw):
        raise PolicyError(f"{here}: needs exactly one of Action and NotAction")
    actions = _strings(raw["Action"], here, "Action") if "Action" in raw else None
    not_actions = _strings(raw["NotAction"], here, "NotAction") if "NotAction" in raw else None
    principal = _principal(raw["Principal"], here, "Principal") if "Principal" in raw else None
    not_principal = (
        _principal(raw["NotPrincipal"], here, "NotPrincipal") if "NotPrincipal" in raw else None
    )
    conditions: list[Condition] = []
    block = raw.get("Condition", {})
    if not isinstance(block, dict):
        raise PolicyError(f"{here}: Condition is not an object")
    for operator, keys in block.items():
        if not isinstance(keys, dict) or not keys:
            raise PolicyError(f"{here}: Condition {operator} must map condition keys to values")
        for key, values in keys.items():
            conditions.append(Condition(operator, key, _condition_values(values, here)))
    return Statement(
        index=index,
        sid=sid,
        effect=effect,
        principal=principal,
        not_principal=not_principal,
        actions=actions,
        not_actions=not_actions,
        conditions=tuple(conditions),
        raw=raw,
    )


def parse_policy(doc: Any, where: str) -> PolicyDocument:
    """Typed statements of a parsed policy JSON value (raises PolicyError naming ``where``)."""
    if not isinstance(doc, dict):
        raise PolicyError(f"{where}: a policy must be a JSON object")
    if "Statement" not in doc:
        raise PolicyError(f"{where}: no Statement")
    stmts = doc["Statement"]
    if isinstance(stmts, dict):
        stmts = [stmts]
    if not isinstance(stmts, list):
        raise PolicyError(f"{where}: Statement must be an object or a list")
    return PolicyDocument(
        raw=doc, statements=tuple(parse_statement(s, i, where) for i, s in enumerate(stmts))
    )


def load_policy(path: str | os.PathLike[str]) -> PolicyDocument:
    """Read and parse a key policy file (at most Limits.max_policy_bytes)."""
    where = os.fspath(path)
    raw = read_small_file(path, "policy", DEFAULT_LIMITS.max_policy_bytes, PolicyError)
    return parse_policy(loads_json(raw, where), where)
