"""``eifbuild sign-payload OUT.cbor --private-key KEY --output SIG.cose``: detached step 2."""

from __future__ import annotations

import argparse

from eifbuild._atomic import write_atomic
from eifbuild.cli._common import info, output_path, print_json
from eifbuild.cli._signing import add_kms_arguments
from eifbuild.errors import SigningError, UsageError
from eifbuild.limits import DEFAULT_LIMITS

HELP = "sign a payload written by `measure --payload` (detached signing, step 2; runs where the key is)"
DESCRIPTION = (
    "Sign the PcrInfo payload with a PEM EC key or an AWS KMS key and write the COSE_Sign1.\n"
    "The payload must be exactly PcrInfo{0, PCR0}. With --pcr0 the payload must hold that\n"
    "PCR0; with --signing-certificate the certificate must hold the signing key."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "payload", metavar="PAYLOAD.cbor", help="payload from `eifbuild measure --payload`"
    )
    p.add_argument("--private-key", metavar="KEY", required=True, help="PEM EC key or KMS key")
    p.add_argument(
        "-o",
        "--output",
        type=output_path,
        metavar="SIG.cose",
        required=True,
        help="COSE_Sign1 output",
    )
    p.add_argument("--pcr0", metavar="HEX", help="refuse unless the payload signs this PCR0")
    p.add_argument(
        "--signing-certificate",
        metavar="CERT.pem",
        help="check that this certificate holds the key and is valid",
    )
    p.add_argument("--allow-expired", action="store_true", help="accept an expired certificate")
    add_kms_arguments(p.add_argument_group("AWS KMS"))


def run(args: argparse.Namespace) -> int:
    from eifbuild.measure import is_pcr_hex
    from eifbuild.sign import check_certificate, open_key, sign_payload
    from eifbuild.sign.cose import parse_pcr_info
    from eifbuild.sign.keys import read_pem_file
    from eifbuild.smallfile import read_small_file

    payload = read_small_file(
        args.payload, "payload", DEFAULT_LIMITS.max_payload_bytes, SigningError
    )
    _, pcr0 = parse_pcr_info(payload)
    if args.pcr0 is not None:
        want = args.pcr0.strip().lower()
        if not is_pcr_hex(want):
            raise UsageError(f"--pcr0 {args.pcr0}: expected 96 hex digits")
        if pcr0.hex() != want:
            raise SigningError(f"payload {args.payload}: signs PCR0 {pcr0.hex()}, not {want}")
    backend = open_key(
        args.private_key,
        kms_region=args.kms_region,
        kms_endpoint=args.kms_endpoint,
        kms_message_type=args.kms_message_type,
    )
    if args.signing_certificate:
        cert_pem = read_pem_file(args.signing_certificate, "signing certificate")
        check_certificate(
            cert_pem,
            f"signing certificate {args.signing_certificate}",
            key=backend.public_key(),
            allow_expired=args.allow_expired,
        )
    cose = sign_payload(payload, backend)
    write_atomic(args.output, cose)
    info(f"COSE_Sign1 ({len(cose)} bytes) written to {args.output}")
    print_json({"PCR0": pcr0.hex(), "Signature": args.output})
    return 0
