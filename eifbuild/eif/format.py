"""Byte layout of the EIF header and section headers (docs/spec/eif.md §1-§3).

All integers are big-endian; there is no padding anywhere.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from eifbuild.types import Arch

MAGIC = b".eif"
CURRENT_VERSION = 4
SUPPORTED_VERSIONS = (3, 4)
HEADER_SIZE = 548
SECTION_HEADER_SIZE = 12
MAX_NUM_SECTIONS = 32
CRC_OFFSET = 544  # the CRC field; CRC covers header[0:544] then every section header + data
DEFAULT_MEM = 1 << 30  # 1 GiB, written by every AWS tool, used by none
DEFAULT_CPUS = 2

# magic, version, flags, default_mem, default_cpus, reserved, num_sections
_FIXED = struct.Struct(">4sHHQQHH")
_TABLE = struct.Struct(">32Q")
_TAIL = struct.Struct(">II")  # unused, crc32
_SECTION = struct.Struct(">HHQ")
assert _FIXED.size + 2 * _TABLE.size + _TAIL.size == HEADER_SIZE
assert _SECTION.size == SECTION_HEADER_SIZE


class SectionType(enum.IntEnum):
    """Section type values (docs/spec/eif.md §3.1). 0 and values >= 6 are invalid."""

    KERNEL = 1
    CMDLINE = 2
    RAMDISK = 3
    SIGNATURE = 4
    METADATA = 5

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass
class EifHeader:
    """The 548-byte EIF header."""

    version: int = CURRENT_VERSION
    flags: int = 0
    default_mem: int = DEFAULT_MEM
    default_cpus: int = DEFAULT_CPUS
    reserved: int = 0
    num_sections: int = 0
    section_offsets: list[int] = field(default_factory=lambda: [0] * MAX_NUM_SECTIONS)
    section_sizes: list[int] = field(default_factory=lambda: [0] * MAX_NUM_SECTIONS)
    unused: int = 0
    crc32: int = 0

    @property
    def arch(self) -> Arch:
        return Arch.from_flags(self.flags)

    def pack_without_crc(self) -> bytes:
        """Bytes [0, 544): everything the CRC covers from the header."""
        return (
            _FIXED.pack(
                MAGIC,
                self.version,
                self.flags,
                self.default_mem,
                self.default_cpus,
                self.reserved,
                self.num_sections,
            )
            + _TABLE.pack(*self.section_offsets)
            + _TABLE.pack(*self.section_sizes)
            + struct.pack(">I", self.unused)
        )

    def pack(self) -> bytes:
        return self.pack_without_crc() + struct.pack(">I", self.crc32)

    @classmethod
    def unpack(cls, data: bytes) -> tuple[bytes, EifHeader]:
        """Parse 548 bytes; return (magic, header). The caller validates the magic."""
        if len(data) != HEADER_SIZE:
            raise ValueError(f"EIF header needs {HEADER_SIZE} bytes, got {len(data)}")
        magic, version, flags, mem, cpus, reserved, num = _FIXED.unpack_from(data, 0)
        offsets = list(_TABLE.unpack_from(data, _FIXED.size))
        sizes = list(_TABLE.unpack_from(data, _FIXED.size + _TABLE.size))
        unused, crc = _TAIL.unpack_from(data, _FIXED.size + 2 * _TABLE.size)
        hdr = cls(version, flags, mem, cpus, reserved, num, offsets, sizes, unused, crc)
        return magic, hdr


@dataclass(frozen=True)
class SectionHeader:
    """The 12-byte header in front of every section's data."""

    type: int
    size: int
    flags: int = 0

    def pack(self) -> bytes:
        return _SECTION.pack(self.type, self.flags, self.size)

    @classmethod
    def unpack(cls, data: bytes) -> SectionHeader:
        stype, flags, size = _SECTION.unpack(data)
        return cls(type=stype, size=size, flags=flags)


@dataclass(frozen=True)
class Section:
    """One section as located in a file: ``offset`` is that of its 12-byte section header."""

    index: int
    type: SectionType
    offset: int
    size: int

    @property
    def data_offset(self) -> int:
        return self.offset + SECTION_HEADER_SIZE

    @property
    def end(self) -> int:
        return self.data_offset + self.size
