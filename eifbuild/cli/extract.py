"""``eifbuild extract EIF DIR``: write each section of an EIF to its own file.

Files: ``kernel``, ``cmdline``, ``metadata.json`` (v4), ``ramdisk-0`` ... ``ramdisk-N``, and
``signature`` (the raw signature section CBOR) when signed. Existing files are never
overwritten unless ``--force``. The EIF is fully validated before anything is written, and
every file is written atomically.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

from eifbuild._atomic import atomic_output
from eifbuild._progress import progress
from eifbuild.cli._common import info, print_json, warn
from eifbuild.eif.format import Section, SectionType
from eifbuild.eif.reader import EifReader
from eifbuild.errors import EifbuildError

HELP = "write an EIF's kernel, cmdline, metadata, ramdisks and signature into a directory"
DESCRIPTION = (__doc__ or HELP).replace("``", "").strip()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("eif", metavar="EIF", help="EIF file to extract")
    p.add_argument("dir", metavar="DIR", help="output directory (created if missing)")
    p.add_argument("--force", action="store_true", help="overwrite existing files in DIR")
    p.add_argument(
        "--unpack",
        action="store_true",
        help="also unpack each ramdisk-N into ramdisk-N.d/ (safely)",
    )
    p.add_argument(
        "--devices", action="store_true", help="with --unpack: create device nodes (root only)"
    )


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


def extract_sections(reader: EifReader, outdir: Path, force: bool = False) -> list[dict[str, Any]]:
    """Write every section's data to ``outdir``; return one record per file."""
    named = section_file_names(reader)
    prepare_dir(outdir, [n for _, n in named], force)
    records = []
    with progress(total=sum(s.size for s, _ in named), desc="Extracting") as bar:
        for section, name in named:
            try:
                with atomic_output(outdir / name) as fh:
                    for chunk in reader.iter_data(section):
                        fh.write(chunk)
                        bar.update(len(chunk))
            except OSError as exc:
                raise EifbuildError(
                    f"{outdir / name}: cannot write ({exc.strerror or exc})"
                ) from None
            records.append(
                {"Index": section.index, "Type": section.type.label, "File": name,
                 "Size": section.size}
            )  # fmt: skip
    return records


def run(args: argparse.Namespace) -> int:
    outdir = Path(args.dir)
    with EifReader(args.eif) as reader:
        for warning in reader.warnings:
            warn(warning)
        staged = None
        if getattr(args, "unpack", False):
            staged, results = _stage(reader, outdir, args)
        try:
            records = extract_sections(reader, outdir, args.force)
            if staged is not None:
                staged.commit()
        finally:
            if staged is not None:
                staged.discard()
    if staged is not None:
        for rec in records:
            res = results.get(str(rec["File"]))
            if res is not None:
                rec.update(
                    {"Unpacked": f"{rec['File']}.d", "Members": res.members,
                     "SkippedDevices": res.skipped}
                )  # fmt: skip
    info(f"Extracted {len(records)} sections into {outdir}")
    print_json({"Files": records})
    return 0


def _stage(reader: EifReader, outdir: Path, args: argparse.Namespace) -> tuple[Any, Any]:
    """Unpack every ramdisk straight from the EIF into staging directories, before any
    section file is written: a ramdisk that is not a newc archive leaves nothing behind."""
    from eifbuild.diff.facts import section_stream
    from eifbuild.unpack import stage_unpack

    named = section_file_names(reader)
    prepare_dir(outdir, [n for _, n in named], args.force)
    ramdisks = [
        (name, functools.partial(section_stream, reader, section))
        for section, name in named
        if section.type is SectionType.RAMDISK
    ]
    return stage_unpack(outdir, ramdisks, devices=args.devices, force=args.force, label=reader.name)
