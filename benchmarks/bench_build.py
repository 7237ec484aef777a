"""Throughput and peak memory of `eifbuild build` on a large generated image.

Usage::

    .venv/bin/python benchmarks/bench_build.py [--size-mib 1024] [--file-mib 8] [--gzip] [--keep DIR]

Writes an OCI layout with one layer of ``--size-mib`` MiB of file content (files of
``--file-mib`` MiB, pseudo-random bytes so nothing compresses away), stand-in blobs, then runs
``eifbuild build oci:...`` in a child process with its own empty TMPDIR and reports wall
time, MiB/s of customer ramdisk, the child's peak RSS (``ru_maxrss``) and the peak size of its
TMPDIR. Peak RSS staying flat as ``--size-mib`` grows is the check that nothing holds a layer
or ramdisk in memory; a peak TMPDIR of 0 with ``--gzip`` that no decompressed copy is made.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import resource
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

MIB = 1 << 20


class _Stream(io.RawIOBase):
    """A read-only file object producing ``size`` pseudo-random bytes from ``seed``."""

    def __init__(self, seed: bytes, size: int) -> None:
        self.left = size
        self.block = b"".join(
            hashlib.sha512(seed + i.to_bytes(4, "big")).digest() for i in range(1024)
        )
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        n = min(len(buf), self.left)
        out = 0
        while out < n:
            k = min(n - out, len(self.block) - self.pos)
            buf[out : out + k] = self.block[self.pos : self.pos + k]
            out += k
            self.pos = (self.pos + k) % len(self.block)
        self.left -= n
        return n


def write_layer(dest: BinaryIO, size_mib: int, file_mib: int) -> None:
    with tarfile.open(fileobj=dest, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        d = tarfile.TarInfo("data")
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 1_600_000_000
        tf.addfile(d)
        for i in range(max(1, size_mib // file_mib)):
            ti = tarfile.TarInfo(f"data/f{i:05d}")
            ti.size, ti.mode, ti.mtime = file_mib * MIB, 0o644, 1_600_000_000
            tf.addfile(ti, _Stream(str(i).encode(), ti.size))


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(MIB):
            h.update(chunk)
    return h.hexdigest()


def _put(root: Path, path: Path) -> dict[str, object]:
    digest = _sha256_file(path)
    dest = root / "blobs" / "sha256" / digest
    os.replace(path, dest)
    return {"digest": f"sha256:{digest}", "size": dest.stat().st_size}


def _put_bytes(root: Path, data: bytes) -> dict[str, object]:
    tmp = root / "blob.tmp"
    tmp.write_bytes(data)
    return _put(root, tmp)


def make_layout(root: Path, size_mib: int, file_mib: int, gz: bool) -> str:
    (root / "blobs" / "sha256").mkdir(parents=True)
    raw = root / "layer.tar"
    with open(raw, "wb") as fh:
        write_layer(fh, size_mib, file_mib)
    diff_id = "sha256:" + _sha256_file(raw)
    if gz:
        with (
            open(raw, "rb") as src,
            open(root / "layer.tgz", "wb") as out,
            gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as dst,
        ):
            shutil.copyfileobj(src, dst, MIB)
        raw.unlink()
        raw = root / "layer.tgz"
    layer = _put(root, raw)
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/data/f00000"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    cdesc = _put_bytes(root, json.dumps(cfg).encode())
    mt = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gz else "")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cdesc},
        "layers": [{"mediaType": mt, **layer}],
    }
    mdesc = _put_bytes(root, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **mdesc,
                "annotations": {"org.opencontainers.image.ref.name": "bench"},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index))
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return f"oci:{root}:bench"


def make_blobs(d: Path) -> Path:
    """Stand-in blobs that pass eifbuild's checks (bzImage header, static ELF init)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests import blobgen

    d.mkdir()
    kernel = blobgen.bzimage("6.12.0 (bench@bench) #1 SMP")
    (d / "bzImage").write_bytes(kernel + os.urandom(8 * MIB - len(kernel)))
    (d / "bzImage.config").write_text("#\n#\n# Linux/x86_64 6.12.0 Kernel Configuration\n")
    (d / "cmdline").write_text("console=ttyS0\n")
    init = blobgen.static_exe()
    (d / "init").write_bytes(init + b"\0" * (700 * 1024 - len(init)))
    return d


def run(ref: str, blobs: Path, out: Path) -> tuple[float, int, int, dict[str, object]]:
    cmd = [
        sys.executable,
        "-m",
        "eifbuild",
        "build",
        ref,
        "--blobs",
        str(blobs),
        "-o",
        str(out),
        "--json",
    ]
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_rootfs import run_watching_tmp

    t0 = time.perf_counter()
    stdout, peak_tmp = run_watching_tmp(cmd, out.parent / "tmp")
    wall = time.perf_counter() - t0
    rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, rss_kib, peak_tmp, json.loads(stdout)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--file-mib", type=int, default=8)
    ap.add_argument("--gzip", action="store_true", help="gzip the layer (level 1)")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    a = ap.parse_args()
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="eifbuild-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        ref = make_layout(work / "layout", a.size_mib, a.file_mib, a.gzip)
        gen = time.perf_counter() - t0
        blobs = make_blobs(work / "blobs")
        wall, rss, peak_tmp, record = run(ref, blobs, work / "out.eif")
        eif = record["eif"]
        assert isinstance(eif, dict)
        size = int(eif["size"])
        print(
            f"image: {a.size_mib} MiB in {a.size_mib // a.file_mib} files, layer {'gzip' if a.gzip else 'uncompressed'} (generated in {gen:.1f} s)"
        )
        print(
            f"eifbuild build: {wall:.2f} s wall, EIF {size / MIB:.1f} MiB, {size / MIB / wall:.0f} MiB/s"
        )
        print(f"peak RSS of the build process: {rss / 1024:.0f} MiB")
        print(f"peak size of its TMPDIR: {peak_tmp / MIB:.0f} MiB")
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
