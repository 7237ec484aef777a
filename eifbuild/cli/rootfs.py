"""``eifbuild rootfs IMAGE``: the flattened root filesystem as JSON lines, sorted by path."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eifbuild.cli._bars import progress
from eifbuild.cli._common import add_limit_arguments, limits_from_args, warn
from eifbuild.cli._registry import add_registry_arguments, registry_options
from eifbuild.dockerexport import docker_export_entries
from eifbuild.rootfs import flatten
from eifbuild.rootfs_records import entry_record
from eifbuild.sources import open_image

HELP = "list the flattened rootfs of a container image as JSON lines"
DESCRIPTION = """List the merged root filesystem of IMAGE (the view a container sees), one JSON
object per line, sorted by path: path, type, mode (octal text), uid, gid, mtime, size, sha256
(regular files), linkname (symlink target, or the first path of a hard link), rdev
([major, minor] for devices). A path or link that is not UTF-8 is also given as hex
(path_hex, linkname_hex).

IMAGE: docker-daemon:REF or REF, docker-archive:PATH[:REF], oci:DIR[:REF], oci-archive:TAR[:REF]."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="image reference with transport")
    parser.add_argument(
        "--arch",
        choices=("amd64", "x86_64", "arm64", "aarch64"),
        help="platform to pick from an index; the image must have it (amd64 = x86_64, arm64 = aarch64)",
    )
    parser.add_argument(
        "--docker-dir", type=Path, help="docker build this directory first, tagged IMAGE"
    )
    parser.add_argument(
        "--export",
        action="store_true",
        help="list what `docker export` would contain (add Docker's init layer and WorkingDir)",
    )
    parser.add_argument("--no-hash", action="store_true", help="do not read contents for sha256")
    add_limit_arguments(parser)
    add_registry_arguments(parser)


def run(args: argparse.Namespace) -> int:
    warnings: list[str] = []
    limits = limits_from_args(args)
    out = sys.stdout
    with open_image(
        args.image,
        arch=args.arch,
        docker_dir=args.docker_dir,
        limits=limits,
        registry=registry_options(args),
    ) as image:
        make = docker_export_entries if args.export else flatten
        # order="path" streams the entries already sorted: memory stays bounded by the tree.
        entries = make(image, warn=warnings.append, order="path")
        with progress(desc="rootfs", unit="entries") as bar:
            for e in entries:
                rec = entry_record(e, hash_content=not args.no_hash)
                out.write(json.dumps(rec, ensure_ascii=False, sort_keys=False) + "\n")
                bar.update(1)
    out.flush()
    for w in warnings:
        warn(w)
    return 0
