"""``eifbuild verify``: check an EIF's structure, CRC, signature, certificate and PCRs.

The signature is verified over ``PcrInfo{0, PCR0}`` rebuilt from the PCR0 recomputed from
the file's sections; the payload carried in the COSE message is never trusted. Every check
asked for is reported; the EIF passes only when all of them hold.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from eifbuild.errors import EifbuildError, EifFormatError, UsageError, VerificationError
from eifbuild.limits import DEFAULT_LIMITS
from eifbuild.measure import certificate_der, is_pcr_hex, measurements_from_json
from eifbuild.smallfile import read_small_file
from eifbuild.textescape import safe_name
from eifbuild.types import Progress


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class VerifyReport:
    path: str
    checks: list[Check] = field(default_factory=list)
    measurements: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # tolerated, do not fail the EIF

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def as_json(self) -> dict[str, Any]:
        return {
            "File": self.path,
            "Valid": self.ok,
            **self.info,
            "Measurements": self.measurements,
            "Checks": [{"Name": c.name, "Ok": c.ok, "Detail": c.detail} for c in self.checks],
            "Warnings": list(self.warnings),
        }

    def as_text(self) -> str:
        lines = [f"EIF {self.path}"]
        for key, value in self.info.items():
            lines.append(f"  {key}: {value}")
        for c in self.checks:
            lines.append(f"{'ok  ' if c.ok else 'FAIL'}  {c.name:<12} {c.detail}")
        lines.extend(f"warn  {w}" for w in self.warnings)
        for key, value in self.measurements.items():
            if key.startswith("PCR"):
                lines.append(f"  {key} {value}")
        n = len(self.failures())
        lines.append(
            "result: VALID" if self.ok else f"result: INVALID ({n} check{'s' * (n != 1)} failed)"
        )
        return "\n".join(lines) + "\n"


def parse_pcr_arg(text: str) -> tuple[int, str]:
    """``N=HEX`` (96 hex digits) -> (N, lowercase hex)."""
    name, sep, value = text.partition("=")
    name = name.strip().upper().removeprefix("PCR")
    if not sep or not name.isdigit() or not 0 <= int(name) <= 31:
        raise UsageError(f"--pcr {text}: expected N=HEX with N in 0..31")
    value = value.strip()
    if not is_pcr_hex(value):
        raise UsageError(f"--pcr {text}: value must be 96 hex digits (SHA-384)")
    return int(name), value.lower()


def load_expectations(path: str | os.PathLike[str]) -> dict[int, str]:
    """PCRs from a measurements JSON file: ``{"Measurements": {...}}`` (as build/assemble/
    nitro-cli print it) or a bare ``{"PCR0": ..., ...}`` map (as eif_build prints it).

    A file that cannot be used is bad input (VerificationError, exit 1), not a usage error.
    """
    p = Path(path)
    where = f"--expect {p}"
    raw = read_small_file(
        p, "--expect", DEFAULT_LIMITS.max_measurements_json_bytes, VerificationError
    )
    try:
        obj = json.loads(raw)
    except RecursionError:
        raise VerificationError(f"{where}: not JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerificationError(f"{where}: not JSON ({exc.__class__.__name__})") from None
    out = measurements_from_json(obj, where, VerificationError)
    if not out:
        raise VerificationError(f"{where}: no PCR values found")
    return out


def _self_signature_problem(cert: x509.Certificate) -> str | None:
    """A self-issued certificate must carry a valid signature by its own key."""
    if cert.issuer != cert.subject:
        return None  # issued by a CA: no chain is given to check it against
    try:
        cert.verify_directly_issued_by(cert)
    except Exception:
        return "self-signed certificate's own signature does not verify (modified certificate?)"
    return None


def _check_signature(
    report: VerifyReport,
    entries: list[tuple[bytes, bytes]],
    pcr0_raw: bytes,
    pinned: bytes | None,
    allow_expired: bool,
    now: dt.datetime | None,
) -> None:
    from eifbuild.sign import verify_signature
    from eifbuild.sign.describe import openssl_time

    if len(entries) != 1:
        report.add("signature", False, f"{len(entries)} signature entries; exactly 1 is supported")
    cert_pem, cose = entries[0]
    try:
        sig = verify_signature(cert_pem, cose, pcr0_raw, now=now)
    except VerificationError as exc:
        report.add("signature", False, str(exc))
        return
    if sig.payload_matches:
        report.add("signature", True, f"{sig.alg}, signs PcrInfo(PCR0) of this file")
    else:
        report.add("signature", False, f"{sig.alg} signature is valid but signs another PCR0")
    cert = sig.certificate
    window = (
        f"{openssl_time(cert.not_valid_before_utc)} to {openssl_time(cert.not_valid_after_utc)}"
    )
    self_sig = _self_signature_problem(cert)
    if self_sig is not None:
        report.add("certificate", False, self_sig)
    elif sig.validity_problem is None:
        report.add("certificate", True, f"valid {window}")
    else:
        ok = allow_expired
        report.add("certificate", ok, f"{sig.validity_problem}{' (allowed)' if ok else ''}")
    if pinned is not None:
        try:
            same = certificate_der(pinned, "pinned certificate") == certificate_der(cert_pem)
        except EifbuildError as exc:
            report.add("pinned cert", False, str(exc))
            return
        report.add(
            "pinned cert", same, "matches" if same else "EIF is signed by another certificate"
        )


def _reader_class() -> type[Any]:
    from eifbuild.eif.reader import EifReader

    class _Reader(EifReader):
        """A reader whose scan survives an unreadable certificate (reported separately)."""

        def pcr8(self) -> str | None:
            try:
                return super().pcr8()
            except EifbuildError:
                return None

    return _Reader


def verify_eif(
    path: str | os.PathLike[str],
    *,
    certificate: bytes | None = None,
    expect: dict[int, str] | None = None,
    require_signature: bool = False,
    allow_expired: bool = False,
    now: dt.datetime | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Run every check on ``path``; never raises for a bad EIF, reports it instead."""
    report = VerifyReport(safe_name(os.fsdecode(path)))  # printable: names may be non-UTF-8
    expect = dict(expect or {})
    try:
        reader = _reader_class()(path)
    except EifFormatError as exc:
        report.add("structure", False, str(exc))
        return report
    with reader:
        n = len(reader.sections)
        report.info = {"EifVersion": reader.version, "Arch": reader.arch.value, "Sections": n}
        report.warnings.extend(reader.warnings)
        detail = (
            "header tables consistent" if not reader.warnings else "stale header entry tolerated"
        )
        report.add("structure", True, f"{n} sections, contiguous, {detail}")
        try:
            entries = reader.signature_entries()
            scan = reader.scan(progress)
        except EifbuildError as exc:
            report.add("signature section", False, str(exc))
            return report
    report.measurements = scan.measurements.as_nitro()
    crc = f"stored 0x{scan.crc_stored:08x}, computed 0x{scan.crc_computed:08x}"
    report.add("crc", scan.crc_ok, crc)
    if entries is None:
        if require_signature or certificate is not None or 8 in expect:
            report.add("signature", False, "EIF is not signed")
    else:
        _check_signature(report, entries, scan.pcr0_raw, certificate, allow_expired, now)
    for index in sorted(expect):
        got = report.measurements.get(f"PCR{index}")
        want = expect[index]
        if got is None:
            why = "it cannot be measured from an EIF"
            if index == 8:
                why = (
                    "the EIF is not signed" if entries is None else "its certificate is unreadable"
                )
            report.add(f"PCR{index}", False, f"expected {want}, but {why}")
        else:
            report.add(
                f"PCR{index}",
                got == want,
                "matches" if got == want else f"expected {want}, got {got}",
            )
    return report
