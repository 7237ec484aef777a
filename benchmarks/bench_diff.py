"""Benchmark: ``eifbuild diff`` time and peak RSS against entry count and content size.

    .venv/bin/python benchmarks/bench_diff.py [--entries 200000] [--big-mib 512] [--dir DIR]
        [--modes api,text,json,listing] [--shapes all|entries]

Writes pairs of EIFs whose application ramdisk holds ``--entries`` small files (1% of them
changed, 1% added, 1% removed between A and B) and one large file (``--big-mib`` MiB,
streamed from a generator, changed in its last byte), then runs ``diff_eifs`` on each pair
in a fresh subprocess and reports wall time and the child's peak RSS (``ru_maxrss``).
Two shapes: entries only, and entries + the large file; a third run with a tenth of the
entries shows how memory scales with entry count, not with content size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

MIB = 1 << 20


def _big(total: int, last: bytes) -> Iterator[bytes]:
    block = hashlib.shake_256(b"big").digest(MIB)
    for start in range(0, total, MIB):
        n = min(MIB, total - start)
        yield block[:n] if start + n < total else block[: n - 1] + last


def make_pair(root: Path, entries: int, big_mib: int) -> tuple[Path, Path]:
    from eifbuild.cpio import Member, newc_stream
    from eifbuild.eif.metadata import encode_metadata
    from eifbuild.eif.writer import write_eif

    meta = encode_metadata("b", "1", "1970-01-01T00:00:00+00:00", "bench", "0", "Linux", "k")
    boot = b"".join(newc_stream([Member(b"init", stat.S_IFREG, 0o755, data=b"INIT")]))

    def members(side: str) -> Iterator[Member]:
        yield Member(b"rootfs", stat.S_IFDIR, 0o755)
        for i in range(entries):
            if side == "a" and i % 100 == 1:
                continue  # added in b
            if side == "b" and i % 100 == 2:
                continue  # removed in b
            data = b"%d" % i + (b"!" if side == "b" and i % 100 == 3 else b"")
            yield Member(b"rootfs/d%03d/f%07d" % (i % 997, i), stat.S_IFREG, 0o644, data=data)
        if big_mib:
            size = big_mib * MIB
            yield Member(
                b"rootfs/big", stat.S_IFREG, 0o644, size=size,
                opener=lambda: _big(size, side.encode()),
            )  # fmt: skip

    def app(side: str) -> Callable[[], Iterator[bytes]]:
        return lambda: newc_stream(members(side))

    out = []
    for side in ("a", "b"):
        path = root / f"{side}-{entries}-{big_mib}.eif"
        write_eif(
            path, kernel=b"K" * 4096, cmdline="console=ttyS0", metadata=meta,
            ramdisks=[boot, app(side)],
        )  # fmt: skip
        out.append(path)
    return out[0], out[1]


def make_listings(root: Path, entries: int) -> tuple[Path, Path]:
    """Two `eifbuild rootfs`-shaped listings (same 1% added/removed/changed pattern)."""
    out = []
    for side in ("a", "b"):
        path = root / f"{side}-{entries}.jsonl"
        with open(path, "w") as fh:
            for i in range(entries):
                if (side, i % 100) in (("a", 1), ("b", 2)):
                    continue
                size = len(b"%d" % i) + (1 if side == "b" and i % 100 == 3 else 0)
                rec = {"path": f"/d{i % 997:03d}/f{i:07d}", "type": "file", "mode": "0644",
                       "uid": 0, "gid": 0, "mtime": 0, "size": size, "sha256": None,
                       "linkname": None, "rdev": None}  # fmt: skip
                fh.write(json.dumps(rec) + "\n")
        out.append(path)
    return out[0], out[1]


def child(a: str, b: str, mode: str) -> None:
    """One diff in this (fresh) process: the API, or the real CLI with stdout to /dev/null."""
    import os

    t0 = time.perf_counter()
    if mode == "api":
        from eifbuild.diff import diff_eifs

        doc = diff_eifs(a, b)
        summary = doc["ramdisks"][0]["summary"]
    else:
        from eifbuild.cli import main as cli_main

        null = os.open(os.devnull, os.O_WRONLY)
        saved = os.dup(1)
        os.dup2(null, 1)
        try:
            rc = cli_main(["diff", a, b, *(["--json"] if mode == "json" else [])])
            sys.stdout.flush()
        finally:
            os.dup2(saved, 1)
        if rc != 0:
            raise SystemExit(f"diff failed with {rc}")
        summary = {"added": "-", "removed": "-", "changed": "-", "inode_only": "-"}
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps({"seconds": round(seconds, 2), "peak_rss_mib": round(rss / 1024, 1), **summary})
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=200_000)
    ap.add_argument("--big-mib", type=int, default=512)
    ap.add_argument("--dir", type=Path)
    ap.add_argument(
        "--modes",
        default="api",
        help="comma-separated: api (diff_eifs), text / json (the CLI, stdout to /dev/null), "
        "listing (the CLI on two rootfs listings of --entries lines)",
    )
    ap.add_argument("--shapes", default="all", help="all, or 'entries' (only the first shape)")
    ap.add_argument("--child", nargs=3)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        shapes = [(args.entries, 0), (args.entries, args.big_mib), (args.entries // 10, 0)]
        if args.shapes == "entries":
            shapes = shapes[:1]
        for entries, big in shapes:
            eif_modes = [m for m in modes if m != "listing"]
            runs = []
            if eif_modes:
                a, b = make_pair(Path(tmp), entries, big)
                runs += [(m, a, b) for m in eif_modes]
            if "listing" in modes and big == 0:
                la, lb = make_listings(Path(tmp), entries)
                runs.append(("listing", la, lb))
            for mode, x, y in runs:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(x), str(y),
                     "api" if mode == "api" else ("text" if mode == "listing" else mode)],
                    check=True, capture_output=True, text=True,
                )  # fmt: skip
                res = json.loads(out.stdout)
                print(
                    f"{mode:>7} entries={entries:>8} big={big:>5} MiB "
                    f"input={x.stat().st_size / MIB:8.1f} MiB: "
                    f"{res['seconds']:7.2f} s, peak RSS {res['peak_rss_mib']:7.1f} MiB, "
                    f"+{res['added']} -{res['removed']} ~{res['changed']} i{res['inode_only']}",
                    flush=True,
                )
            for p in Path(tmp).iterdir():
                p.unlink()


if __name__ == "__main__":
    main()
