"""Regression tests for crashes found by the coverage-guided fuzzers in ``fuzz/``.

Each test feeds the (minimised) crashing input; the expected outcome is an ``EifbuildError``
subclass or a safe result, never another exception.
"""

from __future__ import annotations

import base64
import datetime
import io
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from eifbuild.cpio import S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, Member, newc_stream
from eifbuild.errors import RamdiskError, SigningError
from eifbuild.measure import pcr8_from_pem
from eifbuild.sign.keys import load_certificate
from eifbuild.unpack import list_archive, unpack_archive


def _arc(*members: Member) -> bytes:
    return b"".join(newc_stream(members))


def test_unpack_symlink_target_with_nul_is_a_ramdisk_error(tmp_path: Path) -> None:
    # fuzz target unpack: os.symlink raised ValueError (embedded null character)
    arc = _arc(Member(b"dev", S_IFDIR, 0o755), Member(b"dev/l", S_IFLNK, 0o777, data=b"a\0b"))
    with pytest.raises(RamdiskError, match=r"dev/l.*symlink target has a NUL byte"):
        unpack_archive(io.BytesIO(arc), tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("name", [b"a\nb", b"a\rb", b"x\x1b[2Jy", b"\xe2\x80\xaeevil"])
def test_listing_escapes_control_characters_in_names(name: bytes) -> None:
    # fuzz target cpio: a member name with a newline forged a second listing line
    arc = _arc(
        Member(name, S_IFREG, 0o644, data=b"x"),
        Member(b"l", S_IFLNK, 0o777, data=b"t\nu"),
    )
    lines = list(list_archive(io.BytesIO(arc)))
    assert len(lines) == 2
    for line in lines:
        assert line.isprintable(), repr(line)
    assert lines[1].endswith(" l -> t\\x0au")


def _self_signed_der() -> bytes:
    """A small valid self-signed certificate (CN "v" as issuer and subject), DER."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "v")])
    t0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(t0)
        .not_valid_after(t0 + datetime.timedelta(days=1))
        .sign(key, hashes.SHA384())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def _pem(der: bytes) -> bytes:
    b64 = base64.encodebytes(der).replace(b"\n", b"")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


def _cert_with_version(version: int) -> bytes:
    """A self-signed certificate whose TBS version field ([0] EXPLICIT INTEGER) is patched."""
    der = _self_signed_der()
    v3 = bytes.fromhex("a003020102")  # version v3 (2)
    assert der.count(v3) == 1
    return _pem(der.replace(v3, bytes.fromhex("a0030201") + bytes([version])))


@pytest.mark.parametrize("tag", [0x0F, 0x03])
def test_certificate_with_malformed_subject_is_a_signing_error(tag: int) -> None:
    # found by tests/test_verify_fuzz.py: cryptography parses names lazily, so a bad subject
    # string tag (a ValueError) or a BitString value (a TypeError) escaped from `verify` later.
    der = _self_signed_der()
    cn = bytes.fromhex("0c0176")  # UTF8String "v": issuer first, then subject
    assert der.count(cn) == 2
    at = der.rindex(cn)
    bad = _pem(der[:at] + bytes([tag]) + der[at + 1 :])
    with pytest.raises(SigningError, match=r"not a PEM X\.509 certificate"):
        load_certificate(bad, "signing certificate")
    load_certificate(_pem(der), "control: the unpatched certificate loads")


def test_certificate_with_invalid_version_is_a_signing_error() -> None:
    # fuzz targets eif and signature: cryptography's InvalidVersion is not a ValueError
    pem = _cert_with_version(18)
    with pytest.raises(SigningError, match=r"not a PEM X\.509 certificate"):
        pcr8_from_pem(pem, "signing certificate")
    with pytest.raises(SigningError, match=r"not a PEM X\.509 certificate"):
        load_certificate(pem, "signing certificate")
    pcr8_from_pem(_cert_with_version(2), "control: the unpatched version parses")


@pytest.mark.parametrize("devices", [False, True])
def test_fifo_with_huge_rdev_unpacks(tmp_path: Path, devices: bool) -> None:
    # fuzz target unpack: os.makedev raised OverflowError for a FIFO's (meaningless) rdev
    arc = _arc(Member(b"p", S_IFIFO, 0o644, rdevmajor=0xFFFFFFFF, rdevminor=0x80000000))
    unpack_archive(io.BytesIO(arc), tmp_path / "o", devices=devices)
    assert stat.S_ISFIFO((tmp_path / "o" / "p").lstat().st_mode)


@pytest.mark.parametrize(("major", "minor"), [(0xFFFFFFFF, 0), (4096, 0), (1, 1 << 20)])
def test_device_number_out_of_range_is_a_ramdisk_error(
    tmp_path: Path, major: int, minor: int
) -> None:
    arc = _arc(Member(b"c", S_IFCHR, 0o600, rdevmajor=major, rdevminor=minor))
    with pytest.raises(RamdiskError, match=r"'c': device number .* out of range"):
        unpack_archive(io.BytesIO(arc), tmp_path / "o", devices=True)
    # skipped without --devices, as any device
    assert unpack_archive(io.BytesIO(arc), tmp_path / "o2").skipped == ["c"]
