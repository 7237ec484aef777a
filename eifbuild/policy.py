"""AWS KMS key policies that pin enclave measurements, rendered from jinja2 templates.

The policy lets one IAM role call KMS only with a Nitro attestation document whose PCRs match
(condition keys ``kms:RecipientAttestation:PCR<n>`` under ``StringEqualsIgnoreCase``), next to
the usual statement that gives the account root full control of the key. Measurements come
from an EIF (streamed) or from the JSON that ``build``/``assemble``/``describe``/``measure``
print. The rendered text must parse as JSON with no duplicate keys; the result is re-serialised
with a fixed layout so the same inputs always give the same bytes.

Templates live in the top-level ``templates/`` directory of the source tree; a wheel installs
them as data files under ``<prefix>/share/eifbuild/templates`` (see pyproject.toml and
:mod:`eifbuild._resources`).
"""

from __future__ import annotations

import contextlib
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
from eifbuild.eif.smallfile import open_regular, read_small_file
from eifbuild.errors import EifbuildError, UsageError

POLICY_TEMPLATE = "kms-key-policy.json.j2"
DIFF_TEMPLATE = "diff-report.html.j2"
MAX_MEASUREMENTS_JSON = 16 << 20  # a build --json record is a few KiB
MAX_TEMPLATE_SIZE = 1 << 20
# A KMS key policy is at most 32 KiB; a rendered template may be larger before json.dumps
# normalises it, but not without bound.
MAX_RENDERED_SIZE = 1 << 20
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
_PCR_RE = re.compile(r"[0-9a-fA-F]{96}")


class PolicyError(EifbuildError):
    """A key policy cannot be produced (bad account id, ARN, PCR, measurements or template)."""


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
    raw = read_small_file(path, "template", MAX_TEMPLATE_SIZE, PolicyError)
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
    """Render ``tpl`` with at most MAX_RENDERED_SIZE characters of output and
    MAX_RENDER_SECONDS of time (main thread); any failure inside the template is a
    PolicyError naming it."""
    out: list[str] = []
    size = 0
    with _deadline(MAX_RENDER_SECONDS, f"{name}: template took more than {MAX_RENDER_SECONDS} s"):
        try:
            for chunk in tpl.generate(**ctx):
                size += len(chunk)
                if size > MAX_RENDERED_SIZE:
                    raise PolicyError(
                        f"{name}: template output exceeds {MAX_RENDERED_SIZE} characters"
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
    if not isinstance(value, str) or not _PCR_RE.fullmatch(value):
        raise PolicyError(f"{where}: {name} is not 96 hexadecimal characters")
    return value.lower()


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
    if isinstance(doc, dict) and isinstance(doc.get("Measurements"), dict):
        doc = doc["Measurements"]
    if not isinstance(doc, dict) or not any(f"PCR{i}" in doc for i in PCR_CHOICES):
        raise PolicyError(f"{where}: no Measurements with PCR0/PCR1/PCR2/PCR8 found")
    return {
        i: check_pcr_value(f"PCR{i}", doc[f"PCR{i}"], where)
        for i in PCR_CHOICES
        if f"PCR{i}" in doc
    }


def load_measurements(
    path: str | os.PathLike[str],
    progress: Callable[[int], object] | None = None,
    warn: Callable[[str], object] | None = None,
) -> dict[int, str]:
    """PCRs from an EIF (measured by streaming) or a measurements JSON document."""
    where = str(path)
    try:
        with open_regular(path, where, PolicyError) as fh:
            head = fh.read(len(MAGIC))
            raw = head + fh.read(MAX_MEASUREMENTS_JSON) if head != MAGIC else b""
    except OSError as exc:
        raise PolicyError(f"{where}: cannot read ({exc.strerror})") from None
    if head == MAGIC:
        with EifReader(path) as reader:
            scan = reader.scan(progress=progress)
        m = scan.measurements
        if not scan.crc_ok and warn is not None:
            warn(f"{where}: CRC mismatch (damaged or edited file); pinning the PCRs it measures")
        pcrs = {0: m.pcr0, 1: m.pcr1, 2: m.pcr2}
        if m.pcr8 is not None:
            pcrs[8] = m.pcr8
        return pcrs
    if len(raw) > MAX_MEASUREMENTS_JSON:
        raise PolicyError(
            f"{where}: measurements JSON is larger than {MAX_MEASUREMENTS_JSON} bytes"
        )
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PolicyError(f"{where}: neither an EIF nor a measurements JSON document") from None
    return _pcrs_from_json(doc, where)


def pcr_warnings(selected: Sequence[int]) -> list[str]:
    """Advice for weak pins (spec eif-format §14, items 15-16)."""
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


def context(
    pcrs: dict[int, str], account_id: str, role: RoleArn, actions: Sequence[str]
) -> dict[str, Any]:
    """Template variables: plain strings and lists (templates use ``|tojson``)."""
    return {
        "account_id": account_id,
        "partition": role.partition,
        "root_arn": f"arn:{role.partition}:iam::{account_id}:root",
        "role_arn": role.arn,
        "actions": list(actions),
        "conditions": {CONDITION_KEY.format(i): v for i, v in sorted(pcrs.items())},
        "pcrs": {f"PCR{i}": v for i, v in sorted(pcrs.items())},
    }


def render_policy(ctx: dict[str, Any], template: str | os.PathLike[str] | None = None) -> str:
    """Render, check it is JSON (no duplicate keys), and return a canonical 2-space layout."""
    tpl = (
        _user_template(template)
        if template is not None
        else environment(False).get_template(POLICY_TEMPLATE)
    )
    name = str(template) if template is not None else POLICY_TEMPLATE
    text = _render_bounded(tpl, ctx, name)
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise PolicyError(
            f"{name}: rendered policy is not valid JSON (nested too deeply)"
        ) from None
    except ValueError as exc:
        raise PolicyError(f"{name}: rendered policy is not valid JSON ({_one_line(exc)})") from None
    if not isinstance(doc, dict):
        raise PolicyError(f"{name}: rendered policy is not a JSON object")
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
