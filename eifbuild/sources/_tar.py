"""Stream the members of an uncompressed layer tar, with hostile-input checks.

The tar is either a Region read in place (:func:`iter_members`) or a forward-only stream of
chunks, e.g. a gzip layer being inflated (:func:`iter_stream_members`, through
:class:`Forward`, which keeps only a small window for the parser's short backward seeks).
Members are yielded one at a time (the parser's member list is dropped as it goes, so memory
does not grow with the number of entries). Each regular file carries the offset of its data
in the uncompressed tar, so content can be re-read later by offset without keeping it.
"""

from __future__ import annotations

import io
import math
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from eifbuild.errors import RootfsError
from eifbuild.model import EntryType
from eifbuild.sources._blobs import Region

_MAX_META_BYTES = 1 << 20  # PAX / GNU long-name payloads
_META_TYPES = {tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK}
_TYPES = {
    tarfile.REGTYPE: EntryType.FILE,
    tarfile.AREGTYPE: EntryType.FILE,
    tarfile.CONTTYPE: EntryType.FILE,
    tarfile.DIRTYPE: EntryType.DIR,
    tarfile.SYMTYPE: EntryType.SYMLINK,
    tarfile.LNKTYPE: EntryType.HARDLINK,
    tarfile.CHRTYPE: EntryType.CHAR,
    tarfile.BLKTYPE: EntryType.BLOCK,
    tarfile.FIFOTYPE: EntryType.FIFO,
}
_XATTR_PREFIXES = ("SCHILY.xattr.", "LIBARCHIVE.xattr.")


@dataclass(frozen=True, slots=True)
class Member:
    """One tar member, names as raw bytes exactly as stored (not yet normalised)."""

    name: bytes
    type: EntryType
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int
    linkname: bytes
    devmajor: int
    devminor: int
    data_offset: int | None  # offset of the content in the uncompressed tar (files only)
    xattrs: tuple[str, ...] = ()


