"""The ``nitro-cli describe-eif`` document of an EIF: same keys, same order (serde_json's).

A bad signature is an error (as in nitro-cli); a CRC mismatch is ``"CheckCRC": false`` plus a
warning. Warnings are returned as data; the CLI prints them.
"""

from __future__ import annotations

from typing import Any

from eifbuild.eif.metadata import BUILD_KEYS
from eifbuild.eif.reader import EifReader, ScanResult
from eifbuild.types import Progress


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


def _with_custom(
    flat: dict[str, Any], custom: Any, name: str, warnings: list[str]
) -> dict[str, Any]:
    """nitro-cli flattens CustomMetadata's keys into Metadata after the build fields.

    A custom key equal to a build field would appear twice in nitro-cli's output (and a JSON
    parser keeps the last, i.e. the custom value): here the recorded build value is kept and
    the clash is reported as a warning.
    """
    if not isinstance(custom, dict):
        return flat
    for key, value in _sorted_json(custom).items():
        if key in flat:
            warnings.append(
                f"{name}: CustomMetadata key {key!r} clashes with a build field; not shown"
            )
        else:
            flat[key] = value
    return flat


def describe_document(
    reader: EifReader, with_sections: bool = False, progress: Progress | None = None
) -> tuple[dict[str, Any], list[str]]:
    """(the ``nitro-cli describe-eif`` document, warnings) for an open reader, in one pass.

    ``progress`` is called with the number of section bytes measured. The reader's own
    warnings (a stale header entry) come first in the list.
    """
    warnings = list(reader.warnings)
    scan = reader.scan(progress=progress)
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
        out["Metadata"] = _with_custom(flat, meta.get("CustomMetadata"), reader.name, warnings)
    if with_sections:
        out["Sections"] = [
            {"Index": s.index, "Type": s.type.label, "Offset": s.offset, "Size": s.size}
            for s in reader.sections
        ]
    if not scan.crc_ok:
        warnings.append(
            f"{reader.name}: CRC mismatch (stored 0x{scan.crc_stored:08x}, "
            f"computed 0x{scan.crc_computed:08x})"
        )
    return out, warnings
