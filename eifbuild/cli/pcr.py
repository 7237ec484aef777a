"""``eifbuild pcr``: the values ``nitro-cli pcr`` prints.

``eifbuild pcr FILE`` (or ``--input FILE``) prints ``{"PCR": extend(SHA-384(file))}``;
``eifbuild pcr --signing-certificate CERT.pem`` prints ``{"PCR8": ...}`` from the DER of the
first certificate in the PEM file.
"""

from __future__ import annotations

import argparse
import os

from eifbuild.cli._bars import progress
from eifbuild.cli._common import print_json
from eifbuild.errors import EifbuildError, UsageError
from eifbuild.measure import file_pcr, pcr8_from_pem
from eifbuild.sign.keys import read_pem_file

HELP = "PCR of a file, or PCR8 of a signing certificate (like nitro-cli pcr)"
DESCRIPTION = (__doc__ or HELP).replace("``", "").strip()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", metavar="FILE", help="file to measure")
    p.add_argument("--input", metavar="FILE", help="file to measure (nitro-cli spelling)")
    p.add_argument(
        "--signing-certificate", metavar="CERT.pem", help="print PCR8 for this certificate"
    )


def run(args: argparse.Namespace) -> int:
    chosen = [x for x in (args.file, args.input, args.signing_certificate) if x is not None]
    if len(chosen) != 1:
        raise UsageError("give exactly one of FILE, --input FILE or --signing-certificate PEM")
    if args.signing_certificate is not None:
        pem = read_pem_file(args.signing_certificate, "certificate")
        print_json({"PCR8": pcr8_from_pem(pem, args.signing_certificate)})
        return 0
    path = args.file if args.file is not None else args.input
    size = os.stat(path).st_size if os.path.isfile(path) else None
    try:
        with progress(total=size, desc="Measuring") as bar:
            value = file_pcr(path, bar.update)
    except OSError as exc:
        raise EifbuildError(f"{path}: cannot read ({exc.strerror})") from None
    print_json({"PCR": value})
    return 0
