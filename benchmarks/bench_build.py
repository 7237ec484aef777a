"""`eifbuild build` wall time and peak RSS next to the serial floor and standard tools.

Usage::

    .venv/bin/python benchmarks/bench_build.py [--workload realistic|debian|bigfiles]
        [--size-mib 1024] [--files 40000] [--orders walk,random] [--cache DIR] [--rounds 1]

Workloads (each generated once, seeded, and cached under ``--cache``, default
``~/.cache/eifbuild-bench``, outside the repository):

* ``realistic`` (default): an OCI layout with 3 gzip layers shaped like real images: ``--files``
  files in total with exponentially distributed sizes (mean 6 KB), plus a few 8-48 MiB files
  making up the rest of ``--size-mib``; 200 directories per layer, several shared between
  layers so the export walk interleaves them; contents half pseudo-random, half text; symlinks
  and hard links; layer 1 deletes files of layer 0 (whiteouts, one opaque directory), layer 2
  deletes and overwrites files of layers 0 and 1.
* ``debian``: a real Debian rootfs (``mmdebstrap --variant=minbase --include=python3,openssl
  bookworm``, about 10,000 entries) as one gzip layer. The tarball is made once with mmdebstrap
  (``apt-get install mmdebstrap``; needs the Debian mirror) and cached.
* ``bigfiles``: the old workload, one layer of ``--size-mib`` in 8 MiB files.

Each workload is written in two layer orders with the SAME files: ``walk`` (every layer tar in
``docker export`` walk order, as Docker/BuildKit write layers) and ``random`` (directories
first, then the files of every directory scattered through the layer). For each order one run
prints:

* ``eifbuild``: ``eifbuild build oci:… --blobs … --json`` in a child process with its own empty
  TMPDIR: wall time, the child's own peak RSS (``wait4``), the peak size of its TMPDIR;
* ``serial floor``: in this process, ONE thread: ``zlib`` inflate of every layer once plus
  SHA-384 of the inflated bytes twice (PCR0 and PCR2 are two streams): the work no builder
  can skip;
* ``standard tools``: ``tar -xzf`` each layer into one directory, ``find . | LC_ALL=C sort |
  cpio -o -H newc``, ``sha384sum`` of the archive twice (page cache warm, same disk);

and the ratios eifbuild/floor and eifbuild/tools. The walk- and random-order builds must give
the same PCRs (checked). The machine's load average is printed with every row: the numbers
depend on it (2 shared cores), the ratios less so.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MIB = 1 << 20
GEN_VERSION = 3  # bump when the generator changes (cache key)
MTIME = 1_700_000_000
DEBIAN_TAR = "bookworm-python3-openssl.tar"


# --- the realistic workload ----------------------------------------------------------------------


@dataclass
class Spec:
    """One tar entry to write: ``kind`` is file/dir/symlink/hardlink/whiteout."""

    path: str
    kind: str
    size: int = 0
    seed: int = 0
    text: bool = False
    link: str = ""


class Contents:
    """Seeded file contents: slices of a pseudo-random pool or of generated text."""

    def __init__(self) -> None:
        rng = random.Random(7)
        self.random = rng.randbytes(64 * MIB)
        words = [
            "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 11)))
            for _ in range(5000)
        ]
        lines = []
        size = 0
        while size < 16 * MIB:
            line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 14))) + "\n"
            lines.append(line)
            size += len(line)
        self.text = "".join(lines).encode()

    def data(self, spec: Spec) -> bytes:
        pool = self.text if spec.text else self.random
        out = bytearray()
        rng = random.Random(spec.seed)
        while len(out) < spec.size:
            n = min(spec.size - len(out), 1 << 18)
            start = rng.randrange(0, len(pool) - n)
            out += pool[start : start + n]
        return bytes(out)


def realistic_layers(size_mib: int, files: int, seed: int = 1) -> list[list[Spec]]:
    """Three layers of Specs (see the module docstring)."""
    rng = random.Random(seed)
    layers: list[list[Spec]] = [[], [], []]
    per_layer = files // 3
    small_total = 0
    made: list[list[str]] = [[], [], []]
    for li in range(3):
        # 200 directories: 20 groups x 10; groups 0-5 are shared by all layers.
        dirs = []
        for g in range(20):
            group = f"usr/share/g{g:02d}" if g < 6 else f"opt/layer{li}/g{g:02d}"
            for s in range(10):
                dirs.append(
                    f"{group}/s{s}"
                    if g >= 6
                    else f"{group}/s{s}l{li}"
                    if s >= 5
                    else f"{group}/s{s}"
                )
        parents = set()
        for d in dirs:
            parts = d.split("/")
            for i in range(1, len(parts) + 1):
                parents.add("/".join(parts[:i]))
        layers[li] += [Spec(p, "dir") for p in sorted(parents)]
        for j in range(per_layer):
            d = dirs[rng.randrange(len(dirs))]
            size = min(int(rng.expovariate(1 / 6144)), 4 * MIB)
            path = f"{d}/f{li}-{j:05d}.{'txt' if j % 2 else 'bin'}"
            layers[li].append(Spec(path, "file", size, rng.randrange(1 << 30), text=bool(j % 2)))
            made[li].append(path)
            small_total += size
        for j in range(20):
            target = made[li][rng.randrange(len(made[li]))]
            layers[li].append(Spec(f"{dirs[j * 10]}/link{j}", "symlink", link="/" + target))
        for j in range(5):  # hard links: name sorts after the target, so it follows in the tar
            target = made[li][j * 7]
            layers[li].append(Spec(target + "~hl", "hardlink", link=target))
    # big files: 8-48 MiB up to the requested size
    left = size_mib * MIB - small_total
    k = 0
    while left > 8 * MIB:
        size = min(left, rng.randint(8, 48) * MIB)
        li = k % 3
        layers[li].append(
            Spec(
                f"opt/layer{li}/big/blob{k:02d}.dat",
                "file",
                size,
                rng.randrange(1 << 30),
                k % 2 == 1,
            )
        )
        layers[li].append(Spec(f"opt/layer{li}/big", "dir"))
        left -= size
        k += 1
    # whiteouts: layer 1 deletes files of layer 0 and makes one shared dir opaque;
    # layer 2 deletes files of layer 1 and overwrites files of layer 0.
    for path in rng.sample(made[0], 200):
        d, _, name = path.rpartition("/")
        layers[1].append(Spec(f"{d}/.wh.{name}", "whiteout"))
    layers[1].append(Spec("usr/share/g05/s0/.wh..wh..opq", "whiteout"))
    layers[1].append(Spec("usr/share/g05/s0/replaced.txt", "file", 100, 5, True))
    for path in rng.sample(made[1], 200):
        d, _, name = path.rpartition("/")
        layers[2].append(Spec(f"{d}/.wh.{name}", "whiteout"))
    for path in rng.sample(made[0], 100):
        layers[2].append(Spec(path, "file", rng.randint(10, 20000), rng.randrange(1 << 30), True))
    for li in range(3):  # one spec per path per layer
        seen: dict[str, Spec] = {}
        for s in layers[li]:
            seen[s.path] = s
        layers[li] = list(seen.values())
    return layers


def _walk_key(spec: Spec) -> list[str]:
    return spec.path.split("/")


def ordered(specs: list[Spec], order: str, seed: int) -> list[Spec]:
    """``walk``: docker-export order. ``random``: directories (sorted) first, then everything
    else shuffled (hard links after their targets)."""
    if order == "walk":
        return sorted(specs, key=_walk_key)
    dirs = sorted((s for s in specs if s.kind == "dir"), key=_walk_key)
    rest = [s for s in specs if s.kind not in ("dir", "hardlink")]
    random.Random(seed).shuffle(rest)
    return dirs + rest + [s for s in specs if s.kind == "hardlink"]


def write_tar(dest: Path, specs: list[Spec], contents: Contents) -> None:
    with (
        open(dest, "wb") as fh,
        tarfile.open(fileobj=fh, mode="w|", format=tarfile.PAX_FORMAT) as tf,
    ):
        for s in specs:
            ti = tarfile.TarInfo(s.path)
            ti.mtime, ti.uname, ti.gname = MTIME, "", ""
            if s.kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            elif s.kind == "file":
                ti.size, ti.mode = s.size, 0o644
                tf.addfile(ti, io.BytesIO(contents.data(s)))
            elif s.kind == "symlink":
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, s.link, 0o777
                tf.addfile(ti)
            elif s.kind == "hardlink":
                ti.type, ti.linkname, ti.mode = tarfile.LNKTYPE, s.link, 0o644
                tf.addfile(ti)
            else:  # whiteout
                ti.mode = 0o600
                tf.addfile(ti, io.BytesIO(b""))


# --- OCI layout ------------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(MIB):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _put(root: Path, path: Path) -> dict[str, object]:
    digest = _sha256_file(path)
    dest = root / "blobs" / "sha256" / digest.removeprefix("sha256:")
    os.replace(path, dest)
    return {"digest": digest, "size": dest.stat().st_size}


def _put_bytes(root: Path, data: bytes) -> dict[str, object]:
    tmp = root / "blob.tmp"
    tmp.write_bytes(data)
    return _put(root, tmp)


def gzip_file(src: Path, dest: Path, level: int = 6) -> None:
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)
    with open(src, "rb") as fi, open(dest, "wb") as fo:
        while chunk := fi.read(MIB):
            fo.write(comp.compress(chunk))
        fo.write(comp.flush())


def oci_layout(root: Path, tars: list[Path], cmd: list[str], gz: bool = True) -> str:
    """An OCI layout at ``root`` from uncompressed layer tars (moved in, gzipped if ``gz``)."""
    (root / "blobs" / "sha256").mkdir(parents=True)
    diff_ids, descs = [], []
    for i, tar in enumerate(tars):
        diff_ids.append(_sha256_file(tar))
        if gz:
            blob = root / f"layer{i}.gz"
            gzip_file(tar, blob)
            tar.unlink()
        else:
            blob = root / f"layer{i}.tar"
            os.replace(tar, blob)
        mt = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gz else "")
        descs.append({"mediaType": mt, **_put(root, blob)})
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    cdesc = _put_bytes(root, json.dumps(cfg).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cdesc},
        "layers": descs,
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


def layer_blobs(root: Path) -> list[Path]:
    index = json.loads((root / "index.json").read_text())
    mdig = index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.loads((root / "blobs" / "sha256" / mdig).read_text())
    return [
        root / "blobs" / "sha256" / d["digest"].removeprefix("sha256:") for d in manifest["layers"]
    ]


# --- workloads ---------------------------------------------------------------------------------------


def make_realistic(dest: Path, order: str, size_mib: int, files: int) -> None:
    layers = realistic_layers(size_mib, files)
    contents = Contents()
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tars = []
    for i, specs in enumerate(layers):
        tar = tmp / f"layer{i}.tar"
        write_tar(tar, ordered(specs, order, 100 + i), contents)
        tars.append(tar)
    oci_layout(tmp / "oci", tars, ["/usr/share/g00/s0"])
    os.replace(tmp / "oci", dest)
    shutil.rmtree(tmp, ignore_errors=True)


def debian_tarball(cache: Path) -> Path:
    """The mmdebstrap bookworm rootfs tarball (made once, cached)."""
    path = cache / DEBIAN_TAR
    if path.exists():
        return path
    if shutil.which("mmdebstrap") is None:
        sys.exit("the debian workload needs mmdebstrap (apt-get install mmdebstrap)")
    tmp = path.with_suffix(".part")
    subprocess.run(
        ["mmdebstrap", "--variant=minbase", "--include=python3,openssl", "--format=tar",
         "bookworm", str(tmp)],
        check=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": str(MTIME)},
    )  # fmt: skip
    os.replace(tmp, path)
    return path


def make_debian(dest: Path, order: str, cache: Path) -> None:
    """The Debian rootfs as one gzip layer, its entries rewritten in ``order``."""
    src = debian_tarball(cache)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(src, "r:") as tf:
        members = [(ti, tf.extractfile(ti).read() if ti.isreg() else None) for ti in tf]  # type: ignore[union-attr]
    for ti, _ in members:
        ti.name = ti.name.removeprefix("./")
    members = [(ti, d) for ti, d in members if ti.name not in ("", ".")]
    if order == "walk":
        members.sort(key=lambda m: m[0].name.split("/"))
    else:
        dirs = sorted((m for m in members if m[0].isdir()), key=lambda m: m[0].name.split("/"))
        links = [m for m in members if m[0].islnk()]
        rest = [m for m in members if not m[0].isdir() and not m[0].islnk()]
        random.Random(11).shuffle(rest)
        members = dirs + rest + links
    tar = tmp / "layer0.tar"
    with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as out:
        for ti, data in members:
            out.addfile(ti, io.BytesIO(data) if data is not None else None)
    oci_layout(tmp / "oci", [tar], ["/usr/bin/python3", "-c", "print(1)"])
    os.replace(tmp / "oci", dest)
    shutil.rmtree(tmp, ignore_errors=True)


class _Stream(io.RawIOBase):
    """``size`` pseudo-random bytes from ``seed`` (the bigfiles workload)."""

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


def write_bigfiles_layer(dest: BinaryIO, size_mib: int, file_mib: int, order: str) -> None:
    names = [f"data/f{i:05d}" for i in range(max(1, size_mib // file_mib))]
    if order == "random":
        random.Random(3).shuffle(names)
    with tarfile.open(fileobj=dest, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        d = tarfile.TarInfo("data")
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, MTIME
        tf.addfile(d)
        for name in names:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = file_mib * MIB, 0o644, MTIME
            tf.addfile(ti, _Stream(name.encode(), ti.size))


def make_bigfiles(dest: Path, order: str, size_mib: int) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tar = tmp / "layer0.tar"
    with open(tar, "wb") as fh:
        write_bigfiles_layer(fh, size_mib, 8, order)
    oci_layout(tmp / "oci", [tar], ["/data/f00000"])
    os.replace(tmp / "oci", dest)
    shutil.rmtree(tmp, ignore_errors=True)


def workload(args: argparse.Namespace, order: str) -> tuple[str, Path]:
    cache = Path(args.cache)
    if args.workload == "realistic":
        key = f"realistic-v{GEN_VERSION}-{args.size_mib}m-{args.files}f-{order}"
    elif args.workload == "debian":
        key = f"debian-v{GEN_VERSION}-{order}"
    else:
        key = f"bigfiles-v{GEN_VERSION}-{args.size_mib}m-{order}"
    dest = cache / key
    if not (dest / "index.json").exists():
        t0 = time.perf_counter()
        cache.mkdir(parents=True, exist_ok=True)
        if args.workload == "realistic":
            make_realistic(dest, order, args.size_mib, args.files)
        elif args.workload == "debian":
            make_debian(dest, order, cache)
        else:
            make_bigfiles(dest, order, args.size_mib)
        print(f"generated {dest} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return f"oci:{dest}:bench", dest


# --- measurements ------------------------------------------------------------------------------------


def make_blobs(d: Path) -> Path:
    """Stand-in blobs that pass eifbuild's checks (bzImage header, static ELF init)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.helpers import blobgen

    d.mkdir(parents=True, exist_ok=True)
    kernel = blobgen.bzimage("6.12.0 (bench@bench) #1 SMP")
    rng = random.Random(5)
    (d / "bzImage").write_bytes(kernel + rng.randbytes(8 * MIB - len(kernel)))
    (d / "bzImage.config").write_text("#\n#\n# Linux/x86_64 6.12.0 Kernel Configuration\n")
    (d / "cmdline").write_text("console=ttyS0\n")
    init = blobgen.static_exe()
    (d / "init").write_bytes(init + b"\0" * (700 * 1024 - len(init)))
    return d


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(root):
        for n in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, n)).st_blocks * 512
    return total


