"""Two ``eifbuild rootfs`` JSON-lines listings compared by path (sorted on disk, merged)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from eifbuild.diff.entries import CONTENT_ATTRS, change_record
from eifbuild.diff.spill import SpillList, external_sort
from eifbuild.errors import EifbuildError
from eifbuild.limits import DEFAULT_LIMITS
from eifbuild.smallfile import open_regular
from eifbuild.textescape import safe_name, safe_text

LISTING_FORMAT = "eifbuild-rootfs-diff/1"
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


def read_listing(
    path: str, max_entries: int = DEFAULT_LIMITS.max_diff_entries
) -> Iterator[tuple[bytes, Record]]:
    """(path bytes, normalised record) for each line of an ``eifbuild rootfs`` listing."""
    with open_regular(Path(path), path) as fh:
        for n, line in enumerate(
            iter(lambda: fh.readline(DEFAULT_LIMITS.max_listing_line_bytes + 1), b""), 1
        ):
            if n > max_entries:
                raise EifbuildError(
                    f"{safe_name(path)}: more than {max_entries} entries (see --max-entries)"
                )
            if len(line) > DEFAULT_LIMITS.max_listing_line_bytes:
                raise EifbuildError(
                    f"{path}: line {n} is longer than {DEFAULT_LIMITS.max_listing_line_bytes} bytes"
                )
            if not line.strip():
                continue
            try:
                yield _listing_record(line)
            except (ValueError, RecursionError) as exc:
                problem = safe_text(str(exc).encode()[:200])
                raise EifbuildError(f"{path}: line {n}: not a rootfs record ({problem})") from None


def _sorted_records(path: str, max_entries: int) -> Iterator[tuple[bytes, Record]]:
    """(path bytes, record) of a listing sorted by path on disk; a repeated path is an error."""
    items = (
        (name + b"\0", json.dumps(rec, ensure_ascii=False).encode("utf-8"))
        for name, rec in read_listing(path, max_entries)
    )
    last = None
    for key, raw in external_sort(items):
        name = key[:-1]
        rec = json.loads(raw)
        if name == last:
            raise EifbuildError(f"{safe_name(path)}: path {rec['path']} is listed twice")
        last = name
        yield name, rec


def diff_listings(
    path_a: str, path_b: str, max_entries: int = DEFAULT_LIMITS.max_diff_entries
) -> dict[str, Any]:
    """Entry diff of two ``eifbuild rootfs`` listings, matched by path.

    Both listings are sorted by path on disk and merged, so memory stays bounded; the entry
    lists of the result are disk-backed :class:`~eifbuild.diff.spill.SpillList` objects."""
    added, removed, changed = SpillList(), SpillList(), SpillList()
    counts = {"a": 0, "b": 0}
    ia, ib = _sorted_records(path_a, max_entries), _sorted_records(path_b, max_entries)
    ea, eb = next(ia, None), next(ib, None)
    while ea is not None or eb is not None:
        if eb is None or (ea is not None and ea[0] < eb[0]):
            removed.append(ea[1])  # type: ignore[index]
            counts["a"] += 1
            ea = next(ia, None)
        elif ea is None or eb[0] < ea[0]:
            added.append(eb[1])
            counts["b"] += 1
            eb = next(ib, None)
        else:
            old, rec = ea[1], eb[1]
            diffs = {k: (old[k], rec[k]) for k in LISTING_ATTRS if old[k] != rec[k]}
            if diffs:
                changed.append(change_record(rec["path"], diffs))
            counts["a"] += 1
            counts["b"] += 1
            ea, eb = next(ia, None), next(ib, None)
    return {
        "format": LISTING_FORMAT,
        "a": {"path": safe_name(path_a)},
        "b": {"path": safe_name(path_b)},
        "summary": {
            "entries_a": counts["a"],
            "entries_b": counts["b"],
            "added": len(added),
            "removed": len(removed),
            "changed": len(changed),
        },
        "added": added,
        "removed": removed,
        "changed": changed,
    }
