"""Streaming SVR4 "newc" (``070701``) cpio writer and a bounded reader.

The writer reproduces the bytes of the gocpio writer that linuxkit vendors (spec
``nitro-cli-layout.md`` §6): lowercase ``%08x`` fields, inode numbers from 721 (the trailer
included), nlink 2 for directories and 1 otherwise, device fields 3/1, 4-byte alignment on the
running archive offset, a ``TRAILER!!!`` entry and zero padding to a multiple of 512 bytes.
Output depends only on the members given: no clock, no host ids, no listing order.

Small pieces (headers, names, in-memory contents, padding) are coalesced into chunks of about
:data:`FLUSH` bytes; streamed contents pass through chunk by chunk. Nothing more than one such
chunk and one content chunk is held, so a ramdisk of any size can be streamed straight into an
EIF section or a hash.

The reader parses ``070701`` archives defensively (hostile input): every field must be exactly
eight hexadecimal digits, name and content sizes are bounded, names are single NUL-terminated
strings, and content is streamed in chunks. It reads ahead :data:`READ_AHEAD` bytes at a time
and parses headers out of that buffer; large contents are read straight from the file.
"""

from __future__ import annotations

import binascii
import stat
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from eifbuild.errors import RamdiskError
from eifbuild.model import ContentOpener

MAGIC = b"070701"
HEADER_SIZE = 110
FIRST_INO = 721  # gocpio starts its inode counter here
DEV_MAJOR = 3  # gocpio writes a constant device number 3:1 for every entry
DEV_MINOR = 1
TRAILER_NAME = b"TRAILER!!!"
BLOCK = 512  # the whole archive is padded to this
FLUSH = 1 << 16  # the writer coalesces small pieces into chunks of about this size
READ_AHEAD = 1 << 16  # the reader's buffer for headers, names and small contents

# File type bits as they appear in c_mode.
S_IFDIR = stat.S_IFDIR
S_IFREG = stat.S_IFREG
S_IFLNK = stat.S_IFLNK
S_IFCHR = stat.S_IFCHR
S_IFBLK = stat.S_IFBLK
S_IFIFO = stat.S_IFIFO
_TYPES = frozenset((S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO))
_S_IFMT = 0o170000

_MAX_FIELD = 0xFFFFFFFF
_FIELD_LABELS = (
    "ino", "mode", "uid", "gid", "nlink", "mtime", "size",
    "devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check",
)  # fmt: skip
# The 13 header fields as big-endian 32-bit words: hexlify(pack(...)) is the "%08x" text, and
# unpack(unhexlify(text)) parses it. struct range-checks every field, binascii every digit.
_WORDS = struct.Struct(">13I")
_pack_words = _WORDS.pack
_unpack_words = _WORDS.unpack
_hexlify = binascii.hexlify
_unhexlify = binascii.unhexlify
_ZEROS = bytes(BLOCK)
_new_object = object.__new__
_set_attribute = object.__setattr__
_HEX_DIGITS = b"0123456789abcdefABCDEF"


@dataclass(frozen=True)
class Member:
    """One cpio entry to write.

    ``ftype`` is one of the ``S_IF*`` constants, ``perm`` the permission bits including
    setuid/setgid/sticky. A regular file's content comes from ``data`` (small, in memory) or
    ``opener`` (streamed; must yield exactly ``size`` bytes). A symlink's target is ``data``.
    """

    name: bytes
    ftype: int
    perm: int
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    size: int = 0
    data: bytes = b""
    rdevmajor: int = 0
    rdevminor: int = 0
    opener: ContentOpener | None = field(default=None, compare=False, repr=False)

    @property
    def mode(self) -> int:
        return (self.perm & 0o7777) | self.ftype


_TRAILER = Member(TRAILER_NAME, 0, 0)


def _field_error(name: bytes, values: tuple[int, ...], exc: Exception) -> Exception:
    """The error for header ``values`` that ``struct`` refused (the slow path of the writer)."""
    for label, value in zip(_FIELD_LABELS, values, strict=True):
        if isinstance(value, int) and not 0 <= value <= _MAX_FIELD:
            return RamdiskError(
                f"cpio entry {name!r}: {label} {value} does not fit a newc header field"
            )
    return exc  # not a range problem (e.g. a float): the original TypeError-like error


