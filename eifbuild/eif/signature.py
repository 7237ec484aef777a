"""The signature SECTION's outer CBOR (docs/spec/eif.md §7.1).

It is serde's encoding of ``Vec<PcrSignature { signing_certificate: Vec<u8>, signature: Vec<u8> }>``:
an array of maps with text keys in field order, where both byte vectors are CBOR **arrays of
unsigned integers** (one uint per byte), not byte strings. ``signing_certificate`` holds the
PEM file's bytes; ``signature`` holds an untagged COSE_Sign1 (built by ``eifbuild.sign``).

``encode_*`` write exactly serde's bytes; ``decode_signature_section`` is strict and bounded.
"""

from __future__ import annotations

from eifbuild.eif.format import SIGNATURE_MAX_SIZE
from eifbuild.errors import EifFormatError

KEY_CERT = "signing_certificate"
KEY_SIG = "signature"
MAX_ENTRIES = 16


def cbor_head(major: int, n: int) -> bytes:
    """Minimal-length CBOR head for major type ``major`` and argument ``n``."""
    if n < 0:
        raise ValueError("CBOR argument must be non-negative")
    m = major << 5
    if n < 24:
        return bytes([m | n])
    if n < 0x100:
        return bytes([m | 24, n])
    if n < 0x10000:
        return bytes([m | 25]) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes([m | 26]) + n.to_bytes(4, "big")
    return bytes([m | 27]) + n.to_bytes(8, "big")


def cbor_text(s: str) -> bytes:
    raw = s.encode("utf-8")
    return cbor_head(3, len(raw)) + raw


def cbor_uint_array(data: bytes) -> bytes:
    """serde's ``Vec<u8>``: an array header, then one CBOR uint per byte."""
    out = bytearray(cbor_head(4, len(data)))
    for b in data:
        if b < 24:
            out.append(b)
        else:
            out += bytes((0x18, b))
    return bytes(out)


def encode_signature_entry(cert_pem: bytes, cose: bytes) -> bytes:
    """One ``PcrSignature`` map."""
    return (
        b"\xa2"
        + cbor_text(KEY_CERT)
        + cbor_uint_array(cert_pem)
        + cbor_text(KEY_SIG)
        + cbor_uint_array(cose)
    )


def encode_signature_section(entries: list[tuple[bytes, bytes]]) -> bytes:
    """The whole section data: CBOR array of ``PcrSignature`` maps, in order."""
    return cbor_head(4, len(entries)) + b"".join(encode_signature_entry(c, s) for c, s in entries)


class _Decoder:
    """Just enough CBOR for the section: definite arrays/maps, text keys, uints <= 255."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.pos = 0
        self.name = name

    def fail(self, problem: str) -> EifFormatError:
        return EifFormatError(f"{self.name}: signature section: {problem} at byte {self.pos}")

    def head(self) -> tuple[int, int]:
        if self.pos >= len(self.data):
            raise self.fail("unexpected end of data")
        first = self.data[self.pos]
        major, info = first >> 5, first & 0x1F
        self.pos += 1
        if info < 24:
            return major, info
        if info > 27:
            raise self.fail("indefinite length or reserved CBOR item")
        width = 1 << (info - 24)
        if self.pos + width > len(self.data):
            raise self.fail("unexpected end of data")
        value = int.from_bytes(self.data[self.pos : self.pos + width], "big")
        self.pos += width
        return major, value

    def text(self) -> str:
        major, n = self.head()
        if major != 3:
            raise self.fail("expected a text key")
        if self.pos + n > len(self.data):
            raise self.fail("text runs past the end")
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("text key is not UTF-8") from None

    def uint_array(self) -> bytes:
        major, n = self.head()
        if major != 4:
            raise self.fail("expected an array of byte values")
        if n > len(self.data) - self.pos:  # every element takes at least one byte
            raise self.fail("array longer than the data")
        out = bytearray()
        for _ in range(n):
            major, value = self.head()
            if major != 0 or value > 0xFF:
                raise self.fail("array element is not a byte value (uint 0..255)")
            out.append(value)
        return bytes(out)

    def entry(self) -> tuple[bytes, bytes]:
        major, n = self.head()
        if major != 5 or n != 2:
            raise self.fail("entry is not a map of two fields")
        fields: dict[str, bytes] = {}
        for _ in range(2):
            key = self.text()
            if key not in (KEY_CERT, KEY_SIG):
                raise self.fail(f"unknown field {key!r}")
            if key in fields:
                raise self.fail(f"duplicate field {key!r}")
            fields[key] = self.uint_array()
        return fields[KEY_CERT], fields[KEY_SIG]


def decode_signature_section(data: bytes, name: str = "EIF") -> list[tuple[bytes, bytes]]:
    """Decode section data into ``[(cert_pem, cose_sign1), ...]``; reject anything else."""
    if len(data) > SIGNATURE_MAX_SIZE:
        raise EifFormatError(
            f"{name}: signature section is {len(data)} bytes (limit {SIGNATURE_MAX_SIZE})"
        )
    dec = _Decoder(data, name)
    major, count = dec.head()
    if major != 4:
        raise dec.fail("not a CBOR array")
    if not 1 <= count <= MAX_ENTRIES:
        raise dec.fail(f"{count} entries (expected 1 to {MAX_ENTRIES})")
    entries = [dec.entry() for _ in range(count)]
    if dec.pos != len(data):
        raise dec.fail("trailing bytes")
    return entries
