"""``eifbuild policy``: an AWS KMS key policy that pins an enclave's measurements."""

from __future__ import annotations

import argparse
import os
import sys

from eifbuild._atomic import write_atomic
from eifbuild._progress import progress
from eifbuild.cli._common import info
from eifbuild.policy import (
    ATTESTED_ACTIONS,
    PolicyError,
    check_account_id,
    check_role_arn,
    context,
    load_measurements,
    parse_actions,
    parse_pcr_list,
    pcr_warnings,
    render_policy,
    select_pcrs,
)

HELP = "render an AWS KMS key policy that pins an EIF's PCRs (attestation conditions)"
DESCRIPTION = """Render a KMS key policy (JSON) that lets ROLE call the given KMS actions only from
an enclave whose attestation document carries the pinned PCRs (condition keys
kms:RecipientAttestation:PCR<n>, StringEqualsIgnoreCase), plus the usual statement giving
the account root full control of the key.

INPUT is an EIF (measured by streaming) or the JSON printed by `eifbuild build`, `assemble`,
`describe` or `measure` ({"Measurements": {...}}). Default PCRs: 0, 1, 2, and 8 when the
image is signed. Pinning PCR8 alone (CVE-2025-64186) or leaving out PCR1/PCR2 prints a
warning. The default template is templates/kms-key-policy.json.j2; --template FILE uses your
own (variables: account_id, partition, root_arn, role_arn, actions, conditions, pcrs; use
|tojson). The rendered text must be valid JSON; it is printed with a fixed 2-space layout."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="INPUT", help="EIF file or measurements JSON")
    p.add_argument("--account-id", required=True, help="12-digit AWS account that owns the key")
    p.add_argument(
        "--role-arn",
        required=True,
        help="IAM role of the parent instance (arn:aws:iam::ID:role/NAME)",
    )
    p.add_argument("--pcr", metavar="LIST", help="PCRs to pin, e.g. 0,1,2,8 (default: 0,1,2[,8])")
    p.add_argument(
        "--actions",
        metavar="LIST",
        help="comma-separated KMS actions the enclave may call (default: kms:Decrypt)",
    )
    p.add_argument("--template", metavar="FILE", help="jinja2 template to render instead")
    p.add_argument("-o", "--output", metavar="OUT", help="write the policy here (default: stdout)")


def run(args: argparse.Namespace) -> int:
    account = check_account_id(args.account_id)
    role = check_role_arn(args.role_arn)
    requested = parse_pcr_list(args.pcr) if args.pcr is not None else None
    actions = parse_actions(args.actions)
    size = os.stat(args.input).st_size if os.path.isfile(args.input) else None
    with progress(total=size, desc="Measuring") as bar:
        available = load_measurements(
            args.input, progress=bar.update, warn=lambda w: info(f"warning: {w}")
        )
    pcrs = select_pcrs(available, requested, args.input)
    for w in pcr_warnings(list(pcrs)):
        info(f"warning: {w}")
    for a in actions:
        if a not in ATTESTED_ACTIONS:
            info(f"warning: {a} carries no attestation document; the PCR conditions will deny it")
    if role.account != account:
        info(f"warning: role account {role.account} differs from key account {account}")
    text = render_policy(context(pcrs, account, role, actions), args.template)
    if args.output:
        try:
            write_atomic(args.output, text.encode("utf-8"))
        except OSError as exc:
            raise PolicyError(f"{args.output}: cannot write ({exc.strerror or exc})") from None
        info(
            f"KMS key policy pinning {', '.join(f'PCR{i}' for i in pcrs)} written to {args.output}"
        )
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0
