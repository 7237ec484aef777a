"""One exception root for everything eifbuild reports to a user.

Every error carries a one-line, human message that names the input and the problem.
The CLI prints ``eifbuild: error: <message>`` and exits with ``exit_code``.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # bad input, verification failed, build failed
EXIT_USAGE = 2  # command-line usage error (argparse)


class EifbuildError(Exception):
    """Root of all user-facing errors."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str) -> None:
        # Keep messages on one line: hostile inputs must not be able to forge extra lines.
        super().__init__(" ".join(message.split("\n")))

    @property
    def message(self) -> str:
        return str(self)


class UsageError(EifbuildError):
    """Arguments that parse but do not make sense together."""

    exit_code = EXIT_USAGE


class EifFormatError(EifbuildError):
    """An EIF file is malformed, truncated or unsupported."""


class ImageSourceError(EifbuildError):
    """A container image reference, archive, layout or blob is missing or invalid."""


class RootfsError(EifbuildError):
    """A layer cannot be flattened safely (hostile entry, size limit, unsupported type)."""


class RamdiskError(EifbuildError):
    """A ramdisk cannot be written or read."""


class BlobsError(EifbuildError):
    """Kernel, init, cmdline or module blobs are missing or invalid."""


class KernelBuildError(EifbuildError):
    """Building the kernel or init failed."""


class ToolchainError(KernelBuildError):
    """The pinned toolchain root cannot be fetched, verified, bootstrapped or entered."""


class KernelMismatchError(KernelBuildError):
    """A built kernel or init differs from ``kernels/<arch>/expected.json``."""


class BootTestError(EifbuildError):
    """A QEMU boot test could not run."""


class SigningError(EifbuildError):
    """Signing failed (bad key, KMS error, certificate problem)."""


class VerificationError(EifbuildError):
    """A signature, CRC, or measurement check failed."""


class RegistryError(EifbuildError):
    """A registry request failed (auth, not found, digest mismatch, too large, unreachable)."""


class PolicyError(EifbuildError):
    """A key policy cannot be produced, read, merged or checked (bad input, template, JSON)."""


class AttestationError(EifbuildError):
    """A Nitro attestation document is malformed, or its signature or certificate chain fails."""


class MetadataError(EifbuildError):
    """Custom metadata or a kernel config cannot be used."""


class EifWriteError(EifbuildError):
    """The inputs of an EIF cannot be written (unreadable source, bad cmdline, too many sections)."""


class DemoError(EifbuildError):
    """The demo image cannot be made (no musl-gcc, compile failure)."""
