"""Stream the members of an uncompressed layer tar held in a Region, with hostile-input checks.

Members are yielded one at a time (the parser's member list is dropped as it goes, so memory
does not grow with the number of entries). Each regular file carries the Region of its data,
so content can be re-read later by offset without keeping it in memory.
"""

from __future__ import annotations

import io
import math
import tarfile
from collections.abc import Iterator
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
    data: Region | None  # regular files only
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


def _member(ti: tarfile.TarInfo, region: Region, what: str) -> Member:
    name = _s2b(ti.name)
    typ = _TYPES.get(ti.type)
    if typ is None or ti.sparse is not None:
        kind = "sparse file" if ti.sparse is not None else f"type {ti.type!r}"
        raise RootfsError(f"{what}: entry {name!r}: unsupported tar entry {kind}")
    data = None
    if typ is EntryType.FILE:
        if ti.offset_data + ti.size > region.size:
            raise RootfsError(
                f"{what}: entry {name!r}: size field {ti.size} disagrees with the data"
                f" (layer ends {region.size - ti.offset_data} bytes after its header)"
            )
        data = region.sub(ti.offset_data, ti.size)
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
        data=data,
        xattrs=_xattrs(ti),
    )


def iter_members(region: Region, what: str, max_entries: int) -> Iterator[Member]:
    """Yield the members of the uncompressed tar in ``region``; ``what`` names the layer."""
    if region.size == 0:
        return
    raw = _Window(region)
    fh = io.BufferedReader(raw, buffer_size=1 << 16)
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
                raise RootfsError(f"{what}: more than {max_entries} entries")
            member = _member(ti, region, what)
            last = member.name
            yield member
    except tarfile.TarError as exc:
        raise RootfsError(f"{what}: corrupt tar after entry {last!r}: {exc}") from None
    except (ValueError, UnicodeError, OverflowError) as exc:
        raise RootfsError(f"{what}: corrupt tar after entry {last!r}: {exc}") from None
    finally:
        fh.close()
