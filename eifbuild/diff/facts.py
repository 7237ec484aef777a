"""What the diff compares of one EIF, gathered by streaming (never a whole section in memory).

:func:`gather` takes PCR0/1/2/8 from :meth:`EifReader.scan` (the code ``describe`` uses) and
then hashes every measured input (kernel, cmdline, each ramdisk, the signing certificate) on
its own with SHA-384, so a PCR difference can be traced to the input(s) that changed.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from eifbuild.eif.format import Section, SectionType
from eifbuild.eif.reader import EifReader
from eifbuild.measure import CHUNK, Measurements, certificate_der
from eifbuild.types import Progress

CERTIFICATE = "signing certificate"


class _ChunkIO(io.RawIOBase):
    """A read-only raw stream over an iterator of byte chunks (an EIF section)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self._off = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self._off >= len(self._buf):
            self._buf, self._off = next(self._chunks, b""), 0
            if not self._buf:
                return 0
        n = min(len(buf), len(self._buf) - self._off)
        buf[:n] = self._buf[self._off : self._off + n]
        self._off += n
        return n


def section_stream(reader: EifReader, section: Section) -> BinaryIO:
    """A buffered file object over one section's data (streamed, never loaded whole)."""
    return io.BufferedReader(_ChunkIO(reader.iter_data(section)), buffer_size=1 << 16)


@dataclass(frozen=True)
class InputDigest:
    """One measured input: its SHA-384 and size, and the PCRs it feeds."""

    name: str
    pcrs: tuple[str, ...]
    sha384: str
    size: int


@dataclass
class EifFacts:
    """Everything the diff compares, gathered from one EIF by streaming."""

    path: str
    version: int
    arch: str
    size: int
    crc_ok: bool
    measurements: Measurements
    inputs: dict[str, InputDigest]
    cmdline: bytes
    metadata: dict[str, Any] | None
    ramdisks: list[Section]


def ramdisk_name(index: int) -> str:
    return f"ramdisk {index}"


def input_pcrs(kind: SectionType, ramdisk_index: int = 0) -> tuple[str, ...]:
    """The PCRs an input feeds (docs/spec/eif.md §6.2)."""
    if kind is SectionType.RAMDISK and ramdisk_index > 0:
        return ("PCR0", "PCR2")
    return ("PCR0", "PCR1")


def _sha384(chunks: Iterable[bytes], progress: Progress | None) -> tuple[str, int]:
    h, size = hashlib.sha384(), 0
    for chunk in chunks:
        h.update(chunk)
        size += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return h.hexdigest(), size


def _section_inputs(
    reader: EifReader, ramdisks: list[Section]
) -> Iterator[tuple[str, Section, tuple[str, ...]]]:
    """(name, section, PCRs) of each measured section, in file order."""
    for s in reader.sections:
        if s.type in (SectionType.KERNEL, SectionType.CMDLINE):
            yield s.type.label, s, input_pcrs(s.type)
        elif s.type is SectionType.RAMDISK:
            i = ramdisks.index(s)
            yield ramdisk_name(i), s, input_pcrs(s.type, i)


def _certificate(reader: EifReader) -> InputDigest | None:
    entries = reader.signature_entries()
    if not entries:
        return None
    der = certificate_der(entries[0][0], f"{reader.name}: signing certificate")
    return InputDigest(CERTIFICATE, ("PCR8",), hashlib.sha384(der).hexdigest(), len(der))


def gather(reader: EifReader, progress: Progress | None = None) -> EifFacts:
    """Measurements (one pass) and per-input digests (a second pass) of an open EIF."""
    scan = reader.scan(progress=progress)
    ramdisks = reader.of_type(SectionType.RAMDISK)
    inputs: dict[str, InputDigest] = {}
    for name, section, pcrs in _section_inputs(reader, ramdisks):
        digest, size = _sha384(reader.iter_data(section, CHUNK), progress)
        inputs[name] = InputDigest(name, pcrs, digest, size)
    cert = _certificate(reader)
    if cert is not None:
        inputs[cert.name] = cert
    return EifFacts(
        path=reader.name,
        version=reader.version,
        arch=reader.arch.value,
        size=reader.file_size,
        crc_ok=scan.crc_ok,
        measurements=scan.measurements,
        inputs=inputs,
        cmdline=reader.cmdline(),
        metadata=reader.metadata(),
        ramdisks=ramdisks,
    )