def _words(name: bytes, values: tuple[int, ...]) -> bytes:
    """The 104 hex digits of the 13 header fields (range-checked)."""
    try:
        return _hexlify(_pack_words(*values))
    except struct.error as exc:
        raise _field_error(name, values, exc) from None


def encode_header(
    *,
    ino: int,
    mode: int,
    uid: int,
    gid: int,
    nlink: int,
    mtime: int,
    filesize: int,
    rdevmajor: int,
    rdevminor: int,
    namesize: int,
    name: bytes = b"",
) -> bytes:
    """The 110-byte newc header (gocpio field values: dev 3/1, check 0)."""
    values = (
        ino, mode, uid, gid, nlink, mtime, filesize,
        DEV_MAJOR, DEV_MINOR, rdevmajor, rdevminor, namesize, 0,
    )  # fmt: skip
    return MAGIC + _words(name, values)


class NewcWriter:
    """Produces the byte chunks of a newc archive, member by member.

    Usage: ``for chunk in NewcWriter().stream(members): out.write(chunk)``. :meth:`stream`
    coalesces small pieces; :meth:`member` and :meth:`trailer` yield one member's pieces.
    """

    def __init__(self) -> None:
        self.offset = 0
        self.ino = FIRST_INO

    def _piece(self, m: Member, size: int, body: bytes) -> bytes:
        """Header, name, NUL, padding, ``body`` and its padding of ``m``, as one bytes object.

        ``size`` is the header's file size; ``body`` is the content when it is in memory
        (``b""`` when it is streamed after this piece).
        """
        name = m.name
        if not name or b"\0" in name:
            raise RamdiskError(f"cpio entry name {name!r} is empty or contains NUL")
        namesize = len(name) + 1
        mode = (m.perm & 0o7777) | m.ftype
        words = _words(
            name,
            (
                self.ino, mode, m.uid, m.gid, 2 if mode & _S_IFMT == S_IFDIR else 1, m.mtime,
                size, DEV_MAJOR, DEV_MINOR, m.rdevmajor, m.rdevminor, namesize, 0,
            ),
        )  # fmt: skip
        self.ino += 1
        name_end = self.offset + HEADER_SIZE + namesize
        name_pad = -name_end % 4
        body_end = name_end + name_pad + len(body)
        body_pad = -body_end % 4
        self.offset = body_end + body_pad
        return b"".join((MAGIC, words, name, _ZEROS[: 1 + name_pad], body, _ZEROS[:body_pad]))

    def _whole(self, m: Member) -> bytes | None:
        """The complete bytes of ``m``, or None when its content is streamed (``opener``)."""
        ftype = m.ftype
        if ftype == S_IFREG:
            if m.opener is not None:
                return None
            body = m.data
        elif ftype == S_IFLNK:
            body = m.data
        else:
            if ftype not in _TYPES:
                raise RamdiskError(f"cpio entry {m.name!r}: unsupported file type {ftype:o}")
            if m.size:
                # Directories/devices with a non-zero tar size: gocpio writes the header size but
                # no content follows in our sources; refuse rather than write a corrupt archive.
                raise RamdiskError(f"cpio entry {m.name!r}: non-file entry with size {m.size}")
            body = b""
        if m.name == TRAILER_NAME:
            raise RamdiskError(f"cpio entry name {m.name!r} is reserved for the trailer")
        return self._piece(m, len(body), body)

    def _head(self, m: Member) -> bytes:
        """Header, name and padding of a regular file whose content an ``opener`` streams."""
        if m.name == TRAILER_NAME:
            raise RamdiskError(f"cpio entry name {m.name!r} is reserved for the trailer")
        return self._piece(m, m.size, b"")

    def _tail(self, m: Member, written: int) -> bytes:
        """The padding after ``written`` streamed content bytes, which must be ``m.size``."""
        size = m.size
        if written != size:
            raise RamdiskError(
                f"cpio entry {m.name!r}: content is {'longer' if written > size else 'shorter'}"
                f" than its declared size {size}"
            )
        pad = -size % 4
        self.offset += size + pad
        return _ZEROS[:pad]

    def _streamed(self, m: Member) -> Iterator[bytes]:
        """Header piece, content chunks and padding of a regular file with an ``opener``."""
        assert m.opener is not None and m.ftype == S_IFREG
        yield self._head(m)
        size, written = m.size, 0
        for chunk in m.opener():
            written += len(chunk)
            if written > size:
                break
            if chunk:
                yield chunk
        if pad := self._tail(m, written):
            yield pad

    def member(self, m: Member) -> Iterator[bytes]:
        """Chunks for one member (header, name, padding, content, padding)."""
        whole = self._whole(m)
        if whole is None:
            yield from self._streamed(m)
        else:
            yield whole

    def trailer(self) -> Iterator[bytes]:
        """The ``TRAILER!!!`` entry and the zero padding to a 512-byte boundary."""
        piece = self._piece(_TRAILER, 0, b"")
        pad = -self.offset % BLOCK
        self.offset += pad
        yield piece + _ZEROS[:pad]

    def stream(self, members: Iterable[Member]) -> Iterator[bytes]:
        """The whole archive for ``members``, ending with the trailer and block padding.

        Pieces smaller than :data:`FLUSH` are joined into chunks of about that size; larger
        content chunks are passed through as they come.
        """
        parts: list[bytes] = []
        pending = 0
        whole_of = self._whole
        for m in members:
            whole = whole_of(m)
            if whole is not None:
                parts.append(whole)
                pending += len(whole)
                if pending >= FLUSH:
                    yield b"".join(parts)
                    parts.clear()
                    pending = 0
                continue
            # A regular file with an opener: _streamed(m) inlined, chunks coalesced.
            head = self._head(m)
            parts.append(head)
            pending += len(head)
            size, written, opener = m.size, 0, m.opener
            assert opener is not None  # _whole returns None only for these
            for chunk in opener():
                n = len(chunk)
                written += n
                if written > size:
                    break
                if n >= FLUSH:
                    if parts:
                        yield b"".join(parts)
                        parts.clear()
                        pending = 0
                    yield chunk
                elif n:
                    parts.append(chunk if type(chunk) is bytes else bytes(chunk))
                    pending += n
                    if pending >= FLUSH:
                        yield b"".join(parts)
                        parts.clear()
                        pending = 0
            pad = self._tail(m, written)
            parts.append(pad)
            pending += len(pad)
        parts.extend(self.trailer())
        yield b"".join(parts)


