"""AWS KMS key policies that pin enclave measurements, rendered from jinja2 templates.

The policy lets one IAM role call KMS only with a Nitro attestation document whose PCRs match
(condition keys ``kms:RecipientAttestation:PCR<n>`` under ``StringEqualsIgnoreCase``), next to
the usual statement that gives the account root full control of the key. Several images give
one statement each (so PCR0 of one can never pair with PCR2 of another), named by a Sid
derived from the pinned values, so re-rendering the same image gives the same Sid. Measurements come
from an EIF (streamed) or from the JSON that ``build``/``assemble``/``describe``/``measure``
print. The rendered text must parse as JSON with no duplicate keys; the result is re-serialised
with a fixed layout so the same inputs always give the same bytes.

Templates live in the top-level ``templates/`` directory of the source tree; a wheel installs
them as data files under ``<prefix>/share/eifbuild/templates`` (see pyproject.toml and
:mod:`eifbuild._resources`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from eifbuild._resources import resource_dir
from eifbuild.eif.format import MAGIC
from eifbuild.eif.reader import EifReader
from eifbuild.errors import PolicyError, UsageError
from eifbuild.limits import DEFAULT_LIMITS
from eifbuild.measure import is_pcr_hex, measurements_from_json
from eifbuild.policy.document import loads_json, parse_policy
from eifbuild.smallfile import open_regular, read_small_file

POLICY_TEMPLATE = "kms-key-policy.json.j2"
DIFF_TEMPLATE = "diff-report.html.j2"
MAX_RENDER_SECONDS = 10

DEFAULT_ACTIONS = ("kms:Decrypt",)
# KMS operations that carry a Recipient attestation document (and so the condition keys).
ATTESTED_ACTIONS = frozenset(
    {
        "kms:Decrypt",
        "kms:DeriveSharedSecret",
        "kms:GenerateDataKey",
        "kms:GenerateDataKeyPair",
        "kms:GenerateRandom",
    }
)
PCR_CHOICES = (0, 1, 2, 8)
CONDITION_KEY = "kms:RecipientAttestation:PCR{}"

_ACCOUNT_RE = re.compile(r"[0-9]{12}")
_ROLE_ARN_RE = re.compile(
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b):iam::(?P<account>[0-9]{12}):"
    r"role/(?:[A-Za-z0-9+=,.@_-]{1,128}/){0,16}[A-Za-z0-9+=,.@_-]{1,64}"
)
_ACTION_RE = re.compile(r"kms:[A-Za-z*]{1,64}")


# ------------------------------------------------------------------------------ templates


def templates_dir() -> Path:
    """eifbuild's jinja2 templates: ``$EIFBUILD_TEMPLATES_DIR``, checkout, or installed data."""
    return resource_dir("templates", POLICY_TEMPLATE, PolicyError)


def environment(autoescape: bool) -> jinja2.Environment:
    """A jinja2 environment over the templates directory; undefined variables are errors."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _user_template(path: str | os.PathLike[str]) -> jinja2.Template:
    """A user's template, compiled in jinja2's sandbox: no attribute access to Python
    internals (so no shell commands), no ``include``/``import``/``extends`` (an empty loader),
    ``range`` capped by the sandbox."""
    raw = read_small_file(path, "template", DEFAULT_LIMITS.max_template_bytes, PolicyError)
    try:
        env = SandboxedEnvironment(
            loader=jinja2.DictLoader({}), autoescape=False, undefined=jinja2.StrictUndefined
        )
        return env.from_string(raw.decode("utf-8"))
    except RecursionError:
        raise PolicyError(f"{path}: invalid template (nested too deeply)") from None
    except (UnicodeDecodeError, jinja2.TemplateError) as exc:
        raise PolicyError(f"{path}: invalid template ({_one_line(exc)})") from None


def _render_bounded(tpl: jinja2.Template, ctx: dict[str, Any], name: str) -> str:
    """Render ``tpl`` with at most DEFAULT_LIMITS.max_rendered_policy_bytes characters of output and
    MAX_RENDER_SECONDS of time (main thread); any failure inside the template is a
    PolicyError naming it."""
    out: list[str] = []
    size = 0
    with _deadline(MAX_RENDER_SECONDS, f"{name}: template took more than {MAX_RENDER_SECONDS} s"):
        try:
            for chunk in tpl.generate(**ctx):
                size += len(chunk)
                if size > DEFAULT_LIMITS.max_rendered_policy_bytes:
                    raise PolicyError(
                        f"{name}: template output exceeds {DEFAULT_LIMITS.max_rendered_policy_bytes} characters"
                    )
                out.append(chunk)
        except PolicyError:
            raise
        except RecursionError:
            raise PolicyError(f"{name}: template failed to render (nested too deeply)") from None
        except jinja2.TemplateError as exc:
            raise PolicyError(f"{name}: template failed to render ({_one_line(exc)})") from None
        except Exception as exc:  # {{ 1/0 }}, int("x"), ...: errors of the template's own code
            raise PolicyError(
                f"{name}: template failed to render ({exc.__class__.__name__}: {_one_line(exc)})"
            ) from None
    return "".join(out)


@contextlib.contextmanager
def _deadline(seconds: int, message: str) -> Iterator[None]:
    """Raise PolicyError(message) if the block runs longer than ``seconds`` (main thread
    only: elsewhere the block runs unbounded in time)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise PolicyError(message)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or exc.__class__.__name__


