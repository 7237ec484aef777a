"""assemble / describe / pcr / extract end to end through ``eifbuild.cli.main``."""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eifbuild.cbor import cbor_head, cbor_text, cbor_uint_array
from eifbuild.cli.describe import describe
from eifbuild.eif.metadata import encode_metadata
from eifbuild.eif.reader import EifReader
from eifbuild.eif.signature import (
    decode_signature_section,
    encode_signature_section,
)
from eifbuild.eif.writer import write_eif
from eifbuild.errors import EifbuildError
from tests.helpers.cli import run_main
from tests.test_measure import der_of_first_pem, make_cert, ref_pcr

META = encode_metadata("img", "1.0", "1970-01-01T00:00:00+00:00", "eifbuild", "0", "OS", "kernel")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return run_main(capsys, *argv)


def inputs(tmp: Path) -> list[str]:
    (tmp / "bzImage").write_bytes(b"KERNEL" * 1000)
    (tmp / "rd0").write_bytes(b"boot" * 500)
    (tmp / "rd1").write_bytes(b"app" * 700)
    return ["--kernel", str(tmp / "bzImage"), "--cmdline", "console=ttyS0",
            "--ramdisk", str(tmp / "rd0"), "--ramdisk", str(tmp / "rd1")]  # fmt: skip


def describe_doc(capsys: pytest.CaptureFixture[str], path: Path) -> dict[str, Any]:
    rc, out, err = run(capsys, "describe", str(path))
    assert rc == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def test_assemble_options_and_describe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    custom = tmp_path / "custom.json"
    custom.write_text('{"zeta": {"b": 1, "a": 2}, "Alpha": "x"}')
    cfg = tmp_path / "bzImage.config"
    cfg.write_text("#\n# x\n# Linux/x86 6.6.38 Kernel Configuration\n")
    out = tmp_path / "o.eif"
    rc, stdout, _ = run(capsys, "assemble", *inputs(tmp_path), "--output", str(out), "--name", "app",
                        "--version", "2.0", "--metadata", str(custom), "--kernel-config", str(cfg),
                        "--img-kernel", "custom-kernel", "--arch", "aarch64")  # fmt: skip
    assert rc == 0
    assert out.read_bytes()[6:8] == b"\x00\x01"  # aarch64 flag
    built = json.loads(stdout)["Measurements"]
    doc = describe_doc(capsys, out)
    assert doc["Measurements"] == built
    assert (doc["ImageName"], doc["ImageVersion"]) == ("app", "2.0")  # eif_build would say "app"
    assert doc["Metadata"] == {
        "BuildTime": "2023-11-14T22:13:20+00:00",
        "BuildTool": "eifbuild",
        "BuildToolVersion": __import__("eifbuild").__version__,
        "OperatingSystem": "Linux",
        "KernelVersion": "custom-kernel",
        "DockerInfo": None,
        "Alpha": "x",
        "zeta": {"a": 2, "b": 1},
    }
    assert list(doc["Metadata"]["zeta"]) == ["a", "b"]
    kernel, rd0, rd1 = (tmp_path / n for n in ("bzImage", "rd0", "rd1"))
    k, c, r0, r1 = kernel.read_bytes(), b"console=ttyS0", rd0.read_bytes(), rd1.read_bytes()
    assert built["PCR0"] == ref_pcr(k + c + r0 + r1)
    assert built["PCR1"] == ref_pcr(k + c + r0)
    assert built["PCR2"] == ref_pcr(r1)


def test_describe_keeps_build_fields_over_clashing_custom_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    custom = tmp_path / "custom.json"
    custom.write_text('{"BuildTime": "spoofed", "DockerInfo": 1, "extra": true}')
    out = tmp_path / "o.eif"
    args = ["--output", str(out), "--metadata", str(custom), "--build-time", "2024-01-01T00:00:00Z"]
    assert run(capsys, "assemble", *inputs(tmp_path), *args)[0] == 0
    rc, stdout, err = run(capsys, "describe", str(out))
    assert rc == 0
    meta = json.loads(stdout)["Metadata"]
    assert (meta["BuildTime"], meta["DockerInfo"], meta["extra"]) == (
        "2024-01-01T00:00:00Z",
        None,
        True,
    )
    assert list(meta)[-1] == "extra"
    assert "'BuildTime' clashes" in err and "'DockerInfo' clashes" in err


def test_assemble_defaults_are_deterministic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    a, b = tmp_path / "a.eif", tmp_path / "b.eif"
    assert run(capsys, "assemble", *inputs(tmp_path), "--output", str(a))[0] == 0
    assert run(capsys, "assemble", *inputs(tmp_path), "-o", str(b))[0] == 0
    assert a.read_bytes() == b.read_bytes()
    doc = describe_doc(capsys, a)
    assert doc["Metadata"]["BuildTime"] == "1970-01-01T00:00:00+00:00"
    assert (doc["ImageName"], doc["ImageVersion"]) == ("bzImage", "1.0")


