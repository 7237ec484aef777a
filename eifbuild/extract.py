"""Write each section of an EIF to its own file: ``kernel``, ``cmdline``, ``metadata.json``
(v4), ``ramdisk-0`` ... ``ramdisk-N`` and ``signature`` (the raw section CBOR) when signed.

Existing files are never overwritten unless ``force``; every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eifbuild._atomic import atomic_output
from eifbuild.eif.format import Section, SectionType
from eifbuild.eif.reader import EifReader
from eifbuild.errors import EifbuildError
from eifbuild.types import Progress


def section_file_names(reader: EifReader) -> list[tuple[Section, str]]:
    """(section, file name) for every section, in file order."""
    names: list[tuple[Section, str]] = []
    ramdisk = 0
    fixed = {
        SectionType.KERNEL: "kernel",
        SectionType.CMDLINE: "cmdline",
        SectionType.METADATA: "metadata.json",
        SectionType.SIGNATURE: "signature",
    }
    for s in reader.sections:
        if s.type is SectionType.RAMDISK:
            names.append((s, f"ramdisk-{ramdisk}"))
            ramdisk += 1
        else:
            names.append((s, fixed[s.type]))
    return names


def prepare_dir(outdir: Path, names: list[str], force: bool) -> None:
    """Create ``outdir`` if needed; refuse existing targets unless ``force``."""
    if outdir.exists() and not outdir.is_dir():
        raise EifbuildError(f"{outdir}: exists and is not a directory")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EifbuildError(f"{outdir}: cannot create directory ({exc.strerror})") from None
    for name in names:
        target = outdir / name
        if target.is_symlink() or target.exists():
            if not force:
                raise EifbuildError(f"{target}: already exists (use --force to overwrite)")
            if target.is_dir() and not target.is_symlink():
                raise EifbuildError(f"{target}: is a directory")


def extract_sections(
    reader: EifReader, outdir: Path, force: bool = False, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """Write every section's data to ``outdir`` (each file atomically); one record per file.

    ``progress`` is called with the number of bytes just written."""
    named = section_file_names(reader)
    prepare_dir(outdir, [n for _, n in named], force)
    records = []
    for section, name in named:
        try:
            with atomic_output(outdir / name) as fh:
                for chunk in reader.iter_data(section):
                    fh.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
        except OSError as exc:
            raise EifbuildError(f"{outdir / name}: cannot write ({exc.strerror or exc})") from None
        records.append(
            {"Index": section.index, "Type": section.type.label, "File": name,
             "Size": section.size}
        )  # fmt: skip
    return records