# ------------------------------------------------------------------------------ validation


def check_account_id(value: str) -> str:
    if not _ACCOUNT_RE.fullmatch(value):
        raise UsageError(f"account id {value!r} is not 12 digits")
    return value


@dataclass(frozen=True)
class RoleArn:
    arn: str
    partition: str
    account: str


def check_role_arn(value: str) -> RoleArn:
    """An IAM role ARN: ``arn:<partition>:iam::<12 digits>:role/[path/]name``."""
    m = _ROLE_ARN_RE.fullmatch(value)
    if m is None:
        raise UsageError(
            f"role ARN {value!r} is not of the form arn:aws:iam::123456789012:role/NAME"
        )
    return RoleArn(value, m["partition"], m["account"])


def check_pcr_value(name: str, value: Any, where: str) -> str:
    if not is_pcr_hex(value):
        raise PolicyError(f"{where}: {name} is not 96 hexadecimal characters")
    return str(value).lower()


def parse_pcr_list(text: str) -> list[int]:
    """``--pcr 0,1,2,8`` -> sorted unique indexes; only PCRs an EIF determines."""
    out: set[int] = set()
    for part in text.split(","):
        p = part.strip().upper().removeprefix("PCR")
        if not p.isdigit() or int(p) not in PCR_CHOICES:
            raise UsageError(f"--pcr: {part.strip()!r} is not one of 0, 1, 2, 8")
        out.add(int(p))
    return sorted(out)


def parse_actions(text: str | None) -> list[str]:
    if text is None:
        return list(DEFAULT_ACTIONS)
    out: list[str] = []
    for part in text.split(","):
        a = part.strip()
        if not _ACTION_RE.fullmatch(a):
            raise UsageError(f"--actions: {a!r} is not a KMS action like kms:Decrypt")
        if a not in out:
            out.append(a)
    return out


# ------------------------------------------------------------------------------ measurements


def _pcrs_from_json(doc: Any, where: str) -> dict[int, str]:
    pcrs = measurements_from_json(doc, where, PolicyError)
    if not any(i in pcrs for i in PCR_CHOICES):
        raise PolicyError(f"{where}: no Measurements with PCR0/PCR1/PCR2/PCR8 found")
    return {i: pcrs[i] for i in PCR_CHOICES if i in pcrs}


@dataclass(frozen=True)
class Measured:
    """The PCRs read from one input, and what was odd about it (warnings as data)."""

    source: str
    pcrs: dict[int, str]
    warnings: tuple[str, ...] = ()


def load_measurements(
    path: str | os.PathLike[str],
    progress: Callable[[int], object] | None = None,
) -> Measured:
    """PCRs from an EIF (measured by streaming) or a measurements JSON document."""
    where = str(path)
    try:
        with open_regular(path, where, PolicyError) as fh:
            head = fh.read(len(MAGIC))
            raw = (
                head + fh.read(DEFAULT_LIMITS.max_measurements_json_bytes) if head != MAGIC else b""
            )
    except OSError as exc:
        raise PolicyError(f"{where}: cannot read ({exc.strerror})") from None
    if head == MAGIC:
        with EifReader(path) as reader:
            scan = reader.scan(progress=progress)
        m = scan.measurements
        warnings: tuple[str, ...] = ()
        if not scan.crc_ok:
            warnings = (
                f"{where}: CRC mismatch (damaged or edited file); pinning the PCRs it measures",
            )
        pcrs = {0: m.pcr0, 1: m.pcr1, 2: m.pcr2}
        if m.pcr8 is not None:
            pcrs[8] = m.pcr8
        return Measured(where, pcrs, warnings)
    if len(raw) > DEFAULT_LIMITS.max_measurements_json_bytes:
        raise PolicyError(
            f"{where}: measurements JSON is larger than {DEFAULT_LIMITS.max_measurements_json_bytes} bytes"
        )
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PolicyError(f"{where}: neither an EIF nor a measurements JSON document") from None
    return Measured(where, _pcrs_from_json(doc, where))