@pytest.mark.parametrize(
    ("extra", "code", "fragment"),
    [
        (["--build-time", "yesterday"], 2, "not an RFC 3339"),
        (["--metadata", "/nonexistent.json"], 1, "metadata file /nonexistent.json: cannot read"),
        (
            ["--kernel-config", "/nonexistent.config"],
            1,
            "kernel config /nonexistent.config: cannot read",
        ),
        (["--ramdisk", "/nonexistent-rd"], 1, "/nonexistent-rd: cannot read"),
        (["--arch", "mips"], 2, "invalid choice"),
    ],
)
def test_assemble_errors_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], code: int, fragment: str
) -> None:
    out = tmp_path / "o.eif"
    rc, stdout, err = run(capsys, "assemble", *inputs(tmp_path), "--output", str(out), *extra)
    assert rc == code and fragment in err and "Traceback" not in err and stdout == ""
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "eifbuild-tmp" in p.name]


def test_assemble_help_documents_eif_build_differences(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "assemble", "--help")
    assert rc == 0
    text = " ".join(out.split())  # line breaks in the description do not matter
    assert "--build-tool eif_build --build-tool-version 0.3.1" in text
    for difference in (
        "--version sets ImageVersion",  # eif_build bug 1 (docs/spec/eif.md §10.3)
        "eif_build: --kernel_config",  # bug 2 and the flag's spelling
        "never the clock",  # BuildTime default
        "must be RFC 3339",
        "--metadata must hold a JSON object",
        "NUL byte is an error",
        "No --algo",
        "bare map, on stdout",  # output format
    ):
        assert difference in text, difference
    assert "exit codes" in out


def _cose_sign1(key: ec.EllipticCurvePrivateKey, pcr0_raw: bytes) -> bytes:
    """COSE_Sign1 (untagged, ES384) over PcrInfo{0, pcr0}, built from docs/spec/eif.md §7.2-§7.4."""
    payload = (b"\xa2" + cbor_text("register_index") + cbor_head(0, 0)
               + cbor_text("register_value") + cbor_uint_array(pcr0_raw))  # fmt: skip
    protected = bytes.fromhex("a1013822")
    tbs = (cbor_head(4, 4) + cbor_text("Signature1") + cbor_head(2, 4) + protected
           + cbor_head(2, 0) + cbor_head(2, len(payload)) + payload)  # fmt: skip
    r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA384())))
    sig = r.to_bytes(48, "big") + s.to_bytes(48, "big")
    return (b"\x84" + cbor_head(2, 4) + protected + b"\xa0" + cbor_head(2, len(payload)) + payload
            + cbor_head(2, 96) + sig)  # fmt: skip


def _signed_eif(tmp_path: Path, tamper: bool = False) -> tuple[Path, bytes]:
    pem, key = make_cert()

    def signer(pcr0_raw: bytes) -> bytes:
        cose = _cose_sign1(key, pcr0_raw)
        if tamper:
            cose = cose[:-1] + bytes([cose[-1] ^ 1])
        return encode_signature_section([(pem, cose)])

    out = tmp_path / "signed.eif"
    write_eif(out, kernel=b"k", cmdline="c", metadata=META, ramdisks=[b"r0", b"r1"], signer=signer)
    return out, pem


def test_describe_signed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, pem = _signed_eif(tmp_path)
    doc = describe_doc(capsys, path)
    assert doc["IsSigned"] is True
    assert doc["Measurements"]["PCR8"] == ref_pcr(der_of_first_pem(pem))
    assert list(doc["Measurements"])[-1] == "PCR8"
    assert list(doc) == ["EifVersion", "Measurements", "IsSigned", "SigningCertificate",
                         "CheckCRC", "SignatureCheck", "ImageName", "ImageVersion",
                         "Metadata"]  # fmt: skip
    assert doc["SignatureCheck"] is True and doc["CheckCRC"] is True


def test_describe_bad_signature_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = _signed_eif(tmp_path, tamper=True)
    rc, out, err = run(capsys, "describe", str(path))
    assert rc == 1 and out == "" and err.startswith("eifbuild: error:") and err.count("\n") == 1


