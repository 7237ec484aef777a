"""The streaming writer: property tests against an independent parser, failures, signing."""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eifbuild.eif.metadata import encode_metadata
from eifbuild.eif.reader import EifReader
from eifbuild.eif.signature import encode_signature_section
from eifbuild.eif.writer import write_eif
from eifbuild.errors import EifbuildError, EifWriteError, SigningError
from tests.test_measure import der_of_first_pem, make_cert, ref_pcr

META = encode_metadata("img", "1.0", "1970-01-01T00:00:00+00:00", "eifbuild", "0", "OS", "kernel")


def ref_parse(data: bytes) -> dict[str, Any]:
    """Independent reading of docs/spec/eif.md §1-§3 with struct."""
    magic, version, flags, mem, cpus, _res, num = struct.unpack_from(">4sHHQQHH", data, 0)
    offsets = struct.unpack_from(">32Q", data, 28)
    sizes = struct.unpack_from(">32Q", data, 284)
    (crc,) = struct.unpack_from(">I", data, 544)
    sections = []
    for i in range(num):
        stype, sflags, size = struct.unpack_from(">HHQ", data, offsets[i])
        assert size == sizes[i] and sflags == 0
        start = offsets[i] + 12
        sections.append((stype, data[start : start + size]))
    return {"magic": magic, "version": version, "flags": flags, "mem": mem, "cpus": cpus,
            "num": num, "offsets": offsets, "sizes": sizes, "crc": crc, "sections": sections}  # fmt: skip


def chunked(data: bytes, cuts: list[int]) -> Any:
    """A zero-argument callable yielding ``data`` split at ``cuts`` (size unknown up front)."""

    def gen() -> Iterator[bytes]:
        pos = 0
        for cut in sorted(c % (len(data) + 1) for c in cuts):
            yield data[pos:cut]
            pos = max(pos, cut)
        yield data[pos:]

    return gen


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kernel=st.binary(max_size=3000),
    cmdline=st.text(max_size=60).filter(lambda s: "\0" not in s),
    ramdisks=st.lists(st.binary(max_size=3000), min_size=1, max_size=5),
    cuts=st.lists(st.integers(0, 4000), max_size=6),
    streamed=st.lists(st.booleans(), min_size=5, max_size=5),
    arch=st.sampled_from(["x86_64", "aarch64"]),
)
def test_write_read_roundtrip(
    kernel: bytes,
    cmdline: str,
    ramdisks: list[bytes],
    cuts: list[int],
    streamed: list[bool],
    arch: str,
) -> None:
    sources = [chunked(rd, cuts) if streamed[i] else rd for i, rd in enumerate(ramdisks)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "x.eif"
        res = write_eif(out, kernel=chunked(kernel, cuts), cmdline=cmdline, metadata=META,
                        ramdisks=sources, arch=arch)  # fmt: skip
        data = out.read_bytes()
        with EifReader(out) as r:
            scan = r.scan()
            read_back = [b"".join(r.iter_data(s, chunk=777)) for s in r.sections]
    cmd = cmdline.encode()
    parsed = ref_parse(data)
    assert parsed["magic"] == b".eif" and parsed["version"] == 4
    assert parsed["flags"] == (1 if arch == "aarch64" else 0)
    assert (parsed["mem"], parsed["cpus"], parsed["num"]) == (1 << 30, 2, 3 + len(ramdisks))
    assert [s[0] for s in parsed["sections"]] == [1, 2, 5] + [3] * len(ramdisks)
    assert [s[1] for s in parsed["sections"]] == [kernel, cmd, META, *ramdisks] == read_back
    assert len(data) == 548 + sum(12 + len(x) for x in [kernel, cmd, META, *ramdisks]) == res.size
    assert parsed["offsets"][parsed["num"] :] == (0,) * (32 - parsed["num"])
    assert parsed["crc"] == zlib.crc32(data[:544] + data[548:]) == res.crc32 == scan.crc_stored
    assert scan.crc_ok
    expected = (
        ref_pcr(kernel + cmd + b"".join(ramdisks)),
        ref_pcr(kernel + cmd + ramdisks[0]),
        ref_pcr(b"".join(ramdisks[1:])),
    )
    m = res.measurements
    assert (m.pcr0, m.pcr1, m.pcr2) == expected
    sm = scan.measurements
    assert (sm.pcr0, sm.pcr1, sm.pcr2, sm.pcr8) == (*expected, None)


def test_large_streamed_ramdisk_parallel_path(tmp_path: Path) -> None:
    block = hashlib.sha256(b"seed").digest() * 40_000  # 1.28 MB, several chunks
    rd1 = chunked(block * 3, [5, 70_000, 2_000_000])
    res = write_eif(tmp_path / "x.eif", kernel=block, cmdline="c", metadata=META,
                    ramdisks=[b"r0", rd1])  # fmt: skip
    assert res.measurements.pcr2 == ref_pcr(block * 3)
    assert res.measurements.pcr0 == ref_pcr(block + b"c" + b"r0" + block * 3)


def test_progress_callback_counts_bytes(tmp_path: Path) -> None:
    seen: list[int] = []
    write_eif(tmp_path / "x.eif", kernel=b"k" * 10, cmdline="c", metadata=META,
              ramdisks=[b"r" * 5, b"s" * 7], progress=seen.append)  # fmt: skip
    assert sum(seen) == 10 + 1 + len(META) + 5 + 7


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_failing_source_leaves_no_output(tmp_path: Path) -> None:
    def broken() -> Iterator[bytes]:
        yield b"x" * 100
        raise EifbuildError("source broke")

    out = tmp_path / "x.eif"
    with pytest.raises(EifbuildError, match="source broke"):
        write_eif(out, kernel=b"k", cmdline="c", metadata=META, ramdisks=[b"r", broken])
    assert _leftovers(tmp_path) == []
    out.write_bytes(b"old")
    with pytest.raises(EifbuildError):
        write_eif(out, kernel=b"k", cmdline="c", metadata=META, ramdisks=[broken])
    assert out.read_bytes() == b"old" and _leftovers(tmp_path) == ["x.eif"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cmdline": "a\0b"}, "NUL"),
        ({"ramdisks": []}, "at least one ramdisk"),
        ({"ramdisks": [b"r"] * 30}, "at most 29"),
        ({"arch": "mips"}, "unknown architecture"),
        ({"metadata": b"{}"}, "metadata"),
        ({"kernel": "/nonexistent/bzImage"}, "/nonexistent/bzImage: cannot read"),
    ],
)
def test_bad_inputs(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"kernel": b"k", "cmdline": "c", "metadata": META, "ramdisks": [b"r"]}
    args.update(kwargs)
    with pytest.raises(EifbuildError, match=message):
        write_eif(tmp_path / "x.eif", **args)
    assert _leftovers(tmp_path) == []


