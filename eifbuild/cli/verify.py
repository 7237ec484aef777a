"""``eifbuild verify EIF``: structure, CRC, signature, certificate and PCR expectations."""

from __future__ import annotations

import argparse
import dataclasses

from eifbuild.cli._bars import progress, set_quiet
from eifbuild.cli._common import print_json, print_text
from eifbuild.cli._registry import add_registry_arguments, local_eif
from eifbuild.errors import VerificationError

HELP = "verify an EIF: structure, CRC, signature over the recomputed PCR0, certificate, PCRs"
DESCRIPTION = (
    "Check the EIF's section table and CRC; if it is signed, verify the COSE signature over\n"
    "PcrInfo{0, PCR0} rebuilt from the recomputed PCR0 (the payload inside is not trusted)\n"
    "and the certificate's validity window; optionally pin the certificate and compare PCRs\n"
    "with a measurements JSON (as build/assemble/nitro-cli print it) or --pcr N=HEX.\n"
    "Exit 0 only when every check holds. A stale signature size in the header, as left by\n"
    "`nitro-cli sign-eif` re-signing, is reported as a warning (QEMU rejects such files;\n"
    "`eifbuild sign` rewrites them with a correct header)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("eif", metavar="EIF", help="EIF file (or docker://… EIF artifact) to verify")
    p.add_argument(
        "--certificate", metavar="CERT.pem", help="require a signature by this certificate"
    )
    p.add_argument("--expect", metavar="MEASUREMENTS.json", help="PCR values the EIF must have")
    p.add_argument(
        "--pcr",
        metavar="N=HEX",
        action="append",
        default=[],
        help="expected PCR value (repeatable)",
    )
    p.add_argument("--require-signature", action="store_true", help="fail if the EIF is unsigned")
    p.add_argument(
        "--allow-expired",
        action="store_true",
        help="do not fail on the certificate's validity window",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_registry_arguments(p)


def run(args: argparse.Namespace) -> int:
    from eifbuild.sign.keys import read_pem_file
    from eifbuild.verify import load_expectations, parse_pcr_arg, verify_eif

    if args.json:
        set_quiet(True)
    expect = load_expectations(args.expect) if args.expect else {}
    for item in args.pcr:
        index, value = parse_pcr_arg(item)
        expect[index] = value
    pinned = read_pem_file(args.certificate, "certificate") if args.certificate else None
    with local_eif(args.eif, args) as path, progress(desc="Verifying") as bar:
        report = verify_eif(
            path,
            certificate=pinned,
            expect=expect,
            require_signature=args.require_signature,
            allow_expired=args.allow_expired,
            progress=bar.update,
        )
    report = dataclasses.replace(report, path=args.eif)  # the reference, not a cache path
    if args.json:
        print_json(report.as_json())
    else:
        print_text(report.as_text())
    if not report.ok:
        failed = "; ".join(f"{c.name}: {c.detail}" for c in report.failures())
        raise VerificationError(f"{args.eif}: verification failed: {failed}")
    return 0
