"""Rendering of diff documents: text for people, JSON for machines, an HTML report.

Both documents (``eifbuild-diff/1`` for EIFs, ``eifbuild-rootfs-diff/1`` for listings) are
plain data from :func:`~eifbuild.diff.eif.diff_eifs` / :func:`~eifbuild.diff.listing.diff_listings`;
the text and HTML forms list at most ``limit`` entries per category, JSON lists everything.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from eifbuild.diff.listing import LISTING_FORMAT
from eifbuild.diff.spill import SpillList
from eifbuild.policy import DIFF_TEMPLATE, environment

DEFAULT_LIMIT = 200

Doc = dict[str, Any]


def render_json(d: Doc) -> str:
    """The stable machine form: sorted keys, 2-space indent, UTF-8 kept."""
    out: list[str] = []
    write_json(d, out.append)
    return "".join(out)


def write_json(d: Doc, write: Callable[[str], object]) -> None:
    """:func:`render_json`, streamed to ``write`` piece by piece: the bytes of
    ``json.dumps(d, indent=2, sort_keys=True, ensure_ascii=False) + "\\n"``, but disk-backed
    entry lists (:class:`~eifbuild.diff.spill.SpillList`) are never held in memory."""
    _write_value(d, 0, write)
    write("\n")


def _write_value(value: Any, level: int, write: Callable[[str], object]) -> None:
    pad = "  " * (level + 1)
    if isinstance(value, dict) and value and _has_spill(value):
        write("{")
        for i, key in enumerate(sorted(value)):
            write(("," if i else "") + "\n" + pad + json.dumps(key, ensure_ascii=False) + ": ")
            _write_value(value[key], level + 1, write)
        write("\n" + "  " * level + "}")
    elif isinstance(value, (list, SpillList)) and value and _has_spill(value):
        write("[")
        for i, item in enumerate(value):
            write(("," if i else "") + "\n" + pad)
            _write_value(item, level + 1, write)
        write("\n" + "  " * level + "]")
    elif isinstance(value, SpillList):
        write("[]")  # empty
    else:
        text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
        write(text.replace("\n", "\n" + "  " * level) if level else text)


def _has_spill(value: Any) -> bool:
    """Whether ``value`` holds a SpillList (then it is written element by element)."""
    if isinstance(value, SpillList):
        return True
    if isinstance(value, dict):
        return any(_has_spill(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_spill(v) for v in value)
    return False


def render_html(d: Doc, limit: int = DEFAULT_LIMIT) -> str:
    """The HTML report (jinja2, autoescape on: paths and cmdlines are hostile)."""
    tpl = environment(autoescape=True).get_template(DIFF_TEMPLATE)
    return tpl.render(diff=d, limit=limit)


def render_text(d: Doc, limit: int = DEFAULT_LIMIT) -> str:
    """Human report: summaries first (PCRs, inputs, why), then details."""
    return "".join(line + "\n" for line in render_lines(d, limit))


def render_lines(d: Doc, limit: int = DEFAULT_LIMIT) -> Iterator[str]:
    """:func:`render_text` line by line (without newlines), streamed."""
    if d["format"] == LISTING_FORMAT:
        rd = {"error": None, **d}
        yield f"A: {d['a']['path']}"
        yield f"B: {d['b']['path']}"
        yield from _entry_lines(rd, limit, "rootfs")
        return
    yield from _header_lines(d)
    yield from _pcr_lines(d)
    yield from _input_lines(d)
    yield from _unmeasured_lines(d)
    for rd in d["ramdisks"]:
        yield from _entry_lines(rd, limit, f"ramdisk {rd['index']}")


def _size(row: Doc | None) -> str:
    return "absent" if row is None else f"{row['size']} bytes"


def _digest(row: Doc | None) -> str:
    return "-" if row is None else str(row["sha384"])


def _entry_line(e: Doc) -> str:
    text = f"{e['type']} {e['mode']} {e['uid']}/{e['gid']} size {e['size']} mtime {e['mtime']}"
    if e["sha256"]:
        text += f" sha256 {e['sha256'][:16]}"
    if e["target"] is not None:
        text += f" -> {e['target']}"
    if e["rdev"]:
        text += f" [{e['rdev']}]"
    return f"{e['path']}: {text}"


def _change_line(c: Doc) -> str:
    parts = [
        f"{k} {_mtime(v['a'])} -> {_mtime(v['b'])}" if k == "mtime" else f"{k} {v['a']} -> {v['b']}"
        for k, v in c["changes"].items()
    ]
    return f"{c['path']}: " + ", ".join(parts)


def _mtime(value: object) -> str:
    """Seconds since the epoch, with the UTC time a reader can compare at a glance."""
    if not isinstance(value, int) or isinstance(value, bool):
        return str(value)
    try:
        when = _dt.datetime.fromtimestamp(value, tz=_dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return str(value)
    return f"{value} ({when} UTC)"


def _limited(
    rows: Sequence[Doc] | SpillList, line: Callable[[Doc], str], limit: int, prefix: str
) -> Iterator[str]:
    for r in rows[:limit]:
        yield prefix + line(r)
    if len(rows) > limit:
        yield f"{prefix}... and {len(rows) - limit} more (see --json)"


def _header_lines(d: Doc) -> Iterator[str]:
    for side in ("a", "b"):
        s = d[side]
        signed = "signed" if s["signed"] else "unsigned"
        crc = "" if s["crc_ok"] else ", CRC MISMATCH"
        yield (
            f"{side.upper()}: {s['path']} (EIF v{s['eif_version']}, {s['arch']}, {signed}, "
            f"{s['ramdisks']} ramdisks, {s['size']} bytes{crc})"
        )


def _pcr_lines(d: Doc) -> Iterator[str]:
    yield ""
    differ = ", ".join(d["pcrs_differ"]) or "none"
    yield f"PCRs (differ: {differ})"
    for name, row in d["pcrs"].items():
        mark = "DIFFERS" if row["differs"] else "same"
        yield f"  {name} {mark}"
        if row["differs"]:
            yield f"    A {row['a'] or 'absent'}"
            yield f"    B {row['b'] or 'absent'}"
        else:
            yield f"    {row['a']}"


def _input_lines(d: Doc) -> Iterator[str]:
    yield ""
    yield "Measured inputs"
    for row in d["inputs"]:
        pcrs = ",".join(row["pcrs"])
        if row["changed"]:
            yield f"  {row['name']} ({pcrs}) CHANGED: {_size(row['a'])} -> {_size(row['b'])}"
            yield f"    A sha384 {_digest(row['a'])}"
            yield f"    B sha384 {_digest(row['b'])}"
        else:
            yield f"  {row['name']} ({pcrs}) same: {_size(row['a'])}"
    if d["explanation"]:
        yield ""
        yield "Why"
    for ex in d["explanation"]:
        because = ", ".join(ex["because"]) or "no single input (section boundaries moved?)"
        yield f"  {ex['pcr']} changed because {because} changed"


def _unmeasured_lines(d: Doc) -> Iterator[str]:
    cmd = d["cmdline"]
    if cmd["changed"]:
        yield ""
        yield "cmdline (measured in PCR0, PCR1)"
        yield f"  A {cmd['a']}"
        yield f"  B {cmd['b']}"
        yield from (f"  - {t}" for t in cmd["removed_tokens"])
        yield from (f"  + {t}" for t in cmd["added_tokens"])
    for section in ("file", "metadata"):
        rows = d[section]["differences"]
        if rows:
            yield ""
            yield f"{section} differences (NOT measured)"
        for r in rows:
            yield f"  {r['field']}: {r['a']} -> {r['b']}"


def _entry_lines(rd: Doc, limit: int, title: str) -> Iterator[str]:
    """One ramdisk's (or the listings') entry diff: a summary line, then +, -, ~, i lines."""
    yield ""
    if rd["error"] is not None:
        yield f"{title}: entries not compared: {rd['error']}"
        return
    s = rd["summary"]
    inode = f", {s['inode_only']} inode-only" if "inode_only" in s else ""
    yield (
        f"{title}: {s['added']} added, {s['removed']} removed, {s['changed']} changed"
        f"{inode} (entries {s['entries_a']} -> {s['entries_b']})"
    )
    yield from _limited(rd["added"], _entry_line, limit, "  + ")
    yield from _limited(rd["removed"], _entry_line, limit, "  - ")
    yield from _limited(rd["changed"], _change_line, limit, "  ~ ")
    yield from _limited(rd.get("inode_only", []), _change_line, limit, "  i ")
    only_mtimes = all(set(c["changes"]) == {"mtime"} for c in rd["changed"])
    if rd["changed"] and only_mtimes and not (rd["added"] or rd["removed"]):
        yield (
            "  only mtimes differ (a rebuild stamps new times): `eifbuild build "
            "--clamp-mtime` gives the same PCR2 for the same content"
        )
