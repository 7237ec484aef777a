"""Property: any single-byte change or truncation of a signed EIF makes `verify` fail, and
`verify` never raises on hostile bytes (it reports)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eifbuild.cli._signing import make_signer
from eifbuild.verify import verify_eif
from tests import sigref
from tests.test_sign_flow import make_eif, signer_args

_DIR = Path(tempfile.mkdtemp(prefix="eifbuild-verify-fuzz-"))
_KEY, _CERT = sigref.make_cert(_DIR)
_EIF = make_eif(_DIR / "s.eif", make_signer(signer_args(_CERT, str(_KEY))))
_RAW = _EIF.read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(_RAW) - 1), st.integers(1, 255))
def test_any_byte_change_fails(pos: int, xor: int) -> None:
    data = bytearray(_RAW)
    data[pos] ^= xor
    path = _DIR / "m.eif"
    path.write_bytes(bytes(data))
    report = verify_eif(path, certificate=_CERT.read_bytes())
    assert not report.ok, (pos, xor, report.as_text())


@settings(max_examples=40, deadline=None)
@given(st.integers(0, len(_RAW) - 1))
def test_truncation_fails(size: int) -> None:
    path = _DIR / "t.eif"
    path.write_bytes(_RAW[:size])
    report = verify_eif(path)
    assert not report.ok and report.checks[0].name == "structure"


def test_unmodified_passes() -> None:
    assert verify_eif(_EIF, certificate=_CERT.read_bytes()).ok


def _measured_and_signature_ranges(raw: bytes) -> list[tuple[int, int, int]]:
    """(type, data start, data end) of kernel, cmdline, ramdisk and signature sections."""
    out, pos = [], 548
    while pos < len(raw):
        stype = int.from_bytes(raw[pos : pos + 2], "big")
        size = int.from_bytes(raw[pos + 4 : pos + 12], "big")
        if stype in (1, 2, 3, 4):
            out.append((stype, pos + 12, pos + 12 + size))
        pos += 12 + size
    return out


_RANGES = _measured_and_signature_ranges(_RAW)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, len(_RANGES) - 1), st.floats(0, 1, exclude_max=True), st.integers(1, 255))
def test_change_with_fixed_crc_still_fails(which: int, where: float, xor: int) -> None:
    """An attacker who also fixes the CRC: a change to any measured section or to the
    signature section is still caught by a check other than the CRC."""
    import zlib

    stype, start, end = _RANGES[which]
    data = bytearray(_RAW)
    data[start + int(where * (end - start))] ^= xor
    data[544:548] = zlib.crc32(bytes(data[:544] + data[548:])).to_bytes(4, "big")
    path = _DIR / "c.eif"
    path.write_bytes(bytes(data))
    report = verify_eif(path, certificate=_CERT.read_bytes())
    failed = [c.name for c in report.failures()]
    assert failed and "crc" not in failed, (stype, report.as_text())
