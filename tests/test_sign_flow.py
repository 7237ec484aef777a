"""Signing EIFs end to end through the CLI, every signature checked by tests/sigref.py.

Covers: in-process signing (assemble-style write_eif + make_signer), `sign` on unsigned and
signed EIFs (header sizes stay right), the detached flow measure -> sign-payload ->
attach-signature, refusals that must leave no output file, and `describe`'s signature fields.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from eifbuild.cli._signing import add_signing_arguments, make_signer
from eifbuild.eif.metadata import encode_metadata
from eifbuild.eif.writer import write_eif
from eifbuild.errors import SigningError, UsageError
from tests import sigref
from tests.helpers.cli import run_main

KERNEL = os.urandom(3000) + b"KERNEL"
RD0, RD1 = b"RAMDISK0" * 500, b"RAMDISK1" * 700


def make_eif(path: Path, signer: object = None, arch: str = "x86_64") -> Path:
    meta = encode_metadata("app", "1.0", "2024-01-01T00:00:00+00:00", "t", "1", "Linux", "6.6")
    write_eif(
        path,
        kernel=KERNEL,
        cmdline="console=ttyS0",
        metadata=meta,
        ramdisks=[RD0, RD1],
        arch=arch,
        signer=signer,  # type: ignore[arg-type]
    )
    return path


def signer_args(cert: Path, key: str, *extra: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_signing_arguments(p)
    return p.parse_args(["--signing-certificate", str(cert), "--private-key", key, *extra])


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return run_main(capsys, *argv)


def expected_pcrs() -> dict[str, str]:
    p0 = sigref.pcr(KERNEL + b"console=ttyS0" + RD0 + RD1).hex()
    p1 = sigref.pcr(KERNEL + b"console=ttyS0" + RD0).hex()
    p2 = sigref.pcr(RD1).hex()
    return {"PCR0": p0, "PCR1": p1, "PCR2": p2}


def test_in_process_signing_matches_spec(tmp_path: Path) -> None:
    key, cert = sigref.make_cert(tmp_path)
    signer = make_signer(signer_args(cert, str(key)))
    assert signer is not None
    eif = make_eif(tmp_path / "s.eif", signer)
    ref = sigref.verify_eif(eif, cert.read_bytes())
    assert {
        "PCR0": ref.pcr0.hex(),
        "PCR1": ref.pcr1.hex(),
        "PCR2": ref.pcr2.hex(),
    } == expected_pcrs()
    unsigned = sigref.read_eif(make_eif(tmp_path / "u.eif"))
    assert unsigned.pcr0 == ref.pcr0 and unsigned.pcr1 == ref.pcr1 and unsigned.pcr2 == ref.pcr2


def test_make_signer_usage_and_preflight(tmp_path: Path) -> None:
    key, _ = sigref.make_cert(tmp_path)
    p = argparse.ArgumentParser()
    add_signing_arguments(p)
    assert make_signer(p.parse_args([])) is None
    with pytest.raises(UsageError, match="together"):
        make_signer(p.parse_args(["--private-key", str(key)]))
    _, other = sigref.make_cert(tmp_path, name="other")
    with pytest.raises(SigningError, match="does not match the private key"):
        make_signer(signer_args(other, str(key)))


def test_sign_command_unsigned_then_resign(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eif = make_eif(tmp_path / "a.eif", arch="aarch64")
    key, cert = sigref.make_cert(tmp_path)
    rc, out, _ = run_cli(
        capsys, "sign", str(eif), "--signing-certificate", str(cert), "--private-key", str(key)
    )
    assert rc == 0
    ref = sigref.verify_eif(eif, cert.read_bytes())
    assert ref.flags == 1  # architecture kept
    m = json.loads(out)["Measurements"]
    assert {k: m[k] for k in ("PCR0", "PCR1", "PCR2")} == expected_pcrs()
    assert m["PCR8"] == sigref.pcr8(cert.read_bytes()).hex()
    # re-sign with another P-256 key: the signature section is replaced, sizes stay right
    key2, cert2 = sigref.make_cert(tmp_path, ec.SECP256R1(), name="two")
    out_path = tmp_path / "b.eif"
    rc, out, _ = run_cli(
        capsys,
        "sign",
        str(eif),
        "-o",
        str(out_path),
        "--signing-certificate",
        str(cert2),
        "--private-key",
        str(key2),
    )
    assert rc == 0
    ref2 = sigref.verify_eif(out_path, cert2.read_bytes())
    assert ref2.sizes_ok and len(ref2.sections) == 6
    assert json.loads(out)["Measurements"]["PCR8"] == sigref.pcr8(cert2.read_bytes()).hex()
    sigref.verify_eif(eif, cert.read_bytes())  # the input is untouched with -o


def test_sign_refusals_leave_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    eif = make_eif(tmp_path / "a.eif")
    before = eif.read_bytes()
    key, cert = sigref.make_cert(
        tmp_path, not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC), days=10
    )
    out = tmp_path / "o.eif"
    rc, _, err = run_cli(
        capsys,
        "sign",
        str(eif),
        "-o",
        str(out),
        "--signing-certificate",
        str(cert),
        "--private-key",
        str(key),
    )
    assert rc == 1 and "expired" in err and "Traceback" not in err
    assert not out.exists() and eif.read_bytes() == before
    rc, _, err = run_cli(
        capsys,
        "sign",
        str(eif),
        "--signing-certificate",
        str(cert),
        "--private-key",
        str(tmp_path / "nokey"),
    )
    assert rc == 1 and "no such file" in err and eif.read_bytes() == before
    # --allow-expired signs anyway; verify then fails on the window unless allowed too
    rc, _, _ = run_cli(
        capsys,
        "sign",
        str(eif),
        "-o",
        str(out),
        "--allow-expired",
        "--signing-certificate",
        str(cert),
        "--private-key",
        str(key),
    )
    assert rc == 0
    sigref.verify_eif(out, cert.read_bytes())
    assert run_cli(capsys, "verify", str(out))[0] == 1
    assert run_cli(capsys, "verify", str(out), "--allow-expired")[0] == 0
    assert sorted(os.listdir(tmp_path)) == sorted(["a.eif", "o.eif", "signer.key", "signer.pem"])


def test_detached_flow_equals_in_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, cert = sigref.make_cert(tmp_path)
    eif = make_eif(tmp_path / "d.eif")
    payload, sig = tmp_path / "p.cbor", tmp_path / "s.cose"
    rc, out, _ = run_cli(capsys, "measure", str(eif), "--payload", str(payload))
    assert rc == 0
    pcr0 = bytes.fromhex(json.loads(out)["Measurements"]["PCR0"])
    assert payload.read_bytes() == sigref.pcr_info(pcr0)
    rc, out, _ = run_cli(
        capsys,
        "sign-payload",
        str(payload),
        "--private-key",
        str(key),
        "-o",
        str(sig),
        "--pcr0",
        pcr0.hex(),
        "--signing-certificate",
        str(cert),
    )
    assert rc == 0
    sigref.verify_cose(cert.read_bytes(), sig.read_bytes(), pcr0)
    rc, out, _ = run_cli(
        capsys,
        "attach-signature",
        str(eif),
        "--signature",
        str(sig),
        "--signing-certificate",
        str(cert),
    )
    assert rc == 0
    detached = sigref.verify_eif(eif, cert.read_bytes())
    inproc = sigref.verify_eif(
        make_eif(tmp_path / "i.eif", make_signer(signer_args(cert, str(key))))
    )
    assert (
        [t for t, _ in detached.sections] == [t for t, _ in inproc.sections] == [1, 2, 5, 3, 3, 4]
    )
    assert detached.sections[:5] == inproc.sections[:5]
    ((c1, s1),) = sigref.parse_section(detached.data(4)[0])
    ((c2, s2),) = sigref.parse_section(inproc.data(4)[0])
    assert c1 == c2
    d1, d2 = cbor2.loads(s1), cbor2.loads(s2)
    assert d1[:3] == d2[:3] and len(d1[3]) == len(d2[3]) == 96
    for path in (eif, tmp_path / "i.eif"):
        rc, out, _ = run_cli(capsys, "verify", str(path), "--certificate", str(cert), "--json")
        assert rc == 0 and json.loads(out)["Valid"] is True
    assert (
        run_cli(capsys, "describe", str(eif))[1]
        and json.loads(capsys.readouterr().out or "{}") == {}
    )


def test_detached_flow_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, cert = sigref.make_cert(tmp_path)
    eif = make_eif(tmp_path / "d.eif")
    other = tmp_path / "other.eif"
    meta = encode_metadata("x", "1", "t", "t", "1", "Linux", "6")
    write_eif(other, kernel=b"K2", cmdline="c", metadata=meta, ramdisks=[b"R"])
    payload, sig = tmp_path / "p.cbor", tmp_path / "s.cose"
    assert run_cli(capsys, "measure", str(other), "--payload", str(payload))[0] == 0
    _, cert_b = sigref.make_cert(tmp_path, name="b")
    bad = tmp_path / "bad.cbor"
    bad.write_bytes(cbor2.dumps({"register_index": 0}))
    # sign-payload refusals: (payload, extra options, what the one-line error names)
    for signed, extra, named in (
        (payload, ["--pcr0", hashlib.sha384(b"x").hexdigest()], "signs PCR0"),  # another image
        (payload, ["--signing-certificate", str(cert_b)], "does not match"),  # another key's cert
        (bad, [], "PcrInfo"),  # a payload that is not a PcrInfo
    ):
        rc, _, err = run_cli(
            capsys, "sign-payload", str(signed), "--private-key", str(key), "-o", str(sig), *extra
        )
        assert rc == 1 and named in err and not sig.exists(), (extra, err)
    # a signature over another EIF's PCR0
    assert (
        run_cli(capsys, "sign-payload", str(payload), "--private-key", str(key), "-o", str(sig))[0]
        == 0
    )
    before = eif.read_bytes()
    rc, _, err = run_cli(
        capsys,
        "attach-signature",
        str(eif),
        "--signature",
        str(sig),
        "--signing-certificate",
        str(cert),
    )
    assert rc == 1 and "signs another PCR0" in err and eif.read_bytes() == before
    assert f"sign the payload `eifbuild measure {eif}` writes" in err
    # the right payload, but the certificate of another key
    assert run_cli(capsys, "measure", str(eif), "--payload", str(payload))[0] == 0
    assert (
        run_cli(capsys, "sign-payload", str(payload), "--private-key", str(key), "-o", str(sig))[0]
        == 0
    )
    rc, _, err = run_cli(
        capsys,
        "attach-signature",
        str(eif),
        "--signature",
        str(sig),
        "--signing-certificate",
        str(cert_b),
    )
    assert rc == 1 and "does not verify" in err and eif.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_describe_shows_signature(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, cert = sigref.make_cert(tmp_path)
    eif = make_eif(tmp_path / "s.eif", make_signer(signer_args(cert, str(key))))
    rc, out, _ = run_cli(capsys, "describe", str(eif))
    assert rc == 0
    doc = json.loads(out)
    assert doc["IsSigned"] is True and doc["SignatureCheck"] is True and doc["CheckCRC"] is True
    assert doc["SigningCertificate"]["IssuerName"]["commonName"] == "aws.nitro-enclaves"
    assert doc["SigningCertificate"]["Algorithm"] == "ecdsa-with-SHA384"
    assert doc["Measurements"]["PCR8"] == sigref.pcr8(cert.read_bytes()).hex()


def test_assemble_signed_and_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "k").write_bytes(KERNEL)
    (tmp_path / "r0").write_bytes(RD0)
    (tmp_path / "r1").write_bytes(RD1)
    key, cert = sigref.make_cert(tmp_path)
    common = ["assemble", "--kernel", str(tmp_path / "k"), "--cmdline", "console=ttyS0"]
    common += ["--ramdisk", str(tmp_path / "r0"), "--ramdisk", str(tmp_path / "r1")]
    out = tmp_path / "a.eif"
    rc, stdout, err = run_cli(
        capsys,
        *common,
        "--output",
        str(out),
        "--signing-certificate",
        str(cert),
        "--private-key",
        str(key),
    )
    assert rc == 0, err
    ref = sigref.verify_eif(out, cert.read_bytes())
    m = json.loads(stdout)["Measurements"]
    assert m["PCR0"] == ref.pcr0.hex() == expected_pcrs()["PCR0"]
    assert m["PCR8"] == sigref.pcr8(cert.read_bytes()).hex()
    (tmp_path / "m.json").write_text(stdout)
    assert run_cli(capsys, "verify", str(out), "--expect", str(tmp_path / "m.json"))[0] == 0
    # an expired certificate, a wrong key, or half the options: exit 1/2 and no file
    old_key, old_cert = sigref.make_cert(
        tmp_path, name="old", not_before=dt.datetime(2019, 1, 1, tzinfo=dt.UTC), days=1
    )
    bad = tmp_path / "b.eif"
    for extra, code in (
        (["--signing-certificate", str(old_cert), "--private-key", str(old_key)], 1),
        (["--signing-certificate", str(cert), "--private-key", str(old_key)], 1),
        (["--signing-certificate", str(cert)], 2),
    ):
        rc, _, err = run_cli(capsys, *common, "--output", str(bad), *extra)
        assert rc == code and "Traceback" not in err, err
        assert not bad.exists()
