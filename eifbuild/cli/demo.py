"""``eifbuild demo``: build an EIF from an embedded example image and print its measurements.

The example image needs no registry and no Docker daemon: a static "hello" program is compiled
from the C source below with ``musl-gcc`` (reproducible flags), packed into a single
uncompressed layer with fixed owners and times, and written as an OCI image layout whose
bytes depend only on the program's bytes. The normal pipeline then builds ``oci:LAYOUT:demo``
with the default kernel and init (or ``--blobs``). The boot test boots this image too:
:func:`make_demo_layout` is the reusable part.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from eifbuild.cli._bars import set_quiet
from eifbuild.cli._common import info, output_path, print_json
from eifbuild.demo import DEMO_MARKER, DEMO_NAME, compile_hello, host_arch, make_demo_layout

HELP = "build an EIF from a built-in example image (no registry, no Docker) and print PCRs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--output",
        "-o",
        type=output_path,
        default="demo.eif",
        metavar="OUT.eif",
        help="EIF to write (default demo.eif)",
    )
    p.add_argument(
        "--blobs", metavar="DIR", help="blobs directory (default: eifbuild's kernel and init)"
    )
    p.add_argument("--layout", metavar="DIR", help="also keep the demo OCI layout in DIR")
    p.add_argument("--json", action="store_true", help="print the full build record")


def run(args: argparse.Namespace) -> int:
    from eifbuild.pipeline import BuildRequest, build

    if args.json:
        set_quiet(True)
    arch = host_arch()
    with tempfile.TemporaryDirectory(prefix="eifbuild-demo-") as tmp:
        binary = compile_hello(Path(tmp))
        layout = Path(args.layout) if args.layout else Path(tmp) / "layout"
        ref = make_demo_layout(layout, binary, arch)
        req = BuildRequest(
            image=ref,
            output=Path(args.output),
            arch=arch,
            blobs_dir=args.blobs,
            name=DEMO_NAME,
            file_digests=args.json,
        )
        report = build(req)
    if args.json:
        print_json(report.record)
    else:
        info(f"Demo enclave image written to {args.output}; it prints {DEMO_MARKER!r}.")
        print_json({"Measurements": report.result.measurements.as_nitro()})
    return 0
