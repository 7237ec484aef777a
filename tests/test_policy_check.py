"""`eifbuild policy check`, rolling upgrades (several images, --merge) and the other formats.

EIFs are written in the test with the EIF writer: the application ramdisk is a cpio archive
of a few files, so "a one-file change" is one file's content, and "a kernel change" is another
kernel. Which PCRs change is the EIF format's fact (PCR0 covers kernel, cmdline and all
ramdisks, PCR1 kernel, cmdline and the bootstrap ramdisk, PCR2 the application ramdisks).
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from eifbuild.cpio.writer import Member, newc_stream
from eifbuild.eif.metadata import encode_metadata
from eifbuild.eif.writer import write_eif
from tests.helpers.cli import run_main

ACCOUNT = "123456789012"
ROLE = "arn:aws:iam::123456789012:role/enclave-parent"
BASE = ["--account-id", ACCOUNT, "--role-arn", ROLE]
META = encode_metadata("img", "1", "1970-01-01T00:00:00+00:00", "eifbuild", "0", "OS", "k")


def app_ramdisk(files: dict[str, bytes]) -> bytes:
    members = [
        Member(name=n.encode(), ftype=stat.S_IFREG, perm=0o644, size=len(d), data=d)
        for n, d in sorted(files.items())
    ]
    return b"".join(newc_stream(members))


APP = {"app/main.py": b"print('v1')\n", "app/config.json": b"{}\n"}


def make_eif(path: Path, kernel: bytes = b"KERNEL-6.12", files: dict[str, bytes] = APP) -> str:
    write_eif(
        path,
        kernel=kernel,
        cmdline="console=ttyS0",
        metadata=META,
        ramdisks=[b"BOOTSTRAP-RAMDISK", app_ramdisk(files)],
    )
    return str(path)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return run_main(capsys, *argv)


@pytest.fixture
def images(tmp_path: Path) -> dict[str, str]:
    return {
        "a": make_eif(tmp_path / "a.eif"),
        "b": make_eif(tmp_path / "b.eif", files={**APP, "app/main.py": b"print('v2')\n"}),
        "kernel": make_eif(tmp_path / "k.eif", kernel=b"KERNEL-6.13"),
        "c": make_eif(tmp_path / "c.eif", files={**APP, "app/extra": b"x"}),
    }


def render(args: list[str], tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> str:
    out = tmp_path / name
    rc, _, err = run(["policy", *args, *BASE, "-o", str(out)], capsys)
    assert rc == 0, err
    return str(out)


def check(policy: str, eif: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc, out, _ = run(["policy", "check", policy, "--eif", eif, "--role-arn", ROLE], capsys)
    return rc, out


def test_check_matching_one_file_and_kernel_changes(
    images: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pol = render([images["a"]], tmp_path, "p.json", capsys)
    rc, out = check(pol, images["a"], capsys)
    assert rc == 0 and out.startswith("allowed by statement 'AllowEnclave"), out
    rc, out = check(pol, images["b"], capsys)  # one file of the application changed
    assert rc == 1 and out.startswith("denied\n")
    assert "PCR2 differs: policy pins" in out and "PCR1" not in out
    rc, out = check(pol, images["kernel"], capsys)
    assert rc == 1 and "PCR0 differs" in out and "PCR1 differs" in out and "PCR2" not in out
    # JSON form, and another role is denied with the reason
    rc, out, _ = run(["policy", "check", pol, "--eif", images["a"], "--json"], capsys)
    assert rc == 0 and json.loads(out)["allowed"] is True
    other = "arn:aws:iam::123456789012:role/other"
    rc, out, err = run(["policy", "check", pol, "--eif", images["a"], "--role-arn", other], capsys)
    assert rc == 1 and f"no statement allows kms:Decrypt to {other}" in out
    assert "account root" in err  # the root statement delegates to IAM: said, not counted


def test_check_measurements_json_and_actions(
    images: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pol = render([images["a"]], tmp_path, "p.json", capsys)
    rc, desc, _ = run(["describe", images["a"]], capsys)
    assert rc == 0
    m = tmp_path / "m.json"
    m.write_text(desc)
    rc, out, _ = run(["policy", "check", pol, "--measurements", str(m), "--role-arn", ROLE], capsys)
    assert rc == 0, out
    rc, out, _ = run(
        ["policy", "check", pol, "--measurements", str(m), "--role-arn", ROLE,
         "--action", "kms:Encrypt"], capsys
    )  # fmt: skip
    assert rc == 1 and "no statement allows kms:Encrypt" in out


def test_rolling_upgrade_two_images_and_merge(
    images: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    both = render([images["a"], images["b"]], tmp_path, "ab.json", capsys)
    doc = json.loads(Path(both).read_text())
    sids = [s["Sid"] for s in doc["Statement"]]
    assert sids[0] == "EnableRootAccountAdministration" and len(set(sids)) == 3
    for name in ("a", "b"):
        assert check(both, images[name], capsys)[0] == 0
    rc, out = check(both, images["c"], capsys)
    assert rc == 1 and out.count("PCR2 differs") == 2  # each image statement explains itself
    # Sids are derived from the image: the same image gives the same Sid again.
    again = render([images["b"], images["a"]], tmp_path, "ba.json", capsys)
    assert {s["Sid"] for s in json.loads(Path(again).read_text())["Statement"]} == set(sids)

    # --merge into a policy written by hand with foreign statements
    existing: dict[str, Any] = {
        "Version": "2012-10-17",
        "Id": "their-policy",
        "Statement": [
            {"Sid": "KeyAdmins", "Effect": "Allow",
             "Principal": {"AWS": "arn:aws:iam::123456789012:role/admins"},
             "Action": ["kms:Create*", "kms:Describe*"], "Resource": "*"},
            {"Effect": "Deny", "Principal": "*", "Action": "kms:ScheduleKeyDeletion",
             "Resource": "*", "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "false"}}},
        ],
    }  # fmt: skip
    cur = tmp_path / "cur.json"
    cur.write_text(json.dumps(existing))
    out_file = tmp_path / "merged.json"
    rc, _, err = run(
        ["policy", images["a"], *BASE, "--merge", str(cur), "-o", str(out_file)], capsys
    )
    assert rc == 0, err
    merged = json.loads(out_file.read_text())
    assert merged["Id"] == "their-policy"
    assert merged["Statement"][:2] == existing["Statement"]  # kept, in order, unchanged
    a_sid = merged["Statement"][2]["Sid"]
    assert len(merged["Statement"]) == 3 and a_sid in sids
    assert f"added statement {a_sid}" in err and "kept 2 other statements" in err
    # v2 joins v1 (rolling upgrade), then v1 is pruned; foreign statements never move.
    step = tmp_path / "step.json"
    rc, _, err = run(
        ["policy", images["a"], images["b"], *BASE, "--merge", str(out_file), "-o", str(step)],
        capsys,
    )
    assert rc == 0 and f"unchanged statement {a_sid}" in err and "added statement" in err
    assert check(str(step), images["a"], capsys)[0] == 0
    assert check(str(step), images["b"], capsys)[0] == 0
    final = tmp_path / "final.json"
    rc, _, err = run(
        ["policy", images["b"], *BASE, "--merge", str(step), "--prune", "-o", str(final)], capsys
    )
    assert rc == 0 and f"removed statement {a_sid}" in err
    doc = json.loads(final.read_text())
    assert doc["Statement"][:2] == existing["Statement"] and len(doc["Statement"]) == 3
    assert check(str(final), images["a"], capsys)[0] == 1
    assert check(str(final), images["b"], capsys)[0] == 0
    # --statement prints the image statements only
    rc, out, _ = run(["policy", images["a"], *BASE, "--statement"], capsys)
    assert rc == 0 and [s["Sid"] for s in json.loads(out)] == [a_sid]


def test_merge_refuses_bad_policies(
    images: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = {
        "not json": "not valid JSON",
        '{"Statement": [{"Effect": "Allow", "Effect": "Deny"}]}': "duplicate key 'Effect'",
        '{"Statement": [{"Effect": "Maybe", "Action": "x"}]}': 'Effect must be "Allow"',
        "[1]": "must be a JSON object",
    }
    out_file = tmp_path / "o.json"
    for text, message in cases.items():
        cur = tmp_path / "cur.json"
        cur.write_text(text)
        rc, _, err = run(
            ["policy", images["a"], *BASE, "--merge", str(cur), "-o", str(out_file)], capsys
        )
        assert rc == 1 and message in err and err.count("\n") == 1, (text, err)
        assert not out_file.exists()
    rc, _, err = run(["policy", images["a"], *BASE, "--prune"], capsys)
    assert rc == 2 and "--prune only applies with --merge" in err


def _json_conditions(policy: dict[str, Any]) -> list[tuple[str | None, str, str, list[str]]]:
    return [
        (st.get("Sid"), op, key, vals if isinstance(vals, list) else [vals])
        for st in policy["Statement"]
        for op, keys in st.get("Condition", {}).items()
        for key, vals in keys.items()
    ]


def _plain(value: Any) -> Any:
    """python-hcl2 (7.x) keeps string literals quoted and marks blocks: undo both."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return json.loads(value)
    return value