def pcr_warnings(selected: Sequence[int]) -> list[str]:
    """Advice for weak pins (docs/spec/eif.md §13, items 1-2)."""
    warns = []
    if list(selected) == [8]:
        warns.append(
            "pinning PCR8 alone trusts any image signed with that certificate "
            "(CVE-2025-64186); also pin PCR0 or PCR1 and PCR2"
        )
    missing = [f"PCR{i}" for i in (1, 2) if i not in selected]
    if missing:
        warns.append(
            f"{' and '.join(missing)} not pinned: pin PCR1 (kernel, cmdline, bootstrap) and "
            "PCR2 (application) so both halves of the image are checked"
        )
    return warns


def select_pcrs(
    available: dict[int, str], requested: Iterable[int] | None, where: str
) -> dict[int, str]:
    """The PCRs to pin: requested ones (all must be known), else 0,1,2 plus 8 when signed."""
    if requested is None:
        wanted = [i for i in PCR_CHOICES if i in available]
    else:
        wanted = sorted(set(requested))
    missing = [i for i in wanted if i not in available]
    if missing:
        names = ", ".join(f"PCR{i}" for i in missing)
        extra = " (the image is not signed)" if 8 in missing else ""
        raise PolicyError(f"{where}: no value for {names}{extra}")
    if not wanted:
        raise PolicyError(f"{where}: no PCR selected")
    return {i: available[i] for i in wanted}


# ------------------------------------------------------------------------------ rendering


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


SID_PREFIX = "AllowEnclave"
_OUR_SID = re.compile(SID_PREFIX + r"[0-9a-f]{16}")
FORMATS = ("json", "terraform", "cloudformation")
FORMAT_TEMPLATES = {
    "terraform": "kms-key-policy.tf.j2",
    "cloudformation": "kms-key-policy.cfn.json.j2",
}


def image_sid(pcrs: dict[int, str]) -> str:
    """The Sid of an image's statement: ``AllowEnclave`` + 16 hex of SHA-256 over its pins.

    The same image pinned the same way always gets the same Sid (so ``--merge`` replaces its
    statement); another image, or another choice of PCRs, gets another one.
    """
    text = ";".join(f"PCR{i}={v.lower()}" for i, v in sorted(pcrs.items()))
    return SID_PREFIX + hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


@dataclass(frozen=True)
class ImageStatement:
    """One image's statement: where its measurements came from, its Sid and its pins."""

    source: str
    sid: str
    pcrs: dict[int, str]


def render_warnings(
    images: Sequence[ImageStatement], account_id: str, role: RoleArn, actions: Sequence[str]
) -> list[str]:
    """Advice about a policy about to be rendered (printed by the CLI, kept by the API)."""
    out: list[str] = []
    for img in images:
        for w in pcr_warnings(list(img.pcrs)):
            if w not in out:
                out.append(w)
    for a in actions:
        if a not in ATTESTED_ACTIONS:
            out.append(f"{a} carries no attestation document; the PCR conditions will deny it")
    if role.account != account_id:
        out.append(f"role account {role.account} differs from key account {account_id}")
    return out


def context(
    images: Sequence[ImageStatement], account_id: str, role: RoleArn, actions: Sequence[str]
) -> dict[str, Any]:
    """Template variables: plain strings and lists (templates use ``|tojson``).

    ``statements`` holds one entry per image (sid, source, conditions, pcrs); ``conditions``
    and ``pcrs`` are the first image's, for templates written for a single image.
    """
    stmts = [
        {
            "sid": img.sid,
            "source": img.source,
            "conditions": {CONDITION_KEY.format(i): v for i, v in sorted(img.pcrs.items())},
            "pcrs": {f"PCR{i}": v for i, v in sorted(img.pcrs.items())},
        }
        for img in images
    ]
    return {
        "account_id": account_id,
        "partition": role.partition,
        "root_arn": f"arn:{role.partition}:iam::{account_id}:root",
        "role_arn": role.arn,
        "actions": list(actions),
        "statements": stmts,
        "conditions": stmts[0]["conditions"],
        "pcrs": stmts[0]["pcrs"],
    }


