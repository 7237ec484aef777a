"""A small, bounded tar HEADER reader (ustar, GNU, PAX); contents are skipped, never read.

Layers (plain, gzip, zstd) and the outer ``docker save`` / ``oci-archive`` tar go through
:func:`read_headers`. It yields one frozen :class:`TarHeader` per entry, carrying the offset
and size of the entry's data in the (uncompressed) tar; readers re-read contents by offset.
The byte source is either a file region read in place (:class:`FileSource`) or a forward-only
stream of chunks, e.g. a gzip layer being inflated (:class:`ChunkSource`).

Semantics follow Go's ``archive/tar`` (what Docker uses to write and read layers):

* the archive ends at two zero blocks, at one zero block followed by the end of the data, or
  at the end of the data on a header boundary; a zero block followed by anything else, a
  partial block, a bad checksum or a malformed numeric field is an error wherever it occurs
  (Python's ``tarfile`` silently ends the archive at a corrupt header after the first);
* checksums are accepted as unsigned or signed byte sums; numbers are octal (NUL/space
  padded) or base-256 (high bit of the first byte set, two's complement);
* the ustar ``prefix`` field is joined to the name for ustar/PAX headers (magic ``ustar\\0``
  version ``00``; 131 bytes for star archives), not for GNU or V7 headers;
* PAX ``x`` records (``path``, ``linkpath``, ``size``, ``uid``, ``gid``, ``mtime``, extended
  attribute keys) apply to the next entry; a later ``x`` header replaces an earlier one; GNU
  ``L``/``K`` long names apply to the next entry and win over PAX paths; global ``g`` headers
  are validated and ignored (as Docker's ``UnpackLayer`` does); ``\\0`` typeflags become
  ``0`` (regular file), or ``5`` when the name ends in ``/``; directory names lose trailing
  slashes (as ``tarfile`` reported them, so results match earlier releases);
* sparse files (GNU ``S`` type, PAX ``GNU.sparse.*``) are refused.

Bounds (hostile input, on every supported interpreter): the extended headers before one entry
(``x``, ``g``, ``L``, ``K``) are at most :attr:`TarCaps.max_chain` headers whose payloads add up
to at most :attr:`TarCaps.max_meta_bytes`, checked on the declared sizes BEFORE anything is
read (a 1 GiB long name is refused after reading its 512-byte header); there is no recursion;
PAX records are parsed in one linear pass (no regular expression: CVE-2024-6232); sizes are
non-negative and below 2**63; numeric PAX values are at most 40 characters.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from eifbuild.errors import EifbuildError

BLOCK = 512
_ZERO = bytes(BLOCK)
_OCTAL = b"01234567"
_DIGITS = b"0123456789"
_MAX_INT64 = (1 << 63) - 1
_MAX_NUMBER_TEXT = 40  # characters of a numeric PAX value (int64 seconds + 9 decimals fit)

# Typeflags.
REG, LNK, SYM, CHR, BLK, DIR, FIFO, CONT = b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7"
AREG = b"\0"
PAX_LOCAL, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK, GNU_SPARSE = b"x", b"g", b"L", b"K", b"S"
_META = frozenset((PAX_LOCAL, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK))
# Entries without data blocks whatever their size field says (Go's isHeaderOnlyType).
HEADER_ONLY = frozenset((LNK, SYM, CHR, BLK, DIR, FIFO))

ErrorFactory = Callable[[str], EifbuildError]


@dataclass(frozen=True, slots=True)
class TarCaps:
    """Ceilings on the extended headers in front of ONE entry."""

    max_meta_bytes: int = 1 << 20  # sum of the payloads of x/g/L/K headers (Go: 1 MiB each)
    max_chain: int = 16  # number of x/g/L/K headers (real archives use at most 3)


DEFAULT_CAPS = TarCaps()


@dataclass(frozen=True, slots=True)
class TarHeader:
    """One tar entry. Names are raw bytes as stored; ``size`` is the size field (after PAX)."""

    name: bytes
    linkname: bytes
    typeflag: bytes  # one byte; b"\\0" already mapped to b"0" or b"5"
    mode: int
    uid: int
    gid: int
    mtime: int  # seconds, floor of a fractional PAX mtime
    size: int
    devmajor: int
    devminor: int
    offset: int  # offset of the entry's first header block (its extended headers included)
    data_offset: int  # offset of the data in the tar (meaningful when data_size > 0)
    data_size: int  # bytes of data that follow the header (0 for header-only types)
    xattrs: tuple[str, ...] = ()  # extended attribute names (SCHILY./LIBARCHIVE.xattr.), sorted


class ByteSource(Protocol):
    """Forward reads of a byte stream, starting at offset 0."""

    def read(self, n: int) -> bytes:
        """Up to ``n`` next bytes; fewer only at the end of the data."""
        ...

    def skip(self, n: int) -> int:
        """Pass over up to ``n`` bytes; returns how many there were (fewer at the end)."""
        ...


class FileSource:
    """``size`` bytes of an open file descriptor from ``base``, read with pread (the caller owns
    the descriptor). Headers are read through a small read-ahead buffer; data is skipped by
    arithmetic, never read."""

    _AHEAD = 64 << 10

    def __init__(self, fd: int, base: int, size: int) -> None:
        self._fd, self._base, self._size = fd, base, size
        self._pos = 0
        self._buf = b""
        self._buf_at = 0

    def read(self, n: int) -> bytes:
        n = max(0, min(n, self._size - self._pos))
        i = self._pos - self._buf_at
        if i >= 0 and i + n <= len(self._buf):
            data = self._buf[i : i + n]
        else:
            want = min(max(n, self._AHEAD), self._size - self._pos)
            self._buf = os.pread(self._fd, want, self._base + self._pos)
            self._buf_at = self._pos
            data = self._buf[:n]
        self._pos += len(data)
        return data

    def skip(self, n: int) -> int:
        n = max(0, min(n, self._size - self._pos))
        self._pos += n
        return n


class ChunkSource:
    """A forward-only stream over an iterator of byte chunks (e.g. an inflating gzip layer).

    Skipped data is still pulled through the iterator (so a digest over it completes); only
    the unconsumed part of the current chunk is kept.
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self._i = 0
        self._eof = False
        self.pos = 0

    def _more(self) -> bool:
        if self._eof:
            return False
        for chunk in self._chunks:
            if chunk:
                self._buf, self._i = chunk, 0
                return True
        self._eof = True
        self._buf, self._i = b"", 0
        return False

    def read(self, n: int) -> bytes:
        have = len(self._buf) - self._i
        if have >= n:
            data = self._buf[self._i : self._i + n]
            self._i += n
            self.pos += n
            return data
        parts = [self._buf[self._i :]]
        got = have
        while got < n and self._more():
            take = min(n - got, len(self._buf))
            parts.append(self._buf[:take])
            self._i = take
            got += take
        if got == have:
            self._buf, self._i = b"", 0
        data = b"".join(parts)
        self.pos += len(data)
        return data

    def skip(self, n: int) -> int:
        left = n
        while left > 0:
            have = len(self._buf) - self._i
            if have >= left:
                self._i += left
                left = 0
                break
            left -= have
            self._buf, self._i = b"", 0
            if not self._more():
                break
        self.pos += n - left
        return n - left

    def drain(self) -> None:
        """Consume the rest of the stream (so a digest over all of it completes)."""
        self.pos += len(self._buf) - self._i
        self._buf, self._i = b"", 0
        for chunk in self._chunks:
            self.pos += len(chunk)
        self._eof = True


