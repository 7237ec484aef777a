"""Signing options shared by ``build``, ``assemble`` and ``sign`` (owned by eifbuild.sign).

``make_signer(args)`` validates everything it can *before* any output exists: the key loads
(or the KMS key resolves, aliases included), its curve is supported, the certificate holds
the same public key and is inside its validity window (unless ``--allow-expired``). It
returns ``signer(pcr0_raw) -> signature section bytes`` for ``write_eif``, or None when no
signing option was given.
"""

from __future__ import annotations

import argparse
import os

from eifbuild.errors import UsageError
from eifbuild.types import Signer


def add_kms_arguments(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--kms-region",
        metavar="REGION",
        help="AWS region for a KMS key ID or alias name (ARNs carry their own region)",
    )
    g.add_argument(
        "--kms-endpoint",
        metavar="URL",
        default=os.environ.get("AWS_ENDPOINT_URL_KMS"),
        help="KMS endpoint URL (default: $AWS_ENDPOINT_URL_KMS or AWS's)",
    )
    g.add_argument(
        "--kms-message-type",
        choices=("digest", "raw"),
        default="digest",
        help="send KMS the SHA digest of the COSE Sig_structure (default, as AWS's tools do) "
        "or the Sig_structure itself (raw; same signature)",
    )


def add_signing_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("signing (PCR8)")
    g.add_argument("--signing-certificate", metavar="CERT.pem", help="PEM signing certificate")
    g.add_argument(
        "--private-key",
        metavar="KEY",
        help="PEM EC private key (P-256/P-384/P-521), or an AWS KMS key: key ARN, alias ARN, "
        "alias/NAME or key ID (with --kms-region)",
    )
    g.add_argument(
        "--allow-expired",
        action="store_true",
        help="sign even if the certificate is outside its validity window",
    )
    add_kms_arguments(g)


def make_signer(args: argparse.Namespace) -> Signer | None:
    """The signer the signing options ask for (see :func:`eifbuild.api.signer`), or None."""
    cert, key = args.signing_certificate, args.private_key
    if not cert and not key:
        return None
    if not cert or not key:
        raise UsageError("--signing-certificate and --private-key must be given together")
    from eifbuild.api import signer

    return signer(
        cert,
        key,
        allow_expired=args.allow_expired,
        kms_region=args.kms_region,
        kms_endpoint=args.kms_endpoint,
        kms_message_type=args.kms_message_type,
    )


def write_signed(eif: str, output: str | None, signer: Signer, desc: str) -> int:
    """Sign ``eif`` into ``output`` (default: in place, atomically) and print the measurements.

    Used by ``sign`` and ``attach-signature``; warns about tolerated header problems (a stale
    signature size left by ``nitro-cli sign-eif``), which the output no longer has.
    """
    from eifbuild.cli._bars import progress
    from eifbuild.cli._common import info, print_json, warn
    from eifbuild.eif.reader import EifReader
    from eifbuild.sign.rewrite import rewrite_signed

    with EifReader(eif) as reader:
        for warning in reader.warnings:
            warn(warning)
        total = sum(s.size for s in reader.sections)
    out = output or eif
    with progress(total=2 * total, desc=desc) as bar:
        result, _ = rewrite_signed(eif, out, signer, progress=bar.update)
    info(f"Signed EIF written to {out}")
    print_json({"Measurements": result.measurements.as_nitro()})
    return 0
