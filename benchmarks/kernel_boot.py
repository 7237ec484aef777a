"""Figures for the kernel/init/boot-test issue.

    .venv/bin/python benchmarks/kernel_boot.py [--arch aarch64] [--boots 3] [--rebuild-kernel]

* init: size, sha384, build time in an empty cache, and whether a second build in another
  cache directory is bit-identical;
* kernel: bzImage / Image size and sha384 of the cached blobs (`eifbuild kernel build
  --arch ARCH` first); with --rebuild-kernel, a full build into a fresh cache (timed) and a
  comparison with the cached image (the reproducibility check; several minutes on 2 cores);
* boot: wall time of N boots under QEMU TCG (x86_64: q35, aarch64: virt) of an initrd made
  with GNU cpio (init + a command that prints a marker and exits 7: busybox sh on x86_64,
  a static program compiled with aarch64-linux-gnu-gcc on aarch64).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eifbuild.boottest import BootOptions, run_qemu
from eifbuild.kernel import build_init, build_kernel, default_blobs_dir, load_pin

MARKER_C = '#include <stdio.h>\nint main(void) { puts("BENCH-MARK"); return 7; }\n'


def sha384(p: Path) -> str:
    return hashlib.sha384(p.read_bytes()).hexdigest()


def in_cache(cache: Path) -> None:
    os.environ["XDG_CACHE_HOME"] = str(cache)


def bench_init(tmp: Path, arch: str) -> None:
    old = os.environ.get("XDG_CACHE_HOME")
    start = time.monotonic()
    in_cache(tmp / "c1")
    a = build_init(arch)
    took = time.monotonic() - start
    in_cache(tmp / "c2")
    b = build_init(arch)
    if old is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = old
    same = a.read_bytes() == b.read_bytes()
    print(f"init: {a.stat().st_size} bytes, build {took:.2f} s, rebuild identical: {same}")
    print(f"init sha384: {sha384(a)}")


def cpio(src: Path, dest: Path) -> None:
    for p in [src, *src.rglob("*")]:
        os.utime(p, (0, 0), follow_symlinks=False)
    names = "\n".join(sorted(str(p.relative_to(src)) for p in src.rglob("*"))) + "\n"
    subprocess.run(
        ["cpio", "-o", "-H", "newc", "--reproducible", "-R", "0:0", "--quiet", "-O", str(dest)],
        input=names.encode(), cwd=src, check=True,
    )  # fmt: skip


def customer_root(b: Path, arch: str) -> None:
    """``rootfs/`` with a command that prints BENCH-MARK and exits 7, plus cmd and env."""
    (b / "rootfs" / "bin").mkdir(parents=True)
    if arch == "x86_64":
        shutil.copyfile("/bin/busybox", b / "rootfs" / "bin" / "busybox")
        (b / "rootfs" / "bin" / "busybox").chmod(0o755)
        (b / "rootfs" / "bin" / "sh").symlink_to("busybox")
        (b / "cmd").write_text("/bin/sh\n-c\necho BENCH-MARK; exit 7\n")
    else:
        src = b.parent / "marker.c"
        src.write_text(MARKER_C)
        exe = b / "rootfs" / "bin" / "marker"
        subprocess.run(["aarch64-linux-gnu-gcc", "-static", "-Os", "-o", str(exe), str(src)],
                       check=True)  # fmt: skip
        (b / "cmd").write_text("/bin/marker\n")
    (b / "env").write_text("PATH=/bin\n")


def bench_boot(tmp: Path, blobs: Path, boots: int, arch: str) -> None:
    a, b = tmp / "a", tmp / "b"
    (a / "dev").mkdir(parents=True)
    shutil.copyfile(blobs / "init", a / "init")
    (a / "init").chmod(0o755)
    customer_root(b, arch)
    cpio(a, tmp / "a.cpio")
    cpio(b, tmp / "b.cpio")
    initrd = tmp / "initrd"
    initrd.write_bytes((tmp / "a.cpio").read_bytes() + (tmp / "b.cpio").read_bytes())
    cmdline = (blobs / "cmdline").read_text().strip()
    times = []
    for _ in range(boots):
        opts = BootOptions(timeout=120, expect="BENCH-MARK")
        r = run_qemu(blobs / load_pin(arch).image_name, initrd, cmdline, opts, arch)
        assert r.passed and r.exit_status == 7, r.console[-2000:]
        times.append(r.duration_s)
    print(f"boot ({arch}, QEMU TCG, QEMU start to exit), {boots} runs: {times} s")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=("x86_64", "aarch64"), default="x86_64")
    ap.add_argument("--boots", type=int, default=3)
    ap.add_argument("--rebuild-kernel", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="eifbuild-bench-") as t:
        tmp = Path(t)
        bench_init(tmp, args.arch)
        blobs = default_blobs_dir(args.arch)
        name = load_pin(args.arch).image_name
        image = blobs / name
        print(f"{name}: {image.stat().st_size} bytes, sha384 {sha384(image)}")
        if args.rebuild_kernel:
            in_cache(tmp / "kcache")
            start = time.monotonic()
            out = build_kernel(args.arch)
            took = time.monotonic() - start
            same = (out / name).read_bytes() == image.read_bytes()
            print(f"kernel rebuild in a fresh cache: {took:.0f} s, bit-identical: {same}")
        bench_boot(tmp, blobs, args.boots, args.arch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
