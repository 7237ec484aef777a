"""The reader on malformed and hostile files: one-line errors, exit 1, no traceback."""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eifbuild.cli import main
from eifbuild.cli.describe import describe
from eifbuild.eif.metadata import encode_metadata
from eifbuild.eif.reader import EifReader
from eifbuild.errors import EifbuildError, EifFormatError

META = encode_metadata("img", "1.0", "1970-01-01T00:00:00+00:00", "eifbuild", "0", "OS", "kernel")


def pack_eif(
    sections: list[tuple[int, bytes]], version: int = 4, flags: int = 0, num: int | None = None
) -> bytes:
    """Independent packer (docs/spec/eif.md §1-§3): header, then contiguous sections, CRC over both."""
    offsets, sizes, body, pos = [], [], b"", 548
    for stype, data in sections:
        offsets.append(pos)
        sizes.append(len(data))
        body += struct.pack(">HHQ", stype, 0, len(data)) + data
        pos += 12 + len(data)
    pad = [0] * (32 - len(sections))
    head = struct.pack(">4sHHQQHH", b".eif", version, flags, 1 << 30, 2, 0,
                       len(sections) if num is None else num)  # fmt: skip
    head += struct.pack(">32Q", *offsets, *pad) + struct.pack(">32Q", *sizes, *pad) + b"\0" * 4
    return head + struct.pack(">I", zlib.crc32(head + body)) + body


def good(extra: list[tuple[int, bytes]] | None = None) -> bytes:
    return pack_eif(
        [(1, b"KERNEL"), (2, b"console=ttyS0"), (5, META), (3, b"RD0"), (3, b"RD1")] + (extra or [])
    )


def set_u16(data: bytes, off: int, v: int) -> bytes:
    return data[:off] + struct.pack(">H", v) + data[off + 2 :]


def set_u64(data: bytes, off: int, v: int) -> bytes:
    return data[:off] + struct.pack(">Q", v) + data[off + 8 :]


G = good()


def _gap() -> bytes:
    """A pad byte before the last section, with its offset pointing past the pad."""
    data = pack_eif([(1, b"K"), (2, b"c"), (5, META), (3, b"R")])
    last = len(data) - 13
    data = data[:last] + b"\0" + data[last:]
    return set_u64(data, 28 + 8 * 3, last + 1)


SEC3 = 548 + (12 + 6) + (12 + 13) + (12 + len(META))  # offset of ramdisk 0's section header

