"""Signing options shared by `build` and `assemble` (--signing-certificate, --private-key).

Owned by the signing stage (eifbuild.sign); this placeholder defines the options so the
commands that take them can be written before signing lands.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from eifbuild.errors import SigningError

# signer(pcr0_raw_bytes) -> bytes of the whole EIF signature section (type 4)
Signer = Callable[[bytes], bytes]


def add_signing_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("signing (PCR8)")
    g.add_argument("--signing-certificate", metavar="CERT.pem", help="PEM signing certificate")
    g.add_argument(
        "--private-key", metavar="KEY", help="PEM EC private key, or an AWS KMS key ARN / ID / alias"
    )


def make_signer(args: argparse.Namespace) -> Signer | None:
    if not getattr(args, "signing_certificate", None) and not getattr(args, "private_key", None):
        return None
    raise SigningError("signing is not available in this build of eifbuild")
