"""Detached signing, step 3: a signer that attaches an existing COSE_Sign1 to an EIF.

The signature and certificate are checked up front (sizes, certificate validity), and again
inside the writer against the PCR0 recomputed from the EIF, before the output is renamed into
place: a signature over another PCR0 is refused, never attached.
"""

from __future__ import annotations

import os

from eifbuild.errors import SigningError, VerificationError
from eifbuild.limits import DEFAULT_LIMITS
from eifbuild.smallfile import read_small_file
from eifbuild.types import Signer


def detached_signer(
    eif: str | os.PathLike[str],
    signature: str | os.PathLike[str],
    certificate: str | os.PathLike[str],
    *,
    allow_expired: bool = False,
) -> Signer:
    """A signer (for ``rewrite_signed``) that returns the section holding ``signature``."""
    from eifbuild.sign import check_certificate, signature_section, verify_signature
    from eifbuild.sign.keys import read_pem_file

    sig_name, eif_name = os.fspath(signature), os.fspath(eif)
    cert_pem = read_pem_file(certificate, "signing certificate")
    cose = read_small_file(signature, "signature", DEFAULT_LIMITS.max_cose_bytes, SigningError)
    check_certificate(
        cert_pem, f"signing certificate {os.fspath(certificate)}", allow_expired=allow_expired
    )

    def attach(pcr0_raw: bytes) -> bytes:
        """Runs inside the writer, before the output is renamed into place."""
        try:
            report = verify_signature(cert_pem, cose, pcr0_raw)
        except VerificationError as exc:
            raise SigningError(f"signature {sig_name}: {exc}") from None
        if not report.payload_matches:
            raise SigningError(
                f"signature {sig_name}: signs another PCR0 than {eif_name} has "
                f"({pcr0_raw.hex()}): sign the payload `eifbuild measure {eif_name}` writes"
            )
        return signature_section(cert_pem, cose)

    return attach
