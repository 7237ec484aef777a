"""``eifbuild describe EIF``: what ``nitro-cli describe-eif`` prints, from a bounded reader."""

from __future__ import annotations

import argparse
from typing import Any

from eifbuild._progress import progress
from eifbuild.cli._common import print_json, warn
from eifbuild.cli._registry import add_registry_arguments, local_eif
from eifbuild.eif.metadata import BUILD_KEYS
from eifbuild.eif.reader import EifReader, ScanResult

HELP = "print an EIF's version, measurements, signature, CRC check and metadata (like describe-eif)"
DESCRIPTION = (
    "Print the JSON of `nitro-cli describe-eif` (same keys, same order). A bad signature is an\n"
    'error (exit 1), as in nitro-cli; a CRC mismatch is reported as "CheckCRC": false.\n'
    "An EIF re-signed by `nitro-cli sign-eif` (stale signature size in the header) is read\n"
    "as nitro-cli reads it, with a warning on stderr."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("eif", metavar="EIF", help="EIF file (or docker://… EIF artifact) to describe")
    p.add_argument(
        "--sections", action="store_true", help="add the section table (index, type, offset, size)"
    )
    add_registry_arguments(p)


def _sorted_json(value: Any) -> Any:
    """serde_json's Map is sorted: nested object keys come out sorted."""
    if isinstance(value, dict):
        return {k: _sorted_json(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_json(v) for v in value]
    return value


def _signature_fields(reader: EifReader, scan: ScanResult) -> tuple[dict[str, Any], bool] | None:
    """(SigningCertificate, SignatureCheck); a signature that does not verify is an error."""
    from eifbuild.sign import describe_signature

    entries = reader.signature_entries()
    if not entries:
        return None
    cert_pem, cose = entries[0]
    cert_info, ok = describe_signature(cert_pem, cose, scan.pcr0_raw)
    return dict(cert_info), bool(ok)


def _with_custom(flat: dict[str, Any], custom: Any, name: str) -> dict[str, Any]:
    """nitro-cli flattens CustomMetadata's keys into Metadata after the build fields.

    A custom key equal to a build field would appear twice in nitro-cli's output (and a JSON
    parser keeps the last, i.e. the custom value): here the recorded build value is kept and
    the clash is reported on stderr.
    """
    if not isinstance(custom, dict):
        return flat
    for key, value in _sorted_json(custom).items():
        if key in flat:
            warn(f"{name}: CustomMetadata key {key!r} clashes with a build field; not shown")
        else:
            flat[key] = value
    return flat


def describe(reader: EifReader, with_sections: bool = False) -> dict[str, Any]:
    """The describe-eif document for an open reader (one streaming pass)."""
    total = sum(s.size for s in reader.sections)
    with progress(total=total, desc="Measuring") as bar:
        scan = reader.scan(progress=bar.update)
    out: dict[str, Any] = {
        "EifVersion": reader.version,
        "Measurements": scan.measurements.as_nitro(),
        "IsSigned": reader.is_signed,
    }
    sig = _signature_fields(reader, scan)
    if sig is not None:
        out["SigningCertificate"] = sig[0]
    out["CheckCRC"] = scan.crc_ok
    if sig is not None:
        out["SignatureCheck"] = sig[1]
    meta = reader.metadata()
    if meta is not None:
        out["ImageName"] = meta["ImageName"]
        out["ImageVersion"] = meta["ImageVersion"]
        flat: dict[str, Any] = {k: meta["BuildMetadata"][k] for k in BUILD_KEYS}
        flat["DockerInfo"] = _sorted_json(meta.get("DockerInfo"))
        out["Metadata"] = _with_custom(flat, meta.get("CustomMetadata"), reader.name)
    if with_sections:
        out["Sections"] = [
            {"Index": s.index, "Type": s.type.label, "Offset": s.offset, "Size": s.size}
            for s in reader.sections
        ]
    if not scan.crc_ok:
        warn(
            f"{reader.name}: CRC mismatch (stored 0x{scan.crc_stored:08x}, computed 0x{scan.crc_computed:08x})"
        )
    return out


def run(args: argparse.Namespace) -> int:
    with local_eif(args.eif, args) as path, EifReader(path) as reader:
        for warning in reader.warnings:
            warn(warning)
        doc = describe(reader, args.sections)
    print_json(doc)
    return 0