def test_29_ramdisks_fit(tmp_path: Path) -> None:
    res = write_eif(
        tmp_path / "x.eif", kernel=b"k", cmdline="c", metadata=META, ramdisks=[b"r"] * 29
    )
    assert len(res.sections) == 32


def test_signed_eif(tmp_path: Path) -> None:
    pem, _key = make_cert()
    calls: list[bytes] = []

    def signer(pcr0_raw: bytes) -> bytes:
        calls.append(pcr0_raw)
        return encode_signature_section([(pem, b"\x84opaque-cose")])

    out = tmp_path / "s.eif"
    res = write_eif(
        out, kernel=b"k", cmdline="c", metadata=META, ramdisks=[b"r0", b"r1"], signer=signer
    )
    assert calls == [bytes.fromhex(ref_pcr(b"kcr0r1"))]
    assert res.measurements.pcr8 == ref_pcr(der_of_first_pem(pem))
    data = out.read_bytes()
    parsed = ref_parse(data)
    assert [s[0] for s in parsed["sections"]] == [1, 2, 5, 3, 3, 4]
    assert parsed["sections"][-1][1] == encode_signature_section([(pem, b"\x84opaque-cose")])
    assert parsed["crc"] == zlib.crc32(data[:544] + data[548:])
    with EifReader(out) as r:
        assert r.is_signed and r.signature_entries() == [(pem, b"\x84opaque-cose")]
        assert r.scan().measurements == res.measurements


def _fixed(section: bytes) -> Any:
    return lambda _pcr0: section


def test_signer_output_is_checked(tmp_path: Path) -> None:
    pem, _ = make_cert()
    too_big = encode_signature_section([(pem * 40, b"x")])
    for section, message in (
        (too_big, "over the 32768-byte limit"),
        (b"\x00", "signature section"),
    ):
        with pytest.raises(EifbuildError, match=message):
            write_eif(tmp_path / "x.eif", kernel=b"k", cmdline="c", metadata=META,
                      ramdisks=[b"r"], signer=_fixed(section))  # fmt: skip
        assert _leftovers(tmp_path) == []
    with pytest.raises(SigningError, match="signing certificate"):
        write_eif(tmp_path / "x.eif", kernel=b"k", cmdline="c", metadata=META, ramdisks=[b"r"],
                  signer=lambda _p: encode_signature_section([(b"not a cert", b"x")]))  # fmt: skip
    with pytest.raises(EifWriteError, match="at most 28"):
        write_eif(tmp_path / "x.eif", kernel=b"k", cmdline="c", metadata=META,
                  ramdisks=[b"r"] * 29, signer=lambda _p: b"")  # fmt: skip


@pytest.mark.parametrize("role", ["kernel", "ramdisk"])
def test_devices_and_fifos_are_refused_without_blocking(tmp_path: Path, role: str) -> None:
    """/dev/zero would never end and a FIFO would block: both are refused up front."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for src in ("/dev/zero", str(fifo)):
        kwargs: dict[str, Any] = {"kernel": b"K", "ramdisks": [b"R"]}
        kwargs["kernel" if role == "kernel" else "ramdisks"] = src if role == "kernel" else [src]
        with pytest.raises(EifWriteError, match=f"{src}: not a regular file"):
            write_eif(tmp_path / "o.eif", cmdline="c", metadata=META, **kwargs)
        assert _leftovers(tmp_path) == ["fifo"]
