"""Time and peak memory of the tar header reader on hostile and large tars, vs Python's tarfile.

    .venv/bin/python benchmarks/bench_tarhdr.py [--tarfile] [--timeout 120] [--files 100000]
        [--case NAME ...]

Each case writes one tar into a temp directory, then reads its headers in a FRESH child
process (so generating the input does not count) with eifbuild's reader
(``sources._tarhdr.read_headers`` over the file, the path an uncompressed layer or the outer
archive takes) and, with ``--tarfile``, with ``tarfile.open(...).next()`` in a loop (what
eifbuild used before), killed after ``--timeout`` seconds. Reported per case and reader: wall
seconds (imports excluded), the child's peak RSS (``ru_maxrss``) and the outcome (entries read, or the error).

Cases (issue #10's classes): ``chain-1gib`` a 1 KiB PAX header then a GNU long name of 1 GiB
(sparse on disk); ``chain-400-pax`` / ``chain-400-gnu`` 400 chained extended headers;
``pax-digits-256k`` / ``pax-digits-1m`` one PAX record whose value is 256 KiB / 1 MiB - 64 of
digits (CVE-2024-6232's quadratic ``hdrcharset`` search); ``pax-size-neg`` a PAX
``size=-1536``; ``many-files`` ``--files`` small files (reader throughput).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _octal(n: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, n)


def _hdr(name: bytes, typeflag: bytes, size: int) -> bytes:
    blk = bytearray(512)
    blk[0 : len(name[:100])] = name[:100]
    blk[100:108] = _octal(0o644, 8)
    blk[108:116] = _octal(0, 8)
    blk[116:124] = _octal(0, 8)
    blk[124:136] = _octal(size, 12)
    blk[136:148] = _octal(1_600_000_000, 12)
    blk[148:156] = b" " * 8
    blk[156:157] = typeflag
    blk[257:265] = b"ustar\x0000"
    blk[148:156] = b"%06o\0 " % sum(blk)
    return bytes(blk)


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def _record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


def _pax_entry(payload: bytes) -> bytes:
    return _hdr(b"pax", b"x", len(payload)) + _pad(payload)


END = bytes(1024)


def _file(name: bytes, data: bytes = b"") -> bytes:
    return _hdr(name, b"0", len(data)) + _pad(data)


def chain_1gib(path: Path) -> None:
    with open(path, "wb") as fh:
        fh.write(_pax_entry(_record(b"comment", b"c" * 1000)) + _hdr(b"L", b"L", 1 << 30))
        fh.truncate(fh.tell() + (1 << 30))  # the long name: 1 GiB of NULs, sparse
        fh.seek(0, 2)
        fh.write(_file(b"f", b"x") + END)


def chain_400(typeflag: bytes) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        one = _record(b"path", b"p") if typeflag == b"x" else b"name\0"
        path.write_bytes((_hdr(b"h", typeflag, len(one)) + _pad(one)) * 400 + _file(b"f") + END)

    return make


def pax_digits(size: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.write_bytes(_pax_entry(_record(b"comment", b"9" * size)) + _file(b"f") + END)

    return make


def pax_size_neg(path: Path) -> None:
    path.write_bytes(_pax_entry(_record(b"size", b"-1536")) + _file(b"f", b"x" * 2000) + END)


def many_files(count: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        with open(path, "wb") as fh:
            for i in range(count):
                fh.write(_file(b"usr/share/d%04d/file-%06d.txt" % (i // 1000, i), b"%d\n" % i))
            fh.write(END)

    return make


def _child(reader: str, path: str) -> None:
    """Runs in the child: read every header of ``path``; print one JSON line."""
    outcome: str
    sys.path.insert(0, str(ROOT))
    import tarfile

    from eifbuild.errors import RootfsError
    from eifbuild.sources._tarhdr import FileSource, read_headers

    t0 = time.perf_counter()
    try:
        if reader == "eifbuild":
            fd = os.open(path, os.O_RDONLY)
            src = FileSource(fd, 0, os.fstat(fd).st_size)
            n = sum(1 for _ in read_headers(src, lambda m: RootfsError(m)))
        else:
            with tarfile.open(path, "r:") as tf:
                n = 0
                for _ in iter(tf.next, None):
                    tf.members = []  # type: ignore[attr-defined]
                    n += 1
        outcome = f"{n} entries"
    except Exception as exc:  # the outcome is what is measured
        outcome = f"{type(exc).__name__}: {str(exc)[:120]}"
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
    print(json.dumps({"wall": wall, "rss_mib": rss, "outcome": outcome}))


def _measure(reader: str, path: Path, timeout: int) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--child", reader, str(path)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return {"wall": float(timeout), "rss_mib": None, "outcome": f"killed after {timeout} s"}
    result: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return result


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tarfile", action="store_true", help="also measure Python's tarfile")
    ap.add_argument("--timeout", type=int, default=120, help="seconds per case and reader")
    ap.add_argument("--files", type=int, default=100_000, help="entries of the many-files case")
    ap.add_argument("--case", action="append", help="run only these cases (repeatable)")
    args = ap.parse_args()
    cases: dict[str, Callable[[Path], None]] = {
        "chain-1gib": chain_1gib,
        "chain-400-pax": chain_400(b"x"),
        "chain-400-gnu": chain_400(b"L"),
        "pax-digits-256k": pax_digits(256 << 10),
        "pax-digits-1m": pax_digits((1 << 20) - 64),
        "pax-size-neg": pax_size_neg,
        "many-files": many_files(args.files),
    }
    readers = ["eifbuild"] + (["tarfile"] if args.tarfile else [])
    print(
        f"python {sys.version.split()[0]}, debian {Path('/etc/debian_version').read_text().strip()}"
    )
    print(f"{'case':<16} {'reader':<9} {'seconds':>8} {'RSS MiB':>8}  outcome")
    with tempfile.TemporaryDirectory(prefix="bench-tarhdr-") as tmp:
        for name, make in cases.items():
            if args.case and name not in args.case:
                continue
            path = Path(tmp) / f"{name}.tar"
            make(path)
            for reader in readers:
                r = _measure(reader, path, args.timeout)
                rss = "-" if r["rss_mib"] is None else str(r["rss_mib"])
                print(f"{name:<16} {reader:<9} {r['wall']:>8.3f} {rss:>8}  {r['outcome']}")
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
