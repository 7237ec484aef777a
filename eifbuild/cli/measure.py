"""``eifbuild measure EIF --payload OUT.cbor``: first step of detached signing."""

from __future__ import annotations

import argparse

from eifbuild._atomic import write_atomic
from eifbuild.cli._bars import progress
from eifbuild.cli._common import info, output_path, print_json, warn

HELP = "measure an EIF and write the exact bytes to sign (detached signing, step 1)"
DESCRIPTION = (
    "Print the EIF's measurements and, with --payload, write the signing payload: the CBOR\n"
    "PcrInfo{0, PCR0} that `eifbuild sign-payload` signs where the key lives. Attach the\n"
    "result with `eifbuild attach-signature`."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("eif", metavar="EIF", help="EIF file to measure")
    p.add_argument(
        "--payload", type=output_path, metavar="OUT.cbor", help="write the signing payload here"
    )


def run(args: argparse.Namespace) -> int:
    from eifbuild.eif.reader import EifReader
    from eifbuild.sign.cose import pcr_info

    with EifReader(args.eif) as reader:
        for warning in reader.warnings:
            warn(warning)
        total = sum(s.size for s in reader.sections)
        with progress(total=total, desc="Measuring") as bar:
            scan = reader.scan(progress=bar.update)
    out: dict[str, object] = {"Measurements": scan.measurements.as_nitro()}
    if args.payload:
        payload = pcr_info(scan.pcr0_raw, 0)
        write_atomic(args.payload, payload)
        info(f"Signing payload ({len(payload)} bytes, PcrInfo of PCR0) written to {args.payload}")
        out["Payload"] = {"Path": args.payload, "Size": len(payload), "RegisterIndex": 0}
    print_json(out)
    return 0
