"""The few CBOR (RFC 8949) forms eifbuild writes, encoded by hand.

AWS's Rust encoders (serde_cbor / ciborium) write definite lengths, shortest heads and text keys
in field order; writing those forms directly keeps the bytes exactly theirs. Decoding is done
elsewhere (strictly, with bounds): ``eifbuild.eif.signature`` and ``eifbuild.sign.cose``.
"""

from __future__ import annotations


def cbor_head(major: int, n: int) -> bytes:
    """The initial byte(s) of a data item: major type ``major``, shortest encoding of ``n``."""
    if n < 0:
        raise ValueError("CBOR argument must be non-negative")
    top = major << 5
    if n < 24:
        return bytes([top | n])
    for extra, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * width):
            return bytes([top | extra]) + n.to_bytes(width, "big")
    raise ValueError("CBOR argument too large")


def cbor_int(value: int) -> bytes:
    """An integer: major type 0 (unsigned) or 1 (negative)."""
    return cbor_head(0, value) if value >= 0 else cbor_head(1, -1 - value)


def cbor_bstr(data: bytes) -> bytes:
    """A byte string."""
    return cbor_head(2, len(data)) + data


def cbor_text(text: str) -> bytes:
    """A UTF-8 text string."""
    raw = text.encode("utf-8")
    return cbor_head(3, len(raw)) + raw


def cbor_uint_array(data: bytes) -> bytes:
    """serde's ``Vec<u8>``: an array header, then one unsigned integer per byte."""
    out = bytearray(cbor_head(4, len(data)))
    for b in data:
        if b < 24:
            out.append(b)
        else:
            out += bytes((0x18, b))
    return bytes(out)


def cbor_array_head(n: int) -> bytes:
    """The head of an array of ``n`` items."""
    return cbor_head(4, n)


def cbor_map_head(n: int) -> bytes:
    """The head of a map of ``n`` pairs."""
    return cbor_head(5, n)
