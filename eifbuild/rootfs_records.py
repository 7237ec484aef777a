"""The JSON record of one rootfs entry, as ``eifbuild rootfs`` lists it (and ``eifbuild diff``
reads it back): path, type, mode (octal text), uid, gid, mtime, size, sha256, linkname, rdev;
a name that is not UTF-8 also as hex (``path_hex``, ``linkname_hex``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from eifbuild.model import Entry, EntryType
from eifbuild.types import Progress


def _text(raw: bytes, key: str, out: dict[str, Any]) -> None:
    try:
        out[key] = raw.decode("utf-8")
    except UnicodeDecodeError:
        out[key] = raw.decode("utf-8", "replace")
        out[key + "_hex"] = raw.hex()


def _sha256(entry: Entry) -> str:
    h = hashlib.sha256()
    for chunk in entry.open():
        h.update(chunk)
    return h.hexdigest()


def entry_record(entry: Entry, hash_content: bool = True) -> dict[str, Any]:
    """The JSON object for one entry (shared with tests and later diff tooling)."""
    rec: dict[str, Any] = {}
    _text(entry.path, "path", rec)
    rec.update(
        type=entry.type.value,
        mode=f"{entry.mode:04o}",
        uid=entry.uid,
        gid=entry.gid,
        mtime=entry.mtime,
        size=entry.size,
        sha256=_sha256(entry) if hash_content and entry.type is EntryType.FILE else None,
    )
    link: dict[str, Any] = {}
    _text(entry.linkname, "linkname", link)
    rec.update(link if entry.linkname else {"linkname": None})
    is_dev = entry.type in (EntryType.CHAR, EntryType.BLOCK)
    rec["rdev"] = [entry.devmajor, entry.devminor] if is_dev else None
    return rec


def listing(
    entries: Iterable[Entry], hash_content: bool = True, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """Records sorted by path bytes; ``progress`` is called once per entry."""
    pairs = []
    for e in entries:
        pairs.append((e.path, entry_record(e, hash_content)))
        if progress is not None:
            progress(1)
    pairs.sort(key=lambda p: p[0])
    return [rec for _, rec in pairs]