# A small launcher measures the child's own peak RSS: a child forked straight from this
# (large) process would count the parent's pages it shared before exec.
_LAUNCHER = """import json, os, subprocess, sys
with open(sys.argv[1], "wb") as out:
    proc = subprocess.Popen(sys.argv[3:], stdout=out)
    _, status, ru = os.wait4(proc.pid, 0)
with open(sys.argv[2], "w") as res:
    json.dump({"status": os.waitstatus_to_exitcode(status), "rss_kib": ru.ru_maxrss}, res)
"""


def run_child(cmd: list[str], tmpdir: Path, out: Path) -> tuple[float, int, int]:
    """Run ``cmd`` (stdout to ``out``) with TMPDIR=``tmpdir``: (wall s, its own peak RSS KiB,
    peak bytes in tmpdir)."""
    shutil.rmtree(tmpdir, ignore_errors=True)
    tmpdir.mkdir(parents=True)
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    res = out.with_suffix(".rusage")
    peak = 0
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(out), str(res), *cmd], env=env)
    while proc.poll() is None:
        peak = max(peak, _tree_bytes(tmpdir))
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    result = json.loads(res.read_text())
    if proc.returncode != 0 or result["status"] != 0:
        sys.exit(f"{' '.join(cmd[:5])} failed with status {result['status']}")
    return wall, int(result["rss_kib"]), peak