def test_terraform_output_parses_with_hcl2(
    images: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    hcl2 = pytest.importorskip("hcl2")  # python-hcl2, in the dev extra
    args = [images["a"], images["b"], *BASE]
    rc, js, _ = run(["policy", *args], capsys)
    assert rc == 0
    rc, tf, _ = run(["policy", *args, "--format", "terraform"], capsys)
    assert rc == 0
    parsed = _plain(hcl2.loads(tf))
    [data] = parsed["data"]
    doc = data["aws_iam_policy_document"]["enclave_key_policy"]
    policy = json.loads(js)
    got = []
    for st in doc["statement"]:
        for c in st.get("condition", []):
            got.append((st.get("sid"), c["test"], c["variable"], c["values"]))
    assert got == _json_conditions(policy)
    assert [st.get("sid") for st in doc["statement"]] == [s["Sid"] for s in policy["Statement"]]
    assert [st["actions"] for st in doc["statement"]] == [
        s["Action"] if isinstance(s["Action"], list) else [s["Action"]] for s in policy["Statement"]
    ]


def test_cloudformation_output_passes_cfn_lint(
    images: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("cfnlint")  # cfn-lint, in the dev extra
    args = [images["a"], *BASE]
    rc, js, _ = run(["policy", *args], capsys)
    assert rc == 0
    out = tmp_path / "key.template.json"
    rc, _, err = run(["policy", *args, "--format", "cloudformation", "-o", str(out)], capsys)
    assert rc == 0, err
    template = json.loads(out.read_text())
    key = template["Resources"]["EnclaveKey"]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["KeyPolicy"] == json.loads(js)  # same statements and conditions
    proc = subprocess.run([CFN_LINT, str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bad = tmp_path / "bad.template.json"
    template["Resources"]["EnclaveKey"]["Properties"]["KeyPolicyy"] = {}
    bad.write_text(json.dumps(template))
    proc = subprocess.run([CFN_LINT, str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0  # the linter really runs (and would catch a broken snippet)


CFN_LINT = str(Path(sys.executable).parent / "cfn-lint")  # console script of the dev extra


def test_format_usage_errors(images: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(["policy", images["a"], *BASE, "--format", "terraform", "--statement"], capsys)
    assert rc == 2 and "cannot be combined" in err


def test_reserved_words_keep_the_render_form(
    images: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A file literally called "lint" renders when written as ./lint; `policy lint` lints.
    lint_file = tmp_path / "lint"
    lint_file.write_bytes(Path(images["a"]).read_bytes())
    rc, out, err = run(["policy", str(lint_file), *BASE], capsys)
    assert rc == 0 and json.loads(out)["Version"] == "2012-10-17", err
    rc, _, err = run(["policy", "lint", "--help"], capsys)
    assert rc == 0
    rc, _, err = run(["--debug", "policy", "check", "x.json"], capsys)
    assert rc == 2 and "one of the arguments --eif --measurements --attestation" in err
