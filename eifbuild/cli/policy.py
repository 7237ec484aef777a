"""``eifbuild policy``: an AWS KMS key policy that pins an enclave's measurements."""

from __future__ import annotations

import argparse
import os
import sys

from eifbuild._progress import progress
from eifbuild.cli._common import info, output_path, write_output
from eifbuild.cli._registry import add_registry_arguments, local_eif
from eifbuild.policy import (
    ATTESTED_ACTIONS,
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
DESCRIPTION = """Print an AWS KMS key policy (JSON) that pins an enclave image's measurements: the
role ROLE may call the given KMS actions only with an attestation document from an enclave
whose PCRs match (condition keys kms:RecipientAttestation:PCR<n>, StringEqualsIgnoreCase).
A second statement gives the account root full control of the key, so it stays manageable.

INPUT is an EIF (measured by streaming) or the JSON that `eifbuild describe`, `measure`,
`assemble` or `build --json` print: {"Measurements": {"PCR0": "..", ...}} or the bare
{"PCR0": "..", ...} map.

Pinned by default: PCR0, PCR1, PCR2, and PCR8 when the image is signed. These print a
warning on stderr (the policy is still produced):
  - PCR8 pinned alone: any image signed with that certificate passes (CVE-2025-64186)
  - PCR1 or PCR2 left out: half of the image is not checked
  - an action that carries no attestation document (e.g. kms:Encrypt): the conditions
    deny it
  - the role's account differs from --account-id
  - the EIF's CRC does not match (a damaged or edited file; its PCRs are pinned anyway)

The policy comes from templates/kms-key-policy.json.j2. --template FILE renders your own
jinja2 template instead, with the variables account_id, partition, root_arn, role_arn,
actions (list), conditions ({condition key: PCR}) and pcrs ({"PCR0": ..}); write them with
|tojson. The result must be one JSON object without duplicate keys; it is printed with a
fixed 2-space layout, so the same inputs always give the same bytes."""

EPILOG = """examples:
  eifbuild policy app.eif --account-id 111122223333 \\
      --role-arn arn:aws:iam::111122223333:role/enclave-parent -o key-policy.json
  eifbuild describe app.eif > app.json     # keep the measurements, pin without the EIF
  eifbuild policy app.json --pcr 0,1,2 --actions kms:Decrypt,kms:GenerateDataKey \\
      --account-id 111122223333 --role-arn arn:aws:iam::111122223333:role/parent
  aws kms put-key-policy --key-id KEY --policy-name default --policy file://key-policy.json

exit codes:
  0  policy printed or written (warnings, if any, on stderr)
  1  error: unreadable input, a requested PCR it lacks (PCR8 of an unsigned image), a bad
     account id, ARN, PCR value or action, a template that fails or renders invalid JSON;
     nothing is written
  2  usage error (e.g. --account-id or --role-arn missing)

Add --debug before the command to see tracebacks."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG  # replaces the generic one with policy's examples and exit codes
    p.add_argument(
        "input", metavar="INPUT", help="EIF file, docker://… EIF artifact, or measurements JSON"
    )
    add_registry_arguments(p)
    p.add_argument(
        "--account-id", required=True, metavar="ID", help="12-digit AWS account that owns the key"
    )
    p.add_argument(
        "--role-arn",
        required=True,
        metavar="ROLE",
        help="IAM role of the parent instance: arn:aws:iam::ID:role/[PATH/]NAME "
        "(aws-cn, aws-us-gov partitions too)",
    )
    p.add_argument(
        "--pcr",
        metavar="LIST",
        help="PCRs to pin, from 0, 1, 2, 8 (e.g. 0,1,2 or PCR0,PCR8; default: 0,1,2 and 8 "
        "when signed)",
    )
    p.add_argument(
        "--actions",
        metavar="LIST",
        help="comma-separated KMS actions the role may call (default: kms:Decrypt)",
    )
    p.add_argument(
        "--template", metavar="FILE", help="render this jinja2 template instead of the default"
    )
    p.add_argument(
        "-o",
        "--output",
        type=output_path,
        metavar="FILE",
        help="write the policy to FILE (default: stdout)",
    )


def run(args: argparse.Namespace) -> int:
    account = check_account_id(args.account_id)
    role = check_role_arn(args.role_arn)
    requested = parse_pcr_list(args.pcr) if args.pcr is not None else None
    actions = parse_actions(args.actions)
    with local_eif(args.input, args) as source:
        size = os.stat(source).st_size if os.path.isfile(source) else None
        with progress(total=size, desc="Measuring") as bar:
            available = load_measurements(
                source, progress=bar.update, warn=lambda w: info(f"warning: {w}")
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
        write_output(args.output, text.encode("utf-8"))
        info(
            f"KMS key policy pinning {', '.join(f'PCR{i}' for i in pcrs)} written to {args.output}"
        )
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0
