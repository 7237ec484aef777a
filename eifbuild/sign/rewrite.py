"""Re-sign an existing EIF: stream its sections through ``write_eif`` with a new signature.

The kernel, cmdline, metadata and ramdisks are copied chunk by chunk (never held in memory),
the architecture flag is kept, any old signature section is dropped, and the new one is
appended last with correct header sizes and CRC. The output is written atomically, so the
input may be replaced in place (temp file + rename).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from eifbuild.errors import EifFormatError, SigningError
from eifbuild.types import Progress, Signer

if TYPE_CHECKING:
    from eifbuild.eif.format import Section
    from eifbuild.eif.reader import EifReader
    from eifbuild.eif.writer import EifResult


def _source(reader: EifReader, section: Section) -> Callable[[], Iterator[bytes]]:
    return lambda: reader.iter_data(section)


def rewrite_signed(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    signer: Signer,
    progress: Progress | None = None,
) -> tuple[EifResult, str]:
    """Write ``dst`` = ``src`` signed by ``signer``; return the result and the input's PCR0 hex.

    Refuses EIFs without a metadata section (v3): ``write_eif`` writes v4 only.
    """
    from eifbuild.eif.format import SectionType
    from eifbuild.eif.reader import EifReader
    from eifbuild.eif.writer import write_eif

    with EifReader(src) as reader:
        meta = reader.metadata_bytes()
        if meta is None:
            raise EifFormatError(
                f"{src}: EIF v{reader.version} has no metadata section; only v4 can be signed"
            )
        before = reader.scan(progress)

        def checked(pcr0_raw: bytes) -> bytes:
            # Runs inside the writer before the rename: a mismatch leaves no output.
            if pcr0_raw != before.pcr0_raw:
                raise SigningError(f"{src}: PCR0 changed while re-signing (was the file modified?)")
            return signer(pcr0_raw)

        result = write_eif(
            Path(dst),
            kernel=_source(reader, reader.of_type(SectionType.KERNEL)[0]),
            cmdline=reader.cmdline(),
            metadata=meta,
            ramdisks=[_source(reader, s) for s in reader.of_type(SectionType.RAMDISK)],
            arch=reader.arch,
            signer=checked,
            progress=progress,
        )
    return result, before.measurements.pcr0