class _Window(io.RawIOBase):
    """A seekable view of a Region: positions 0..size, reads never cross its end."""

    def __init__(self, region: Region) -> None:
        self._fh = open(region.path, "rb")  # noqa: SIM115 - closed in close()
        self._base = region.offset
        self._size = region.size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), self._size - self._pos)
        if n <= 0:
            return 0
        self._fh.seek(self._base + self._pos)
        data = self._fh.read(n)
        buf[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        self._fh.close()
        super().close()


class Forward:
    """A read-only file object over an iterator of chunks: seeks forward freely, and back by
    at most :attr:`KEEP` bytes (tarfile re-reads a header after :func:`_peek_header`)."""

    KEEP = 1 << 16

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self._start = 0  # offset of _buf[0]
        self._pos = 0
        self._eof = False

    def _fill(self, upto: int, keep: int) -> None:
        """Pull chunks until the buffer reaches ``upto``, dropping bytes before ``keep``."""
        while self._start + len(self._buf) < upto and not self._eof:
            chunk = next(self._chunks, None)
            end = self._start + len(self._buf)
            cut = min(max(self._start, keep), end)
            self._buf = self._buf[cut - self._start :] + (chunk or b"")
            self._start = cut
            self._eof = chunk is None

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            raise ValueError("unbounded read of a stream")
        if self._pos < self._start:
            raise ValueError("seek back beyond the kept window")
        self._fill(self._pos + n, self._pos - self.KEEP)
        i = self._pos - self._start
        data = self._buf[i : i + n]
        self._pos += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        pos = pos + (self._pos if whence == 1 else 0)
        if whence not in (0, 1) or pos < self._start:
            raise ValueError("seek back beyond the kept window")
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def available(self, end: int) -> int:
        """min(end, stream size): reads forward to ``end`` (the data there is skipped)."""
        self._fill(end, end - self.KEEP)
        return min(end, self._start + len(self._buf))

    def drain(self) -> None:
        """Consume the rest of the stream (so a digest over all of it completes)."""
        self._buf, self._start = b"", self._start + len(self._buf)
        for chunk in self._chunks:
            self._start += len(chunk)
        self._eof = True


def _s2b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _size_field(field: bytes) -> int | None:
    """The tar size field: NUL/space-terminated octal, or GNU base-256."""
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        return -value if field[0] == 0xFF else value
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        return None


def _peek_header(fh: IO[bytes], offset: int) -> tuple[bytes, int] | None:
    """(typeflag, size) of the raw header at ``offset``, or None at the end."""
    fh.seek(offset)
    hdr = fh.read(512)
    if len(hdr) < 512 or hdr.count(0) == 512:
        return None
    size = _size_field(hdr[124:136])
    if size is None:
        return None  # let tarfile report it
    return hdr[156:157], size


def _xattrs(ti: tarfile.TarInfo) -> tuple[str, ...]:
    names = []
    for key in ti.pax_headers:
        for prefix in _XATTR_PREFIXES:
            if key.startswith(prefix):
                names.append(key[len(prefix) :])
    return tuple(sorted(names))


def _member(ti: tarfile.TarInfo, available: Callable[[int], int], what: str) -> Member:
    name = _s2b(ti.name)
    typ = _TYPES.get(ti.type)
    if typ is None or ti.sparse is not None:
        kind = "sparse file" if ti.sparse is not None else f"type {ti.type!r}"
        raise RootfsError(f"{what}: entry {name!r}: unsupported tar entry {kind}")
    data = None
    if typ is EntryType.FILE:
        end = available(ti.offset_data + ti.size)
        if end < ti.offset_data + ti.size:
            raise RootfsError(
                f"{what}: entry {name!r}: size field {ti.size} disagrees with the data"
                f" (layer ends {end - ti.offset_data} bytes after its header)"
            )
        data = ti.offset_data
    elif ti.size and typ is not EntryType.HARDLINK:
        raise RootfsError(f"{what}: entry {name!r}: size field {ti.size} on a {typ.value} entry")
    return Member(
        name=name,
        type=typ,
        mode=ti.mode & 0o7777,
        uid=ti.uid,
        gid=ti.gid,
        mtime=math.floor(ti.mtime),
        size=ti.size if typ is EntryType.FILE else 0,
        linkname=_s2b(ti.linkname),
        devmajor=ti.devmajor,
        devminor=ti.devminor,
        data_offset=data,
        xattrs=_xattrs(ti),
    )


def iter_members(region: Region, what: str, max_entries: int) -> Iterator[Member]:
    """Yield the members of the uncompressed tar in ``region``; ``what`` names the layer."""
    if region.size == 0:
        return
    raw = _Window(region)
    fh = io.BufferedReader(raw, buffer_size=1 << 16)
    try:
        yield from _parse(fh, lambda end: min(end, region.size), what, max_entries)
    finally:
        fh.close()


def iter_stream_members(stream: Forward, what: str, max_entries: int) -> Iterator[Member]:
    """Yield the members of the uncompressed tar read forward from ``stream``."""
    if stream.available(1) == 0:
        return
    yield from _parse(stream, stream.available, what, max_entries)


def _parse(
    fh: Any, available: Callable[[int], int], what: str, max_entries: int
) -> Iterator[Member]:
    count = 0
    last = b"(start)"
    try:
        first = _peek_header(fh, 0)
        if first is not None and first[0] in _META_TYPES and first[1] > _MAX_META_BYTES:
            raise RootfsError(f"{what}: {first[1]}-byte extended header is too large")
        fh.seek(0)
        tf = tarfile.open(fileobj=fh, mode="r:", encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
        while True:
            peek = _peek_header(fh, tf.offset)
            if peek is not None and peek[0] in _META_TYPES and peek[1] > _MAX_META_BYTES:
                raise RootfsError(
                    f"{what}: after entry {last!r}: {peek[1]}-byte extended header is too large"
                )
            ti = tf.next()
            if ti is None:
                break
            tf.members = []  # type: ignore[attr-defined]  # keep memory flat
            count += 1
            if count > max_entries:
                raise RootfsError(f"{what}: more than {max_entries} entries (--max-entries)")
            member = _member(ti, available, what)
            last = member.name
            yield member
    except tarfile.TarError as exc:
        raise RootfsError(f"{what}: corrupt tar after entry {last!r}: {exc}") from None
    except (ValueError, UnicodeError, OverflowError) as exc:
        raise RootfsError(f"{what}: corrupt tar after entry {last!r}: {exc}") from None
