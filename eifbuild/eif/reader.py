"""A bounded EIF reader that is safe on hostile files (docs/spec/eif.md §2, §3, §8.4).

Opening validates everything that can be checked without reading section data: magic,
version (3 or 4), reserved header bits, section count (<= 32), every offset and size against
the file size, the section headers against the header tables, contiguity from offset 548 to
EOF, known section types and their order. Nothing is allocated from an untrusted length:
section data is only streamed in chunks or read up to a caller-supplied limit.

One inconsistency is tolerated, as AWS's sequential reader tolerates it: ``nitro-cli sign-eif``
on an already-signed EIF replaces the signature section but leaves the header's
``section_sizes`` entry of the old one. When the *last* section is the signature and its own
section header gives a size that ends exactly at EOF, that size is used and the stale header
entry is recorded in ``EifReader.warnings`` (QEMU's reader, and possibly the hypervisor,
reject such files; ``eifbuild sign`` writes a corrected header).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from eifbuild._prefetch import prefetched
from eifbuild.crc import Crc32
from eifbuild.eif.format import (
    CRC_OFFSET,
    HEADER_SIZE,
    MAGIC,
    MAX_NUM_SECTIONS,
    SECTION_HEADER_SIZE,
    SUPPORTED_VERSIONS,
    EifHeader,
    Section,
    SectionHeader,
    SectionType,
)
from eifbuild.eif.metadata import parse_metadata
from eifbuild.eif.signature import decode_signature_section
from eifbuild.errors import EifbuildError, EifFormatError
from eifbuild.limits import DEFAULT_LIMITS
from eifbuild.measure import CHUNK, FanOut, Measurements, PcrHasher, pcr8_from_pem
from eifbuild.smallfile import open_regular
from eifbuild.types import ARCH_FLAG_ARM64, Arch, Progress

PREFETCH_MIN = 4 << 20  # sections this large are read on a helper thread while they hash


@dataclass(frozen=True)
class ScanResult:
    """One streaming pass over an EIF: its measurements and both CRC values."""

    measurements: Measurements
    crc_stored: int
    crc_computed: int
    pcr0_raw: bytes

    @property
    def crc_ok(self) -> bool:
        return self.crc_stored == self.crc_computed


class EifReader:
    """Validated, read-only view of an EIF file. Use as a context manager."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = str(path)
        self._fh: BinaryIO = open_regular(self.path, self.name, EifFormatError)
        self.warnings: list[str] = []  # tolerated inconsistencies, one line each
        try:
            self.file_size = os.fstat(self._fh.fileno()).st_size
            self.header = self._read_header()
            self.sections: tuple[Section, ...] = tuple(self._read_sections())
            self._check_layout()
        except BaseException:
            self._fh.close()
            raise

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> EifReader:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _fail(self, problem: str) -> EifFormatError:
        return EifFormatError(f"{self.name}: {problem}")

    # ---------------------------------------------------------------- validation
    def _read_exact(self, offset: int, size: int) -> bytes:
        self._fh.seek(offset)
        data = self._fh.read(size)
        if len(data) != size:
            raise self._fail(f"truncated: needs {size} bytes at offset {offset}")
        return data

    def _read_header(self) -> EifHeader:
        if self.file_size < HEADER_SIZE:
            if self.file_size >= 4 and self._read_exact(0, 4) != MAGIC:
                raise self._fail("not an EIF file (bad magic)")
            raise self._fail(
                f"truncated: {self.file_size} bytes, shorter than the {HEADER_SIZE}-byte EIF header"
            )
        magic, hdr = EifHeader.unpack(self._read_exact(0, HEADER_SIZE))
        if magic != MAGIC:
            raise self._fail(f"not an EIF file (bad magic {magic.hex()})")
        if hdr.version not in SUPPORTED_VERSIONS:
            swapped = int.from_bytes(hdr.version.to_bytes(2, "big"), "little")
            if swapped in (2, 3, 4):
                raise self._fail(
                    f"little-endian EIF version {swapped} (pre-release layout) is not supported"
                )
            raise self._fail(f"unsupported EIF version {hdr.version} (supported: 3, 4)")
        if hdr.flags & ~ARCH_FLAG_ARM64:
            raise self._fail(f"reserved header flag bits set (flags 0x{hdr.flags:04x})")
        if not 1 <= hdr.num_sections <= MAX_NUM_SECTIONS:
            raise self._fail(f"section count {hdr.num_sections} is outside 1..{MAX_NUM_SECTIONS}")
        n = hdr.num_sections
        if any(hdr.section_offsets[n:]) or any(hdr.section_sizes[n:]):
            raise self._fail(f"header table has non-zero entries beyond section count {n}")
        return hdr

    def _read_sections(self) -> Iterator[Section]:
        hdr = self.header
        for i in range(hdr.num_sections):
            offset, size = hdr.section_offsets[i], hdr.section_sizes[i]
            if offset < HEADER_SIZE or offset + SECTION_HEADER_SIZE > self.file_size:
                raise self._fail(
                    f"section {i}: offset {offset} is outside the file ({self.file_size} bytes)"
                )
            sh = SectionHeader.unpack(self._read_exact(offset, SECTION_HEADER_SIZE))
            try:
                stype = SectionType(sh.type)
            except ValueError:
                raise self._fail(f"section {i}: unknown section type {sh.type}") from None
            if sh.size != size and self._stale_signature_size(i, stype, offset, size, sh.size):
                size = sh.size
            if sh.size != size:
                raise self._fail(
                    f"section {i} ({stype.label}): size {sh.size} in its section header "
                    f"disagrees with {size} in the EIF header"
                )
            if offset + SECTION_HEADER_SIZE + size > self.file_size:
                raise self._fail(
                    f"section {i} ({stype.label}): {size} bytes at offset {offset} run past end of file"
                )
            if sh.flags:
                raise self._fail(
                    f"section {i} ({stype.label}): reserved section flags 0x{sh.flags:04x} set"
                )
            yield Section(i, stype, offset, size)

    def _stale_signature_size(
        self, index: int, stype: SectionType, offset: int, stale: int, actual: int
    ) -> bool:
        """Accept (with a warning) the stale signature size left by ``nitro-cli sign-eif``."""
        if (
            stype is not SectionType.SIGNATURE
            or index != self.header.num_sections - 1
            or offset + SECTION_HEADER_SIZE + actual != self.file_size
        ):
            return False
        self.warnings.append(
            f"{self.name}: stale EIF header entry section_sizes[{index}] = {stale}: the "
            f"signature section holds {actual} bytes (left by nitro-cli sign-eif re-signing; "
            "QEMU rejects such files; `eifbuild sign` writes a corrected header)"
        )
        return True

    def _check_layout(self) -> None:
        expected = HEADER_SIZE
        for s in self.sections:
            if s.offset != expected:
                raise self._fail(
                    f"section {s.index} ({s.type.label}) starts at {s.offset}, expected {expected} (sections must be contiguous)"
                )
            expected = s.end
        if expected != self.file_size:
            raise self._fail(f"{self.file_size - expected} trailing bytes after the last section")
        self._check_order()
        sig = self.signature_section
        if sig is not None and sig.size > DEFAULT_LIMITS.max_signature_section_bytes:
            raise self._fail(
                f"signature section is {sig.size} bytes (limit {DEFAULT_LIMITS.max_signature_section_bytes})"
            )

    def _check_order(self) -> None:
        types = [s.type for s in self.sections]
        want_meta = self.header.version >= 4
        head = [SectionType.KERNEL, SectionType.CMDLINE] + (
            [SectionType.METADATA] if want_meta else []
        )
        body = types[len(head) :]
        if body and body[-1] is SectionType.SIGNATURE:
            body = body[:-1]
        if (
            types[: len(head)] != head
            or not body
            or any(t is not SectionType.RAMDISK for t in body)
        ):
            got = ", ".join(t.label for t in types)
            want = ", ".join(t.label for t in head) + ", ramdisk..., [signature]"
            raise self._fail(
                f"unexpected section order ({got}); EIF v{self.header.version} needs {want}"
            )

    # ---------------------------------------------------------------- access
    @property
    def arch(self) -> Arch:
        return self.header.arch

    @property
    def version(self) -> int:
        return self.header.version

    def of_type(self, stype: SectionType) -> list[Section]:
        return [s for s in self.sections if s.type is stype]

    @property
    def signature_section(self) -> Section | None:
        sigs = self.of_type(SectionType.SIGNATURE)
        return sigs[0] if sigs else None

    @property
    def is_signed(self) -> bool:
        return self.signature_section is not None

    def iter_data(self, section: Section, chunk: int = CHUNK) -> Iterator[bytes]:
        """Stream a section's data in chunks of at most ``chunk`` bytes."""
        remaining, offset = section.size, section.data_offset
        while remaining:
            self._fh.seek(offset)
            data = self._fh.read(min(chunk, remaining))
            if not data:
                raise self._fail(f"section {section.index}: file shrank while reading")
            offset += len(data)
            remaining -= len(data)
            yield data

    def read_section(self, section: Section, limit: int) -> bytes:
        """A whole (small) section's data; refuses sections larger than ``limit``."""
        if section.size > limit:
            raise self._fail(
                f"section {section.index} ({section.type.label}) is {section.size} bytes, over the {limit}-byte limit"
            )
        return self._read_exact(section.data_offset, section.size)

    def cmdline(self) -> bytes:
        return self.read_section(
            self.of_type(SectionType.CMDLINE)[0], DEFAULT_LIMITS.max_cmdline_bytes
        )

    def metadata_bytes(self) -> bytes | None:
        meta = self.of_type(SectionType.METADATA)
        return (
            self.read_section(meta[0], DEFAULT_LIMITS.max_metadata_section_bytes) if meta else None
        )

    def metadata(self) -> dict[str, Any] | None:
        raw = self.metadata_bytes()
        return None if raw is None else parse_metadata(raw, f"{self.name}: metadata")

    def signature_entries(self) -> list[tuple[bytes, bytes]] | None:
        """``[(cert_pem, cose_sign1), ...]`` from the signature section, or None if unsigned."""
        sig = self.signature_section
        if sig is None:
            return None
        return decode_signature_section(
            self.read_section(sig, DEFAULT_LIMITS.max_signature_section_bytes), self.name
        )

    def pcr8(self) -> str | None:
        entries = self.signature_entries()
        if entries is None:
            return None
        try:
            return pcr8_from_pem(entries[0][0], f"{self.name}: signing certificate")
        except EifbuildError as exc:
            raise EifFormatError(str(exc)) from None

    def scan(self, progress: Progress | None = None) -> ScanResult:
        """One streaming pass: PCR0/1/2 (+PCR8) and the CRC as AWS's reader computes it."""
        hdr_bytes = self._read_exact(0, HEADER_SIZE)
        crc = Crc32()
        crc.update(hdr_bytes[:CRC_OFFSET])
        pcr0, pcr1, pcr2 = PcrHasher(), PcrHasher(), PcrHasher()
        ramdisks_seen = 0
        with FanOut() as fan:
            for s in self.sections:
                if s.type in (SectionType.KERNEL, SectionType.CMDLINE):
                    hashers = [pcr0]
                elif s.type is SectionType.RAMDISK:
                    hashers = [pcr0] if ramdisks_seen == 0 else [pcr0, pcr2]
                    ramdisks_seen += 1
                else:
                    hashers = []
                crc.update(SectionHeader(s.type, s.size).pack())
                chunks = self.iter_data(s)
                if len(hashers) > 1 and s.size >= PREFETCH_MIN and (os.cpu_count() or 1) > 1:
                    chunks = prefetched(chunks)  # read ahead while both streams hash
                try:
                    for chunk in chunks:
                        fan.update(chunk, hashers, crc=crc)
                        if progress is not None:
                            progress(len(chunk))
                finally:
                    close = getattr(chunks, "close", None)
                    if close is not None:
                        close()  # stops the reading thread if hashing failed
                if s.type is SectionType.RAMDISK and ramdisks_seen == 1:
                    pcr1 = pcr0.copy()
        stored = int.from_bytes(hdr_bytes[CRC_OFFSET:HEADER_SIZE], "big")
        m = Measurements(pcr0.hexdigest(), pcr1.hexdigest(), pcr2.hexdigest(), self.pcr8())
        return ScanResult(m, stored, crc.value, pcr0.digest())
