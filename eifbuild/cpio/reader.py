"""Bounded newc (``070701``) reader for hostile archives.

Every header field must be exactly eight hexadecimal digits, name and content sizes are bounded
(:class:`Limits`), names are single NUL-terminated strings, only the file types the writer knows
are accepted, and content is streamed in chunks. The reader reads ahead :data:`READ_AHEAD` bytes
at a time and parses headers out of that buffer; large contents are read straight from the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from eifbuild.cpio._header import (
    HEADER_SIZE,
    S_IFLNK,
    S_IFMT,
    TRAILER_NAME,
    TYPES,
    parse_header,
)
from eifbuild.errors import RamdiskError
from eifbuild.limits import DEFAULT_LIMITS, Limits

READ_AHEAD = 1 << 16  # the reader's buffer for headers, names and small contents
_new_object = object.__new__
_set_attribute = object.__setattr__


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
        return self.mode & S_IFMT

    @property
    def perm(self) -> int:
        return self.mode & 0o7777


class NewcReader:
    """Iterate the members of a newc archive read from ``fh``.

    Each iteration yields a :class:`Header`; the member's content can be read with
    :meth:`content` or :meth:`read_small` before advancing (unread content is skipped).
    Iteration stops at the trailer; anything after the trailer must be zero padding.
    """

    def __init__(self, fh: BinaryIO, limits: Limits | None = None) -> None:
        self.fh = fh
        self.limits = limits or DEFAULT_LIMITS
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
                chunk = self.limits.cpio_chunk_bytes
                while self._pending:
                    self._pending -= len(self._direct(min(self._pending, chunk), "file content"))
            if self._pending_pad:
                self._fill(self._pending_pad, "padding")
                self._pos = self._pending_pad
        self._pending = self._pending_pad = 0

    def content(self) -> Iterator[bytes]:
        """The current member's content, in chunks of at most ``limits.cpio_chunk_bytes`` bytes.

        Content that is already buffered is taken at once; the rest is streamed.
        """
        n, pos = self._pending, self._pos
        if pos + n <= len(self._buf) and n <= self.limits.cpio_chunk_bytes:
            self._pending = 0
            self._pos = pos + n
            return iter((self._buf[pos : pos + n],) if n else ())
        return self._stream_content()

    def _stream_content(self) -> Iterator[bytes]:
        """Pending content from the buffer, then straight from the file."""
        chunk = self.limits.cpio_chunk_bytes
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
        max_namesize = lim.max_name_bytes + 1
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
            v = parse_header(buf, p)
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
            if self.entries > lim.max_cpio_entries:
                raise RamdiskError(f"cpio archive has more than {lim.max_cpio_entries} members")
            mode, filesize = v[1], v[6]
            ftype = mode & S_IFMT
            if ftype not in TYPES:
                raise RamdiskError(f"cpio member {name!r}: unsupported file type {mode:o}")
            cap = lim.max_symlink_bytes if ftype == S_IFLNK else lim.max_cpio_file_bytes
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
