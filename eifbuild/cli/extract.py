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

from eifbuild.cli._bars import progress
from eifbuild.cli._common import info, print_json, warn
from eifbuild.eif.format import SectionType
from eifbuild.eif.reader import EifReader
from eifbuild.extract import extract_sections as core_extract
from eifbuild.extract import prepare_dir, section_file_names

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


def extract_sections(reader: EifReader, outdir: Path, force: bool = False) -> list[dict[str, Any]]:
    """:func:`eifbuild.extract.extract_sections` with a progress bar."""
    total = sum(s.size for s in reader.sections)
    with progress(total=total, desc="Extracting") as bar:
        return core_extract(reader, outdir, force, progress=bar.update)


def run(args: argparse.Namespace) -> int:
    outdir = Path(args.dir)
    with EifReader(args.eif) as reader:
        for warning in reader.warnings:
            warn(warning)
        staged = None
        if args.unpack:
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
