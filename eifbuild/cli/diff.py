"""``eifbuild diff A B``: why do two EIFs' measurements (or two rootfs listings) differ?"""

from __future__ import annotations

import argparse
import os
import sys

from eifbuild.cli._bars import progress, set_quiet
from eifbuild.cli._common import info, output_path, write_output
from eifbuild.diff import diff_eifs, diff_listings, input_kind
from eifbuild.diff.render import DEFAULT_LIMIT, render_html, render_lines, write_json
from eifbuild.errors import EifbuildError, UsageError
from eifbuild.limits import DEFAULT_LIMITS

HELP = "explain why two EIFs' PCRs differ (inputs, cmdline, metadata, ramdisk entries)"
DESCRIPTION = """Explain why two EIFs' measurements differ: which PCRs differ, which measured input
changed, and what changed inside each changed ramdisk, file by file. Both EIFs are streamed
(nothing is loaded whole), and entries are sorted and compared on disk in $TMPDIR, so
memory stays bounded (under 256 MiB for --max-entries entries per ramdisk).

A and B are two EIF files, or two `eifbuild rootfs` listings (JSON lines), which are then
compared by path (a blank file next to a listing is an empty listing). One of each is an
error.

The text report, in this order:
  A:, B:           EIF version, arch, signed or not, ramdisk count, size, CRC state
  PCRs             PCR0, PCR1, PCR2 (and PCR8 if either is signed): DIFFERS or same
  Measured inputs  SHA-384 and size of each input, and the PCRs it feeds:
                     kernel, cmdline, ramdisk 0 -> PCR0, PCR1
                     ramdisk 1, 2, ...           -> PCR0, PCR2
                     signing certificate         -> PCR8
  Why              each differing PCR and the changed inputs that explain it
  cmdline          the kernel command line tokens removed (-) and added (+)
  file, metadata   differences that are NOT measured (size, CRC, build metadata)
  ramdisk N        for each pair of ramdisks whose bytes differ, their cpio entries:
                     + added, - removed, ~ changed (type, mode, uid, gid, mtime, size,
                     sha256 of the content, symlink target, rdev, position: moved
                     relative to the other entries), i inode-only (ino, nlink, dev,
                     check: the archive was renumbered, contents are the same)
Ramdisks are paired by index; a ramdisk that is not a cpio archive is reported as
"entries not compared" and the rest of the report stands. Paths, command lines and
metadata are escaped: non-UTF-8 bytes as \\xNN, control and bidi characters as
\\xNN or \\uNNNN, a backslash doubled."""

EPILOG = """output:
  text             on stdout, for people (scripts should use --json)
  --json           the whole diff on stdout, every entry, keys sorted; "format" is
                   "eifbuild-diff/1" (EIFs) or "eifbuild-rootfs-diff/1" (listings)
  --html FILE      also write an HTML report (EIFs only; the text or JSON still goes
                   to stdout)

examples:
  eifbuild diff old.eif new.eif
  eifbuild diff --exit-code release.eif candidate.eif >/dev/null && echo "same PCRs"
  eifbuild diff --json old.eif new.eif | jq '.explanation'
  eifbuild diff --html report.html --limit 1000 old.eif new.eif
  eifbuild rootfs oci:img-v1 > v1.jsonl; eifbuild rootfs oci:img-v2 > v2.jsonl
  eifbuild diff --exit-code v1.jsonl v2.jsonl

exit codes:
  0  compared (with --exit-code: no PCR differs, whatever the unmeasured metadata and
     file fields say; listings: no entry differs)
  1  with --exit-code: a PCR differs (listings: an entry differs); or an error
     (unreadable or malformed input), with one "eifbuild: error:" line on stderr
  2  usage error

Add --debug before the command to see tracebacks."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG  # replaces the generic one: diff's exit code 1 has its own meaning
    p.add_argument("a", metavar="A", help="the old EIF (or `eifbuild rootfs` listing)")
    p.add_argument("b", metavar="B", help="the new EIF (or listing), compared against A")
    p.add_argument("--json", action="store_true", help="print the complete diff as JSON")
    p.add_argument(
        "--html",
        type=output_path,
        metavar="FILE",
        help="also write an HTML report to FILE (EIFs only)",
    )
    p.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 1 if any PCR differs (listings: any entry), like git diff --exit-code",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"list at most N entries per +/-/~/i category in the text and HTML reports; 0 "
        f"leaves only the summary lines (default {DEFAULT_LIMIT}; --json always lists all)",
    )
    p.add_argument(
        "--max-entries",
        type=int,
        default=DEFAULT_LIMITS.max_diff_entries,
        metavar="N",
        help=f"refuse a ramdisk or listing with more than N entries (default {DEFAULT_LIMITS.max_diff_entries}); "
        "entries are sorted on disk in $TMPDIR (about 150 bytes each), memory stays below "
        "256 MiB up to the default",
    )


def run(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise UsageError(f"--limit {args.limit}: must be 0 or more")
    if args.max_entries < 1:
        raise UsageError(f"--max-entries {args.max_entries}: must be a positive number")
    if args.json:
        set_quiet(True)
    kinds = {input_kind(p) for p in (args.a, args.b)}
    if "listing" in kinds:  # a blank file pairs with a listing as an empty listing
        if "eif" in kinds:
            raise EifbuildError(
                f"{args.a}, {args.b}: compare two EIFs or two `eifbuild rootfs` listings,"
                " not one of each"
            )
        if args.html:
            raise EifbuildError("--html needs two EIFs (not rootfs listings)")
        d = diff_listings(args.a, args.b, args.max_entries)
        differs = bool(d["added"] or d["removed"] or d["changed"])
    else:
        total = sum(os.stat(p).st_size * 2 for p in (args.a, args.b) if os.path.isfile(p))
        with progress(total=total or None, desc="Comparing") as bar:
            d = diff_eifs(args.a, args.b, progress=bar.update, max_entries=args.max_entries)
        differs = bool(d["pcrs_differ"])
    if args.html:
        write_output(args.html, render_html(d, args.limit).encode("utf-8"))
        info(f"HTML report written to {args.html}")
    if args.json:
        write_json(d, sys.stdout.write)
    else:
        for line in render_lines(d, args.limit):
            sys.stdout.write(line + "\n")
    sys.stdout.flush()
    return 1 if args.exit_code and differs else 0
