"""``eifbuild policy lint POLICY.json``: findings about any KMS key policy."""

from __future__ import annotations

import argparse
import sys

from eifbuild.cli._common import info, print_json
from eifbuild.policy import lint, load_policy

HELP = "findings about a KMS key policy that guards enclave secrets"
DESCRIPTION = """Read any KMS key policy (not only eifbuild's) and print one finding per line:
the statement (Sid, or #position), what is wrong, and how to fix it.

errors (exit 1):
  unpinned-decrypt   kms:Decrypt, GenerateDataKey*, DeriveSharedSecret, GenerateRandom,
                     kms:* or * allowed to a principal other than the account root without
                     a kms:RecipientAttestation:PCR0/PCR1/PCR2 or ImageSha384 condition
                     (IfExists and ForAllValues conditions do not count: a request without
                     an attestation document satisfies them)
  pcr8-alone         only PCR8 pinned: any image signed with that certificate passes
                     (CVE-2025-64186)
  bad-value          a PCR value that is not 96 hexadecimal digits
  case-mismatch      StringEquals/StringLike with uppercase hex: KMS presents lowercase
  debug-zero-pcr     an all-zero PCR: only debug-mode enclaves attest zeros
  set-operator       ForAllValues on a single-valued attestation key
  unknown-operator   a condition operator eifbuild does not evaluate
warnings: pcr0-without-pcr1-pcr2, ForAnyValue on a single-valued key (set-operator),
  optional-pin (an IfExists/ForAllValues attestation condition next to real pins)
notes: unreachable-allow (a Deny without conditions covers an Allow: explained, not flagged)"""

EPILOG = """examples:
  aws kms get-key-policy --key-id KEY --policy-name default --query Policy --output text \\
      > key-policy.json
  eifbuild policy lint key-policy.json
  eifbuild policy lint key-policy.json --json | jq '.findings[] | select(.severity=="error")'

exit codes:
  0  no errors (warnings and notes may be printed)
  1  at least one error finding, or the file is not a readable key policy
  2  usage error"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.add_argument("policy", metavar="POLICY.json", help="a KMS key policy document")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")


def run(args: argparse.Namespace) -> int:
    report = lint(load_policy(args.policy))
    if args.json:
        print_json(
            {
                "policy": args.policy,
                "ok": report.ok,
                "errors": report.errors,
                "findings": [f.as_json() for f in report.findings],
            }
        )
    else:
        for f in report.findings:
            sys.stdout.write(f.line() + "\n")
        sys.stdout.flush()
        if not report.findings:
            info(f"{args.policy}: no findings")
    return 0 if report.ok else 1
