"""``eifbuild assemble``: write an EIF v4 from a kernel, a cmdline and ramdisks.

With the same values, the file is byte-identical to AWS's ``eif_build`` 0.3.1. To reproduce
an ``eif_build`` file, pass ``--build-tool eif_build --build-tool-version 0.3.1`` and its
``--build-time`` (and, if it was given ``--name N``, also ``--version N``).

Deliberate differences from ``eif_build`` (docs/spec/eif.md §10.3):

* ``--version`` sets ImageVersion. ``eif_build`` ignores it and writes the ``--name`` value
  (or 1.0); eifbuild writes 1.0 when ``--version`` is not given.
* BuildTool/BuildToolVersion default to ``eifbuild`` and its version (``eif_build`` writes
  ``eif_build``/``0.3.1``).
* BuildTime defaults to SOURCE_DATE_EPOCH, else 1970-01-01T00:00:00+00:00, never the clock
  (``eif_build`` uses the current time); ``--build-time`` must be RFC 3339 (``eif_build``
  stores any string).
* ``--kernel-config`` (``eif_build``: ``--kernel_config``) only supplies
  OperatingSystem/KernelVersion (line 3 of the config, as nitro-cli reads it), and
  ``--img-os``/``--img-kernel``/``--build-time``/``--build-tool*`` still apply (``eif_build``
  rebuilds BuildMetadata with the current time and drops those options).
* ``--metadata`` must hold a JSON object (nitro-cli's describe-eif cannot show anything else).
* A cmdline containing a NUL byte is an error (``eif_build`` panics).
* No ``--algo``: PCRs are always SHA-384, as nitro-cli computes them.
* stdout carries ``{"Measurements": {...}}`` as ``nitro-cli build-enclave`` prints it and
  ``Output file: OUT`` goes to stderr (``eif_build`` prints both, with the bare map, on stdout).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from eifbuild import __version__
from eifbuild.cli._bars import progress
from eifbuild.cli._common import add_eif_output, info, print_json
from eifbuild.cli._signing import add_signing_arguments, make_signer
from eifbuild.eif.writer import write_eif
from eifbuild.pipeline import assemble_metadata

HELP = "write an EIF v4 from kernel, cmdline and ramdisks (byte-compatible with eif_build)"
DESCRIPTION = (__doc__ or HELP).replace("``", "").strip()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kernel", required=True, metavar="FILE", help="kernel image (bzImage / arm64 Image)"
    )
    p.add_argument(
        "--cmdline", required=True, metavar="STR", help="kernel command line, stored verbatim"
    )
    p.add_argument(
        "--ramdisk",
        required=True,
        action="append",
        metavar="FILE",
        help="ramdisk, repeatable, in order (the first one is measured in PCR1)",
    )
    add_eif_output(p)
    p.add_argument(
        "--arch",
        choices=("x86_64", "aarch64"),
        default="x86_64",
        help="header arch flag (default x86_64)",
    )
    p.add_argument("--name", help="ImageName (default: the kernel file's base name)")
    p.add_argument(
        "--version", dest="image_version", metavar="VERSION", help="ImageVersion (default 1.0)"
    )
    p.add_argument(
        "--metadata", metavar="JSON_FILE", help="custom metadata: a JSON object, <= 4096 bytes"
    )
    p.add_argument(
        "--build-time",
        metavar="RFC3339",
        help="BuildTime (default: SOURCE_DATE_EPOCH, else 1970-01-01T00:00:00+00:00)",
    )
    p.add_argument(
        "--build-tool", default="eifbuild", metavar="T", help="BuildTool (default eifbuild)"
    )
    p.add_argument(
        "--build-tool-version",
        default=__version__,
        metavar="V",
        help=f"BuildToolVersion (default {__version__})",
    )
    p.add_argument(
        "--img-os", metavar="S", help="OperatingSystem (default: from --kernel-config, else OS)"
    )
    p.add_argument(
        "--img-kernel",
        metavar="S",
        help="KernelVersion (default: from --kernel-config, else kernel)",
    )
    p.add_argument(
        "--kernel-config",
        metavar="FILE",
        help="kernel .config: OperatingSystem/KernelVersion from its line 3",
    )
    add_signing_arguments(p)


def _total_size(paths: list[str]) -> int | None:
    try:
        return sum(Path(p).stat().st_size for p in paths)
    except OSError:
        return None


def run(args: argparse.Namespace) -> int:
    metadata = assemble_metadata(
        args.kernel,
        name=args.name,
        image_version=args.image_version,
        build_time=args.build_time,
        build_tool=args.build_tool,
        build_tool_version=args.build_tool_version,
        operating_system=args.img_os,
        kernel_version=args.img_kernel,
        kernel_config=args.kernel_config,
        metadata=args.metadata,
    )
    signer = make_signer(args)  # validates keys/certificates before anything is written
    with progress(total=_total_size([args.kernel, *args.ramdisk]), desc="Writing EIF") as bar:
        result = write_eif(
            args.output,
            kernel=args.kernel,
            cmdline=args.cmdline,
            metadata=metadata,
            ramdisks=args.ramdisk,
            arch=args.arch,
            signer=signer,
            progress=bar.update,
        )
    info(f"Output file: {args.output}")
    print_json({"Measurements": result.measurements.as_nitro()})
    return 0
