"""``eifbuild kernel build|path``: eifbuild's enclave kernel and blobs directory."""

from __future__ import annotations

import argparse
import time

from eifbuild.cli._bars import set_quiet
from eifbuild.cli._common import info, print_json
from eifbuild.kernel import ARCHES, build_blobs, default_blobs_dir, load_pin, sha384_file

HELP = "build eifbuild's enclave kernel + init blobs directory (cached), or print its path"
DESCRIPTION = (
    "build: fetch the pinned Debian linux-source package with a private apt configuration, "
    "verify it, apply the patches and config fragment in kernels/<arch>/, compile it "
    "reproducibly (aarch64: cross-compiled with Debian's gcc-aarch64-linux-gnu, Image header "
    "text_offset set to 2 MiB) and assemble the blobs directory `eifbuild build` uses by "
    "default (bzImage or Image, its .config, cmdline, init). Cached by (source sha256, "
    "fragment, patches, toolchain). path: print that directory, or fail if it was not built."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["build", "path"], help="what to do")
    parser.add_argument("--arch", choices=ARCHES, default="x86_64", help="target architecture")
    parser.add_argument("--jobs", "-j", type=int, default=None, help="make -j (default: all CPUs)")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument(
        "--keep-tree", action="store_true", help="keep the unpacked source and objects"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def run(args: argparse.Namespace) -> int:
    if args.json:
        set_quiet(True)
    if args.action == "path":
        path = default_blobs_dir(args.arch)
    else:
        start = time.monotonic()
        path = build_blobs(
            args.arch,
            jobs=args.jobs,
            force=args.force,
            log=(lambda _m: None) if args.json else info,
        )
        if not args.json:
            info(f"kernel blobs ready in {time.monotonic() - start:.1f} s")
    image = path / load_pin(args.arch).image_name
    files = {p.name: sha384_file(p) for p in sorted(path.iterdir()) if p.is_file()}
    if args.json:
        print_json({"blobs": str(path), "arch": args.arch, "sha384": files})
    else:
        print(path)
        print(f"{image.name} sha384 {files[image.name]}")
        print(f"init sha384 {files['init']}")
    return 0
