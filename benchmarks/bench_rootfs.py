"""Peak memory, temp disk and time of flattening a large generated image (target: <= 256 MiB).

    .venv/bin/python benchmarks/bench_rootfs.py [--size-mib 2048] [--files 200000]
        [--gzip | --gzip-all] [--shuffle reverse|random] [--listing]

Writes an OCI layout into a temp directory: layer 0 holds ``--files`` small files in nested
directories, layer 1 a few big files adding up to ``--size-mib`` (gzip-compressed with
``--gzip``; ``--gzip-all`` compresses every layer), layer 2 deletes some of both.
``--shuffle reverse|random`` writes each directory of layer 0's files in that order (not
docker-export order: content reads jump around; random is the worst case for gzip checkpoints). Then, in a fresh child process (so
generation does not count) with its own empty TMPDIR, opens the image, flattens it and reads +
hashes every file's content, and reports the child's peak RSS (``ru_maxrss``), wall time,
content throughput and the peak size of its TMPDIR (polled every 50 ms). With ``--listing``
the child runs the ``eifbuild rootfs`` command instead (JSON lines with sha256 of every file).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1 << 20


class _Pattern:
    """A file-like source of ``size`` pseudo-random-ish bytes (cheap to make, compressible)."""

    def __init__(self, size: int, seed: int) -> None:
        self.left = size
        self.block = hashlib.sha256(str(seed).encode()).digest() * (CHUNK // 32)

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        out = (self.block * (n // len(self.block) + 1))[:n]
        self.left -= n
        return out


def _tar(path: Path, members: Iterator[tuple[tarfile.TarInfo, _Pattern | None]]) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for ti, src in members:
            tf.addfile(ti, src)


def _small(files: int, shuffle: str = "") -> Iterator[tuple[tarfile.TarInfo, _Pattern | None]]:
    for d in range(files // 1000 + 1):
        ti = tarfile.TarInfo(f"usr/share/d{d:04d}")
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
        yield ti, None
        numbers = list(range(min(1000, files - d * 1000)))
        if shuffle == "reverse":
            numbers.reverse()
        elif shuffle == "random":
            random.Random(d).shuffle(numbers)
        for f in numbers:
            ti = tarfile.TarInfo(f"usr/share/d{d:04d}/file-{f:04d}.txt")
            ti.size = 100 + f
            yield ti, _Pattern(ti.size, f)


def _big(size: int) -> Iterator[tuple[tarfile.TarInfo, _Pattern | None]]:
    ti = tarfile.TarInfo("opt")
    ti.type = tarfile.DIRTYPE
    yield ti, None
    n = 4
    for i in range(n):
        ti = tarfile.TarInfo(f"opt/blob{i}.bin")
        ti.size = size // n
        yield ti, _Pattern(ti.size, 1000 + i)


def _deletions() -> Iterator[tuple[tarfile.TarInfo, _Pattern | None]]:
    for name in ("usr/share/d0000/.wh.file-0000.txt", "opt/.wh.blob0.bin"):
        yield tarfile.TarInfo(name), None


def _sha_file(path: Path, compress: bool) -> tuple[str, str, Path]:
    """(diff_id, blob digest, blob path) — gzip-compressing into a sibling file if asked."""
    diff = hashlib.sha256()
    blob = hashlib.sha256()
    out_path = path.with_suffix(".gz") if compress else path
    comp = zlib.compressobj(1, zlib.DEFLATED, 31) if compress else None
    with (
        open(path, "rb") as src,
        open(out_path, "wb") if compress else open(os.devnull, "wb") as out,
    ):
        while chunk := src.read(CHUNK):
            diff.update(chunk)
            if comp is not None:
                data = comp.compress(chunk)
                blob.update(data)
                out.write(data)
        if comp is not None:
            data = comp.flush()
            blob.update(data)
            out.write(data)
    if not compress:
        blob = diff
    return "sha256:" + diff.hexdigest(), "sha256:" + blob.hexdigest(), out_path


def make_layout(
    root: Path, size: int, files: int, gz: bool, gz_all: bool = False, shuffle: str = ""
) -> None:
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layers = []
    for i, gen in enumerate((_small(files, shuffle), _big(size), _deletions())):
        raw = root / f"layer{i}.tar"
        _tar(raw, gen)
        compress = gz_all or (gz and i == 1)
        diff_id, digest, blob_src = _sha_file(raw, compress)
        os.replace(blob_src, blobs / digest[7:])
        if blob_src != raw:
            raw.unlink()
        mt = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else "")
        layers.append((diff_id, digest, (blobs / digest[7:]).stat().st_size, mt))

    def put(doc: dict[str, object]) -> dict[str, object]:
        data = json.dumps(doc).encode()
        hexd = hashlib.sha256(data).hexdigest()
        (blobs / hexd).write_bytes(data)
        return {"digest": "sha256:" + hexd, "size": len(data)}

    cfg = put(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/x"]},
            "rootfs": {"type": "layers", "diff_ids": [x[0] for x in layers]},
        }
    )
    man = put(
        {
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
            "layers": [{"mediaType": m, "digest": d, "size": s} for _, d, s, m in layers],
        }
    )
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        **man,
                        "annotations": {"org.opencontainers.image.ref.name": "big"},
                    }
                ],
            }
        )
    )


def child(ref: str) -> None:
    from eifbuild.model import EntryType
    from eifbuild.rootfs import flatten
    from eifbuild.sources import open_image

    t0 = time.monotonic()
    entries = total = 0
    stats = {"checkpoints": 0, "restarts": 0}
    with open_image(ref) as image:
        for e in flatten(image):
            entries += 1
            if e.type is EntryType.FILE:
                h = hashlib.sha256()
                for chunk in e.open():
                    h.update(chunk)
                total += e.size
        for layer in image.layers:  # gzip index statistics (absent before gzip indexes)
            content = getattr(layer, "_content", None)
            stats["checkpoints"] += len(getattr(content, "checkpoints", ()))
            stats["restarts"] += getattr(content, "restarts", 0)
    dt = time.monotonic() - t0
    print(
        json.dumps(
            {
                "entries": entries,
                "content_bytes": total,
                "seconds": round(dt, 1),
                "content_mib_s": round(total / (1 << 20) / dt),
                **stats,
            }
        )
    )


def _tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def run_watching_tmp(cmd: list[str], tmpdir: Path, stdout: int | None = None) -> tuple[str, int]:
    """Run ``cmd`` with TMPDIR=``tmpdir`` (created empty); (stdout text, peak bytes in tmpdir)."""
    tmpdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    peak = 0
    with subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE if stdout is None else stdout, text=True
    ) as proc:
        while proc.poll() is None:
            peak = max(peak, _tree_bytes(tmpdir))
            time.sleep(0.05)
        out = proc.stdout.read() if proc.stdout is not None else ""
    if proc.returncode != 0:
        sys.exit(f"{cmd[:4]} failed with status {proc.returncode}")
    return out, peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--files", type=int, default=200_000)
    ap.add_argument("--gzip", action="store_true", help="gzip the big-file layer")
    ap.add_argument("--gzip-all", action="store_true", help="gzip every layer")
    ap.add_argument(
        "--shuffle",
        choices=("reverse", "random"),
        default="",
        help="write each directory of small files in reverse or random order (not export order)",
    )
    ap.add_argument("--listing", action="store_true", help="measure `eifbuild rootfs IMAGE`")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    with tempfile.TemporaryDirectory(prefix="bench-rootfs-", dir=os.environ.get("TMPDIR")) as tmp:
        root = Path(tmp) / "oci"
        t0 = time.monotonic()
        make_layout(root, args.size_mib << 20, args.files, args.gzip, args.gzip_all, args.shuffle)
        print(f"generated in {time.monotonic() - t0:.0f}s", file=sys.stderr)
        ref = f"oci:{root}:big"
        if args.listing:
            t1 = time.monotonic()
            cmd = [sys.executable, "-m", "eifbuild", "rootfs", ref]
            _, peak_tmp = run_watching_tmp(cmd, Path(tmp) / "tmp", subprocess.DEVNULL)
            result = {"seconds": round(time.monotonic() - t1, 1), "mode": "listing"}
        else:
            cmd = [sys.executable, __file__, "--child", ref]
            out, peak_tmp = run_watching_tmp(cmd, Path(tmp) / "tmp")
            result = json.loads(out)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result.update(
        size_mib=args.size_mib,
        files=args.files,
        gzip="all" if args.gzip_all else args.gzip,
        shuffle=args.shuffle or None,
        peak_rss_mib=round(peak, 1),
        peak_tmp_mib=round(peak_tmp / (1 << 20), 1),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
