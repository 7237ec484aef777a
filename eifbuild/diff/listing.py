"""Two ``eifbuild rootfs`` JSON-lines listings compared by path (the first kept in memory)."""

from __future__ import annotations

import json
from collections.abc import Container, Iterator
from pathlib import Path
from typing import Any

from eifbuild.diff.entries import CONTENT_ATTRS, MAX_DIFF_ENTRIES, change_record
from eifbuild.eif.smallfile import open_regular
from eifbuild.errors import EifbuildError
from eifbuild.textescape import safe_name, safe_text

LISTING_FORMAT = "eifbuild-rootfs-diff/1"
MAX_LISTING_LINE = 1 << 16
_SNIFF = 4096  # bytes read to tell a listing from an EIF
# A listing record carries the same attributes as a ramdisk entry.
LISTING_ATTRS = CONTENT_ATTRS

Record = dict[str, Any]


def input_kind(path: str) -> str:
    """``"listing"`` for ``eifbuild rootfs`` output (JSON lines), ``"empty"`` for a blank file
    (an empty listing, or nothing at all), else ``"eif"`` (for the EIF reader to judge).

    A path that cannot be opened as a regular file raises :class:`EifbuildError`.
    """
    with open_regular(path, path) as fh:
        head = fh.read(_SNIFF)
    if not head.strip() and len(head) < _SNIFF:
        return "empty"
    return "listing" if head.lstrip()[:1] == b"{" else "eif"


def is_listing(path: str) -> bool:
    """True if ``path`` looks like ``eifbuild rootfs`` output (JSON lines), not an EIF."""
    try:
        return input_kind(path) == "listing"
    except EifbuildError:
        return False  # let the EIF reader report it


def _listing_text(rec: Record, key: str) -> bytes | None:
    """A path-like field: ``<key>_hex`` (non-UTF-8 names) wins over ``<key>``."""
    hexed, value = rec.get(key + "_hex"), rec.get(key)
    if isinstance(hexed, str):
        return bytes.fromhex(hexed)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value.encode("utf-8")


def _attr_value(rec: Record, attr: str, target: bytes | None) -> Any:
    value = rec.get(attr)
    if attr == "target":
        return None if target is None else safe_text(target)
    if attr == "rdev" and isinstance(value, list) and len(value) == 2:
        return f"{value[0]}:{value[1]}"
    if isinstance(value, str):
        return safe_text(value.encode("utf-8", "surrogatepass"))
    if not isinstance(value, (int, type(None))):
        raise ValueError(f"{attr} is not a string or integer")
    return value


def _listing_record(line: bytes) -> tuple[bytes, Record]:
    rec = json.loads(line)
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    name = _listing_text(rec, "path")
    if not name:
        raise ValueError("no path")
    target = _listing_text(rec, "linkname")
    out: Record = {"path": safe_text(name)}
    for a in LISTING_ATTRS:
        out[a] = _attr_value(rec, a, target)
    return name, out


def read_listing(path: str) -> Iterator[tuple[bytes, Record]]:
    """(path bytes, normalised record) for each line of an ``eifbuild rootfs`` listing."""
    with open_regular(Path(path), path) as fh:
        for n, line in enumerate(iter(lambda: fh.readline(MAX_LISTING_LINE + 1), b""), 1):
            if n > MAX_DIFF_ENTRIES:
                raise EifbuildError(f"{path}: more than {MAX_DIFF_ENTRIES} entries")
            if len(line) > MAX_LISTING_LINE:
                raise EifbuildError(f"{path}: line {n} is longer than {MAX_LISTING_LINE} bytes")
            if not line.strip():
                continue
            try:
                yield _listing_record(line)
            except (ValueError, RecursionError) as exc:
                problem = safe_text(str(exc).encode()[:200])
                raise EifbuildError(f"{path}: line {n}: not a rootfs record ({problem})") from None


def _once(path: str, name: bytes, rec: Record, seen: Container[bytes]) -> None:
    if name in seen:
        raise EifbuildError(f"{path}: path {rec['path']} is listed twice")


def _sorted_records(pairs: list[tuple[bytes, Record]]) -> list[Record]:
    return [r for _, r in sorted(pairs, key=lambda p: p[0])]


def diff_listings(path_a: str, path_b: str) -> dict[str, Any]:
    """Entry diff of two ``eifbuild rootfs`` listings (matched by path; ``a`` kept in memory)."""
    a: dict[bytes, Record] = {}
    for name, rec in read_listing(path_a):
        _once(path_a, name, rec, a)
        a[name] = rec
    entries_a = len(a)
    added: list[tuple[bytes, Record]] = []
    changed: list[tuple[bytes, Record]] = []
    seen: set[bytes] = set()
    for name, rec in read_listing(path_b):
        _once(path_b, name, rec, seen)
        seen.add(name)
        old = a.pop(name, None)
        if old is None:
            added.append((name, rec))
            continue
        diffs = {k: (old[k], rec[k]) for k in LISTING_ATTRS if old[k] != rec[k]}
        if diffs:
            changed.append((name, change_record(rec["path"], diffs)))
    removed = list(a.items())
    return {
        "format": LISTING_FORMAT,
        "a": {"path": safe_name(path_a)},
        "b": {"path": safe_name(path_b)},
        "summary": {
            "entries_a": entries_a,
            "entries_b": len(seen),
            "added": len(added),
            "removed": len(removed),
            "changed": len(changed),
        },
        "added": _sorted_records(added),
        "removed": _sorted_records(removed),
        "changed": _sorted_records(changed),
    }
