"""One newc member as the diff sees it: header numbers, a content digest, never the content.

:func:`read_entries` streams an archive through the bounded :class:`~eifbuild.cpio.NewcReader`
and hashes each regular file with SHA-256 as it goes by. :func:`pack`/:func:`unpack` store an
entry in about 100 bytes plus its name, so the first archive of a pair can be kept in memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from eifbuild.cpio import S_IFBLK, S_IFCHR, S_IFLNK, S_IFREG, Header, NewcReader
from eifbuild.diff.escape import safe_text
from eifbuild.limits import DEFAULT_LIMITS, Limits

# Entry records are kept for one archive of each changed pair: bound their number.
DIFF_LIMITS = dataclasses.replace(DEFAULT_LIMITS, max_cpio_entries=DEFAULT_LIMITS.max_diff_entries)

# Attributes that change what the enclave sees, and those that only renumber the archive.
CONTENT_ATTRS = ("type", "mode", "uid", "gid", "mtime", "size", "sha256", "target", "rdev")
INODE_ATTRS = ("ino", "nlink", "dev", "check")

TYPE_NAMES = {
    stat.S_IFDIR: "dir",
    stat.S_IFREG: "file",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
    stat.S_IFIFO: "fifo",
}


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """What a diff needs of one newc member; never its content (only a SHA-256)."""

    key: bytes  # name, plus b"\0<n>" for the n-th repeat of a name (names cannot hold NUL)
    header: Header
    position: int
    sha256: bytes | None = None
    target: bytes | None = None

    @property
    def name(self) -> bytes:
        return self.header.name

    @property
    def mode(self) -> int:
        return self.header.mode

    @property
    def occurrence(self) -> int:
        _, sep, n = self.key.partition(b"\0")
        return int(n) if sep else 0

    @property
    def label(self) -> str:
        """The escaped path, with ``(#n)`` for the n-th occurrence of a repeated name."""
        suffix = f" (#{self.occurrence + 1})" if self.occurrence else ""
        return safe_text(self.name) + suffix

    def attr(self, name: str) -> Any:
        """An attribute as shown in reports (JSON-compatible, deterministic)."""
        h = self.header
        if name == "type":
            return TYPE_NAMES.get(h.ftype, f"0o{h.ftype:o}")
        if name == "mode":
            return f"{h.perm:04o}"
        if name == "size":
            return h.filesize
        if name == "sha256":
            return None if self.sha256 is None else self.sha256.hex()
        if name == "target":
            return None if self.target is None else safe_text(self.target)
        if name == "rdev":
            return f"{h.rdevmajor}:{h.rdevminor}" if h.ftype in (S_IFCHR, S_IFBLK) else None
        if name == "dev":
            return f"{h.devmajor}:{h.devminor}"
        return getattr(h, name)  # ino, uid, gid, nlink, mtime, check

    def record(self) -> dict[str, Any]:
        """The JSON record of an added or removed entry."""
        rec: dict[str, Any] = {"path": safe_text(self.name), "position": self.position}
        if self.occurrence:
            rec["occurrence"] = self.occurrence
        for a in CONTENT_ATTRS:
            rec[a] = self.attr(a)
        return rec


def change_record(path: str, attrs: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """The JSON record of a changed entry: ``{"path", "changes": {attr: {"a", "b"}}}``."""
    return {"path": path, "changes": {k: {"a": a, "b": b} for k, (a, b) in attrs.items()}}


def read_entries(fh: BinaryIO, limits: Limits = DIFF_LIMITS) -> Iterator[EntryInfo]:
    """Entries of a newc archive in archive order, file contents hashed while streaming.

    ``key`` is the bare name here; :func:`~eifbuild.diff.archive.diff_entries` numbers
    repeated names.
    """
    reader = NewcReader(fh, limits)
    for pos, h in enumerate(reader):
        digest = target = None
        if h.ftype == S_IFREG:
            sha = hashlib.sha256()
            for chunk in reader.content():
                sha.update(chunk)
            digest = sha.digest()
        elif h.ftype == S_IFLNK:
            target = reader.read_small(limits.max_symlink_bytes)
        yield EntryInfo(h.name, h, pos, digest, target)


# ------------------------------------------------------------------------------ packed form

# The numeric header fields, in Header's order (everything but the name).
_NUMBERS = tuple(f.name for f in dataclasses.fields(Header) if f.name != "name")
# position, the header numbers, key length, payload kind; then the key and the payload:
# the SHA-256 (kind 1) or the symlink target (kind 2).
_PACK = struct.Struct(f"<{1 + len(_NUMBERS)}IHB")
_KEY_LEN = 1 + len(_NUMBERS)


def pack(e: EntryInfo) -> bytes:
    """A compact bytes form of ``e`` (about 100 bytes plus the key)."""
    kind, payload = (1, e.sha256) if e.sha256 is not None else (0, b"")
    if e.target is not None:
        kind, payload = 2, e.target
    numbers = (getattr(e.header, f) for f in _NUMBERS)
    return _PACK.pack(e.position, *numbers, len(e.key), kind) + e.key + payload


def unpack(raw: bytes) -> EntryInfo:
    """The entry :func:`pack` stored."""
    v = _PACK.unpack_from(raw)
    end = _PACK.size + v[_KEY_LEN]
    key, payload = raw[_PACK.size : end], raw[end:]
    header = Header(name=key.partition(b"\0")[0], **dict(zip(_NUMBERS, v[1:_KEY_LEN], strict=True)))
    kind = v[_KEY_LEN + 1]
    return EntryInfo(
        key,
        header,
        v[0],
        sha256=payload if kind == 1 else None,
        target=payload if kind == 2 else None,
    )
