"""Streaming newc writer reproducing the bytes of gocpio, the writer linuxkit vendors.

docs/spec/ramdisk-layout.md §6: lowercase ``%08x`` fields, inode numbers from 721 (the trailer
included), nlink 2 for directories and 1 otherwise, device fields 3/1, 4-byte alignment on the
running archive offset, a ``TRAILER!!!`` entry and zero padding to a multiple of 512 bytes.
Output depends only on the members given: no clock, no host ids, no listing order.

Small pieces (headers, names, in-memory contents, padding) are coalesced into chunks of about
:data:`FLUSH` bytes; streamed contents pass through chunk by chunk. Nothing more than one such
chunk and one content chunk is held, so a ramdisk of any size can be streamed straight into an
EIF section or a hash.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from eifbuild.cpio._header import (
    BLOCK,
    DEV_MAJOR,
    DEV_MINOR,
    FIRST_INO,
    HEADER_SIZE,
    MAGIC,
    S_IFDIR,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    TRAILER_NAME,
    TYPES,
    ZEROS,
    hex_words,
)
from eifbuild.errors import RamdiskError
from eifbuild.model import ContentOpener

FLUSH = 1 << 16  # the writer coalesces small pieces into chunks of about this size


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
        words = hex_words(
            name,
            (
                self.ino, mode, m.uid, m.gid, 2 if mode & S_IFMT == S_IFDIR else 1, m.mtime,
                size, DEV_MAJOR, DEV_MINOR, m.rdevmajor, m.rdevminor, namesize, 0,
            ),
        )  # fmt: skip
        self.ino += 1
        name_end = self.offset + HEADER_SIZE + namesize
        name_pad = -name_end % 4
        body_end = name_end + name_pad + len(body)
        body_pad = -body_end % 4
        self.offset = body_end + body_pad
        return b"".join((MAGIC, words, name, ZEROS[: 1 + name_pad], body, ZEROS[:body_pad]))

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
            if ftype not in TYPES:
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
        return ZEROS[:pad]

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
        yield piece + ZEROS[:pad]

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
