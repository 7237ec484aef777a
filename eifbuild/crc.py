"""CRC-32 helpers: ``crc32_combine`` in pure Python (zlib's GF(2) matrix method).

``crc32_combine(crc(A), crc(B), len(B)) == zlib.crc32(A + B)``. It lets the EIF writer CRC
the sections as they stream and prepend the header's CRC at the end without re-reading.
"""

from __future__ import annotations

import zlib

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


def shift_operator(length: int) -> list[int]:
    """The GF(2) matrix that advances a CRC-32 register over ``length`` zero bytes.

    ``apply_operator(shift_operator(len(B)), crc32(A)) ^ crc32(B) == crc32(A + B)``. Building
    it costs about as much as a few ``crc32_combine`` calls; applying it is one matrix-vector
    product, so a cached operator makes per-chunk combining cheap.
    """
    if length < 0:
        raise ValueError("length must be non-negative")
    result = [1 << n for n in range(32)]  # identity
    odd = [_POLY] + [1 << n for n in range(31)]
    even = _gf2_square(odd)
    odd = _gf2_square(even)
    while length:
        even = _gf2_square(odd)
        if length & 1:
            result = [_gf2_times(even, v) for v in result]
        length >>= 1
        if not length:
            break
        odd = _gf2_square(even)
        if length & 1:
            result = [_gf2_times(odd, v) for v in result]
        length >>= 1
    return result


def apply_operator(operator: list[int], crc: int) -> int:
    return _gf2_times(operator, crc)


class Crc32:
    """A running zlib CRC-32 that can take a chunk in two parts computed on two threads.

    ``update(data)`` is the plain sequential form. For the split form, one thread computes
    ``head(data, k)`` (continuing the running value over ``data[:k]``) while another computes
    ``tail(data, k)`` (a fresh CRC of ``data[k:]``); ``join`` then merges them with a cached
    shift operator for ``len(data) - k`` bytes.
    """

    MAX_CACHED = 8

    def __init__(self, value: int = 0) -> None:
        self.value = value
        self._ops: dict[int, list[int]] = {}

    def update(self, data: bytes | memoryview) -> None:
        self.value = zlib.crc32(data, self.value)

    def head(self, data: bytes, k: int) -> int:
        return zlib.crc32(memoryview(data)[:k], self.value)

    @staticmethod
    def tail(data: bytes, k: int) -> int:
        return zlib.crc32(memoryview(data)[k:])

    def join(self, head: int, tail: int, tail_len: int) -> None:
        op = self._ops.get(tail_len)
        if op is None:
            if len(self._ops) >= self.MAX_CACHED:
                self._ops.clear()
            op = self._ops[tail_len] = shift_operator(tail_len)
        self.value = apply_operator(op, head) ^ tail