def test_describe_sections(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = _signed_eif(tmp_path)
    rc, out, _ = run(capsys, "describe", "--sections", str(path))
    assert rc == 0
    table = json.loads(out)["Sections"]
    assert [(s["Index"], s["Type"]) for s in table] == list(
        enumerate(["kernel", "cmdline", "metadata", "ramdisk", "ramdisk", "signature"])
    )
    data = path.read_bytes()
    for s in table:
        assert struct.unpack_from(">HHQ", data, s["Offset"])[2] == s["Size"]


def test_pcr_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"hello")
    for argv in (["pcr", str(f)], ["pcr", "--input", str(f)]):
        rc, out, _ = run(capsys, *argv)
        assert rc == 0 and out == '{\n  "PCR": "' + ref_pcr(b"hello") + '"\n}\n'
    pem, _ = make_cert()
    (tmp_path / "c.pem").write_bytes(pem)
    rc, out, _ = run(capsys, "pcr", "--signing-certificate", str(tmp_path / "c.pem"))
    assert rc == 0 and json.loads(out) == {"PCR8": ref_pcr(der_of_first_pem(pem))}
    rc, out, err = run(capsys, "pcr", str(tmp_path / "missing"))
    assert rc == 1 and out == "" and err.count("\n") == 1 and "cannot read" in err
    rc, _, err = run(capsys, "pcr", "/dev/zero")  # would never end
    assert rc == 1 and "/dev/zero: not a regular file" in err
    assert run(capsys, "pcr", "--signing-certificate", str(f))[0] == 1
    assert run(capsys, "pcr")[0] == 2
    assert run(capsys, "pcr", str(f), "--input", str(f))[0] == 2


def test_extract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, pem = _signed_eif(tmp_path)
    dest = tmp_path / "out" / "sub"
    rc, out, _ = run(capsys, "extract", str(path), str(dest))
    assert rc == 0
    files = {p.name: p.read_bytes() for p in dest.iterdir()}
    assert sorted(files) == [
        "cmdline",
        "kernel",
        "metadata.json",
        "ramdisk-0",
        "ramdisk-1",
        "signature",
    ]
    assert (files["kernel"], files["cmdline"], files["ramdisk-0"], files["ramdisk-1"]) == (
        b"k", b"c", b"r0", b"r1")  # fmt: skip
    assert files["metadata.json"] == META
    assert decode_signature_section(files["signature"])[0][0] == pem
    assert len(json.loads(out)["Files"]) == 6
    (dest / "kernel").write_bytes(b"mine")
    rc, _, err = run(capsys, "extract", str(path), str(dest))
    assert rc == 1 and "already exists" in err and (dest / "kernel").read_bytes() == b"mine"
    assert run(capsys, "extract", "--force", str(path), str(dest))[0] == 0
    assert (dest / "kernel").read_bytes() == b"k"
    assert run(capsys, "extract", str(path), str(path))[0] == 1  # DIR is a file


def test_extract_refuses_bad_eif_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.eif"
    bad.write_bytes(b".eif" + b"\0" * 600)
    rc, _, err = run(capsys, "extract", str(bad), str(tmp_path / "d"))
    assert rc == 1 and "unsupported EIF version 0" in err
    assert not (tmp_path / "d").exists()


def test_assemble_with_signing_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pem, key = make_cert()
    (tmp_path / "cert.pem").write_bytes(pem)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    (tmp_path / "key.pem").write_bytes(key_pem)
    out = tmp_path / "s.eif"
    rc, stdout, err = run(capsys, "assemble", *inputs(tmp_path), "--output", str(out),
                          "--signing-certificate", str(tmp_path / "cert.pem"),
                          "--private-key", str(tmp_path / "key.pem"))  # fmt: skip
    if rc == 1 and "not available" in err:
        pytest.skip("signing stage (eifbuild.cli._signing.make_signer) not in this checkout")
    assert rc == 0, err
    assert json.loads(stdout)["Measurements"]["PCR8"] == ref_pcr(der_of_first_pem(pem))
    doc = describe_doc(capsys, out)
    assert doc["IsSigned"] is True and doc["Measurements"]["PCR8"] == ref_pcr(der_of_first_pem(pem))


@pytest.mark.parametrize("where", ["missing/dir/o.eif", "."])
def test_assemble_unwritable_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    rc, out, err = run(capsys, "assemble", *inputs(tmp_path), "--output", str(tmp_path / where))
    assert rc == 1 and out == "" and "cannot write EIF" in err and err.count("\n") == 1
    assert not [p for p in tmp_path.rglob("*") if "eifbuild-tmp" in p.name]


_FUZZ_PEM, _FUZZ_KEY = make_cert()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4)
)
def test_describe_with_corrupted_cose_fails_cleanly(edits: list[tuple[int, int]]) -> None:
    def signer(pcr0_raw: bytes) -> bytes:
        cose = bytearray(_cose_sign1(_FUZZ_KEY, pcr0_raw))
        for pos, value in edits:
            cose[pos % len(cose)] = value
        return encode_signature_section([(_FUZZ_PEM, bytes(cose))])

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.eif"
        write_eif(path, kernel=b"k", cmdline="c", metadata=META, ramdisks=[b"r"], signer=signer)
        try:
            with EifReader(path) as reader:
                doc = describe(reader)
            assert doc["IsSigned"] is True
        except EifbuildError as exc:
            assert "\n" not in str(exc)