def newc_stream(members: Iterable[Member]) -> Iterator[bytes]:
    """Convenience wrapper: a fresh writer's :meth:`NewcWriter.stream`."""
    return NewcWriter().stream(members)


# ---------------------------------------------------------------------------------------------
# Reader


@dataclass(frozen=True)
class Header:
    """A parsed newc header (all numeric fields, plus the name)."""

    name: bytes
    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    filesize: int
    devmajor: int
    devminor: int
    rdevmajor: int
    rdevminor: int
    check: int

    @property
    def ftype(self) -> int:
        return self.mode & _S_IFMT

    @property
    def perm(self) -> int:
        return self.mode & 0o7777


@dataclass(frozen=True)
class Limits:
    """Bounds for reading untrusted archives."""

    max_name: int = 4096
    max_file: int = 1 << 40
    max_symlink: int = 4096
    max_entries: int = 10_000_000
    chunk: int = 1 << 20

    def __post_init__(self) -> None:
        if self.chunk < 1:
            raise ValueError(f"Limits.chunk must be at least 1, not {self.chunk}")


def _header_error(raw: bytes) -> RamdiskError:
    """Why the 110 bytes ``raw`` are not a newc header (slow path: names the first bad field)."""
    if raw[:6] != MAGIC:
        return RamdiskError(f"cpio archive: bad magic {raw[:6]!r} (only newc 070701 is supported)")
    if len(raw) != HEADER_SIZE:
        return RamdiskError(f"cpio archive: header of {len(raw)} bytes, expected {HEADER_SIZE}")
    for i in range(13):
        text = raw[6 + 8 * i : 14 + 8 * i]
        if text.strip(_HEX_DIGITS):
            return RamdiskError(f"cpio archive: header field {i} is not hexadecimal: {text!r}")
    raise AssertionError(f"newc header {raw!r} was refused but every field is hexadecimal")


