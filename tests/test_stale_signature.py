"""EIFs re-signed by ``nitro-cli sign-eif``: the header keeps the old signature's size.

The file is synthesized here the way docs/spec/eif.md §7.5 describes nitro-cli's re-sign
(signature section replaced in place, ``section_sizes`` entry untouched, CRC recomputed
sequentially), with the new signature made by cbor2 + cryptography, not by eifbuild.
describe/verify/measure accept it with a warning naming the stale entry (as AWS's sequential
reader does), and ``sign`` writes a corrected header.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from eifbuild.cli import main
from tests import sigref

KERNEL, CMDLINE, RD0, RD1 = b"K" * 5000, "console=ttyS0", b"R0" * 3000, b"R1" * 2000


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def ref_es256_cose(key_path: Path, pcr0: bytes) -> bytes:
    """COSE_Sign1 (ES256, untagged) over PcrInfo{0, pcr0}, written from docs/spec/eif.md §7.2-§7.4."""
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    protected = bytes.fromhex("a10126")
    payload = sigref.pcr_info(pcr0)
    tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA256())))
    return cbor2.dumps([protected, {}, payload, r.to_bytes(32, "big") + s.to_bytes(32, "big")])


def nitro_resign(path: Path, cert: Path, key: Path) -> int:
    """Replace the last (signature) section in place like nitro-cli; return the stale size."""
    raw = path.read_bytes()
    nsec = struct.unpack_from(">H", raw, 26)[0]
    off = struct.unpack_from(">Q", raw, 28 + 8 * (nsec - 1))[0]
    stale: int = struct.unpack_from(">Q", raw, 284 + 8 * (nsec - 1))[0]
    assert struct.unpack_from(">HHQ", raw, off) == (4, 0, stale)
    ref = sigref.read_eif(path)
    section = sigref.section(cert.read_bytes(), ref_es256_cose(key, ref.pcr0))
    assert len(section) != stale
    new = bytearray(raw[:off] + struct.pack(">HHQ", 4, 0, len(section)) + section)
    new[544:548] = struct.pack(">I", zlib.crc32(bytes(new[:544] + new[548:])))
    path.write_bytes(bytes(new))
    return stale


@pytest.fixture()
def resigned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path, int]:
    (tmp_path / "bzImage").write_bytes(KERNEL)
    (tmp_path / "rd0").write_bytes(RD0)
    (tmp_path / "rd1").write_bytes(RD1)
    key1, cert1 = sigref.make_cert(tmp_path, name="first")
    eif = tmp_path / "app.eif"
    rc, _, _ = run(capsys, "assemble", "--kernel", str(tmp_path / "bzImage"),
                   "--cmdline", CMDLINE, "--ramdisk", str(tmp_path / "rd0"),
                   "--ramdisk", str(tmp_path / "rd1"), "--output", str(eif),
                   "--signing-certificate", str(cert1), "--private-key", str(key1))  # fmt: skip
    assert rc == 0
    key2, cert2 = sigref.make_cert(tmp_path, ec.SECP256R1(), name="second")
    stale = nitro_resign(eif, cert2, key2)
    ref = sigref.read_eif(eif)
    assert ref.crc_ok and not ref.sizes_ok  # a consistent file except for the stale entry
    sigref.verify_cose(*sigref.parse_section(ref.data(4)[0])[0], ref.pcr0)
    return eif, cert2, stale


def test_describe_accepts_with_warning(
    resigned: tuple[Path, Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    eif, cert2, stale = resigned
    rc, out, err = run(capsys, "describe", "--sections", str(eif))
    assert rc == 0, err
    assert f"stale EIF header entry section_sizes[5] = {stale}" in err
    assert err.startswith("eifbuild: warning: ") and err.count("\n") == 1
    doc = json.loads(out)
    assert doc["CheckCRC"] is True and doc["SignatureCheck"] is True
    assert doc["Measurements"]["PCR8"] == sigref.pcr8(cert2.read_bytes()).hex()
    assert doc["Sections"][5]["Size"] == eif.stat().st_size - doc["Sections"][5]["Offset"] - 12


def test_verify_passes_with_warning(
    resigned: tuple[Path, Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    eif, cert2, _ = resigned
    rc, out, _ = run(capsys, "verify", str(eif), "--certificate", str(cert2))
    assert rc == 0
    assert "warn  " in out and "section_sizes[5]" in out and "result: VALID" in out
    rc, out, _ = run(capsys, "verify", "--json", str(eif))
    doc = json.loads(out)
    assert rc == 0 and doc["Valid"] is True
    assert len(doc["Warnings"]) == 1 and "section_sizes[5]" in doc["Warnings"][0]


def test_measure_and_extract_warn(
    resigned: tuple[Path, Path, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eif, _, _ = resigned
    rc, out, err = run(capsys, "measure", str(eif))
    assert rc == 0 and "section_sizes[5]" in err
    assert json.loads(out)["Measurements"]["PCR0"] == sigref.read_eif(eif).pcr0.hex()
    rc, _, err = run(capsys, "extract", str(eif), str(tmp_path / "x"))
    assert rc == 0 and "section_sizes[5]" in err
    cose = cbor2.loads((tmp_path / "x" / "signature").read_bytes())
    assert cose[0]["signature"]  # the whole (new) signature section was extracted


def test_sign_writes_corrected_header(
    resigned: tuple[Path, Path, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eif, _, _ = resigned
    key3, cert3 = sigref.make_cert(tmp_path, name="third")
    out = tmp_path / "fixed.eif"
    rc, _, err = run(capsys, "sign", str(eif), "-o", str(out),
                     "--signing-certificate", str(cert3), "--private-key", str(key3))  # fmt: skip
    assert rc == 0 and "section_sizes[5]" in err
    ref = sigref.verify_eif(out, cert3.read_bytes())  # sizes_ok: the header is right again
    assert ref.pcr0 == sigref.read_eif(eif).pcr0
    rc, _, err = run(capsys, "describe", str(out))
    assert rc == 0 and err == ""


def test_only_a_final_signature_reaching_eof_is_tolerated(
    resigned: tuple[Path, Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    eif, _, _ = resigned
    raw = eif.read_bytes()
    eif.write_bytes(raw + b"\0")  # the signature's own size no longer ends at EOF
    rc, out, err = run(capsys, "describe", str(eif))
    assert rc == 1 and out == "" and "disagrees with" in err and err.count("\n") == 1
    # a stale size on a ramdisk entry is never tolerated
    bad = bytearray(raw)
    struct.pack_into(">Q", bad, 284 + 8 * 4, struct.unpack_from(">Q", raw, 284 + 8 * 4)[0] + 1)
    eif.write_bytes(bytes(bad))
    rc, out, err = run(capsys, "verify", str(eif))
    assert rc == 1 and "section 4 (ramdisk)" in err and "Traceback" not in err
