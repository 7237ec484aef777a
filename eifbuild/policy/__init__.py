"""KMS key policies for enclaves: render, lint, check, merge, other formats.

* :mod:`eifbuild.policy.render` — measurements in, a pinned key policy out (JSON, Terraform,
  CloudFormation), one statement per image, ``--merge`` into an existing policy;
* :mod:`eifbuild.policy.document` — any key policy read into typed statements;
* :mod:`eifbuild.policy.conditions` — IAM condition operators;
* :mod:`eifbuild.policy.lint` — findings about a policy;
* :mod:`eifbuild.policy.check` — would this request be allowed, and if not, why.

Every function takes plain values and returns frozen dataclasses; warnings are data.
"""

from __future__ import annotations

from eifbuild.errors import PolicyError
from eifbuild.policy.check import Decision, attestation_context, check
from eifbuild.policy.document import PolicyDocument, Statement, load_policy, parse_policy
from eifbuild.policy.lint import Finding, LintReport, lint
from eifbuild.policy.render import (
    ATTESTED_ACTIONS,
    DIFF_TEMPLATE,
    FORMATS,
    POLICY_TEMPLATE,
    ImageStatement,
    Measured,
    MergeResult,
    PolicyResult,
    build_policy,
    check_account_id,
    check_role_arn,
    environment,
    image_sid,
    load_measurements,
    merge_statements,
    parse_actions,
    parse_pcr_list,
    pcr_warnings,
    render_format,
    render_policy,
    select_pcrs,
    templates_dir,
)

__all__ = [
    "ATTESTED_ACTIONS",
    "DIFF_TEMPLATE",
    "FORMATS",
    "POLICY_TEMPLATE",
    "Decision",
    "Finding",
    "ImageStatement",
    "LintReport",
    "Measured",
    "MergeResult",
    "PolicyDocument",
    "PolicyError",
    "PolicyResult",
    "Statement",
    "attestation_context",
    "build_policy",
    "check",
    "check_account_id",
    "check_role_arn",
    "environment",
    "image_sid",
    "lint",
    "load_measurements",
    "load_policy",
    "merge_statements",
    "parse_actions",
    "parse_pcr_list",
    "parse_policy",
    "pcr_warnings",
    "render_format",
    "render_policy",
    "select_pcrs",
    "templates_dir",
]
