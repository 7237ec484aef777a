"""`eifbuild verify`: tampering, expectations, pinning, JSON; EIFs made by the real writer."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from eifbuild.cli._signing import make_signer
from eifbuild.errors import UsageError, VerificationError
from eifbuild.verify import load_expectations, parse_pcr_arg, verify_eif
from tests import sigref
from tests.helpers.cli import run_main
from tests.test_sign_flow import expected_pcrs, make_eif, signer_args


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return run_main(capsys, *argv)


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = sigref.make_cert(tmp_path)
    eif = make_eif(tmp_path / "s.eif", make_signer(signer_args(cert, str(key))))
    sigref.verify_eif(eif, cert.read_bytes())
    return eif, cert


def section_data_offsets(path: Path) -> dict[int, list[int]]:
    raw = path.read_bytes()
    out: dict[int, list[int]] = {}
    pos = 548
    while pos < len(raw):
        stype, _, size = struct.unpack(">HHQ", raw[pos : pos + 12])
        out.setdefault(stype, []).append(pos + 12)
        pos += 12 + size
    return out


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


def test_valid_signed_eif(signed: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    eif, cert = signed
    rc, out, err = run_cli(capsys, "verify", str(eif), "--certificate", str(cert))
    assert rc == 0, err
    assert "result: VALID" in out and "FAIL" not in out
    for name in ("structure", "crc", "signature", "certificate", "pinned cert"):
        assert f"ok    {name}" in out


@pytest.mark.parametrize(
    "target, expect_fail",
    [
        ("kernel", ["crc", "signature"]),
        ("ramdisk", ["crc", "signature"]),
        ("signature", ["crc", "signature"]),
    ],
)
def test_tampering_is_named(
    signed: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    target: str,
    expect_fail: list[str],
) -> None:
    eif, _ = signed
    offs = section_data_offsets(eif)
    if target == "kernel":
        flip(eif, offs[1][0] + 100)
    elif target == "ramdisk":
        flip(eif, offs[3][1] + 5)
    else:  # the file's last byte is the value of s's last byte (uint `xx` or `18 xx`); bit 0
        flip(
            eif, eif.stat().st_size - 1
        )  # keeps it on the same side of 24, so the CBOR stays valid
    rc, out, err = run_cli(capsys, "verify", str(eif), "--json")
    assert rc == 1
    doc = json.loads(out)
    failed = [c["Name"] for c in doc["Checks"] if not c["Ok"]]
    assert failed == expect_fail, doc
    assert doc["Valid"] is False
    assert "verification failed: crc:" in err and "signature:" in err
    sig = next(c for c in doc["Checks"] if c["Name"] == "signature")
    if target == "signature":
        assert "does not verify" in sig["Detail"]
    else:
        assert "signs another PCR0" in sig["Detail"]


@pytest.mark.parametrize("where", [0.1, 0.4, 0.6, 0.95])
def test_tampered_certificate(
    signed: tuple[Path, Path], capsys: pytest.CaptureFixture[str], where: float
) -> None:
    """One changed base64 character anywhere in the certificate never passes. With the
    certificate pinned, a check other than the CRC always names it; unpinned, a change that
    keeps the DER parseable with the same key (e.g. in the issuer name of a self-signed
    certificate) is only caught by the CRC and by PCR8, which is inherent: the COSE
    signature covers PCR0, not the certificate."""
    eif, cert = signed
    raw = bytearray(eif.read_bytes())
    pem = cert.read_bytes()
    body = [i for i, c in enumerate(pem) if chr(c).isalnum()][30:-30]  # skip BEGIN/END lines
    idx = body[int(where * len(body))]
    pos = section_data_offsets(eif)[4][0] + 1 + 1 + 20 + 3  # array, map, text key, array head
    for _ in range(idx):
        pos += 2 if raw[pos] == 0x18 else 1
    assert raw[pos] == 0x18 and raw[pos + 1] == pem[idx]
    raw[pos + 1] = ord("A") if pem[idx] != ord("A") else ord("B")
    eif.write_bytes(bytes(raw))
    rc, out, err = run_cli(capsys, "verify", str(eif), "--json")
    assert rc == 1 and "Traceback" not in err
    failed = {c["Name"]: c["Detail"] for c in json.loads(out)["Checks"] if not c["Ok"]}
    assert "crc" in failed
    rc, out, err = run_cli(capsys, "verify", str(eif), "--json", "--certificate", str(cert))
    assert rc == 1
    failed = {c["Name"]: c["Detail"] for c in json.loads(out)["Checks"] if not c["Ok"]}
    others = {k: v for k, v in failed.items() if k != "crc"}
    assert any("certificate" in k + v for k, v in others.items()), failed


def test_expectations_and_pcr_args(
    signed: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eif, _cert = signed
    rc, out, _ = run_cli(capsys, "describe", str(eif))
    meas = tmp_path / "m.json"
    meas.write_text(json.dumps({"Measurements": json.loads(out)["Measurements"]}))
    pcrs = expected_pcrs()
    rc, out, _ = run_cli(
        capsys, "verify", str(eif), "--expect", str(meas), "--pcr", f"2={pcrs['PCR2']}"
    )
    assert rc == 0, out
    assert "ok    PCR8" in out and "ok    PCR2" in out
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"HashAlgorithm": "Sha384 { ... }", "PCR0": pcrs["PCR0"].upper()}))
    assert run_cli(capsys, "verify", str(eif), "--expect", str(bare))[0] == 0
    wrong = "ab" * 48
    rc, out, err = run_cli(capsys, "verify", str(eif), "--pcr", f"PCR1={wrong}", "--json")
    assert rc == 1
    bad = [c for c in json.loads(out)["Checks"] if not c["Ok"]]
    assert (
        [c["Name"] for c in bad] == ["PCR1"]
        and wrong in bad[0]["Detail"]
        and pcrs["PCR1"] in bad[0]["Detail"]
    )
    assert "PCR1: expected" in err
    rc, _, err = run_cli(capsys, "verify", str(eif), "--pcr", "4=" + wrong)
    assert rc == 1 and "cannot be measured" in err
    # the wrong pinned certificate
    _, other = sigref.make_cert(tmp_path, name="o")
    rc, _, err = run_cli(capsys, "verify", str(eif), "--certificate", str(other))
    assert rc == 1 and "pinned cert: EIF is signed by another certificate" in err


def test_unsigned_eif(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    eif = make_eif(tmp_path / "u.eif")
    rc, out, _ = run_cli(capsys, "verify", str(eif))
    assert rc == 0 and "signature" not in out
    _, cert = sigref.make_cert(tmp_path)
    for extra in (
        ["--require-signature"],
        ["--certificate", str(cert)],
        ["--pcr", "8=" + "00" * 48],
    ):
        rc, _, err = run_cli(capsys, "verify", str(eif), *extra)
        assert rc == 1 and "EIF is not signed" in err
    rc, _, err = run_cli(capsys, "verify", str(eif), "--pcr", "8=" + "00" * 48)
    assert "PCR8: expected " + "00" * 48 + ", but the EIF is not signed" in err


def test_structure_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    eif = make_eif(tmp_path / "u.eif")
    raw = bytearray(eif.read_bytes())
    raw[284 + 8 * 3 + 7] ^= 1  # sizes[3]: header disagrees with the ramdisk's section header
    eif.write_bytes(bytes(raw))
    rc, out, err = run_cli(capsys, "verify", str(eif), "--json")
    assert rc == 1 and json.loads(out)["Checks"][0]["Name"] == "structure"
    assert "disagrees" in err and "Traceback" not in err
    garbage = tmp_path / "g.eif"
    garbage.write_bytes(b"hello")
    report = verify_eif(garbage)
    assert not report.ok and report.checks[0].name == "structure"


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        parse_pcr_arg("x=00")
    with pytest.raises(UsageError):
        parse_pcr_arg("0=abc")
    assert parse_pcr_arg("PCR3=" + "AB" * 48) == (3, "ab" * 48)
    p = tmp_path / "e.json"
    # A bad file is bad input (exit 1, like a bad --metadata file), not a usage error.
    for text in ("[]", "{}", '{"PCR0": 5}', "nope"):
        p.write_text(text)
        with pytest.raises(VerificationError) as info:
            load_expectations(p)
        assert info.value.exit_code == 1


def test_describe_fails_on_bad_signature(
    signed: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """As nitro-cli describe-eif: a signature that does not verify is an error, not false."""
    import zlib

    eif, _ = signed
    data = bytearray(eif.read_bytes())
    data[-1] ^= 0x01  # the last byte of s (bit 0 keeps the CBOR uint form valid)
    data[544:548] = zlib.crc32(bytes(data[:544] + data[548:])).to_bytes(4, "big")
    eif.write_bytes(bytes(data))
    rc, _out, err = run_cli(capsys, "describe", str(eif))
    assert rc == 1 and "does not verify" in err and "Traceback" not in err


def replace_signature_section(path: Path, section: bytes) -> None:
    """Swap the last (signature) section for ``section``, fixing header size and CRC (docs/spec/eif.md §2)."""
    import zlib

    raw = path.read_bytes()
    nsec = struct.unpack_from(">H", raw, 26)[0]
    off = struct.unpack_from(">Q", raw, 28 + 8 * (nsec - 1))[0]
    new = bytearray(raw[:off] + struct.pack(">HHQ", 4, 0, len(section)) + section)
    struct.pack_into(">Q", new, 284 + 8 * (nsec - 1), len(section))
    new[544:548] = struct.pack(">I", zlib.crc32(bytes(new[:544] + new[548:])))
    path.write_bytes(bytes(new))


def test_expect_accepts_assemble_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The JSON `assemble` prints is a MEASUREMENTS file; one wrong PCR in it fails verify."""
    key, cert = sigref.make_cert(tmp_path)
    for name, data in (("k", b"KERNEL" * 100), ("r0", b"R0" * 50), ("r1", b"R1" * 70)):
        (tmp_path / name).write_bytes(data)
    eif = tmp_path / "a.eif"
    rc, out, _ = run_cli(capsys, "assemble", "--kernel", str(tmp_path / "k"), "--cmdline", "x",
                         "--ramdisk", str(tmp_path / "r0"), "--ramdisk", str(tmp_path / "r1"),
                         "--output", str(eif), "--signing-certificate", str(cert),
                         "--private-key", str(key))  # fmt: skip
    assert rc == 0
    printed = json.loads(out)
    assert printed["Measurements"]["PCR8"] == sigref.pcr8(cert.read_bytes()).hex()
    (tmp_path / "m.json").write_text(out)
    rc, out, _ = run_cli(capsys, "verify", str(eif), "--expect", str(tmp_path / "m.json"))
    assert rc == 0
    assert all(f"ok    PCR{i}" in out for i in (0, 1, 2, 8))
    printed["Measurements"]["PCR2"] = sigref.pcr(b"other").hex()
    (tmp_path / "m.json").write_text(json.dumps(printed))
    rc, out, err = run_cli(capsys, "verify", str(eif), "--expect", str(tmp_path / "m.json"))
    assert rc == 1 and "FAIL  PCR2" in out and "PCR2: expected" in err


