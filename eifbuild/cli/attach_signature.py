"""``eifbuild attach-signature EIF --signature SIG.cose --signing-certificate CERT.pem``."""

from __future__ import annotations

import argparse

from eifbuild.cli._common import output_path
from eifbuild.errors import SigningError, VerificationError
from eifbuild.limits import DEFAULT_LIMITS

HELP = "attach a detached COSE signature to an EIF (detached signing, step 3)"
DESCRIPTION = (
    "Check that SIG.cose verifies with the certificate's key over PcrInfo{0, PCR0} of EIF\n"
    "(recomputed from the file), then write the signed EIF atomically (over EIF unless\n"
    "--output). The result is the same as signing in-process."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("eif", metavar="EIF", help="EIF v4 file to sign")
    p.add_argument("--signature", metavar="SIG.cose", required=True, help="from sign-payload")
    p.add_argument("--signing-certificate", metavar="CERT.pem", required=True)
    p.add_argument(
        "-o",
        "--output",
        type=output_path,
        metavar="OUT.eif",
        help="write here instead of replacing EIF",
    )
    p.add_argument("--allow-expired", action="store_true", help="accept an expired certificate")


def run(args: argparse.Namespace) -> int:
    from eifbuild.cli._signing import write_signed
    from eifbuild.sign import check_certificate, signature_section, verify_signature
    from eifbuild.sign.keys import read_pem_file
    from eifbuild.smallfile import read_small_file

    cert_name = f"signing certificate {args.signing_certificate}"
    cert_pem = read_pem_file(args.signing_certificate, "signing certificate")
    cose = read_small_file(args.signature, "signature", DEFAULT_LIMITS.max_cose_bytes, SigningError)
    check_certificate(cert_pem, cert_name, allow_expired=args.allow_expired)

    def attach(pcr0_raw: bytes) -> bytes:
        """Runs inside the writer, before the output is renamed into place."""
        try:
            report = verify_signature(cert_pem, cose, pcr0_raw)
        except VerificationError as exc:
            raise SigningError(f"signature {args.signature}: {exc}") from None
        if not report.payload_matches:
            raise SigningError(
                f"signature {args.signature}: signs another PCR0 than {args.eif} has "
                f"({pcr0_raw.hex()}): sign the payload `eifbuild measure {args.eif}` writes"
            )
        return signature_section(cert_pem, cose)

    return write_signed(args.eif, args.output, attach, "Attaching")
