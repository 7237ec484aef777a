"""CRC-32 helpers: ``crc32_combine`` in pure Python (zlib's GF(2) matrix method).

``crc32_combine(crc(A), crc(B), len(B)) == zlib.crc32(A + B)``. It lets the EIF writer CRC
the sections as they stream and prepend the header's CRC at the end without re-reading.
"""

from __future__ import annotations

_POLY = 0xEDB88320  # reflected 0x04C11DB7 (zlib / PKZIP CRC-32)


def _gf2_times(mat: list[int], vec: int) -> int:
    total = 0
    i = 0
    while vec:
        if vec & 1:
            total ^= mat[i]
        vec >>= 1
        i += 1
    return total


def _gf2_square(mat: list[int]) -> list[int]:
    return [_gf2_times(mat, mat[n]) for n in range(32)]


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of A||B from crc1 = crc32(A), crc2 = crc32(B) and len2 = len(B)."""
    if len2 < 0:
        raise ValueError("len2 must be non-negative")
    if len2 == 0:
        return crc1
    # odd: operator for one zero bit; even: for two zero bits
    odd = [_POLY] + [1 << n for n in range(31)]
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    # apply len2 zero bytes to crc1 (first squaring below gives the one-byte operator)
    while True:
        even = _gf2_square(odd)
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return (crc1 ^ crc2) & 0xFFFFFFFF
