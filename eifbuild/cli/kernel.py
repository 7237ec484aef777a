"""``eifbuild kernel build|path|pin-toolchain``: eifbuild's enclave kernel and blobs directory."""

from __future__ import annotations

import argparse
import time

from eifbuild.cli._bars import set_quiet
from eifbuild.cli._common import info, print_json
from eifbuild.errors import UsageError
from eifbuild.kernel import ARCHES, default_blobs_dir, load_pin, sha384_file
from eifbuild.kernel.audit import KernelReport, build_checked, verify_from_scratch
from eifbuild.kernel.toolpin import resolve_pin, write_pin

HELP = "build eifbuild's enclave kernel + init blobs directory (cached), or print its path"
DESCRIPTION = (
    "build: fetch the pinned Debian linux-source package and the pinned toolchain "
    "(kernels/toolchain/bookworm.json) with a private apt configuration, verify every sha256, "
    "bootstrap the toolchain root with mmdebstrap (cached by content hash), and inside it "
    "apply the patches and config fragment in kernels/<arch>/ and compile the kernel and init "
    "reproducibly (aarch64: cross-compiled, Image header text_offset set to 2 MiB); assemble "
    "the blobs directory `eifbuild build` uses by default and compare it with "
    "kernels/<arch>/expected.json (fails naming what changed). --verify: rebuild everything "
    "from scratch, no cache, and compare. --record: write expected.json instead. "
    "path: print the blobs directory, or fail if it was not built. pin-toolchain: re-resolve "
    "the toolchain pin from the Debian mirror (the bump when a pinned version left it)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["build", "path", "pin-toolchain"], help="what to do")
    parser.add_argument("--arch", choices=ARCHES, default="x86_64", help="target architecture")
    parser.add_argument("--jobs", "-j", type=int, default=None, help="make -j (default: all CPUs)")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--verify", action="store_true",
        help="rebuild root, kernel and init from scratch (no cache) and compare with expected.json",
    )  # fmt: skip
    mode.add_argument(
        "--record", action="store_true",
        help="write kernels/<arch>/expected.json from this build instead of comparing",
    )  # fmt: skip
    parser.add_argument(
        "--keep-tree", action="store_true", help="(ignored; kept for compatibility)"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def _present(args: argparse.Namespace, report: KernelReport) -> None:
    o = report.outcome
    if args.json:
        print_json({
            "arch": report.arch, "blobs": str(report.blobs) if report.blobs else None,
            "sha384": {o.image_name: o.image_sha384, "init": o.init_sha384}, "pcr1": o.pcr1,
            "expected": "recorded" if report.recorded else "matches",
            "from_scratch": report.from_scratch,
        })  # fmt: skip
        return
    if report.blobs:
        print(report.blobs)
    print(f"{o.image_name} sha384 {o.image_sha384}")
    print(f"init sha384 {o.init_sha384}")
    print(f"PCR1 {o.pcr1}")
    if report.recorded:
        info(f"recorded {report.recorded}")
    else:
        what = "rebuilt from scratch and " if report.from_scratch else ""
        info(f"{what}matches kernels/{report.arch}/expected.json")


def run(args: argparse.Namespace) -> int:
    if args.json:
        set_quiet(True)
    log = (lambda _m: None) if args.json else info
    if args.action == "pin-toolchain":
        path = write_pin(resolve_pin())
        print(path)
        info("rebuild with `eifbuild kernel build --record` for both arches and commit both")
        return 0
    if args.action == "path":
        if args.verify or args.record:
            raise UsageError("--verify and --record go with `eifbuild kernel build`")
        path = default_blobs_dir(args.arch)
        files = {p.name: sha384_file(p) for p in sorted(path.iterdir()) if p.is_file()}
        image = load_pin(args.arch).image_name
        if args.json:
            print_json({"blobs": str(path), "arch": args.arch, "sha384": files})
        else:
            print(path)
            print(f"{image} sha384 {files[image]}")
            print(f"init sha384 {files['init']}")
        return 0
    start = time.monotonic()
    if args.verify:
        report = verify_from_scratch(args.arch, jobs=args.jobs, log=log)
    else:
        report = build_checked(
            args.arch, jobs=args.jobs, force=args.force, record=args.record, log=log
        )
    log(f"kernel blobs ready in {time.monotonic() - start:.1f} s")
    _present(args, report)
    return 0