def test_crc_field_alone(signed: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    eif, _ = signed
    flip(eif, 547)  # only the stored CRC changes: every other check still holds
    rc, out, err = run_cli(capsys, "verify", str(eif), "--json")
    doc = json.loads(out)
    assert rc == 1 and [c["Name"] for c in doc["Checks"] if not c["Ok"]] == ["crc"]
    assert "verification failed: crc: stored" in err


def test_two_signature_entries_fail(
    signed: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import cbor2

    eif, cert = signed
    ((pem, cose),) = sigref.parse_section(sigref.read_eif(eif).data(4)[0])
    entry = {"signing_certificate": list(pem), "signature": list(cose)}
    replace_signature_section(eif, cbor2.dumps([entry, entry]))
    rc, out, err = run_cli(capsys, "verify", str(eif), "--json", "--certificate", str(cert))
    doc = json.loads(out)
    assert rc == 1 and "2 signature entries" in err
    assert [c["Name"] for c in doc["Checks"] if not c["Ok"]] == ["signature"]


def test_describe_signature_check_false_for_another_pcr0(
    signed: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """As describe-eif (docs/spec/eif.md §8.1): a valid signature over another PCR0 is SignatureCheck
    false (not an error); the changed kernel byte also breaks the CRC."""
    eif, cert = signed
    flip(eif, section_data_offsets(eif)[1][0] + 7)
    rc, out, err = run_cli(capsys, "describe", str(eif))
    doc = json.loads(out)
    assert rc == 0 and doc["SignatureCheck"] is False and doc["CheckCRC"] is False
    assert doc["Measurements"]["PCR8"] == sigref.pcr8(cert.read_bytes()).hex()
    assert "CRC mismatch" in err
