"""Benchmark: ``describe`` of a 1 GiB EIF vs raw ``hashlib.sha384`` over the same bytes.

    .venv/bin/python benchmarks/bench_describe.py [--size-mib 1024] [--dir DIR] [--keep]

Builds an EIF (small kernel and bootstrap ramdisk, one large application ramdisk, the usual
shape) with ``write_eif`` streaming from a generator, then times, each in a fresh subprocess
with a warm page cache:

* ``raw``: read the EIF file in 1 MiB chunks and ``hashlib.sha384`` it once (the baseline);
* ``describe``: ``EifReader`` + ``describe()``: PCR0/1/2, CRC, metadata, all in one pass.

The application ramdisk is in both PCR0 and PCR2, so describe hashes most bytes twice; it
runs the two SHA-384 streams on two threads (hashlib releases the GIL). Peak RSS is each
child's ``ru_maxrss``; it is also measured for a 64 MiB EIF to show that memory is flat.
The target is describe throughput >= 90% of raw throughput. Numbers depend on the load of
the machine: run it on an idle one (``cpu`` seconds, user + system, are less sensitive to load;
describe needs about twice the raw CPU, spread over two cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

MIB = 1 << 20


def _blocks(total: int, seed: bytes) -> Iterator[bytes]:
    block = hashlib.shake_256(seed).digest(MIB)
    for start in range(0, total, MIB):
        yield block[: min(MIB, total - start)]


def build(path: Path, size_mib: int) -> dict[str, float]:
    from eifbuild.eif.metadata import encode_metadata
    from eifbuild.eif.writer import write_eif

    kernel, boot = 10 * MIB, 4 * MIB
    app = size_mib * MIB - kernel - boot
    meta = encode_metadata("bench", "1", "1970-01-01T00:00:00+00:00", "eifbuild", "0", "OS", "k")
    t0 = time.perf_counter()
    write_eif(
        path,
        kernel=lambda: _blocks(kernel, b"kernel"),
        cmdline="console=ttyS0",
        metadata=meta,
        ramdisks=[lambda: _blocks(boot, b"boot"), lambda: _blocks(app, b"app")],
    )
    return {"seconds": time.perf_counter() - t0}


def phase_raw(path: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    h = hashlib.sha384()
    with open(path, "rb") as fh:
        while chunk := fh.read(MIB):
            h.update(chunk)
    h.digest()
    return {"seconds": time.perf_counter() - t0}


def phase_describe(path: Path) -> dict[str, float]:
    from eifbuild.cli.describe import describe
    from eifbuild.eif.reader import EifReader

    t0 = time.perf_counter()
    with EifReader(path) as reader:
        doc = describe(reader)
    assert doc["CheckCRC"] is True
    return {"seconds": time.perf_counter() - t0}


PHASES = {"build": None, "raw": phase_raw, "describe": phase_describe}


def child(phase: str, path: Path, size_mib: int) -> None:
    result = build(path, size_mib) if phase == "build" else PHASES[phase](path)  # type: ignore[misc]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(result))


def spawn(phase: str, path: Path, size_mib: int) -> dict[str, float]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        phase,
        "--file",
        str(path),
        "--size-mib",
        str(size_mib),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{phase} phase failed (exit {proc.returncode}):\n{proc.stderr.strip()}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def measure(path: Path, size_mib: int, rounds: int) -> dict[str, dict[str, float]]:
    res = {"build": spawn("build", path, size_mib)}
    size = path.stat().st_size
    phase_raw(path)  # warm the page cache
    best: dict[str, dict[str, float]] = {}
    for _ in range(rounds):
        for phase in ("raw", "describe"):
            r = spawn(phase, path, size_mib)
            if phase not in best or r["seconds"] < best[phase]["seconds"]:
                best[phase] = r
    res.update(best)
    for r in res.values():
        r["mib_per_s"] = size / MIB / r["seconds"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to put the temporary EIF (default: $TMPDIR)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--child", choices=sorted(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, Path(args.file), args.size_mib)
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        report = {}
        for size in (64, args.size_mib):
            path = Path(tmp) / f"bench-{size}.eif"
            report[size] = measure(path, size, args.rounds)
            if args.keep:
                os.link(path, f"bench-{size}.eif")
            path.unlink()
    big, small = report[args.size_mib], report[64]
    ratio = big["describe"]["mib_per_s"] / big["raw"]["mib_per_s"]
    print(f"cpus: {os.cpu_count()}  load average at end: {os.getloadavg()[0]:.2f}")
    for size, res in report.items():
        for phase, r in res.items():
            print(f"{size:5d} MiB  {phase:9s} {r['seconds']:7.2f} s  {r['mib_per_s']:8.1f} MiB/s  "
                  f"cpu {r['cpu_seconds']:6.2f} s  peak RSS {r['peak_rss_mib']:6.1f} MiB")  # fmt: skip
    print(f"describe / raw sha384 throughput at {args.size_mib} MiB: {ratio:.1%} (target >= 90%)")
    print(f"describe peak RSS: {small['describe']['peak_rss_mib']:.1f} MiB at 64 MiB, "
          f"{big['describe']['peak_rss_mib']:.1f} MiB at {args.size_mib} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
