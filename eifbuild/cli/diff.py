"""``eifbuild diff A.eif B.eif``: why do two EIFs' measurements differ?"""

from __future__ import annotations

import argparse
import os
import sys

from eifbuild._atomic import write_atomic
from eifbuild._progress import progress, set_quiet
from eifbuild.cli._common import info
from eifbuild.diff import (
    DEFAULT_LIMIT,
    diff_eifs,
    diff_listings,
    is_listing,
    render_html,
    render_json,
    render_text,
)
from eifbuild.errors import EifbuildError

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
        sys.stdout.write(render_json(d))
    else:
        sys.stdout.write(render_text(d, args.limit))
    sys.stdout.flush()
    return 1 if args.exit_code and differs else 0