def _parse_header(raw: bytes, at: int = 0) -> tuple[int, ...]:
    """The 13 numeric fields of the header at ``raw[at:at + 110]``.

    Accepts exactly ``070701`` followed by 104 hexadecimal digits (either case).
    """
    if raw.startswith(MAGIC, at):
        try:
            return _unpack_words(_unhexlify(raw[at + 6 : at + HEADER_SIZE]))
        except (binascii.Error, struct.error):
            pass
    raise _header_error(raw[at : at + HEADER_SIZE])


class NewcReader:
    """Iterate the members of a newc archive read from ``fh``.

    Each iteration yields a :class:`Header`; the member's content can be read with
    :meth:`content` or :meth:`read_small` before advancing (unread content is skipped).
    Iteration stops at the trailer; anything after the trailer must be zero padding.
    """

    def __init__(self, fh: BinaryIO, limits: Limits | None = None) -> None:
        self.fh = fh
        self.limits = limits or Limits()
        self._buf = b""  # read-ahead bytes; archive offset of _buf[0] is _base
        self._pos = 0  # next unread byte in _buf
        self._base = 0
        self._pending = 0  # unread content bytes of the current member
        self._pending_pad = 0
        self.entries = 0

    @property
    def offset(self) -> int:
        """Archive offset of the next unread byte."""
        return self._base + self._pos

    def _fill(self, n: int, what: str) -> None:
        """Make ``n`` unread bytes available at ``_buf[_pos:]`` (``_pos`` becomes 0)."""
        buf, pos = self._buf, self._pos
        parts = [buf[pos:]]
        need = n - (len(buf) - pos)
        while need > 0:
            data = self.fh.read(max(need, READ_AHEAD))
            if not data:
                raise RamdiskError(f"cpio archive truncated while reading {what}")
            parts.append(data)
            need -= len(data)
        self._base += pos
        self._buf = b"".join(parts)
        self._pos = 0

    def _direct(self, n: int, what: str) -> bytes:
        """Up to ``n`` bytes straight from the file (the buffer must be used up)."""
        data = self.fh.read(n)
        if not data or len(data) > n:
            raise RamdiskError(f"cpio archive truncated while reading {what}")
        self._base += len(data)
        return data

    def _take_buffered(self, limit: int) -> bytes:
        """Up to ``limit`` pending content bytes from the buffer (``b""`` when it is empty)."""
        pos = self._pos
        n = min(self._pending, len(self._buf) - pos, limit)
        self._pos = pos + n
        self._pending -= n
        return self._buf[pos : pos + n]

    def _release(self) -> None:
        """Drop the used-up buffer before reading content straight from the file."""
        self._base += len(self._buf)
        self._buf = b""
        self._pos = 0

    def _skip_pending(self) -> None:
        """Pass over the rest of the current member's content and its padding."""
        left = len(self._buf) - self._pos
        total = self._pending + self._pending_pad
        if total <= left:
            self._pos += total
        else:
            self._take_buffered(self._pending)
            if self._pending:
                self._release()
                chunk = self.limits.chunk
                while self._pending:
                    self._pending -= len(self._direct(min(self._pending, chunk), "file content"))
            if self._pending_pad:
                self._fill(self._pending_pad, "padding")
                self._pos = self._pending_pad
        self._pending = self._pending_pad = 0

    def content(self) -> Iterator[bytes]:
        """The current member's content, in chunks of at most ``limits.chunk`` bytes.

        Content that is already buffered is taken at once; the rest is streamed.
        """
        n, pos = self._pending, self._pos
        if pos + n <= len(self._buf) and n <= self.limits.chunk:
            self._pending = 0
            self._pos = pos + n
            return iter((self._buf[pos : pos + n],) if n else ())
        return self._stream_content()

    def _stream_content(self) -> Iterator[bytes]:
        """Pending content from the buffer, then straight from the file."""
        chunk = self.limits.chunk
        while self._pending and self._pos < len(self._buf):
            yield self._take_buffered(chunk)
        if self._pending:
            self._release()
        while self._pending:
            data = self._direct(min(self._pending, chunk), "file content")
            self._pending -= len(data)
            yield data

    def read_small(self, limit: int) -> bytes:
        """The whole content of the current member, which must be at most ``limit`` bytes."""
        n = self._pending
        if n > limit:
            raise RamdiskError(f"cpio member content of {n} bytes exceeds {limit}")
        if n <= len(self._buf) - self._pos:
            return self._take_buffered(n)
        return b"".join(self.content())

    def __iter__(self) -> Iterator[Header]:
        lim = self.limits
        max_namesize = lim.max_name + 1
        while True:
            buf, p = self._buf, self._pos
            skip = self._pending + self._pending_pad
            if skip:
                if skip <= len(buf) - p:
                    p += skip
                    self._pending = self._pending_pad = 0
                else:
                    self._skip_pending()
                    buf, p = self._buf, self._pos
            if len(buf) - p < HEADER_SIZE:
                self._pos = p
                self._fill(HEADER_SIZE, "a header")
                buf, p = self._buf, 0
            v = _parse_header(buf, p)
            namesize = v[11]
            if namesize < 2 or namesize > max_namesize:
                raise RamdiskError(
                    f"cpio archive: name size {namesize} at offset {self._base + p} out of bounds"
                )
            name_end = p + HEADER_SIZE + namesize
            pad = -(self._base + name_end) % 4
            if name_end + pad > len(buf):
                self._pos = p
                self._fill(HEADER_SIZE + namesize, "a name")
                self._fill(HEADER_SIZE + namesize + pad, "name padding")
                buf, name_end, p = self._buf, HEADER_SIZE + namesize, 0
            if buf.find(b"\0", p + HEADER_SIZE, name_end) != name_end - 1:
                raise RamdiskError(
                    "cpio archive: member name is not a single NUL-terminated string"
                )
            name = buf[p + HEADER_SIZE : name_end - 1]
            self._pos = name_end + pad
            if name == TRAILER_NAME:
                self._check_tail()
                return
            self.entries += 1
            if self.entries > lim.max_entries:
                raise RamdiskError(f"cpio archive has more than {lim.max_entries} members")
            mode, filesize = v[1], v[6]
            ftype = mode & _S_IFMT
            if ftype not in _TYPES:
                raise RamdiskError(f"cpio member {name!r}: unsupported file type {mode:o}")
            cap = lim.max_symlink if ftype == S_IFLNK else lim.max_file
            if filesize > cap:
                raise RamdiskError(f"cpio member {name!r}: size {filesize} exceeds limit {cap}")
            self._pending = filesize
            self._pending_pad = -(self._base + self._pos + filesize) % 4
            # Header(...) without the generated __init__ (13 object.__setattr__ calls), the
            # largest cost per entry otherwise; the same attributes, equality and hash.
            h = _new_object(Header)
            _set_attribute(
                h,
                "__dict__",
                {
                    "name": name, "ino": v[0], "mode": mode, "uid": v[2], "gid": v[3],
                    "nlink": v[4], "mtime": v[5], "filesize": filesize, "devmajor": v[7],
                    "devminor": v[8], "rdevmajor": v[9], "rdevminor": v[10], "check": v[12],
                },
            )  # fmt: skip
            yield h

    def _check_tail(self) -> None:
        rest = self._buf[self._pos :]
        self._release()
        while True:
            if rest.strip(b"\0"):
                raise RamdiskError("cpio archive: non-zero bytes after the trailer")
            rest = self.fh.read(1 << 16)
            if not rest:
                return
