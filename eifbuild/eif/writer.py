"""Streaming, single-pass EIF v4 writer, byte-identical to AWS's ``EifBuilder`` / ``eif_build``.

Layout (docs/spec/eif.md §1): 548-byte header, then kernel, cmdline, metadata, ramdisk..., [signature], each
as a 12-byte section header followed by its data, with no padding. Section data is streamed
once: written, hashed into the PCRs and CRC'd in the same pass. Sources of unknown length get
a placeholder section header that is back-patched (a seek + 12-byte write, never a re-read);
the header goes in last, and its CRC is joined to the sections' CRC with ``crc32_combine``.
Output goes through ``atomic_output``: nothing appears at ``path`` unless everything succeeded.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

from eifbuild._atomic import atomic_output
from eifbuild._prefetch import prefetched
from eifbuild.crc import Crc32, crc32_combine
from eifbuild.eif.format import (
    HEADER_SIZE,
    MAX_NUM_SECTIONS,
    SECTION_HEADER_SIZE,
    EifHeader,
    Section,
    SectionHeader,
    SectionType,
)
from eifbuild.eif.metadata import parse_metadata
from eifbuild.eif.signature import decode_signature_section
from eifbuild.errors import EifWriteError, SigningError
from eifbuild.limits import DEFAULT_LIMITS
from eifbuild.measure import CHUNK, FanOut, Measurements, PcrHasher, pcr8_from_pem
from eifbuild.smallfile import open_regular
from eifbuild.types import Arch, Progress, Signer

# bytes, a file path, or a zero-argument callable returning an iterator of byte chunks
ByteSource = Union[
    bytes, bytearray, memoryview, str, "os.PathLike[str]", Callable[[], Iterable[bytes]]
]


@dataclass(frozen=True)
class EifResult:
    path: Path
    measurements: Measurements
    size: int  # file size in bytes
    crc32: int
    arch: Arch
    sections: tuple[Section, ...]


def _source_name(src: ByteSource, label: str) -> str:
    return str(src) if isinstance(src, (str, os.PathLike)) else label


def _read_path(path: str | os.PathLike[str]) -> Iterator[bytes]:
    fh = open_regular(path, str(path), EifWriteError)
    try:
        while chunk := fh.read(CHUNK):
            yield chunk
    finally:
        fh.close()


def iter_source(src: ByteSource, label: str) -> Iterator[bytes]:
    """Chunks of a ByteSource; small chunks are coalesced to about ``CHUNK`` bytes."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        view = memoryview(src).cast("B")
        for start in range(0, len(view), CHUNK):
            yield bytes(view[start : start + CHUNK])
        return
    if isinstance(src, (str, os.PathLike)):
        yield from _read_path(src)
        return
    if not callable(src):
        raise EifWriteError(f"{label}: unsupported source type {type(src).__name__}")
    pending = bytearray()
    for chunk in src():
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise EifWriteError(f"{label}: source yielded {type(chunk).__name__}, not bytes")
        if not pending and len(chunk) >= CHUNK:
            yield bytes(chunk)
            continue
        pending += chunk
        if len(pending) >= CHUNK:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)


def _known_size(src: ByteSource) -> int | None:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return memoryview(src).nbytes
    return None


class _SectionStream:
    """Writes sections one after another, tracking offsets, sizes and the running CRC."""

    def __init__(self, fh: BinaryIO, fan: FanOut, progress: Progress | None) -> None:
        self.fh = fh
        self.fan = fan
        self.progress = progress
        self.pos = HEADER_SIZE
        self.crc = 0  # CRC-32 of everything from offset 548 written so far
        self.sections: list[Section] = []
        fh.seek(HEADER_SIZE)

    def add(
        self, stype: SectionType, src: ByteSource, hashers: list[PcrHasher], label: str
    ) -> None:
        if len(self.sections) >= MAX_NUM_SECTIONS:
            raise EifWriteError(f"{label}: an EIF holds at most {MAX_NUM_SECTIONS} sections")
        offset = self.pos
        guess = _known_size(src) or 0
        self.fh.write(SectionHeader(stype, guess).pack())
        size = 0
        data_crc = Crc32()
        chunks = iter_source(src, label)
        if callable(src) and (os.cpu_count() or 1) > 1:
            chunks = prefetched(chunks)  # produce (walk, inflate, cpio) while hashing
        try:
            for chunk in chunks:
                self.fan.update(chunk, hashers, self.fh.write, crc=data_crc)
                size += len(chunk)
                if self.progress is not None:
                    self.progress(len(chunk))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # stops a prefetching producer when writing failed
        header = SectionHeader(stype, size).pack()
        if size != guess:  # back-patch the section header, then return to the end
            self.fh.seek(offset)
            self.fh.write(header)
            self.fh.seek(offset + SECTION_HEADER_SIZE + size)
        section_crc = crc32_combine(zlib.crc32(header), data_crc.value, size)
        self.crc = crc32_combine(self.crc, section_crc, SECTION_HEADER_SIZE + size)
        self.pos = offset + SECTION_HEADER_SIZE + size
        self.sections.append(Section(len(self.sections), stype, offset, size))


