"""``eifbuild cache prune|info``: the registry blob cache."""

from __future__ import annotations

import argparse

from eifbuild.cli._common import print_json

HELP = "show or prune the registry blob cache"
DESCRIPTION = """The docker:// transport and `pull` keep blobs by digest under
~/.cache/eifbuild/registry (or --cache-dir). `prune` removes least recently used blobs until
at most --max-mib remain (default: all), waiting for running builds that use the cache."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("prune", "info"), help="what to do")
    p.add_argument("--cache-dir", metavar="DIR", help="cache directory")
    p.add_argument(
        "--max-mib", type=int, default=0, metavar="MIB", help="prune: keep at most MIB (default 0)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from eifbuild.errors import UsageError
    from eifbuild.registry import BlobCache

    if args.max_mib < 0:
        raise UsageError(f"--max-mib {args.max_mib}: must not be negative")
    cache = BlobCache(args.cache_dir)
    if args.action == "info":
        usage = cache.usage()
        doc = {"root": usage.root, "blobs": usage.blobs, "bytes": usage.bytes}
        if args.json:
            print_json(doc)
        else:
            print(f"{usage.root}: {usage.blobs} blobs, {usage.bytes} bytes")
        return 0
    result = cache.prune(args.max_mib << 20)
    if args.json:
        print_json(
            {
                "root": result.root,
                "removed_blobs": result.removed_blobs,
                "removed_bytes": result.removed_bytes,
                "kept_blobs": result.kept_blobs,
                "kept_bytes": result.kept_bytes,
            }
        )
    else:
        print(
            f"{result.root}: removed {result.removed_blobs} blobs ({result.removed_bytes} bytes), "
            f"kept {result.kept_blobs} ({result.kept_bytes} bytes)"
        )
    return 0
