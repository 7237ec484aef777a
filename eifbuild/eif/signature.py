"""The signature SECTION's outer CBOR (docs/spec/eif.md §7.1).

It is serde's encoding of ``Vec<PcrSignature { signing_certificate: Vec<u8>, signature: Vec<u8> }>``:
an array of maps with text keys in field order, where both byte vectors are CBOR **arrays of
unsigned integers** (one uint per byte), not byte strings. ``signing_certificate`` holds the
PEM file's bytes; ``signature`` holds an untagged COSE_Sign1 (built by ``eifbuild.sign``).

``encode_*`` write exactly serde's bytes; ``decode_signature_section`` is strict and bounded.
"""

from __future__ import annotations

from eifbuild.cbor import cbor_head, cbor_text, cbor_uint_array
from eifbuild.errors import EifFormatError
from eifbuild.limits import DEFAULT_LIMITS

KEY_CERT = "signing_certificate"
KEY_SIG = "signature"


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
    limit = DEFAULT_LIMITS.max_signature_section_bytes
    if len(data) > limit:
        raise EifFormatError(f"{name}: signature section is {len(data)} bytes (limit {limit})")
    dec = _Decoder(data, name)
    major, count = dec.head()
    if major != 4:
        raise dec.fail("not a CBOR array")
    if not 1 <= count <= DEFAULT_LIMITS.max_signature_entries:
        raise dec.fail(f"{count} entries (expected 1 to {DEFAULT_LIMITS.max_signature_entries})")
    entries = [dec.entry() for _ in range(count)]
    if dec.pos != len(data):
        raise dec.fail("trailing bytes")
    return entries
