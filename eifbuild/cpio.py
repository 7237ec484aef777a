"""Streaming SVR4 "newc" (``070701``) cpio writer and a bounded reader.

The writer reproduces the bytes of the gocpio writer that linuxkit vendors (spec
``nitro-cli-layout.md`` §6): lowercase ``%08x`` fields, inode numbers from 721 (the trailer
included), nlink 2 for directories and 1 otherwise, device fields 3/1, 4-byte alignment on the
running archive offset, a ``TRAILER!!!`` entry and zero padding to a multiple of 512 bytes.
Output depends only on the members given: no clock, no host ids, no listing order.

Nothing is buffered beyond one header and one content chunk, so a ramdisk of any size can be
streamed straight into an EIF section or a hash.

The reader parses ``070701`` archives defensively (hostile input): every field is checked, name
and content sizes are bounded, and content is streamed in chunks.
"""

from __future__ import annotations

import stat
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

# File type bits as they appear in c_mode.
S_IFDIR = stat.S_IFDIR
S_IFREG = stat.S_IFREG
S_IFLNK = stat.S_IFLNK
S_IFCHR = stat.S_IFCHR
S_IFBLK = stat.S_IFBLK
S_IFIFO = stat.S_IFIFO
_TYPES = (S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO)

_MAX_FIELD = 0xFFFFFFFF


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


def _pad(offset: int, align: int) -> bytes:
    return b"\0" * (-offset % align)


def _check_field(name: bytes, what: str, value: int) -> None:
    if not 0 <= value <= _MAX_FIELD:
        raise RamdiskError(f"cpio entry {name!r}: {what} {value} does not fit a newc header field")


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
    fields = (
        ino, mode, uid, gid, nlink, mtime, filesize,
        DEV_MAJOR, DEV_MINOR, rdevmajor, rdevminor, namesize, 0,
    )  # fmt: skip
    for label, value in zip(
        ("ino", "mode", "uid", "gid", "nlink", "mtime", "size"), fields, strict=False
    ):
        _check_field(name, label, value)
    for label, value in (
        ("rdevmajor", rdevmajor),
        ("rdevminor", rdevminor),
        ("namesize", namesize),
    ):
        _check_field(name, label, value)
    return MAGIC + b"".join(b"%08x" % v for v in fields)


class NewcWriter:
    """Produces the byte chunks of a newc archive, member by member.

    Usage: ``for chunk in NewcWriter().stream(members): out.write(chunk)``.
    """

    def __init__(self) -> None:
        self.offset = 0
        self.ino = FIRST_INO

    def _emit(self, chunk: bytes) -> bytes:
        self.offset += len(chunk)
        return chunk

    def _header_and_name(
        self, name: bytes, mode: int, m: Member | None, size: int
    ) -> Iterator[bytes]:
        if b"\0" in name or not name:
            raise RamdiskError(f"cpio entry name {name!r} is empty or contains NUL")
        nlink = 2 if stat.S_IFMT(mode) == S_IFDIR else 1
        hdr = encode_header(
            ino=self.ino,
            mode=mode,
            uid=m.uid if m else 0,
            gid=m.gid if m else 0,
            nlink=nlink,
            mtime=m.mtime if m else 0,
            filesize=size,
            rdevmajor=m.rdevmajor if m else 0,
            rdevminor=m.rdevminor if m else 0,
            namesize=len(name) + 1,
            name=name,
        )
        self.ino += 1
        yield self._emit(hdr)
        yield self._emit(name + b"\0")
        yield self._emit(_pad(self.offset, 4))

    def member(self, m: Member) -> Iterator[bytes]:
        """Chunks for one member (header, name, padding, content, padding)."""
        if m.name == TRAILER_NAME:
            raise RamdiskError(f"cpio entry name {m.name!r} is reserved for the trailer")
        if m.ftype not in _TYPES:
            raise RamdiskError(f"cpio entry {m.name!r}: unsupported file type {m.ftype:o}")
        if m.ftype == S_IFLNK:
            size = len(m.data)
        elif m.ftype == S_IFREG:
            size = m.size if m.opener is not None else len(m.data)
        else:
            size = m.size
        yield from self._header_and_name(m.name, m.mode, m, size)
        if m.ftype == S_IFREG and m.opener is not None:
            written = 0
            for chunk in m.opener():
                written += len(chunk)
                if written > size:
                    break
                if chunk:
                    yield self._emit(chunk)
            if written != size:
                raise RamdiskError(
                    f"cpio entry {m.name!r}: content is {'longer' if written > size else 'shorter'}"
                    f" than its declared size {size}"
                )
        elif m.ftype in (S_IFREG, S_IFLNK) and m.data:
            yield self._emit(m.data)
        elif size:
            # Directories/devices with a non-zero tar size: gocpio writes the header size but no
            # content follows in our sources; refuse rather than write a corrupt archive.
            raise RamdiskError(f"cpio entry {m.name!r}: non-file entry with size {size}")
        yield self._emit(_pad(self.offset, 4))

    def trailer(self) -> Iterator[bytes]:
        """The ``TRAILER!!!`` entry and the zero padding to a 512-byte boundary."""
        yield from self._header_and_name(TRAILER_NAME, 0, None, 0)
        yield self._emit(_pad(self.offset, BLOCK))

    def stream(self, members: Iterable[Member]) -> Iterator[bytes]:
        """The whole archive for ``members``, ending with the trailer and block padding."""
        for m in members:
            yield from self.member(m)
        yield from self.trailer()


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
        return stat.S_IFMT(self.mode)

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


