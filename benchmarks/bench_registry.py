"""Pull throughput of the ``docker://`` transport against a local registry, cold and cached.

Usage::

    .venv/bin/python benchmarks/bench_registry.py [--size-mib 256] [--runs 3]

Starts Debian's ``docker-registry`` on a free loopback port (as the tests do), pushes an image
with one uncompressed layer of ``--size-mib`` MiB of pseudo-random bytes with ``skopeo copy``,
then times, in this process:

* ``cold``: resolve + download + verify every blob into an empty cache
  (:func:`eifbuild.registry.fetch_image`);
* ``warm``: the same with the blobs cached (no download; each blob is re-hashed on read);
* ``skopeo``: ``skopeo copy docker://… oci:DIR`` of the same image, as a reference point.

Reports the median wall time and MiB/s of each, and the load average before the run (the
machine may be shared).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eifbuild.registry import BlobCache, RegistryOptions, fetch_image  # noqa: E402
from tests.registry_server import Registry  # noqa: E402

MIB = 1 << 20


def _layer(path: Path, size: int) -> None:
    """An uncompressed tar with one file of ``size`` pseudo-random bytes."""
    block = b"".join(hashlib.sha512(i.to_bytes(4, "big")).digest() for i in range(16384))
    data = path.with_suffix(".data")
    with open(data, "wb") as fh:
        left = size
        counter = 0
        while left:
            chunk = hashlib.sha256(counter.to_bytes(8, "big")).digest() + block
            chunk = chunk[: min(left, len(chunk))]
            fh.write(chunk)
            left -= len(chunk)
            counter += 1
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        ti = tf.gettarinfo(str(data), arcname="big.bin")
        ti.mtime = 0
        with open(data, "rb") as fh:
            tf.addfile(ti, fh)
    data.unlink()


def _layout(root: Path, size: int) -> None:
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    tar = root / "layer.tar"
    _layer(tar, size)
    h = hashlib.sha256()
    with open(tar, "rb") as fh:
        while chunk := fh.read(MIB):
            h.update(chunk)
    layer_digest = h.hexdigest()
    layer_size = tar.stat().st_size
    tar.rename(blobs / layer_digest)

    def put(doc: dict[str, object]) -> tuple[str, int]:
        data = json.dumps(doc).encode()
        d = hashlib.sha256(data).hexdigest()
        (blobs / d).write_bytes(data)
        return d, len(data)

    cfg = put({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/big.bin"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
    })  # fmt: skip
    man = put({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{cfg[0]}", "size": cfg[1]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": f"sha256:{layer_digest}", "size": layer_size}],
    })  # fmt: skip
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": f"sha256:{man[0]}", "size": man[1],
        "annotations": {"org.opencontainers.image.ref.name": "big"},
    }]}))  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        t = Path(tmp)
        _layout(t / "layout", args.size_mib * MIB)
        reg = Registry(t / "reg")
        try:
            ref = f"docker://{reg.host}/bench/big:v1"
            subprocess.run(
                ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{t / 'layout'}:big", ref],
                check=True,
            )
            opts = RegistryOptions(tls_verify=False)
            times: dict[str, list[float]] = {"cold": [], "warm": [], "skopeo": []}
            for run in range(args.runs):
                cache_dir = t / f"cache{run}"
                cache = BlobCache(cache_dir)
                for label in ("cold", "warm"):
                    start = time.perf_counter()
                    with cache.session():
                        fetch_image(
                            ref, arch=None, options=opts, cache=cache,
                            max_json_bytes=16 * MIB, max_blob_bytes=1 << 40,
                        )  # fmt: skip
                    times[label].append(time.perf_counter() - start)
                shutil.rmtree(cache_dir)
                dest = t / f"skopeo{run}"
                start = time.perf_counter()
                subprocess.run(
                    ["skopeo", "copy", "-q", "--src-tls-verify=false", ref, f"oci:{dest}:big"],
                    check=True,
                )
                times["skopeo"].append(time.perf_counter() - start)
                shutil.rmtree(dest)
        finally:
            reg.stop()
    debian = Path("/etc/debian_version").read_text().strip()
    print(f"Debian {debian}, {os.cpu_count()} CPUs, load average before: "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")  # fmt: skip
    print(f"image: one uncompressed layer of {args.size_mib} MiB; median of {args.runs} runs")
    for label, values in times.items():
        med = statistics.median(values)
        print(f"{label:7s} {med:7.2f} s  {args.size_mib / med:8.1f} MiB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
