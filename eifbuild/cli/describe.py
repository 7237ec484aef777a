"""``eifbuild describe EIF``: what ``nitro-cli describe-eif`` prints, from a bounded reader."""

from __future__ import annotations

import argparse
from typing import Any

from eifbuild.cli._bars import progress
from eifbuild.cli._common import print_json, warn
from eifbuild.cli._registry import add_registry_arguments, local_eif
from eifbuild.describe import describe_document
from eifbuild.eif.reader import EifReader

HELP = "print an EIF's version, measurements, signature, CRC check and metadata (like describe-eif)"
DESCRIPTION = (
    "Print the JSON of `nitro-cli describe-eif` (same keys, same order). A bad signature is an\n"
    'error (exit 1), as in nitro-cli; a CRC mismatch is reported as "CheckCRC": false.\n'
    "An EIF re-signed by `nitro-cli sign-eif` (stale signature size in the header) is read\n"
    "as nitro-cli reads it, with a warning on stderr."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("eif", metavar="EIF", help="EIF file (or docker://… EIF artifact) to describe")
    p.add_argument(
        "--sections", action="store_true", help="add the section table (index, type, offset, size)"
    )
    add_registry_arguments(p)


def describe(reader: EifReader, with_sections: bool = False) -> dict[str, Any]:
    """The describe-eif document for an open reader; warnings go to stderr (CLI helper)."""
    total = sum(s.size for s in reader.sections)
    with progress(total=total, desc="Measuring") as bar:
        doc, warnings = describe_document(reader, with_sections, progress=bar.update)
    for w in warnings:
        warn(w)
    return doc


def run(args: argparse.Namespace) -> int:
    with local_eif(args.eif, args) as path, EifReader(path) as reader:
        doc = describe(reader, args.sections)
    print_json(doc)
    return 0