class _Bad(Exception):
    """A malformed header; turned into the caller's error with position and context."""


def _cstr(field: bytes) -> bytes:
    """A NUL-terminated string field."""
    i = field.find(0)
    return field if i < 0 else field[:i]


def _number(field: bytes, what: str) -> int:
    """A numeric header field: octal text (NUL/space padded) or base-256 (Go's parseNumeric)."""
    first = field[0]
    if first & 0x80:
        value = int.from_bytes(bytes((first & 0x7F,)) + field[1:], "big")
        if first & 0x40:
            value -= 1 << (8 * len(field) - 1)
        return value
    text = _cstr(field).strip(b" ")
    if not text:
        return 0
    if text.translate(None, _OCTAL):
        raise _Bad(f"invalid {what} field {bytes(field)!r}")
    return int(text, 8)


_SIGNED = struct.Struct("148b8x356b")


def _checksum_ok(blk: bytes) -> bool:
    want = _number(blk[148:156], "checksum")
    unsigned = sum(blk) - sum(blk[148:156]) + 8 * 0x20
    if want == unsigned:
        return True
    signed: int = sum(_SIGNED.unpack(blk))
    return want == signed + 8 * 0x20


def _pax_int(value: bytes, key: str) -> int:
    text = value[1:] if value[:1] in (b"+", b"-") else value
    if not text or len(value) > _MAX_NUMBER_TEXT or text.translate(None, _DIGITS):
        raise _Bad(f"invalid PAX {key} {value[:_MAX_NUMBER_TEXT]!r}")
    n = int(value)
    if not -_MAX_INT64 - 1 <= n <= _MAX_INT64:
        raise _Bad(f"PAX {key} {n} out of range")
    return n