def _check_cmdline(cmdline: bytes | str) -> bytes:
    raw = cmdline.encode("utf-8") if isinstance(cmdline, str) else bytes(cmdline)
    if b"\0" in raw:
        raise EifWriteError("cmdline: contains a NUL byte")
    return raw


def _sign(signer: Signer, pcr0_raw: bytes) -> tuple[bytes, str]:
    section = signer(pcr0_raw)
    if not isinstance(section, (bytes, bytearray)):
        raise SigningError("signer returned no signature section bytes")
    if len(section) > DEFAULT_LIMITS.max_signature_section_bytes:
        raise SigningError(
            f"signature section is {len(section)} bytes, over the {DEFAULT_LIMITS.max_signature_section_bytes}-byte limit "
            "(is the certificate file a long chain?)"
        )
    entries = decode_signature_section(bytes(section), "signature")
    return bytes(section), pcr8_from_pem(entries[0][0], "signing certificate")


def write_eif(
    path: str | os.PathLike[str],
    *,
    kernel: ByteSource,
    cmdline: bytes | str,
    metadata: bytes,
    ramdisks: Iterable[ByteSource],
    arch: str | Arch = "x86_64",
    signer: Signer | None = None,
    progress: Progress | None = None,
) -> EifResult:
    """Write an EIF v4 to ``path`` in one streaming pass and return its measurements.

    ``kernel`` and each ramdisk are ByteSources (bytes, a path, or a callable returning an
    iterator of chunks of unknown total size). ``cmdline`` is stored verbatim (no trimming,
    no NUL). ``metadata`` is the section's JSON bytes (see ``encode_metadata``).
    ``signer(pcr0_raw)`` returns the whole signature section, appended last.
    """
    try:
        the_arch = Arch.parse(arch)
    except ValueError as exc:
        raise EifWriteError(str(exc)) from None
    cmd = _check_cmdline(cmdline)
    parse_metadata(bytes(metadata), "metadata")
    rds = list(ramdisks)
    limit = MAX_NUM_SECTIONS - 3 - (1 if signer else 0)
    if not rds:
        raise EifWriteError("at least one ramdisk is required")
    if len(rds) > limit:
        raise EifWriteError(f"{len(rds)} ramdisks given; at most {limit} fit in an EIF")
    try:
        return _write(Path(path), kernel, cmd, bytes(metadata), rds, the_arch, signer, progress)
    except OSError as exc:
        raise EifWriteError(f"{path}: cannot write EIF ({exc.strerror or exc})") from None


def _write(
    path: Path,
    kernel: ByteSource,
    cmd: bytes,
    metadata: bytes,
    rds: list[ByteSource],
    the_arch: Arch,
    signer: Signer | None,
    progress: Progress | None,
) -> EifResult:
    pcr0, pcr2 = PcrHasher(), PcrHasher()
    pcr8: str | None = None
    with atomic_output(path) as fh, FanOut() as fan:
        out = _SectionStream(fh, fan, progress)
        out.add(SectionType.KERNEL, kernel, [pcr0], _source_name(kernel, "kernel"))
        out.add(SectionType.CMDLINE, cmd, [pcr0], "cmdline")
        out.add(SectionType.METADATA, metadata, [], "metadata")
        out.add(SectionType.RAMDISK, rds[0], [pcr0], _source_name(rds[0], "ramdisk 0"))
        pcr1 = pcr0.copy()  # PCR1 = kernel || cmdline || ramdisk 0
        for i, rd in enumerate(rds[1:], start=1):
            out.add(SectionType.RAMDISK, rd, [pcr0, pcr2], _source_name(rd, f"ramdisk {i}"))
        if signer is not None:
            section, pcr8 = _sign(signer, pcr0.digest())
            out.add(SectionType.SIGNATURE, section, [], "signature")
        header = EifHeader(flags=the_arch.flags, num_sections=len(out.sections))
        for s in out.sections:
            header.section_offsets[s.index] = s.offset
            header.section_sizes[s.index] = s.size
        header.crc32 = crc32_combine(
            zlib.crc32(header.pack_without_crc()), out.crc, out.pos - HEADER_SIZE
        )
        fh.seek(0)
        fh.write(header.pack())
        fh.seek(out.pos)
        fh.truncate()
    measurements = Measurements(pcr0.hexdigest(), pcr1.hexdigest(), pcr2.hexdigest(), pcr8)
    return EifResult(path, measurements, out.pos, header.crc32, the_arch, tuple(out.sections))