def _read_exact(fh: BinaryIO, n: int, what: str) -> bytes:
    buf = fh.read(n)
    if len(buf) != n:
        raise RamdiskError(f"cpio archive truncated while reading {what}")
    return buf


def _parse_header(raw: bytes) -> list[int]:
    if raw[:6] != MAGIC:
        raise RamdiskError(f"cpio archive: bad magic {raw[:6]!r} (only newc 070701 is supported)")
    values = []
    for i in range(13):
        text = raw[6 + 8 * i : 14 + 8 * i]
        if not all(c in b"0123456789abcdefABCDEF" for c in text):
            raise RamdiskError(f"cpio archive: header field {i} is not hexadecimal: {text!r}")
        values.append(int(text, 16))
    return values


class NewcReader:
    """Iterate the members of a newc archive read from ``fh``.

    Each iteration yields a :class:`Header`; the member's content can be read with
    :meth:`content` before advancing (unread content is skipped). Iteration stops at the
    trailer; anything after the trailer must be zero padding.
    """

    def __init__(self, fh: BinaryIO, limits: Limits | None = None) -> None:
        self.fh = fh
        self.limits = limits or Limits()
        self.offset = 0
        self._pending = 0  # unread content bytes of the current member
        self._pending_pad = 0
        self.entries = 0

    def _read(self, n: int, what: str) -> bytes:
        buf = _read_exact(self.fh, n, what)
        self.offset += n
        return buf

    def _skip_pending(self) -> None:
        while self._pending:
            n = min(self._pending, self.limits.chunk)
            self._read(n, "file content")
            self._pending -= n
        if self._pending_pad:
            self._read(self._pending_pad, "padding")
            self._pending_pad = 0

    def content(self) -> Iterator[bytes]:
        """Stream the current member's content in chunks."""
        while self._pending:
            n = min(self._pending, self.limits.chunk)
            chunk = self._read(n, "file content")
            self._pending -= n
            yield chunk

    def read_small(self, limit: int) -> bytes:
        """The whole content of the current member, which must be at most ``limit`` bytes."""
        if self._pending > limit:
            raise RamdiskError(f"cpio member content of {self._pending} bytes exceeds {limit}")
        return b"".join(self.content())

    def __iter__(self) -> Iterator[Header]:
        lim = self.limits
        while True:
            self._skip_pending()
            raw = self._read(HEADER_SIZE, "a header")
            v = _parse_header(raw)
            namesize, filesize = v[11], v[6]
            if namesize < 2 or namesize > lim.max_name + 1:
                raise RamdiskError(
                    f"cpio archive: name size {namesize} at offset {self.offset - HEADER_SIZE} out of bounds"
                )
            rawname = self._read(namesize, "a name")
            if rawname[-1:] != b"\0" or b"\0" in rawname[:-1]:
                raise RamdiskError(
                    "cpio archive: member name is not a single NUL-terminated string"
                )
            self._read(-self.offset % 4, "name padding")
            hdr = Header(
                rawname[:-1],
                v[0],
                v[1],
                v[2],
                v[3],
                v[4],
                v[5],
                v[6],
                v[7],
                v[8],
                v[9],
                v[10],
                v[12],
            )
            if hdr.name == TRAILER_NAME:
                self._check_tail()
                return
            self.entries += 1
            if self.entries > lim.max_entries:
                raise RamdiskError(f"cpio archive has more than {lim.max_entries} members")
            if hdr.ftype not in _TYPES:
                raise RamdiskError(f"cpio member {hdr.name!r}: unsupported file type {hdr.mode:o}")
            cap = lim.max_symlink if hdr.ftype == S_IFLNK else lim.max_file
            if filesize > cap:
                raise RamdiskError(f"cpio member {hdr.name!r}: size {filesize} exceeds limit {cap}")
            self._pending = filesize
            self._pending_pad = -(self.offset + filesize) % 4
            yield hdr

    def _check_tail(self) -> None:
        while True:
            chunk = self.fh.read(1 << 16)
            if not chunk:
                return
            if chunk.strip(b"\0"):
                raise RamdiskError("cpio archive: non-zero bytes after the trailer")
