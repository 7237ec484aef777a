"""``eifbuild policy``: an AWS KMS key policy that pins enclave measurements.

``eifbuild policy lint`` and ``eifbuild policy check`` are separate modules (policy_lint,
policy_check); ``eifbuild.cli.main`` routes the reserved first words ``lint`` and ``check``.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

from eifbuild.cli._bars import progress
from eifbuild.cli._common import info, output_path, warn, write_output
from eifbuild.cli._registry import add_registry_arguments, local_eif
from eifbuild.policy import FORMATS, Measured, build_policy, load_measurements
from eifbuild.policy.render import parse_actions, parse_pcr_list

HELP = "render, lint or check AWS KMS key policies that pin enclave PCRs"
DESCRIPTION = """Print an AWS KMS key policy (JSON) that pins enclave images' measurements: the
role ROLE may call the given KMS actions only with an attestation document from an enclave
whose PCRs match (condition keys kms:RecipientAttestation:PCR<n>, StringEqualsIgnoreCase).
A first statement gives the account root full control of the key, so it stays manageable.

  eifbuild policy INPUT... [options]          render (this page)
  eifbuild policy lint POLICY.json [--json]   findings about any key policy
  eifbuild policy check POLICY.json (--eif X | --measurements M.json | --attestation DOC)
                                              would KMS allow it, and if not, why

(`lint` and `check` are reserved first words: render a file of that name as ./lint.)

Each INPUT is an EIF (measured by streaming) or the JSON that `eifbuild describe`, `measure`,
`assemble` or `build --json` print: {"Measurements": {"PCR0": "..", ...}} or the bare
{"PCR0": "..", ...} map. Several inputs give one statement each (a rolling upgrade: both the
old and the new image may decrypt), so PCR0 of one image never pairs with PCR2 of another.
Each statement's Sid is AllowEnclave + 16 hex digits of a SHA-256 over its pinned values,
so rendering the same image again gives the same Sid.

--merge EXISTING.json adds or replaces these statements (by Sid) in an existing key policy;
every other statement stays as it was, in its place; what changed is printed on stderr.
--prune also removes statements an earlier render added for images no longer listed.
--statement prints only the image statements (a JSON array) to paste elsewhere.
--format terraform prints an aws_iam_policy_document data source, --format cloudformation
a template with an AWS::KMS::Key whose KeyPolicy is this policy (templates/kms-key-policy.*).

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
actions (list), statements (one per input: sid, source, conditions, pcrs), and the first
input's conditions ({condition key: PCR}) and pcrs ({"PCR0": ..}); write them with
|tojson. The result must be one JSON object without duplicate keys; it is printed with a
fixed 2-space layout, so the same inputs always give the same bytes."""

EPILOG = """examples:
  eifbuild policy app.eif --account-id 111122223333 \\
      --role-arn arn:aws:iam::111122223333:role/enclave-parent -o key-policy.json
  eifbuild describe app.eif > app.json     # keep the measurements, pin without the EIF
  eifbuild policy app.json --pcr 0,1,2 --actions kms:Decrypt,kms:GenerateDataKey \\
      --account-id 111122223333 --role-arn arn:aws:iam::111122223333:role/parent
  aws kms put-key-policy --key-id KEY --policy-name default --policy file://key-policy.json
  # rolling upgrade: allow v1 and v2 while the fleet moves, then v2 only
  aws kms get-key-policy --key-id KEY --policy-name default --query Policy --output text > cur.json
  eifbuild policy v1.eif v2.eif --account-id 111122223333 --role-arn ROLE --merge cur.json -o new.json
  eifbuild policy v2.eif --account-id 111122223333 --role-arn ROLE --merge new.json --prune -o final.json
  eifbuild policy app.eif --account-id 111122223333 --role-arn ROLE --format terraform > key_policy.tf

exit codes:
  0  policy printed or written (warnings, if any, on stderr)
  1  error: unreadable input, a requested PCR it lacks (PCR8 of an unsigned image), a bad
     account id, ARN, PCR value or action, a template that fails or renders invalid JSON,
     a --merge policy that is not a valid key policy; nothing is written
  2  usage error (e.g. --account-id or --role-arn missing)

Add --debug before the command to see tracebacks."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG  # replaces the generic one with policy's examples and exit codes
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="EIF files, docker://… EIF artifacts, or measurements JSON documents",
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
        "--format",
        choices=FORMATS,
        default="json",
        help="json (default), terraform (aws_iam_policy_document) or cloudformation "
        "(AWS::KMS::Key KeyPolicy)",
    )
    p.add_argument(
        "--merge",
        metavar="EXISTING.json",
        help="add or replace the image statements (by Sid) in this key policy",
    )
    p.add_argument(
        "--prune",
        action="store_true",
        help="with --merge: remove statements of earlier renders for images not listed now",
    )
    p.add_argument(
        "--statement", action="store_true", help="print only the image statements (JSON array)"
    )
    p.add_argument(
        "-o",
        "--output",
        type=output_path,
        metavar="FILE",
        help="write the policy to FILE (default: stdout)",
    )


def run(args: argparse.Namespace) -> int:
    requested = parse_pcr_list(args.pcr) if args.pcr is not None else None
    actions = parse_actions(args.actions)
    measured: list[Measured] = []
    for arg in args.inputs:
        with local_eif(arg, args) as path:
            size = os.stat(path).st_size if os.path.isfile(path) else None
            with progress(total=size, desc="Measuring") as bar:
                m = load_measurements(path, progress=bar.update)
        measured.append(replace(m, source=arg) if path != arg else m)
    result = build_policy(
        measured,
        account_id=args.account_id,
        role_arn=args.role_arn,
        pcrs=requested,
        actions=actions,
        template=args.template,
        fmt=args.format,
        merge=args.merge,
        prune=args.prune,
        statements_only=args.statement,
    )
    for w in result.warnings:
        warn(w)
    for c in result.changes:
        info(f"{args.merge}: {c}")
    if args.output:
        write_output(args.output, result.text.encode("utf-8"))
        pins = sorted({i for img in result.images for i in img.pcrs})
        what = (
            "KMS key policy"
            if len(result.images) == 1
            else (f"KMS key policy for {len(result.images)} images")
        )
        info(f"{what} pinning {', '.join(f'PCR{i}' for i in pins)} written to {args.output}")
    else:
        sys.stdout.write(result.text)
        sys.stdout.flush()
    return 0
