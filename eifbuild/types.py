"""Types shared by every layer: :class:`Arch`, and the callback types ``Signer``, ``Progress``
and ``Warn``.

An architecture has three names: the OCI name of image configs and indexes (``amd64``,
``arm64``), the kernel/toolchain name (``x86_64``, ``aarch64``) and the EIF header flag
(bit 0 set for aarch64). :meth:`Arch.parse` is the one table of spellings users and images use.
"""

from __future__ import annotations

import enum
import platform
from collections.abc import Callable

# signer(pcr0_raw) -> the whole signature section (type 4) of the EIF being written
Signer = Callable[[bytes], bytes]
# progress(n): n more bytes (or items) are done; the CLI passes a tqdm bar's update
Progress = Callable[[int], object]
# warn(message): a tolerated problem, one line, without a "warning:" prefix
Warn = Callable[[str], None]

ARCH_FLAG_ARM64 = 0x0001  # EIF header flags, bit 0


class Arch(enum.Enum):
    """A CPU architecture an enclave image can target. ``value`` is the kernel name."""

    X86_64 = "x86_64"
    AARCH64 = "aarch64"

    @property
    def kernel(self) -> str:
        """Linux / toolchain name: ``x86_64`` or ``aarch64``."""
        return self.value

    @property
    def oci(self) -> str:
        """OCI image-spec name: ``amd64`` or ``arm64``."""
        return "arm64" if self is Arch.AARCH64 else "amd64"

    @property
    def flags(self) -> int:
        """The EIF header flags for this architecture."""
        return ARCH_FLAG_ARM64 if self is Arch.AARCH64 else 0

    @classmethod
    def from_flags(cls, flags: int) -> Arch:
        return cls.AARCH64 if flags & ARCH_FLAG_ARM64 else cls.X86_64

    @classmethod
    def parse(cls, value: str | Arch) -> Arch:
        """Any accepted spelling (case-insensitive): x86_64, x86-64, amd64, aarch64, arm64."""
        if isinstance(value, Arch):
            return value
        try:
            return ARCH_ALIASES[value.lower()]
        except KeyError:
            raise ValueError(
                f"unknown architecture {value!r} (expected x86_64/amd64 or aarch64/arm64)"
            ) from None

    @classmethod
    def host(cls) -> Arch | None:
        """The architecture of this machine, or None when it is neither."""
        try:
            return cls.parse(platform.machine())
        except ValueError:
            return None


ARCH_ALIASES: dict[str, Arch] = {
    "x86_64": Arch.X86_64,
    "x86-64": Arch.X86_64,
    "amd64": Arch.X86_64,
    "aarch64": Arch.AARCH64,
    "arm64": Arch.AARCH64,
}
ARCH_CHOICES = tuple(ARCH_ALIASES)  # for argparse: every spelling parse() accepts
