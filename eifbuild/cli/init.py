"""``eifbuild init build``: build eifbuild's static musl init, reproducibly, cached."""

from __future__ import annotations

import argparse

from eifbuild.cli._bars import set_quiet
from eifbuild.cli._common import print_json
from eifbuild.kernel import ARCHES, build_init, sha384_file

HELP = "build eifbuild's enclave init (static, reproducible, cached)"
DESCRIPTION = (
    "Build the PID 1 init from kernels/init/ inside the pinned toolchain root "
    "(kernels/toolchain/bookworm.json; bootstrapped with mmdebstrap on first use): x86_64 with "
    "musl-gcc, aarch64 as a static glibc binary with aarch64-linux-gnu-gcc. The result is "
    "cached by the hash of its source, recipe and toolchain pin; prints its path and SHA-384."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["build"], help="what to do")
    parser.add_argument("--arch", choices=ARCHES, default="x86_64", help="target architecture")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def run(args: argparse.Namespace) -> int:
    if args.json:
        set_quiet(True)
    path = build_init(args.arch, force=args.force)
    digest = sha384_file(path)
    if args.json:
        print_json(
            {"path": str(path), "sha384": digest, "size": path.stat().st_size, "arch": args.arch}
        )
    else:
        print(f"{path}\nsha384 {digest}")
    return 0
