"""`eifbuild policy`: KMS key policies pinning PCRs, checked against policies built here.

The expected policy is assembled in the test from the KMS documentation of the Nitro
condition keys (``kms:RecipientAttestation:PCR<n>`` under ``StringEqualsIgnoreCase``, a
statement for the role, and the usual root-account statement), with PCR values computed by
hashlib from the EIF's inputs (docs/spec/eif.md §6).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from eifbuild.cli import main
from eifbuild.eif.metadata import encode_metadata
from eifbuild.eif.signature import encode_signature_section
from eifbuild.eif.writer import write_eif
from tests.helpers.cli import run_main
from tests.test_diff import extend, self_signed_pem

ACCOUNT = "123456789012"
ROLE = "arn:aws:iam::123456789012:role/enclave-parent"
META = encode_metadata("img", "1", "1970-01-01T00:00:00+00:00", "eifbuild", "0", "OS", "k")
ROOT = Path(__file__).resolve().parent.parent


def sid_for(pcrs: dict[int, str]) -> str:
    """The documented Sid rule: AllowEnclave + 16 hex of SHA-256 over "PCR0=..;PCR1=..;..."."""
    text = ";".join(f"PCR{i}={v.lower()}" for i, v in sorted(pcrs.items()))
    return "AllowEnclave" + hashlib.sha256(text.encode()).hexdigest()[:16]


def expected_policy(
    pcrs: dict[int, str],
    actions: list[str] | None = None,
    role: str = ROLE,
    root: str = f"arn:aws:iam::{ACCOUNT}:root",
) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Id": "eifbuild-enclave-key-policy",
        "Statement": [
            {
                "Sid": "EnableRootAccountAdministration",
                "Effect": "Allow",
                "Principal": {"AWS": root},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": sid_for(pcrs),
                "Effect": "Allow",
                "Principal": {"AWS": role},
                "Action": actions or ["kms:Decrypt"],
                "Resource": "*",
                "Condition": {
                    "StringEqualsIgnoreCase": {
                        f"kms:RecipientAttestation:PCR{i}": v for i, v in sorted(pcrs.items())
                    }
                },
            },
        ],
    }


@pytest.fixture
def unsigned(tmp_path: Path) -> tuple[str, dict[int, str]]:
    path = tmp_path / "u.eif"
    write_eif(
        path, kernel=b"KERNEL", cmdline="console=ttyS0", metadata=META, ramdisks=[b"R0", b"R1"]
    )
    pcrs = {
        0: extend(b"KERNELconsole=ttyS0R0R1"),
        1: extend(b"KERNELconsole=ttyS0R0"),
        2: extend(b"R1"),
    }
    return str(path), pcrs


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return run_main(capsys, "policy", *args)


BASE = ["--account-id", ACCOUNT, "--role-arn", ROLE]


def test_policy_from_unsigned_eif(
    unsigned: tuple[str, dict[int, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, pcrs = unsigned
    rc, out, err = run([path, *BASE], capsys)
    assert rc == 0 and err == ""
    assert json.loads(out) == expected_policy(pcrs)
    assert out.endswith("}\n") and '\n  "Statement": [\n' in out
    assert run([path, *BASE], capsys)[1] == out  # deterministic
    # A damaged CRC (header bytes 544..547) does not change the PCRs: warn, still pin them.
    data = bytearray(Path(path).read_bytes())
    data[545] ^= 0xFF
    Path(path).write_bytes(bytes(data))
    rc, out2, err = run([path, *BASE], capsys)
    assert rc == 0 and out2 == out and "CRC mismatch" in err and err.count("\n") == 1


def test_policy_from_signed_eif_pins_pcr8_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = self_signed_pem()
    path = tmp_path / "s.eif"
    write_eif(
        path, kernel=b"K", cmdline="c", metadata=META, ramdisks=[b"R0"],
        signer=lambda _p: encode_signature_section([(pem, b"\x84cose")]),
    )  # fmt: skip
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    pcrs = {0: extend(b"KcR0"), 1: extend(b"KcR0"), 2: extend(b""), 8: extend(der)}
    rc, out, err = run([str(path), *BASE], capsys)
    assert rc == 0 and err == ""
    assert json.loads(out) == expected_policy(pcrs)


def test_policy_from_measurements_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pcrs = {0: "A" * 96, 1: "b" * 96, 2: "c" * 96, 8: "d" * 96}
    doc = {
        "Measurements": {
            "HashAlgorithm": "Sha384 { ... }",
            **{f"PCR{i}": v for i, v in pcrs.items()},
        }
    }
    src = tmp_path / "m.json"
    src.write_text(json.dumps(doc))
    out_file = tmp_path / "policy.json"
    rc, out, err = run([str(src), *BASE, "--pcr", "PCR0,2,8,0", "-o", str(out_file)], capsys)
    assert rc == 0 and out == ""
    assert "PCR1 not pinned" in err and "PCR2" not in err.split("PCR1 not pinned")[1][:5]
    want = {0: "a" * 96, 2: "c" * 96, 8: "d" * 96}  # hex normalised to lowercase
    assert json.loads(out_file.read_text()) == expected_policy(want)
    assert list(tmp_path.glob(".policy.json*")) == []


def test_actions_and_partition(
    unsigned: tuple[str, dict[int, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, pcrs = unsigned
    role = "arn:aws-cn:iam::210987654321:role/path/to/r"
    args = [path, "--account-id", ACCOUNT, "--role-arn", role]
    rc, out, err = run([*args, "--actions", "kms:Decrypt,kms:GenerateDataKey,kms:Decrypt"], capsys)
    assert rc == 0
    assert json.loads(out) == expected_policy(
        pcrs, ["kms:Decrypt", "kms:GenerateDataKey"], role, f"arn:aws-cn:iam::{ACCOUNT}:root"
    )
    assert "role account 210987654321 differs from key account" in err
    rc, out, err = run([path, *BASE, "--actions", "kms:Encrypt"], capsys)
    assert rc == 0 and "kms:Encrypt carries no attestation document" in err


def test_weak_pins_warn(
    unsigned: tuple[str, dict[int, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = unsigned
    src = tmp_path / "m.json"
    src.write_text(
        json.dumps({"PCR0": "a" * 96, "PCR1": "b" * 96, "PCR2": "c" * 96, "PCR8": "d" * 96})
    )
    rc, out, err = run([str(src), *BASE, "--pcr", "8"], capsys)
    assert rc == 0 and "CVE-2025-64186" in err and "PCR1 and PCR2 not pinned" in err
    assert json.loads(out)["Statement"][1]["Condition"] == {
        "StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR8": "d" * 96}
    }
    rc, _, err = run([path, *BASE, "--pcr", "0,1"], capsys)
    assert rc == 0 and "PCR2 not pinned" in err and "CVE" not in err
    rc, _, err = run([path, *BASE, "--pcr", "0,1,2"], capsys)
    assert rc == 0 and err == ""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--account-id", "12345"], "account id '12345' is not 12 digits"),
        (["--role-arn", "arn:aws:iam::123456789012:user/bob"], "is not of the form"),
        (["--role-arn", 'arn:aws:iam::123456789012:role/a"b'], "is not of the form"),
        (["--role-arn", "arn:aws:iam::1234:role/r"], "is not of the form"),
        (["--pcr", "3"], "'3' is not one of 0, 1, 2, 8"),
        (["--pcr", "8"], "no value for PCR8 (the image is not signed)"),
        (["--actions", "kms:Decrypt,s3:GetObject"], "'s3:GetObject' is not a KMS action"),
    ],
)
def test_bad_arguments(
    unsigned: tuple[str, dict[int, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    path, _ = unsigned
    out_file = tmp_path / "p.json"
    rc, out, err = run([path, *BASE, *extra, "-o", str(out_file)], capsys)
    # A malformed option value is a usage error (2); a value the image cannot give fails (1).
    assert rc == (1 if "no value for" in message else 2) and out == ""
    assert err.startswith("eifbuild: error: ") and err.count("\n") == 1 and message in err
    assert not out_file.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "neither an EIF nor a measurements JSON document"),
        (b'{"Measurements": {"PCR0": "abc"}}', "PCR0 is not 96 hexadecimal characters"),
        (b'{"PCR0": 5}', "PCR0 is not 96 hexadecimal characters"),
        (b'{"other": 1}', "no Measurements with PCR0/PCR1/PCR2/PCR8 found"),
        (b"[1, 2]", "no Measurements"),
        (b"\xff\xfe", "neither an EIF nor"),
        (b"[" * 200_000, "neither an EIF nor"),
        (b".eif" + b"\0" * 100, "truncated"),
    ],
)
def test_bad_measurements(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    src = tmp_path / "in"
    src.write_bytes(content)
    rc, out, err = run([str(src), *BASE], capsys)
    assert rc == 1 and out == "" and err.count("\n") == 1 and message in err, err


def test_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run([str(tmp_path / "nope"), *BASE], capsys)
    assert rc == 1 and "nope: cannot" in err and "(No such file or directory)" in err
    rc, _, err = run([str(tmp_path), *BASE], capsys)
    assert rc == 1 and err.count("\n") == 1 and "not a regular file" in err
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # must not block waiting for a writer
    rc, _, err = run([str(fifo), *BASE], capsys)
    assert rc == 1 and "fifo: not a regular file" in err


def test_custom_templates(
    unsigned: tuple[str, dict[int, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, pcrs = unsigned
    good = tmp_path / "good.j2"
    good.write_text(
        '{"Statement": [{"Principal": {{ role_arn|tojson }}, "Condition": {{ conditions|tojson }},'
        ' "Root": {{ root_arn|tojson }}, "P": {{ pcrs|tojson }}, "A": {{ actions|tojson }}}]}'
    )
    rc, out, err = run([path, *BASE, "--template", str(good)], capsys)
    assert rc == 0, err
    stmt = json.loads(out)["Statement"][0]
    assert stmt["Condition"] == {f"kms:RecipientAttestation:PCR{i}": v for i, v in pcrs.items()}
    assert stmt["P"] == {f"PCR{i}": v for i, v in pcrs.items()}
    assert (stmt["Principal"], stmt["Root"], stmt["A"]) == (
        ROLE, f"arn:aws:iam::{ACCOUNT}:root", ["kms:Decrypt"]
    )  # fmt: skip
    out_file = tmp_path / "p.json"
    cases = {
        '{"a": {{ role_arn }}}': "rendered policy is not valid JSON",
        '{"a": 1, "a": 2}': "duplicate key 'a'",
        "[1]": "rendered policy is not a JSON object",
        "{{ nope }}": "template failed to render",
        "{% for %}": "invalid template",
        "x" * (1 << 20) + "x": "larger than 1048576 bytes",
    }
    for text, message in cases.items():
        bad = tmp_path / "bad.j2"
        bad.write_text(text)
        rc, out, err = run([path, *BASE, "--template", str(bad), "-o", str(out_file)], capsys)
        assert rc == 1 and out == "" and message in err and err.count("\n") == 1, (text, err)
        assert not out_file.exists()
    fifo = tmp_path / "t.fifo"
    os.mkfifo(fifo)
    rc, out, err = run([path, *BASE, "--template", str(fifo)], capsys)
    assert rc == 1 and "template " + str(fifo) + ": not a regular file" in err


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "x.eif", "--role-arn", ROLE]) == 2
    capsys.readouterr()


@pytest.mark.slow
def test_wheel_ships_templates(tmp_path: Path) -> None:
    """A wheel built from the tree carries templates/*.j2 as data files under share/."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "eifbuild", src / "eifbuild", ignore=shutil.ignore_patterns("__pycache__")
    )
    for data in ("templates", "kernels"):  # pyproject.toml data-files lists both
        shutil.copytree(ROOT / data, src / data)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "w"),
            str(src),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    [wheel] = (tmp_path / "w").glob("eifbuild-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "eifbuild/data/aws-nitro-enclaves-root-g1.pem" in names  # the pinned attestation root
    templates = ("kms-key-policy.json.j2", "kms-key-policy.tf.j2", "kms-key-policy.cfn.json.j2")
    for tpl in (*templates, "diff-report.html.j2"):
        shipped = [n for n in names if n.endswith(f".data/data/share/eifbuild/templates/{tpl}")]
        assert shipped, names
        assert zipfile.ZipFile(wheel).read(shipped[0]) == (ROOT / "templates" / tpl).read_bytes()