def serial_floor(blobs: list[Path]) -> float:
    """One thread: zlib inflate of every layer once + SHA-384 of the inflated bytes twice."""
    t0 = time.perf_counter()
    for blob in blobs:
        a, b = hashlib.sha384(), hashlib.sha384()
        d = zlib.decompressobj(31)
        with open(blob, "rb") as fh:
            while chunk := fh.read(MIB):
                while chunk:
                    data = d.decompress(chunk, 4 * MIB)
                    a.update(data)
                    b.update(data)
                    chunk = d.unconsumed_tail
                    if d.eof:
                        chunk = d.unused_data + chunk
                        d = zlib.decompressobj(31) if chunk else d
            data = d.flush()
            a.update(data)
            b.update(data)
    return time.perf_counter() - t0


STANDARD_TOOLS = r"""set -e
mkdir rootfs
for layer in "$@"; do tar -xzf "$layer" -C rootfs; done
cd rootfs && find . | LC_ALL=C sort | cpio -o -H newc --quiet > ../ramdisk.cpio && cd ..
sha384sum ramdisk.cpio > /dev/null
sha384sum ramdisk.cpio > /dev/null
"""


def standard_tools(blobs: list[Path], work: Path) -> float:
    d = work / "tools"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", STANDARD_TOOLS, "tools", *map(str, blobs)], cwd=d, check=True)
    wall = time.perf_counter() - t0
    shutil.rmtree(d, ignore_errors=True)
    return wall


