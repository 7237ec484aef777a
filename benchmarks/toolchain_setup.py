"""Figures for the pinned-toolchain issue (#9): what the toolchain root costs a setup.

    .venv/bin/python benchmarks/toolchain_setup.py [--cold-root]

* warm: wall time of `eifbuild kernel build --arch A` for both arches with everything cached
  (what a warm scripts/setup spends on the kernel: cache hit + the expected.json check);
* --cold-root: bootstrap of the toolchain root into a scratch directory (the sha256-checked
  .deb downloads are reused, so this is mmdebstrap + dpkg only), timed, then deleted;
* host roots: the figures tests/test_kernel_hosts.py recorded for its clean Debian 12 and 13
  roots (mmdebstrap of the host root, then the README's kernel setup inside it, cold: apt,
  pip, toolchain-root bootstrap, x86_64 kernel + init), read from its cache.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eifbuild.kernel._common import download_dir, scratch_cache
from eifbuild.kernel.toolroot import toolchain_root


def warm() -> None:
    for arch in ("x86_64", "aarch64"):
        start = time.monotonic()
        subprocess.run([sys.executable, "-m", "eifbuild", "kernel", "build", "--arch", arch,
                        "--json"], check=True, capture_output=True)  # fmt: skip
        print(f"warm eifbuild kernel build --arch {arch}: {time.monotonic() - start:.1f} s")


def cold_root() -> None:
    with tempfile.TemporaryDirectory(dir=download_dir(), prefix=".bench-") as tmp:
        start = time.monotonic()
        with scratch_cache(Path(tmp)):
            root = toolchain_root()
        took = time.monotonic() - start
        size = subprocess.run(["du", "-sm", str(root)], capture_output=True, text=True).stdout
        print(f"toolchain root bootstrap (downloads cached): {took:.1f} s, {size.split()[0]} MB")
        shutil.rmtree(tmp, ignore_errors=True)


def host_roots() -> None:
    for path in sorted((download_dir() / "host-roots").glob("*.json")):
        r = json.loads(path.read_text())
        print(f"host root {r['release']} (Debian {r['debian_version']}): mmdebstrap "
              f"{r['mmdebstrap_seconds']} s, cold kernel setup inside {r['setup_seconds']} s")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold-root", action="store_true", help="time a root bootstrap too")
    args = ap.parse_args()
    print(f"host: Debian {Path('/etc/debian_version').read_text().strip()}")
    warm()
    if args.cold_root:
        cold_root()
    host_roots()


if __name__ == "__main__":
    main()
