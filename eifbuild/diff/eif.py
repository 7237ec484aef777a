"""EIF against EIF: PCRs, the measured inputs that explain them, and the unmeasured rest.

For each pair of ramdisks whose bytes differ, both newc archives are compared entry by entry
(:mod:`eifbuild.diff.archive`). Metadata and file-level fields (size, version, arch, CRC) are
compared too, and flagged as not measured.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterator
from typing import Any

from eifbuild.diff.archive import diff_entry_streams
from eifbuild.diff.entries import DIFF_LIMITS, EntryInfo, read_entries
from eifbuild.diff.escape import safe_json, safe_str, safe_text
from eifbuild.diff.facts import (
    CERTIFICATE,
    EifFacts,
    gather,
    ramdisk_name,
    section_stream,
)
from eifbuild.eif.format import Section
from eifbuild.eif.reader import EifReader
from eifbuild.errors import EifbuildError
from eifbuild.limits import DEFAULT_LIMITS, Limits
from eifbuild.measure import Measurements
from eifbuild.textescape import safe_name
from eifbuild.types import Progress

EIF_FORMAT = "eifbuild-diff/1"
PCR_NAMES = ("PCR0", "PCR1", "PCR2", "PCR8")
_FILE_FIELDS = ("version", "arch", "size", "crc_ok")


def _pcr_table(a: Measurements, b: Measurements) -> dict[str, dict[str, Any]]:
    out = {}
    for name in PCR_NAMES:
        va, vb = getattr(a, name.lower()), getattr(b, name.lower())
        if va is None and vb is None:
            continue
        out[name] = {"a": va, "b": vb, "differs": va != vb}
    return out


def _input_order(name: str) -> tuple[int, int]:
    """kernel, cmdline, ramdisks by index, then the signing certificate."""
    if name.startswith("ramdisk "):
        return (2, int(name.split()[1]))
    return ({"kernel": 0, "cmdline": 1, CERTIFICATE: 3}.get(name, 4), 0)


def _inputs_table(a: EifFacts, b: EifFacts) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(set(a.inputs) | set(b.inputs), key=_input_order):
        ia, ib = a.inputs.get(name), b.inputs.get(name)
        pcrs = (ia or ib).pcrs  # type: ignore[union-attr]
        rows.append(
            {
                "name": name,
                "pcrs": list(pcrs),
                "a": None if ia is None else {"sha384": ia.sha384, "size": ia.size},
                "b": None if ib is None else {"sha384": ib.sha384, "size": ib.size},
                "changed": ia is None or ib is None or ia.sha384 != ib.sha384,
            }
        )
    return rows


def _explain(pcrs: dict[str, dict[str, Any]], inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for pcr, row in pcrs.items():
        if not row["differs"]:
            continue
        because = [i["name"] for i in inputs if i["changed"] and pcr in i["pcrs"]]
        if pcr == "PCR8" and (row["a"] is None or row["b"] is None):
            because = [f"{CERTIFICATE} (only one EIF is signed)"]
        out.append({"pcr": pcr, "because": because})
    return out


def cmdline_diff(a: bytes, b: bytes) -> dict[str, Any]:
    """Token-level difference of two kernel command lines (hostile text escaped)."""
    ta, tb = [safe_text(t) for t in a.split()], [safe_text(t) for t in b.split()]
    removed: list[str] = []
    added: list[str] = []
    ops = difflib.SequenceMatcher(a=ta, b=tb, autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in ops:
        if tag != "equal":
            removed += ta[i1:i2]
            added += tb[j1:j2]
    return {
        "changed": a != b,
        "a": safe_text(a),
        "b": safe_text(b),
        "removed_tokens": removed,
        "added_tokens": added,
    }


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Dotted path -> JSON-encoded leaf value."""
    if isinstance(value, dict) and value:
        out: dict[str, str] = {}
        for k in value:
            out.update(_flatten(value[k], f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix or "(root)": safe_json(value)}


def _field_rows(a: dict[str, Any], b: dict[str, Any], keys: list[str]) -> list[dict[str, Any]]:
    return [{"field": k, "a": a.get(k), "b": b.get(k)} for k in keys if a.get(k) != b.get(k)]


def metadata_diff(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Differing metadata fields (dotted paths, JSON-encoded values); never measured."""
    fa = {} if a is None else _flatten(a)
    fb = {} if b is None else _flatten(b)
    rows = _field_rows(fa, fb, sorted(set(fa) | set(fb)))
    for r in rows:
        r["field"] = safe_str(r["field"])
    return rows


def _file_diff(a: EifFacts, b: EifFacts) -> list[dict[str, Any]]:
    fields = list(_FILE_FIELDS)
    return _field_rows(
        {k: getattr(a, k) for k in fields}, {k: getattr(b, k) for k in fields}, fields
    )


def _named(entries: Iterator[EntryInfo], label: str) -> Iterator[EntryInfo]:
    """Prefix read errors with the EIF and ramdisk they come from."""
    try:
        yield from entries
    except EifbuildError as exc:
        raise EifbuildError(f"{label}: {exc.message}") from None


def _ramdisk_diff(
    ra: EifReader, rb: EifReader, sa: Section, sb: Section, index: int, limits: Limits
) -> dict[str, Any]:
    out: dict[str, Any] = {"index": index, "error": None}
    name = ramdisk_name(index)
    try:
        with section_stream(ra, sa) as fa, section_stream(rb, sb) as fb:
            d = diff_entry_streams(
                _named(read_entries(fa, limits), f"{ra.name} {name}"),
                _named(read_entries(fb, limits), f"{rb.name} {name}"),
            )
    except EifbuildError as exc:  # not a newc archive: the byte-level facts still stand
        out["error"] = safe_text(exc.message.encode())
        return out
    return {**out, **d}


def _side(f: EifFacts) -> dict[str, Any]:
    return {
        "path": safe_name(f.path),
        "size": f.size,
        "eif_version": f.version,
        "arch": f.arch,
        "signed": f.measurements.pcr8 is not None,
        "crc_ok": f.crc_ok,
        "ramdisks": len(f.ramdisks),
    }


def _changed_ramdisks(
    ra: EifReader, rb: EifReader, fa: EifFacts, fb: EifFacts, limits: Limits
) -> list[dict[str, Any]]:
    """Entry diffs of the ramdisk pairs (same index) whose bytes differ."""
    out = []
    for i, (sa, sb) in enumerate(zip(fa.ramdisks, fb.ramdisks, strict=False)):
        name = ramdisk_name(i)
        if fa.inputs[name].sha384 != fb.inputs[name].sha384:
            out.append(_ramdisk_diff(ra, rb, sa, sb, i, limits))
    return out


def diff_eifs(
    path_a: str,
    path_b: str,
    progress: Progress | None = None,
    max_entries: int = DEFAULT_LIMITS.max_diff_entries,
) -> dict[str, Any]:
    """The full diff document (deterministic; see ``eifbuild diff --help`` for its shape).

    Entry lists are disk-backed :class:`~eifbuild.diff.spill.SpillList` objects (iterable,
    sized, comparable to lists): memory stays bounded whatever the entry count; at most
    ``max_entries`` entries per ramdisk are read."""
    limits = dataclasses.replace(DIFF_LIMITS, max_cpio_entries=max_entries)
    with EifReader(path_a) as ra, EifReader(path_b) as rb:
        fa, fb = gather(ra, progress), gather(rb, progress)
        ramdisks = _changed_ramdisks(ra, rb, fa, fb, limits)
    pcrs = _pcr_table(fa.measurements, fb.measurements)
    inputs = _inputs_table(fa, fb)
    return {
        "format": EIF_FORMAT,
        "a": _side(fa),
        "b": _side(fb),
        "pcrs": pcrs,
        "pcrs_differ": [k for k, v in pcrs.items() if v["differs"]],
        "inputs": inputs,
        "explanation": _explain(pcrs, inputs),
        "cmdline": cmdline_diff(fa.cmdline, fb.cmdline),
        "metadata": {"measured": False, "differences": metadata_diff(fa.metadata, fb.metadata)},
        "file": {"measured": False, "differences": _file_diff(fa, fb)},
        "ramdisks": ramdisks,
    }
