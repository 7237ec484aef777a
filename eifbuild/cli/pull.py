"""``eifbuild pull docker://REGISTRY/REPO@sha256:… -o APP.eif``: fetch a published EIF, verified."""

from __future__ import annotations

import argparse

from eifbuild.cli._bars import progress, set_quiet
from eifbuild.cli._common import info, output_path, print_json
from eifbuild.cli._registry import add_registry_arguments, registry_options

HELP = "fetch an EIF artifact from a registry, verifying digests and PCRs"
DESCRIPTION = """Download an EIF pushed by `eifbuild push`, check every digest and size, recompute
the EIF's PCRs and compare them with the artifact's annotations and measurements blob (exit 1
on any difference, leaving no output file), then write it atomically. Prints the measurements
(as `build` does); --json prints the resolved digest and the annotations too."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="docker://REGISTRY/REPO[:TAG]@sha256:…", help="artifact")
    p.add_argument(
        "--output", "-o", required=True, type=output_path, metavar="OUT.eif", help="EIF to write"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_registry_arguments(p)


def run(args: argparse.Namespace) -> int:
    from eifbuild.registry import pull_eif

    if args.json:
        set_quiet(True)
    with progress(desc="pulling") as bar:
        result = pull_eif(
            args.source, args.output, options=registry_options(args), progress=bar.update
        )
    if args.json:
        print_json(result.as_json())
        return 0
    info(f"pulled {result.resolved}")
    print_json({"Measurements": result.measurements.as_nitro()})
    return 0
