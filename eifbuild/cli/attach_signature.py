"""``eifbuild attach-signature EIF --signature SIG.cose --signing-certificate CERT.pem``."""

from __future__ import annotations

import argparse

from eifbuild.cli._common import output_path

HELP = "attach a detached COSE signature to an EIF (detached signing, step 3)"
DESCRIPTION = (
    "Check that SIG.cose verifies with the certificate's key over PcrInfo{0, PCR0} of EIF\n"
    "(recomputed from the file), then write the signed EIF atomically (over EIF unless\n"
    "--output). The result is the same as signing in-process."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("eif", metavar="EIF", help="EIF v4 file to sign")
    p.add_argument("--signature", metavar="SIG.cose", required=True, help="from sign-payload")
    p.add_argument("--signing-certificate", metavar="CERT.pem", required=True)
    p.add_argument(
        "-o",
        "--output",
        type=output_path,
        metavar="OUT.eif",
        help="write here instead of replacing EIF",
    )
    p.add_argument("--allow-expired", action="store_true", help="accept an expired certificate")


def run(args: argparse.Namespace) -> int:
    from eifbuild.cli._signing import write_signed
    from eifbuild.sign.attach import detached_signer

    signer = detached_signer(
        args.eif, args.signature, args.signing_certificate, allow_expired=args.allow_expired
    )
    return write_signed(args.eif, args.output, signer, "Attaching")