def _render_text(tpl: jinja2.Template, name: str, ctx: dict[str, Any]) -> str:
    return _render_bounded(tpl, ctx, name)


def _parse_rendered(text: str, name: str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise PolicyError(
            f"{name}: rendered {what} is not valid JSON (nested too deeply)"
        ) from None
    except ValueError as exc:
        raise PolicyError(f"{name}: rendered {what} is not valid JSON ({_one_line(exc)})") from None
    if not isinstance(doc, dict):
        raise PolicyError(f"{name}: rendered {what} is not a JSON object")
    return doc


def _dumps(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def render_policy(ctx: dict[str, Any], template: str | os.PathLike[str] | None = None) -> str:
    """Render, check it is JSON (no duplicate keys), and return a canonical 2-space layout."""
    tpl = (
        _user_template(template)
        if template is not None
        else environment(False).get_template(POLICY_TEMPLATE)
    )
    name = str(template) if template is not None else POLICY_TEMPLATE
    return _dumps(_parse_rendered(_render_text(tpl, name, ctx), name, "policy"))


# ------------------------------------------------------------------------------ other formats


def _hcl(value: Any) -> str:
    """A JSON value as HCL: JSON strings are HCL strings once ``${``/``%{`` are escaped."""
    text = json.dumps(value, ensure_ascii=True)
    return text.replace("${", "$${").replace("%{", "%%{")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _hcl_statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """Statements in the shape of ``aws_iam_policy_document`` blocks."""
    out = []
    for st in _as_list(policy.get("Statement", [])):
        principal = st.get("Principal")
        principals = (
            [{"type": "*", "identifiers": ["*"]}]
            if principal == "*"
            else [{"type": k, "identifiers": _as_list(v)} for k, v in (principal or {}).items()]
        )
        conditions = [
            {"test": op, "variable": key, "values": [str(v) for v in _as_list(vals)]}
            for op, keys in st.get("Condition", {}).items()
            for key, vals in keys.items()
        ]
        out.append(
            {
                "sid": st.get("Sid"),
                "effect": st.get("Effect", "Allow"),
                "principals": principals,
                "actions": _as_list(st.get("Action", [])),
                "resources": _as_list(st.get("Resource", "*")),
                "conditions": conditions,
            }
        )
    return out


def render_format(policy: dict[str, Any], fmt: str) -> str:
    """The policy as a Terraform data source or a CloudFormation template (templates/)."""
    if fmt == "json":
        return _dumps(policy)
    if fmt not in FORMAT_TEMPLATES:
        raise UsageError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    name = FORMAT_TEMPLATES[fmt]
    env = environment(False)
    env.filters["hcl"] = _hcl
    text = _render_text(
        env.get_template(name),
        name,
        {"policy": policy, "statements": _hcl_statements(policy), "policy_id": policy.get("Id")},
    )
    if fmt == "cloudformation":
        return _dumps(_parse_rendered(text, name, "CloudFormation template"))
    return text


# ------------------------------------------------------------------------------ merge


@dataclass(frozen=True)
class MergeResult:
    policy: dict[str, Any]
    changes: tuple[str, ...]


def merge_statements(
    existing: dict[str, Any],
    ours: Sequence[dict[str, Any]],
    where: str,
    prune: bool = False,
) -> MergeResult:
    """Add or replace ``ours`` (by Sid) in ``existing``; every other statement keeps its place.

    With ``prune``, statements that eifbuild rendered earlier (Sid ``AllowEnclave`` + 16 hex)
    and that are not among ``ours`` are removed: the last step of a rolling upgrade.
    """
    parse_policy(existing, where)  # validates the shape; raises a PolicyError naming it
    current = existing["Statement"]
    stmts: list[Any] = list(current) if isinstance(current, list) else [current]
    by_sid = {st["Sid"]: st for st in ours}
    changes: list[str] = []
    seen: set[str] = set()
    merged: list[Any] = []
    kept = 0
    for st in stmts:
        sid = st.get("Sid")
        if isinstance(sid, str) and sid in by_sid:
            if sid in seen:
                raise PolicyError(f"{where}: two statements have the Sid {sid!r}")
            seen.add(sid)
            new = by_sid[sid]
            changes.append(f"{'unchanged' if new == st else 'replaced'} statement {sid}")
            merged.append(new)
        elif prune and isinstance(sid, str) and _OUR_SID.fullmatch(sid):
            changes.append(f"removed statement {sid} (an image no longer listed)")
        else:
            kept += 1
            merged.append(st)
    for sid, st in by_sid.items():
        if sid not in seen:
            changes.append(f"added statement {sid}")
            merged.append(st)
    changes.append(f"kept {kept} other statement{'s' if kept != 1 else ''} as they were")
    out = dict(existing)
    out["Statement"] = merged
    return MergeResult(out, tuple(changes))


# ------------------------------------------------------------------------------ the whole job


@dataclass(frozen=True)
class PolicyResult:
    """A rendered policy (or its statements, or another format) and what happened."""

    text: str
    images: tuple[ImageStatement, ...]
    changes: tuple[str, ...]
    warnings: tuple[str, ...]


def image_statements(
    measured: Sequence[Measured], requested: Iterable[int] | None
) -> tuple[list[ImageStatement], list[str]]:
    """One statement per input (pins selected), dropping inputs with the same pins."""
    images: list[ImageStatement] = []
    warnings: list[str] = []
    wanted = None if requested is None else list(requested)
    for m in measured:
        warnings.extend(m.warnings)
        pcrs = select_pcrs(m.pcrs, wanted, m.source)
        sid = image_sid(pcrs)
        dup = next((i for i in images if i.sid == sid), None)
        if dup is not None:
            warnings.append(f"{m.source} pins the same values as {dup.source}; one statement")
            continue
        images.append(ImageStatement(m.source, sid, pcrs))
    return images, warnings


def build_policy(
    measured: Sequence[Measured],
    *,
    account_id: str,
    role_arn: str,
    pcrs: Iterable[int] | None = None,
    actions: Sequence[str] | None = None,
    template: str | os.PathLike[str] | None = None,
    fmt: str = "json",
    merge: str | os.PathLike[str] | None = None,
    prune: bool = False,
    statements_only: bool = False,
) -> PolicyResult:
    """Render the key policy for ``measured`` images (see ``eifbuild policy --help``)."""
    if not measured:
        raise UsageError("no image or measurements given")
    if fmt not in FORMATS:
        raise UsageError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt != "json" and (template is not None or merge is not None or statements_only):
        raise UsageError(
            f"--format {fmt} cannot be combined with --template, --merge or --statement"
        )
    if merge is not None and statements_only:
        raise UsageError("--merge prints the whole merged policy; drop --statement")
    if prune and merge is None:
        raise UsageError("--prune only applies with --merge")
    account = check_account_id(account_id)
    role = check_role_arn(role_arn)
    acts = list(actions) if actions is not None else list(DEFAULT_ACTIONS)
    images, warnings = image_statements(measured, pcrs)
    warnings.extend(render_warnings(images, account, role, acts))
    name = str(template) if template is not None else POLICY_TEMPLATE
    policy = _parse_rendered(
        render_policy(context(images, account, role, acts), template), name, "policy"
    )
    changes: tuple[str, ...] = ()
    if merge is not None or statements_only:
        sids = {img.sid for img in images}
        ours = [st for st in _as_list(policy.get("Statement", [])) if st.get("Sid") in sids]
        if len(ours) != len(sids):
            raise PolicyError(f"{name}: the template renders no statement per image Sid")
        if statements_only:
            return PolicyResult(_dumps(ours), tuple(images), (), tuple(warnings))
        assert merge is not None
        where = os.fspath(merge)
        raw = read_small_file(merge, "policy", DEFAULT_LIMITS.max_policy_bytes, PolicyError)
        existing = loads_json(raw, where)
        if not isinstance(existing, dict):
            raise PolicyError(f"{where}: a policy must be a JSON object")
        result = merge_statements(existing, ours, where, prune)
        policy, changes = result.policy, result.changes
    return PolicyResult(render_format(policy, fmt), tuple(images), changes, tuple(warnings))
