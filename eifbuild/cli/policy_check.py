"""``eifbuild policy check POLICY.json (--eif|--measurements|--attestation)``."""

from __future__ import annotations

import argparse
import os
import sys

from eifbuild.attestation import load_and_verify, parse_time
from eifbuild.cli._bars import progress
from eifbuild.cli._common import info, print_json
from eifbuild.policy import attestation_context, check, load_measurements, load_policy

HELP = "would KMS allow this enclave (EIF, measurements or attestation document)?"
DESCRIPTION = """Evaluate a KMS key policy for one request: PRINCIPAL (--role-arn) calls ACTION
(--action, default kms:Decrypt) with an attestation document carrying the measurements of
--eif, --measurements or a real --attestation document (verified first: ES384 signature and
certificate chain to the AWS Nitro Enclaves root, see `eifbuild attestation`).

Prints which statement allows it, or why it is denied: which condition fails and how
("PCR2 differs: policy pins 4f1c…, image has 9a07…"). An explicit Deny wins over any Allow.
Statements for the account root are noted, not counted: they delegate to IAM policies,
which this check cannot see. Condition operators eifbuild does not know never pass."""

EPILOG = """examples:
  eifbuild policy check key-policy.json --eif app-v2.eif \\
      --role-arn arn:aws:iam::111122223333:role/enclave-parent
  eifbuild policy check key-policy.json --attestation doc.b64 --at 2024-09-07T14:37:40Z

exit codes:
  0  allowed
  1  denied, or an input is unreadable or invalid (attestation that does not verify)
  2  usage error"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.add_argument("policy", metavar="POLICY.json", help="a KMS key policy document")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--eif", metavar="EIF", help="measure this EIF")
    src.add_argument("--measurements", metavar="M.json", help="measurements JSON (describe)")
    src.add_argument("--attestation", metavar="DOC", help="attestation document (raw/base64)")
    p.add_argument("--role-arn", metavar="ROLE", help="the caller (default: any principal)")
    p.add_argument("--action", default="kms:Decrypt", metavar="A", help="default kms:Decrypt")
    p.add_argument("--root", metavar="PEM", help="--attestation: trust this root instead")
    p.add_argument(
        "--at", metavar="TIME", help="--attestation: check certificates at TIME (or 'document')"
    )
    p.add_argument("--json", action="store_true", help="print the decision as JSON")


def run(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    notes: list[str] = []
    if args.attestation is not None:
        at = args.at if args.at in (None, "document") else parse_time(args.at)
        doc = load_and_verify(args.attestation, root=args.root, at=at)
        pcrs, source = doc.pcrs, "document"
        notes.extend(doc.warnings)
    else:
        if args.root is not None or args.at is not None:
            info("warning: --root and --at only apply to --attestation")
        path = args.eif if args.eif is not None else args.measurements
        size = os.stat(path).st_size if os.path.isfile(path) else None
        with progress(total=size, desc="Measuring") as bar:
            measured = load_measurements(path, progress=bar.update)
        pcrs, source = measured.pcrs, "image"
        notes.extend(measured.warnings)
    decision = check(
        policy,
        action=args.action,
        context=attestation_context(pcrs),
        principal=args.role_arn,
        source=source,
    )
    notes.extend(decision.notes)
    if args.json:
        print_json({**decision.as_json(), "notes": notes})
    else:
        if decision.allowed:
            sys.stdout.write(f"allowed by {decision.statement}\n")
        else:
            sys.stdout.write("denied\n")
            for r in decision.reasons:
                sys.stdout.write(f"  {r}\n")
        sys.stdout.flush()
        for n in notes:
            info(f"note: {n}")
    return 0 if decision.allowed else 1
