"""``eifbuild diff A.eif B.eif``: why do two EIFs' measurements differ?"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from eifbuild._atomic import write_atomic
from eifbuild._progress import progress, set_quiet
from eifbuild.cli._common import info
from eifbuild.diff import diff_eifs, diff_listings, is_listing
from eifbuild.errors import EifbuildError
from eifbuild.policy import DIFF_TEMPLATE, environment

HELP = "explain why two EIFs' PCRs differ (inputs, cmdline, metadata, ramdisk entries)"
DESCRIPTION = """Compare two EIFs: PCR0/1/2/8 side by side; each measured input (kernel, cmdline,
ramdisk i, signing certificate) with its SHA-384 and size, and which PCRs it feeds, so that
"PCR2 changed because ramdisk 1 changed"; the cmdline tokens added/removed; metadata and
file differences (not measured); and, for every ramdisk whose bytes differ, a per-entry
diff of the two cpio archives: added, removed, changed entries (type, mode, uid, gid, mtime,
size, content sha256, symlink target, rdev, position) and inode-only differences (inode
number, nlink, dev, check). Paths are shown escaped (non-UTF-8 bytes as \\xNN, control
characters escaped, backslash doubled).

Output: text on stdout; --json prints a stable machine format (format "eifbuild-diff/1",
sorted, complete); --html FILE also writes an HTML report. --exit-code: exit 1 when any PCR
differs, like `git diff --exit-code` (without it: 0 on success). Errors exit 1.

A and B may instead be two `eifbuild rootfs IMAGE > LIST.jsonl` listings: their entries are
compared by path (format "eifbuild-rootfs-diff/1"; --exit-code: exit 1 if any entry differs)."""

DEFAULT_LIMIT = 200
LISTING_FORMAT = "eifbuild-rootfs-diff/1"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A.eif", help="first (old) EIF")
    p.add_argument("b", metavar="B.eif", help="second (new) EIF")
    p.add_argument("--json", action="store_true", help="print the diff as JSON")
    p.add_argument("--html", metavar="REPORT.html", help="also write an HTML report here")
    p.add_argument(
        "--exit-code", action="store_true", help="exit 1 if any PCR differs (like git diff)"
    )
    p.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"entries listed per category in text/HTML (default {DEFAULT_LIMIT}; JSON lists all)",
    )


# ------------------------------------------------------------------------------ text


def _size(row: dict[str, Any] | None) -> str:
    return "absent" if row is None else f"{row['size']} bytes"


def _digest(row: dict[str, Any] | None) -> str:
    return "-" if row is None else row["sha384"]


def _entry_line(e: dict[str, Any]) -> str:
    text = f"{e['type']} {e['mode']} {e['uid']}/{e['gid']} size {e['size']} mtime {e['mtime']}"
    if e["sha256"]:
        text += f" sha256 {e['sha256'][:16]}"
    if e["target"] is not None:
        text += f" -> {e['target']}"
    if e["rdev"]:
        text += f" [{e['rdev']}]"
    return f"{e['path']}: {text}"


def _change_line(c: dict[str, Any]) -> str:
    parts = [f"{k} {v['a']} -> {v['b']}" for k, v in c["changes"].items()]
    return f"{c['path']}: " + ", ".join(parts)


def _limited(rows: list[str], limit: int, prefix: str) -> Iterator[str]:
    for r in rows[:limit]:
        yield prefix + r
    if len(rows) > limit:
        yield f"{prefix}... and {len(rows) - limit} more (see --json)"


def _header_lines(d: dict[str, Any]) -> Iterator[str]:
    for side in ("a", "b"):
        s = d[side]
        signed = "signed" if s["signed"] else "unsigned"
        crc = "" if s["crc_ok"] else ", CRC MISMATCH"
        yield (
            f"{side.upper()}: {s['path']} (EIF v{s['eif_version']}, {s['arch']}, {signed}, "
            f"{s['ramdisks']} ramdisks, {s['size']} bytes{crc})"
        )


def _pcr_lines(d: dict[str, Any]) -> Iterator[str]:
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


def _input_lines(d: dict[str, Any]) -> Iterator[str]:
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


def _unmeasured_lines(d: dict[str, Any]) -> Iterator[str]:
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


def _ramdisk_lines(rd: dict[str, Any], limit: int, title: str = "") -> Iterator[str]:
    title = title or f"ramdisk {rd['index']}"
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
    yield from _limited([_entry_line(e) for e in rd["added"]], limit, "  + ")
    yield from _limited([_entry_line(e) for e in rd["removed"]], limit, "  - ")
    yield from _limited([_change_line(c) for c in rd["changed"]], limit, "  ~ ")
    yield from _limited([_change_line(c) for c in rd.get("inode_only", [])], limit, "  i ")


def render_text(d: dict[str, Any], limit: int = DEFAULT_LIMIT) -> str:
    """Human report: summaries first (PCRs, inputs, why), then details."""
    if d["format"] == LISTING_FORMAT:
        rd = {"error": None, **d}
        head = [f"A: {d['a']['path']}", f"B: {d['b']['path']}"]
        return "\n".join([*head, *_ramdisk_lines(rd, limit, "rootfs")]) + "\n"
    lines = [*_header_lines(d), *_pcr_lines(d), *_input_lines(d), *_unmeasured_lines(d)]
    for rd in d["ramdisks"]:
        lines += _ramdisk_lines(rd, limit)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ html


def render_html(d: dict[str, Any], limit: int = DEFAULT_LIMIT) -> str:
    """The HTML report (jinja2, autoescape on: paths and cmdlines are hostile)."""
    tpl = environment(autoescape=True).get_template(DIFF_TEMPLATE)
    return tpl.render(diff=d, limit=limit)


def run(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise EifbuildError("--limit must be 0 or more")
    if args.json:
        set_quiet(True)
    listings = [is_listing(p) for p in (args.a, args.b)]
    if any(listings):
        if not all(listings):
            raise EifbuildError(
                f"{args.a}, {args.b}: compare two EIFs or two `eifbuild rootfs` listings,"
                " not one of each"
            )
        if args.html:
            raise EifbuildError("--html needs two EIFs (not rootfs listings)")
        d = diff_listings(args.a, args.b)
        differs = bool(d["added"] or d["removed"] or d["changed"])
    else:
        total = sum(os.stat(p).st_size * 2 for p in (args.a, args.b) if os.path.isfile(p))
        with progress(total=total or None, desc="Comparing") as bar:
            d = diff_eifs(args.a, args.b, progress=bar.update)
        differs = bool(d["pcrs_differ"])
    if args.html:
        try:
            write_atomic(args.html, render_html(d, args.limit).encode("utf-8"))
        except OSError as exc:
            raise EifbuildError(f"{args.html}: cannot write ({exc.strerror or exc})") from None
        info(f"HTML report written to {args.html}")
    if args.json:
        sys.stdout.write(json.dumps(d, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_text(d, args.limit))
    sys.stdout.flush()
    return 1 if args.exit_code and differs else 0
