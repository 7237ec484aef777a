"""Every vector of docs/spec/eif.md §14 as a golden test.

Expected bytes are assembled here from the spec's hex; nothing expected comes from the code
under test.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

import pytest

from eifbuild.cbor import cbor_head, cbor_text, cbor_uint_array
from eifbuild.cli import main
from eifbuild.eif.metadata import encode_metadata
from eifbuild.eif.reader import EifReader
from eifbuild.eif.signature import (
    decode_signature_section,
    encode_signature_section,
)
from eifbuild.eif.writer import write_eif
from eifbuild.errors import EifFormatError
from eifbuild.measure import PcrHasher, extend

V: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "eif_spec_vectors.json").read_text()
)
S: dict[str, Any] = V["synthetic_v4"]


def spec_file_bytes() -> bytes:
    """The docs/spec/eif.md §14.4 file, assembled from the spec's header table and section hex."""
    header = bytes.fromhex(S["header_0x000_0x01b"])
    header += bytes.fromhex(S["header_offsets_0_4"]).ljust(256, b"\0")
    header += bytes.fromhex(S["header_sizes_0_4"]).ljust(256, b"\0")
    header += bytes.fromhex(S["header_0x21c_0x223"])
    assert len(header) == 548
    return header + bytes.fromhex(S["sections_hex"])


def test_spec_file_is_self_consistent() -> None:
    data = spec_file_bytes()
    assert len(data) == S["file_size"]
    assert hashlib.sha256(data).hexdigest() == S["sha256"]
    assert zlib.crc32(data[:544] + data[548:]) == int(S["crc32"], 16)


def _write_synthetic(tmp_path: Path, style: str) -> Path:
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(S["kernel"].encode())
    rds: list[Any] = []
    for i, rd in enumerate(S["ramdisks"]):
        if style == "path":
            p = tmp_path / f"rd{i}"
            p.write_bytes(rd.encode())
            rds.append(p)
        elif style == "bytes":
            rds.append(rd.encode())
        else:  # streamed one byte at a time, size unknown up front
            rds.append(lambda rd=rd: (bytes([b]) for b in rd.encode()))
    meta = encode_metadata("bzImage", "1.0", S["build_time"], "eif_build", "0.3.1", "OS", "kernel")
    out = tmp_path / f"{style}.eif"
    result = write_eif(out, kernel=kernel, cmdline=S["cmdline"], metadata=meta, ramdisks=rds)
    assert result.size == S["file_size"]
    assert result.crc32 == int(S["crc32"], 16)
    assert [s.offset for s in result.sections] == S["offsets"]
    m = result.measurements
    assert (m.pcr0, m.pcr1, m.pcr2, m.pcr8) == (S["pcr0"], S["pcr1"], S["pcr2"], None)
    return out


@pytest.mark.parametrize("style", ["path", "bytes", "stream"])
def test_writer_reproduces_synthetic_eif(tmp_path: Path, style: str) -> None:
    out = _write_synthetic(tmp_path, style)
    assert out.read_bytes() == spec_file_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["bzImage", f"{style}.eif"] + (["rd0", "rd1"] if style == "path" else [])
    )


def test_metadata_bytes() -> None:
    meta = encode_metadata("bzImage", "1.0", S["build_time"], "eif_build", "0.3.1", "OS", "kernel")
    assert meta == S["metadata"].encode()
    assert len(meta) == 241


def test_reader_on_spec_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.eif"
    path.write_bytes(spec_file_bytes())
    with EifReader(path) as r:
        assert r.version == 4
        assert [s.offset for s in r.sections] == S["offsets"]
        assert [s.size for s in r.sections] == S["sizes"]
        assert [int(s.type) for s in r.sections] == S["types"]
        scan = r.scan()
        assert scan.crc_ok and scan.crc_stored == int(S["crc32"], 16)
        m = scan.measurements
        assert (m.pcr0, m.pcr1, m.pcr2, m.pcr8) == (S["pcr0"], S["pcr1"], S["pcr2"], None)
        assert r.metadata_bytes() == S["metadata"].encode()


def test_independent_pcrs_match_spec() -> None:
    def pcr(content: bytes) -> str:
        return hashlib.sha384(b"\0" * 48 + hashlib.sha384(content).digest()).hexdigest()

    k, c = S["kernel"].encode(), S["cmdline"].encode()
    r0, r1 = (x.encode() for x in S["ramdisks"])
    assert pcr(k + c + r0 + r1) == S["pcr0"]
    assert pcr(k + c + r0) == S["pcr1"]
    assert pcr(r1) == S["pcr2"]


