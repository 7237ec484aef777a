"""Benchmark: newc cpio writer and reader throughput and peak RSS on many small files.

    .venv/bin/python benchmarks/bench_cpio.py [--entries 200000] [--size 64] [--repeat 3]
                                              [--against REV] [--dir DIR]

Three phases, each in a fresh subprocess (so ``ru_maxrss`` is the phase's own peak RSS):

``write``         ``newc_stream`` over ``--entries`` regular files whose content is in memory
                  (``Member.data``, 1..``--size`` bytes) under 997 directories, each chunk
                  written to a buffered file, as a consumer that does not coalesce would;
``write-opener``  the same files streamed through ``Member.opener`` (how ``eifbuild build``
                  feeds rootfs files), one content chunk each;
``read``          the written archive read back with ``NewcReader`` over a buffered file,
                  every member's content consumed (what ``eifbuild diff`` does minus hashing).

Members are generated lazily, so their construction is part of the write figures; it is
measured alone as ``members`` for reference. ``--against REV`` also runs every phase with the
``eifbuild`` package of git revision ``REV`` (``git archive`` into a temp dir, put first on
``sys.path``), alternating the two, and prints both; the best of ``--repeat`` runs is kept.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MIB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent
PHASES = ("members", "write", "write-opener", "read")


def _once(data: bytes) -> Callable[[], Iterator[bytes]]:
    return lambda: iter((data,))


def _members(entries: int, size: int, opener: bool) -> Iterator[Any]:
    from eifbuild.cpio import Member

    pattern = bytes(range(256)) * (size // 256 + 1)
    yield Member(b"rootfs", stat.S_IFDIR, 0o755, mtime=1492533000)
    for d in range(min(997, entries)):
        yield Member(b"rootfs/d%03d" % d, stat.S_IFDIR, 0o755, mtime=1492533000)
    for i in range(entries):
        data = pattern[i % 256 : i % 256 + 1 + i % size]
        name = b"rootfs/d%03d/f%07d" % (i % 997, i)
        if opener:
            yield Member(
                name, stat.S_IFREG, 0o644, mtime=1492533000, size=len(data),
                opener=_once(data),
            )  # fmt: skip
        else:
            yield Member(name, stat.S_IFREG, 0o644, mtime=1492533000, data=data)


def _phase(phase: str, path: Path, entries: int, size: int) -> dict[str, Any]:
    from eifbuild.cpio import NewcReader, newc_stream

    t0 = time.perf_counter()
    count = nbytes = 0
    if phase == "members":
        for _ in _members(entries, size, opener=False):
            count += 1
    elif phase in ("write", "write-opener"):
        with open(path, "wb") as out:
            for chunk in newc_stream(_members(entries, size, phase == "write-opener")):
                out.write(chunk)
                nbytes += len(chunk)
        count = entries
    else:
        with open(path, "rb") as fh:
            reader = NewcReader(fh)
            for _ in reader:
                for chunk in reader.content():
                    nbytes += len(chunk)
                count += 1
        nbytes = path.stat().st_size
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    digest = ""
    if phase.startswith("write"):  # outside the timing: the outputs must be identical
        with open(path, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    res = {"seconds": seconds, "entries": count, "bytes": nbytes, "peak_rss_mib": rss}
    return {**res, "sha256": digest}


def _run_child(impl: Path, phase: str, path: Path, entries: int, size: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(impl)}
    cmd = [sys.executable, __file__, "--child", phase, str(path), str(entries), str(size)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    res: dict[str, Any] = json.loads(out.stdout)
    # eifbuild/cpio.py up to the split into a package, eifbuild/cpio/__init__.py after it
    if Path(res["module"]).parent not in (impl / "eifbuild", impl / "eifbuild" / "cpio"):
        raise SystemExit(f"child imported {res['module']}, not the package under {impl}")
    return res


def _export(rev: str, dest: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "eifbuild"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def _line(label: str, phase: str, r: dict[str, Any]) -> str:
    s = r["seconds"]
    rate = f"{r['entries'] / s:>10,.0f} entries/s"
    mib = f"{r['bytes'] / MIB / s:7.1f} MiB/s" if r["bytes"] else " " * 13
    return f"{label:>10} {phase:<13} {s:7.2f} s {rate} {mib}  peak RSS {r['peak_rss_mib']:6.1f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=64, help="largest file content, bytes")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--against", metavar="REV", help="also run the eifbuild of git REV")
    ap.add_argument("--dir", type=Path, help="where the temporary archive goes")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        from eifbuild import cpio

        phase, path, entries, size = args.child
        res = _phase(phase, Path(path), int(entries), int(size))
        print(json.dumps({**res, "module": cpio.__file__}))
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        impls = {"current": ROOT}
        if args.against:
            base = Path(tmp) / "against"
            base.mkdir()
            _export(args.against, base)
            impls = {args.against[:10]: base, "current": ROOT}
        archive = Path(tmp) / "bench.cpio"
        digests: set[str] = set()
        print(f"{args.entries} files of 1..{args.size} bytes (+998 directories)")
        for phase in PHASES:
            best: dict[str, dict[str, Any]] = {}
            for _ in range(args.repeat):
                for label, impl in impls.items():
                    r = _run_child(impl, phase, archive, args.entries, args.size)
                    if r["sha256"]:
                        digests.add(r["sha256"])
                    if label not in best or r["seconds"] < best[label]["seconds"]:
                        best[label] = r
            for label, r in best.items():
                print(_line(label, phase, r))
        if len(digests) != 1:
            raise SystemExit(f"the writers produced different archives: {sorted(digests)}")
        print(f"archive: {archive.stat().st_size / MIB:.1f} MiB, sha256 {digests.pop()}")


if __name__ == "__main__":
    main()