def warm(paths: list[Path]) -> None:
    for p in paths:
        with open(p, "rb") as fh:
            while fh.read(8 * MIB):
                pass


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--workload", choices=("realistic", "debian", "bigfiles"), default="realistic")
    ap.add_argument("--size-mib", type=int, default=1024, help="realistic/bigfiles: image size")
    ap.add_argument("--files", type=int, default=40_000, help="realistic: number of small files")
    ap.add_argument("--orders", default="walk,random", help="comma list of walk, random")
    ap.add_argument("--rounds", type=int, default=1, help="repeat each measurement, keep the best")
    ap.add_argument("--no-tools", action="store_true", help="skip the standard-tools pipeline")
    ap.add_argument(
        "--json",
        action="store_true",
        help="time `build --json` (prints each layer's access path; the record's eif.sha384 "
        "costs one more SHA-384 pass over the EIF) instead of the plain `build`",
    )
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "eifbuild-bench"))
    ap.add_argument("--work", default=None, help="scratch directory (default: $TMPDIR)")
    ap.add_argument(
        "--build-arg", action="append", default=[], help="extra `eifbuild build` argument"
    )
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="eifbuild-bench-", dir=a.work))
    rows = []
    pcrs: dict[str, object] = {}
    try:
        blobs_dir = make_blobs(work / "blobs")
        for order in a.orders.split(","):
            ref, layout = workload(a, order)
            layer_files = layer_blobs(layout)
            warm(layer_files)
            best: dict[str, float] = {}
            for _ in range(a.rounds):
                out = work / "out.eif"
                cmd = [sys.executable, "-m", "eifbuild", "build", ref, "--blobs", str(blobs_dir),
                       "-o", str(out), *(["--json"] if a.json else []), *a.build_arg]  # fmt: skip
                wall, rss, peak_tmp = run_child(cmd, work / "tmp", work / "record.json")
                record = json.loads((work / "record.json").read_text())
                record["eif_size"] = out.stat().st_size
                out.unlink()
                floor = serial_floor(layer_files)
                tools = float("nan") if a.no_tools else standard_tools(layer_files, work)
                if not best or wall < best["wall"]:
                    best = {"wall": wall, "rss": rss / 1024, "tmp": peak_tmp / MIB}
                best["floor"] = min(best.get("floor", floor), floor)
                best["tools"] = min(best.get("tools", tools), tools)
            pcrs[order] = record["Measurements"]
            size = sum(p.stat().st_size for p in layer_files)
            best["load"] = os.getloadavg()[0]
            rows.append((order, size, record, best))
            print(
                f"{a.workload} {order}: eifbuild {best['wall']:.2f} s, peak RSS {best['rss']:.0f} MiB,"
                f" peak TMPDIR {best['tmp']:.0f} MiB | floor {best['floor']:.2f} s"
                f" ({best['wall'] / best['floor']:.2f}x) | tools {best['tools']:.2f} s"
                f" ({best['wall'] / best['tools']:.2f}x) | load {best['load']:.1f}",
                flush=True,
            )
            paths = record.get("layers")
            if paths:
                print(
                    "  layer paths: " + ", ".join(str(p.get("access")) for p in paths), flush=True
                )
        if len(set(json.dumps(v, sort_keys=True) for v in pcrs.values())) > 1:
            sys.exit(f"PCRs differ between orders: {pcrs}")
        eif_mib = rows[0][2]["eif_size"] / MIB
        print(f"\n{a.workload}: EIF {eif_mib:.0f} MiB, cpus {os.cpu_count()},"
              f" debian {Path('/etc/debian_version').read_text().strip()}")  # fmt: skip
        print(
            "| layer order | eifbuild | peak RSS | serial floor | vs floor | standard tools | vs tools | load |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for order, _size, _record, b in rows:
            print(f"| {order} | {b['wall']:.2f} s | {b['rss']:.0f} MiB | {b['floor']:.2f} s |"
                  f" {b['wall'] / b['floor']:.2f}x | {b['tools']:.2f} s | {b['wall'] / b['tools']:.2f}x |"
                  f" {b['load']:.1f} |")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