CASES = {
    "empty": (b"", "truncated"),
    "short": (G[:100], "truncated"),
    "header only": (G[:548], "outside the file"),
    "bad magic": (b"EIF." + G[4:], "bad magic"),
    "not eif": (b"hello world", "bad magic"),
    "version 5": (set_u16(G, 4, 5), "unsupported EIF version 5"),
    "version 2": (set_u16(G, 4, 2), "unsupported EIF version 2"),
    "little endian": (set_u16(G, 4, 0x0400), "little-endian EIF version 4"),
    "count 33": (set_u16(G, 26, 33), "section count 33"),
    "count 0": (set_u16(G, 26, 0), "section count 0"),
    "count 4": (set_u16(G, 26, 4), "non-zero entries beyond section count 4"),
    "reserved flags": (set_u16(G, 6, 0x8000), "reserved header flag"),
    "offset past eof": (set_u64(G, 28 + 8 * 4, 1 << 40), "outside the file"),
    "offset inside header": (set_u64(G, 28, 100), "outside the file"),
    "size mismatch": (set_u64(G, 284 + 8 * 3, 4), "disagrees with 4 in the EIF header"),
    "size past eof": (
        set_u64(set_u64(G, 284 + 8 * 4, 1 << 50), G.index(b"RD1") - 8, 1 << 50),
        "run past end of file",
    ),
    "truncated tail": (G[:-1], "run past end of file"),
    "trailing bytes": (G + b"\0" * 5, "5 trailing bytes"),
    "unknown type 6": (set_u16(G, SEC3, 6), "unknown section type 6"),
    "invalid type 0": (set_u16(G, SEC3, 0), "unknown section type 0"),
    "section flags": (set_u16(G, SEC3 + 2, 1), "reserved section flags"),
    "gap": (_gap(), "starts at"),
    "order": (pack_eif([(2, b"c"), (1, b"K"), (5, META), (3, b"R")]), "unexpected section order"),
    "no ramdisk": (pack_eif([(1, b"K"), (2, b"c"), (5, META)]), "unexpected section order"),
    "v4 without metadata": (
        pack_eif([(1, b"K"), (2, b"c"), (3, b"R")]),
        "unexpected section order",
    ),
    "two kernels": (pack_eif([(1, b"K"), (2, b"c"), (5, META), (1, b"K"), (3, b"R")]), "order"),
    "signature not last": (good([(4, b"\x80"), (3, b"R")]), "unexpected section order"),
    "signature too big": (good([(4, b"\0" * 32769)]), "signature section is 32769 bytes"),
    "signature garbage": (good([(4, b"\xff\xff")]), "signature section"),
    "signature empty list": (good([(4, b"\x80")]), "0 entries"),
    "metadata not json": (
        pack_eif([(1, b"K"), (2, b"c"), (5, b"{nope"), (3, b"R")]),
        "invalid JSON",
    ),
    "metadata wrong shape": (pack_eif([(1, b"K"), (2, b"c"), (5, b"{}"), (3, b"R")]), "lacks"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_file_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    data, fragment = CASES[case]
    path = tmp_path / "bad.eif"
    path.write_bytes(data)
    assert main(["describe", str(path)]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.splitlines()
    assert len(lines) == 1, out.err
    assert lines[0].startswith(f"eifbuild: error: {path}") and fragment in lines[0], lines[0]
    assert "Traceback" not in out.err


def test_missing_and_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for target, problem in (
        (tmp_path / "missing.eif", "cannot read"),
        (tmp_path, "not a regular file"),
    ):
        assert main(["describe", str(target)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"eifbuild: error: {target}: {problem}") and err.count("\n") == 1


def test_crc_mismatch_is_reported_not_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.eif"
    path.write_bytes(G.replace(b"RD1", b"RDX"))
    assert main(["describe", str(path)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["CheckCRC"] is False
    assert "CRC mismatch" in out.err


def test_version_3_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "v3.eif"
    path.write_bytes(pack_eif([(1, b"K"), (2, b"c"), (3, b"R0"), (3, b"R1")], version=3))
    assert main(["describe", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == ["EifVersion", "Measurements", "IsSigned", "CheckCRC"]
    assert doc["EifVersion"] == 3 and doc["CheckCRC"] is True


def test_read_section_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "x.eif"
    path.write_bytes(good())
    with EifReader(path) as r, pytest.raises(EifFormatError, match="over the 2-byte limit"):
        r.read_section(r.sections[0], 2)


def _exercise(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.eif"
        path.write_bytes(data)
        try:
            with EifReader(path) as r:
                describe(r, with_sections=True)
                r.signature_entries()
        except EifbuildError as exc:
            assert "\n" not in str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(st.tuples(st.integers(0, len(G) - 1), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, len(G) + 4),
)
def test_fuzz_mutated_eif_never_crashes(edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(G)
    for pos, value in edits:
        data[pos] = value
    _exercise(bytes(data[:cut]) if cut < len(G) else bytes(data) + b"\0" * (cut - len(G)))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1200))
def test_fuzz_header_shaped_garbage(tail: bytes) -> None:
    _exercise(b".eif\x00\x04" + tail)


def test_fifo_and_device_are_refused_without_blocking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "pipe.eif"
    os.mkfifo(fifo)
    for target in (fifo, Path("/dev/zero")):
        assert main(["describe", str(target)]) == 1
        assert f"{target}: not a regular file" in capsys.readouterr().err