def _pax_seconds(value: bytes) -> int:
    """floor() of a PAX time ``[+-]SECONDS[.FRACTION]``, exactly (no float rounding)."""
    whole, dot, frac = value.partition(b".")
    if len(value) > _MAX_NUMBER_TEXT or (dot and frac.translate(None, _DIGITS)):
        raise _Bad(f"invalid PAX mtime {value[:_MAX_NUMBER_TEXT]!r}")
    secs = _pax_int(whole, "mtime")
    if whole.startswith(b"-") and frac.strip(b"0"):
        secs -= 1
    return secs


def parse_pax(data: bytes) -> dict[bytes, bytes]:
    """The records of a PAX extended header (``"%d %s=%s\\n"``), in one linear pass."""
    records: dict[bytes, bytes] = {}
    pos, end = 0, len(data)
    while pos < end:
        sp = data.find(b" ", pos, min(end, pos + 21))
        if sp < 0:
            raise _Bad(f"malformed PAX record at byte {pos}")
        digits = data[pos:sp]
        if not digits or digits.translate(None, _DIGITS):
            raise _Bad(f"malformed PAX record length {digits!r}")
        length = int(digits)
        stop = pos + length
        if length < 5 or sp + 1 >= stop or stop > end or data[stop - 1] != 0x0A:
            raise _Bad(f"malformed PAX record at byte {pos} (length {length})")
        eq = data.find(b"=", sp + 1, stop - 1)
        if eq <= sp + 1:
            raise _Bad(f"malformed PAX record at byte {pos} (no key)")
        key, value = data[sp + 1 : eq], data[eq + 1 : stop - 1]
        if 0 in key or (key in (b"path", b"linkpath", b"uname", b"gname") and 0 in value):
            raise _Bad(f"PAX record {key[:64]!r} holds a NUL byte")
        records[key] = value
        pos = stop
    return records


_XATTR_PREFIXES = (b"SCHILY.xattr.", b"LIBARCHIVE.xattr.")


def _xattrs(pax: dict[bytes, bytes]) -> tuple[str, ...]:
    names = [
        key[len(prefix) :].decode("utf-8", "surrogateescape")
        for key in pax
        for prefix in _XATTR_PREFIXES
        if key.startswith(prefix)
    ]
    return tuple(sorted(names))


def _where(pos: int, last: bytes) -> str:
    return f"at offset {pos}" + ("" if last == b"(start)" else f" after entry {last!r}")


def _pad(size: int) -> int:
    return -size % BLOCK


