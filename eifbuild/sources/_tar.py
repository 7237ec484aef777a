"""Stream the members of an uncompressed layer tar, with hostile-input checks.

The tar is either a Region read in place (:func:`iter_members`) or a forward-only stream of
chunks, e.g. a gzip layer being inflated (:func:`iter_stream_members` over a
:class:`Forward`). Headers are parsed by the bounded reader in :mod:`._tarhdr`; members are
yielded one at a time (memory does not grow with the number of entries). Each regular file
carries the offset of its data in the uncompressed tar, so content can be re-read later by
offset without keeping it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from eifbuild.errors import RootfsError
from eifbuild.model import EntryType
from eifbuild.sources._blobs import Region
from eifbuild.sources._tarhdr import (
    BLK,
    CHR,
    CONT,
    DEFAULT_CAPS,
    DIR,
    FIFO,
    LNK,
    REG,
    SYM,
    ChunkSource,
    FileSource,
    TarCaps,
    TarHeader,
    read_headers,
)

# A forward-only stream of chunks (kept under this name for callers).
Forward = ChunkSource

_TYPES = {
    REG: EntryType.FILE,
    CONT: EntryType.FILE,
    DIR: EntryType.DIR,
    SYM: EntryType.SYMLINK,
    LNK: EntryType.HARDLINK,
    CHR: EntryType.CHAR,
    BLK: EntryType.BLOCK,
    FIFO: EntryType.FIFO,
}


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


def _member(h: TarHeader, what: str) -> Member:
    typ = _TYPES.get(h.typeflag)
    if typ is None:
        raise RootfsError(f"{what}: entry {h.name!r}: unsupported tar entry type {h.typeflag!r}")
    if typ is not EntryType.FILE and h.size and typ is not EntryType.HARDLINK:
        raise RootfsError(f"{what}: entry {h.name!r}: size field {h.size} on a {typ.value} entry")
    is_file = typ is EntryType.FILE
    return Member(
        name=h.name,
        type=typ,
        mode=h.mode & 0o7777,
        uid=h.uid,
        gid=h.gid,
        mtime=h.mtime,
        size=h.size if is_file else 0,
        linkname=h.linkname,
        devmajor=h.devmajor,
        devminor=h.devminor,
        data_offset=h.data_offset if is_file else None,
        xattrs=h.xattrs,
    )


def _members(headers: Iterator[TarHeader], what: str, max_entries: int) -> Iterator[Member]:
    for count, h in enumerate(headers, 1):
        if count > max_entries:
            raise RootfsError(f"{what}: more than {max_entries} entries (--max-entries)")
        yield _member(h, what)


def iter_members(
    region: Region, what: str, max_entries: int, caps: TarCaps = DEFAULT_CAPS
) -> Iterator[Member]:
    """Yield the members of the uncompressed tar in ``region``; ``what`` names the layer."""
    if region.size == 0:
        return
    try:
        fd = os.open(region.path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise RootfsError(f"{what}: cannot open {region.path}: {exc.strerror}") from None
    try:
        src = FileSource(fd, region.offset, region.size)
        headers = read_headers(src, lambda msg: RootfsError(f"{what}: {msg}"), caps)
        yield from _members(headers, what, max_entries)
    except OSError as exc:
        raise RootfsError(f"{what}: cannot read {region.path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def iter_stream_members(
    stream: Forward, what: str, max_entries: int, caps: TarCaps = DEFAULT_CAPS
) -> Iterator[Member]:
    """Yield the members of the uncompressed tar read forward from ``stream``."""
    headers = read_headers(stream, lambda msg: RootfsError(f"{what}: {msg}"), caps)
    yield from _members(headers, what, max_entries)
