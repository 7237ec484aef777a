"""``eifbuild sign EIF``: sign an existing EIF, or replace its signature (PCR8)."""

from __future__ import annotations

import argparse

from eifbuild.cli._common import output_path
from eifbuild.cli._signing import add_signing_arguments, make_signer, write_signed
from eifbuild.errors import UsageError

HELP = "sign an existing EIF (or replace its signature); PCR0/1/2 stay the same"
DESCRIPTION = (
    "Sign EIF with a PEM EC key or an AWS KMS key and print its measurements (with PCR8).\n"
    "An existing signature is replaced; the header's section sizes and CRC are rewritten\n"
    "correctly. The result is written atomically to --output, or over EIF itself.\n"
    "An EIF re-signed by `nitro-cli sign-eif` (its header keeps the old signature's size) is\n"
    "accepted with a warning, and the output gets a corrected header."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("eif", metavar="EIF", help="EIF v4 file to sign")
    p.add_argument(
        "-o",
        "--output",
        type=output_path,
        metavar="OUT.eif",
        help="write here instead of replacing EIF",
    )
    add_signing_arguments(p)


def run(args: argparse.Namespace) -> int:
    if not args.signing_certificate or not args.private_key:
        raise UsageError("sign needs --signing-certificate and --private-key")
    signer = make_signer(args)  # validates key, certificate and KMS access before writing
    assert signer is not None
    return write_signed(args.eif, args.output, signer, "Signing")
