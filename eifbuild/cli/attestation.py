"""``eifbuild attestation DOC``: verify a Nitro attestation document and print it."""

from __future__ import annotations

import argparse
import sys

from eifbuild.attestation import load_and_verify, parse_time, summary_lines
from eifbuild.cli._common import info, print_json

HELP = "verify a Nitro Enclaves attestation document and print its PCRs, time, data"
DESCRIPTION = """Verify an attestation document as an enclave gets it from the NSM (COSE_Sign1,
CBOR, raw or base64): its ES384 signature by the certificate it carries, and that
certificate's chain (cabundle) to the AWS Nitro Enclaves root G1 shipped with eifbuild
(pinned by its SHA-256 fingerprint 641A0321…BB5B), every certificate valid at --at TIME
(default: now; leaf certificates live for hours, so an old document needs --at, e.g.
`--at document` for its own timestamp). Then print the module, time, PCRs, user data, nonce
and public key. A debug-mode document (PCR0, PCR1, PCR2 all zeros) is named as such."""

EPILOG = """examples:
  eifbuild attestation doc.b64 --at document
  eifbuild attestation doc.cbor --json | jq -r .pcrs.\\"2\\"
  eifbuild attestation test-doc.cbor --root test-ca.pem

exit codes:
  0  verified (printed)
  1  not verified: malformed, signature or certificate chain fails, wrong root, expired
  2  usage error"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.add_argument("document", metavar="DOC", help="attestation document (CBOR or base64)")
    p.add_argument("--root", metavar="PEM", help="trust this root certificate instead of AWS's")
    p.add_argument(
        "--at", metavar="TIME", help="check validity at TIME (ISO 8601, @EPOCH or 'document')"
    )
    p.add_argument("--json", action="store_true", help="print the verified document as JSON")


def run(args: argparse.Namespace) -> int:
    at = args.at if args.at in (None, "document") else parse_time(args.at)
    doc = load_and_verify(args.document, root=args.root, at=at)
    if args.json:
        print_json(doc.as_json())
        return 0
    sys.stdout.write(f"{args.document}: signature and certificate chain verified\n")
    for line in summary_lines(doc):
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    for w in doc.warnings:
        info(f"warning: {w}")
    return 0