def test_assemble_cli_is_byte_identical_to_eif_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bzImage").write_bytes(S["kernel"].encode())
    args = ["assemble", "--kernel", str(tmp_path / "bzImage"), "--cmdline", S["cmdline"]]
    for i, rd in enumerate(S["ramdisks"]):
        (tmp_path / f"rd{i}").write_bytes(rd.encode())
        args += ["--ramdisk", str(tmp_path / f"rd{i}")]
    out = tmp_path / "out.eif"
    args += ["--build-time", S["build_time"], "--build-tool", "eif_build"]
    args += ["--build-tool-version", "0.3.1", "--output", str(out)]
    assert main(args) == 0
    assert out.read_bytes() == spec_file_bytes()
    printed = capsys.readouterr()
    assert json.loads(printed.out) == {
        "Measurements": {
            "HashAlgorithm": "Sha384 { ... }",
            "PCR0": S["pcr0"],
            "PCR1": S["pcr1"],
            "PCR2": S["pcr2"],
        }
    }
    assert printed.out.startswith('{\n  "Measurements": {\n    "HashAlgorithm"')
    assert "Output file:" in printed.err


def test_describe_cli_on_spec_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "spec.eif"
    path.write_bytes(spec_file_bytes())
    assert main(["describe", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == [
        "EifVersion",
        "Measurements",
        "IsSigned",
        "CheckCRC",
        "ImageName",
        "ImageVersion",
        "Metadata",
    ]
    assert doc["EifVersion"] == 4 and doc["IsSigned"] is False and doc["CheckCRC"] is True
    assert doc["Measurements"]["PCR0"] == S["pcr0"]
    assert doc["Metadata"] == {
        "BuildTime": S["build_time"],
        "BuildTool": "eif_build",
        "BuildToolVersion": "0.3.1",
        "OperatingSystem": "OS",
        "KernelVersion": "kernel",
        "DockerInfo": None,
    }


# ----------------------------------------------- docs/spec/eif.md §14.1 CBOR and COSE


def test_cbor_pcr_info_vector() -> None:
    payload = (
        b"\xa2"
        + cbor_text("register_index")
        + cbor_head(0, 0)
        + cbor_text("register_value")
        + cbor_uint_array(bytes(range(48)))
    )
    assert payload.hex() == V["cbor_pcr_info_0_to_47"]


def test_cbor_signature_list_vector() -> None:
    cert = V["cbor_signature_list"]["certificate"].encode()
    sig = bytes.fromhex(V["cbor_signature_list"]["signature_hex"])
    encoded = bytes.fromhex(V["cbor_signature_list"]["encoded"])
    assert encode_signature_section([(cert, sig)]) == encoded
    assert decode_signature_section(encoded) == [(cert, sig)]
    with pytest.raises(EifFormatError, match="trailing bytes"):
        decode_signature_section(encoded + b"\x00")


def test_cose_protected_headers() -> None:
    # {1: alg}; alg is a negative integer (major type 1, argument -1 - alg)
    for alg_name, alg in (("ES256", -7), ("ES384", -35), ("ES512", -36)):
        encoded = b"\xa1" + cbor_head(0, 1) + cbor_head(1, -1 - alg)
        assert encoded.hex() == V["cose_protected"][alg_name]


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    return (
        cbor_head(4, 4)
        + cbor_text("Signature1")
        + cbor_head(2, len(protected))
        + protected
        + cbor_head(2, 0)
        + cbor_head(2, len(payload))
        + payload
    )


def test_cose_sig_structure_vectors() -> None:
    text = V["cose_sig_structure_text"].encode()
    assert len(text) == 117
    empty = bytes.fromhex(V["cose_sig_structure_empty_prefix"]) + text
    assert _sig_structure(b"", text) == empty
    es256 = bytes.fromhex(V["cose_sig_structure_es256_prefix"]) + text
    assert _sig_structure(bytes.fromhex(V["cose_protected"]["ES256"]), text) == es256


def test_signing_payload_for_synthetic_pcr0(tmp_path: Path) -> None:
    seen: list[bytes] = []

    def capture(pcr0_raw: bytes) -> bytes:
        seen.append(pcr0_raw)
        raise EifFormatError("stop after capturing PCR0")

    kernel, meta = S["kernel"].encode(), S["metadata"].encode()
    rds = [x.encode() for x in S["ramdisks"]]
    with pytest.raises(EifFormatError):
        write_eif(tmp_path / "x.eif", kernel=kernel, cmdline=S["cmdline"], metadata=meta,
                  ramdisks=rds, signer=capture)  # fmt: skip
    assert not list(tmp_path.iterdir())  # nothing written on failure
    assert seen[0].hex() == S["pcr0"]
    payload = (
        b"\xa2" + cbor_text("register_index") + cbor_head(0, 0)
        + cbor_text("register_value") + cbor_uint_array(seen[0])
    )  # fmt: skip
    assert payload.hex() == S["signing_payload"] and len(payload) == 128
    sig_structure = _sig_structure(bytes.fromhex(V["cose_protected"]["ES384"]), payload)
    assert sig_structure.startswith(bytes.fromhex(S["sig_structure_prefix"]))
    assert hashlib.sha384(sig_structure).hexdigest() == S["sig_structure_sha384"]


# ----------------------------------------------- docs/spec/eif.md §14.3 hashes


def test_empty_content_pcr() -> None:
    assert hashlib.sha384(b"").hexdigest() == V["sha384_empty"]
    assert PcrHasher().hexdigest() == V["pcr_empty"]
    assert extend(bytes.fromhex(V["sha384_empty"])).hex() == V["pcr_empty"]