def read_headers(
    src: ByteSource,
    error: ErrorFactory,
    caps: TarCaps = DEFAULT_CAPS,
) -> Iterator[TarHeader]:
    """Yield the entries of the tar read from ``src``; data is skipped (and must be present).

    ``error(message)`` builds the exception raised for a malformed or truncated tar (the
    message names the offset and the entry before it; the caller adds which input it is).
    """
    pos = 0
    last = b"(start)"
    while True:
        start = pos
        pax: dict[bytes, bytes] = {}
        longname: bytes | None = None
        longlink: bytes | None = None
        chain = 0
        meta_bytes = 0
        while True:  # extended headers, then the entry they describe
            at = pos
            blk = src.read(BLOCK)
            if len(blk) < BLOCK:
                if not blk and chain == 0:
                    return  # end of the data on an entry boundary
                raise error(f"truncated tar header {_where(at, last)}")
            pos += BLOCK
            if blk == _ZERO:
                if chain:
                    raise error(
                        f"end-of-archive block {_where(at, last)} inside an extended header chain"
                    )
                nxt = src.read(BLOCK)
                if not nxt or nxt == _ZERO:
                    return
                raise error(f"a zero block followed by data {_where(at, last)}")
            try:
                if not _checksum_ok(blk):
                    raise _Bad("bad header checksum (not a tar header)")
                typeflag = blk[156:157]
                size = _number(blk[124:136], "size")
                if size < 0 or size > _MAX_INT64:
                    raise _Bad(f"invalid size {size}")
                if typeflag not in _META:
                    break
                chain += 1
                meta_bytes += size
                if chain > caps.max_chain:
                    raise _Bad(f"more than {caps.max_chain} extended headers before one entry")
                if meta_bytes > caps.max_meta_bytes:
                    raise _Bad(
                        f"extended headers of {meta_bytes} bytes or more before one entry"
                        f" (limit {caps.max_meta_bytes})"
                    )
                payload = src.read(size)
                if len(payload) < size or src.skip(_pad(size)) < _pad(size):
                    raise _Bad("truncated extended header")
                pos += size + _pad(size)
                if typeflag == GNU_LONGNAME:
                    longname = _cstr(payload)
                elif typeflag == GNU_LONGLINK:
                    longlink = _cstr(payload)
                else:
                    records = parse_pax(payload)
                    if any(k.startswith(b"GNU.sparse.") for k in records):
                        raise _Bad("sparse files are not supported")
                    if typeflag == PAX_LOCAL:
                        pax = records
            except _Bad as exc:
                raise error(f"corrupt tar header {_where(at, last)}: {exc}") from None
        try:
            header = _entry(blk, pax, longname, longlink, start, pos, size)
        except _Bad as exc:
            raise error(f"corrupt tar header {_where(at, last)}: {exc}") from None
        n = header.data_size
        if n:
            got = src.skip(n)
            if got < n:
                raise error(
                    f"entry {header.name!r}: size field {n} disagrees with the data"
                    f" (the tar ends {got} bytes after its header)"
                )
            pad = _pad(n)
            if src.skip(pad) < pad:
                raise error(f"entry {header.name!r}: truncated padding after its data")
            pos += n + pad
        last = header.name
        yield header


def _entry(
    blk: bytes,
    pax: dict[bytes, bytes],
    longname: bytes | None,
    longlink: bytes | None,
    start: int,
    pos: int,
    size: int,
) -> TarHeader:
    typeflag = blk[156:157]
    if typeflag == GNU_SPARSE:
        raise _Bad("sparse files are not supported")
    name = _cstr(blk[0:100])
    magic = blk[257:265]
    if magic == b"ustar\x0000":
        prefix = _cstr(blk[345:476] if blk[508:512] == b"tar\0" else blk[345:500])
        if prefix:
            name = prefix + b"/" + name
    linkname = _cstr(blk[157:257])
    mode = _number(blk[100:108], "mode")
    uid = _number(blk[108:116], "uid")
    gid = _number(blk[116:124], "gid")
    mtime = _number(blk[136:148], "mtime")
    devmajor = _number(blk[329:337], "devmajor")
    devminor = _number(blk[337:345], "devminor")
    if pax:
        if b"path" in pax:
            name = pax[b"path"]
        if b"linkpath" in pax:
            linkname = pax[b"linkpath"]
        if b"size" in pax:
            size = _pax_int(pax[b"size"], "size")
        if b"uid" in pax:
            uid = _pax_int(pax[b"uid"], "uid")
        if b"gid" in pax:
            gid = _pax_int(pax[b"gid"], "gid")
        if b"mtime" in pax:
            mtime = _pax_seconds(pax[b"mtime"])
    if longname is not None:
        name = longname
    if longlink is not None:
        linkname = longlink
    for value, field in ((size, "size"), (mode, "mode"), (uid, "uid"), (gid, "gid")):
        if not 0 <= value <= _MAX_INT64:
            raise _Bad(f"invalid {field} {value}")
    if not -_MAX_INT64 - 1 <= mtime <= _MAX_INT64:
        raise _Bad(f"invalid mtime {mtime}")
    if not (0 <= devmajor <= _MAX_INT64 and 0 <= devminor <= _MAX_INT64):
        raise _Bad(f"invalid device number {devmajor}:{devminor}")
    if typeflag == AREG:
        typeflag = DIR if name.endswith(b"/") else REG
    if typeflag == DIR:
        name = name.rstrip(b"/")
    data_size = 0 if typeflag in HEADER_ONLY else size
    return TarHeader(
        name=name,
        linkname=linkname,
        typeflag=typeflag,
        mode=mode,
        uid=uid,
        gid=gid,
        mtime=mtime,
        size=size,
        devmajor=devmajor,
        devminor=devminor,
        offset=start,
        data_offset=pos,
        data_size=data_size,
        xattrs=_xattrs(pax) if pax else (),
    )
