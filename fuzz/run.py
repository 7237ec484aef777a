#!/usr/bin/env python3
"""Run the atheris fuzz targets one after another and summarise each run.

    .venv/bin/python fuzz/run.py --seconds 180                # every target, 3 minutes each
    .venv/bin/python fuzz/run.py --seconds 30 --target eif    # one target
    .venv/bin/python fuzz/run.py --list

Each target runs in its own subprocess (``fuzz/fuzz_<name>.py``) under libFuzzer limits (RSS,
per-input timeout). Per target it prints execs, execs/s, coverage at start and end (libFuzzer
``cov``: instrumented edges), the corpus size and the crashes found; crashing inputs are in
``fuzz/crashes/`` (gitignored). Exit status 1 if any target crashed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = [
    "eif",
    "signature",
    "cose",
    "metadata",
    "cpio",
    "unpack",
    "layer",
    "oci",
    "tarhdr",
    "diff",
]

_STAT = re.compile(r"^#(\d+)\s+(INITED|NEW|REDUCE|pulse|DONE)\s+cov: (\d+) ft: (\d+) corp: (\d+)")
_DONE = re.compile(r"^Done (\d+) runs in (\d+) second")
_CRASH = re.compile(r"^CRASH \S+ (.+?) -> ")
_LIBFUZZER_ERR = re.compile(r"==\d+== ERROR: libFuzzer: (\S+)")


@dataclass
class Result:
    target: str
    execs: int = 0
    seconds: float = 0.0
    cov_start: int = 0
    cov_end: int = 0
    ft_end: int = 0
    corpus: int = 0
    crashes: list[str] = field(default_factory=list)
    rc: int = 0

    @property
    def rate(self) -> float:
        return self.execs / self.seconds if self.seconds else 0.0


def parse(target: str, lines: list[str], rc: int, wall: float) -> Result:
    r = Result(target, rc=rc, seconds=wall)
    for line in lines:
        if m := _STAT.match(line):
            execs, kind, cov, ft, corp = m.groups()
            if kind == "INITED":
                r.cov_start = int(cov)
            r.execs, r.cov_end, r.ft_end, r.corpus = int(execs), int(cov), int(ft), int(corp)
        elif m := _DONE.match(line):
            r.execs, r.seconds = int(m.group(1)), max(float(m.group(2)), 1.0)
        elif m := _CRASH.match(line):
            r.crashes.append(m.group(1))
        elif m := _LIBFUZZER_ERR.search(line):
            r.crashes.append(f"libFuzzer {m.group(1)} (input saved in fuzz/crashes/)")
    if rc != 0 and not r.crashes:
        r.crashes.append(f"harness exited with status {rc}")
    return r


def run_target(target: str, seconds: int, rss_mb: int, timeout: int, fresh: bool) -> Result:
    corpus = HERE / "corpus" / target
    if fresh and corpus.exists():
        shutil.rmtree(corpus)
    (HERE / "crashes").mkdir(exist_ok=True)
    cmd = [
        sys.executable,
        str(HERE / f"fuzz_{target}.py"),
        f"-max_total_time={seconds}",
        f"-rss_limit_mb={rss_mb}",
        f"-timeout={timeout}",
        f"-artifact_prefix={HERE / 'crashes'}/{target}-",
        "-print_final_stats=1",
    ]
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target}-") as tmp:
        proc = subprocess.run(
            cmd,
            env={**os.environ, "TMPDIR": tmp},  # the harness's scratch files go away with it
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=seconds + 300,
            check=False,
        )
    wall = time.monotonic() - start
    lines = proc.stdout.splitlines()
    (HERE / "crashes" / f"{target}.log").write_text(proc.stdout)
    return parse(target, lines, proc.returncode, wall)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60, help="fuzzing time per target")
    ap.add_argument("--target", action="append", choices=TARGETS, help="repeatable; default all")
    ap.add_argument("--rss-limit-mb", type=int, default=1024, help="memory bound per input run")
    ap.add_argument("--timeout", type=int, default=20, help="seconds allowed per input")
    ap.add_argument("--fresh", action="store_true", help="start from the seeds only")
    ap.add_argument("--list", action="store_true", help="list the targets and exit")
    args = ap.parse_args()
    if args.list:
        print("\n".join(TARGETS))
        return 0
    results = []
    for target in args.target or TARGETS:
        print(f"fuzzing {target} for {args.seconds}s ...", file=sys.stderr, flush=True)
        r = run_target(target, args.seconds, args.rss_limit_mb, args.timeout, args.fresh)
        results.append(r)
    head = f"{'target':<10} {'execs':>10} {'execs/s':>8} {'cov start':>9} {'cov end':>8} {'new cov':>7} {'corpus':>6} crashes"
    print(head)
    for r in results:
        print(
            f"{r.target:<10} {r.execs:>10} {r.rate:>8.0f} {r.cov_start:>9} {r.cov_end:>8}"
            f" {r.cov_end - r.cov_start:>7} {r.corpus:>6} {len(r.crashes)}"
        )
        for c in r.crashes:
            print(f"    crash: {c}")
    return 1 if any(r.crashes for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
