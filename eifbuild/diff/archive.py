"""Per-entry difference of two newc archives, with only the first one kept in memory.

Entries are matched by name (the n-th repeat of a name with the n-th repeat). The first
archive is held packed (:func:`~eifbuild.diff.entries.pack`) and indexed by key while the
second streams past; entries that moved relative to the others are found as those outside one
longest increasing subsequence of the matched positions.
"""

from __future__ import annotations

import bisect
import dataclasses
import struct
import tempfile
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from eifbuild.diff.entries import (
    CONTENT_ATTRS,
    INODE_ATTRS,
    EntryInfo,
    change_record,
    pack,
    unpack,
)
from eifbuild.diff.spill import SpillList, external_sort

Changes = dict[str, tuple[Any, Any]]
_LEN4 = struct.Struct("<I")


@dataclass
class EntryChange:
    """One entry present in both archives whose attributes (or relative order) differ."""

    path: str
    key: bytes
    attrs: Changes

    def record(self) -> dict[str, Any]:
        return change_record(self.path, dict(sorted(self.attrs.items())))


@dataclass
class ArchiveDiff:
    """Per-entry differences between two newc archives (all lists sorted by entry key)."""

    entries_a: int = 0
    entries_b: int = 0
    added: list[EntryInfo] = field(default_factory=list)
    removed: list[EntryInfo] = field(default_factory=list)
    changed: list[EntryChange] = field(default_factory=list)
    inode_only: list[EntryChange] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.inode_only)

    def summary(self) -> dict[str, int]:
        return {
            "entries_a": self.entries_a,
            "entries_b": self.entries_b,
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
            "inode_only": len(self.inode_only),
        }

    def records(self) -> dict[str, Any]:
        """The JSON form: summary, then the records of each category."""
        return {
            "summary": self.summary(),
            "added": [e.record() for e in self.added],
            "removed": [e.record() for e in self.removed],
            "changed": [c.record() for c in self.changed],
            "inode_only": [c.record() for c in self.inode_only],
        }


def _attr_changes(a: EntryInfo, b: EntryInfo, names: Iterable[str]) -> Changes:
    out = {}
    for name in names:
        va, vb = a.attr(name), b.attr(name)
        if va != vb:
            out[name] = (va, vb)
    return out


def moved(seq: array[int]) -> list[int]:
    """Indexes into ``seq`` outside one longest increasing subsequence (the moved entries)."""
    return [i for i, kept in enumerate(in_lis(seq)) if not kept]


def in_lis(seq: array[int]) -> bytearray:
    """1 for the members of one longest increasing subsequence of ``seq``, 0 elsewhere."""
    tails = array("i")  # tails[k]: smallest last value of an increasing run of length k+1
    tail_idx = array("i")
    prev = array("i", [-1]) * len(seq)
    for i, v in enumerate(seq):
        k = bisect.bisect_left(tails, v)
        if k == len(tails):
            tails.append(v)
            tail_idx.append(i)
        else:
            tails[k] = v
            tail_idx[k] = i
        prev[i] = tail_idx[k - 1] if k else -1
    keep = bytearray(len(seq))
    i = tail_idx[-1] if tail_idx else -1
    while i >= 0:
        keep[i] = 1
        i = prev[i]
    return keep


class _Keys:
    """Numbers repeated names: the n-th repeat of ``name`` gets key ``name\\0<n>``.

    ``seen(name)`` tells whether the name occurred before in this archive; only names that
    do repeat get a counter, so memory follows the number of repeats.
    """

    def __init__(self) -> None:
        self.repeats: dict[bytes, int] = {}

    def key(self, name: bytes, seen: bool) -> bytes:
        if not seen:
            return name
        n = self.repeats.get(name, 0) + 1
        self.repeats[name] = n
        return name + b"\0" + str(n).encode()


@dataclass
class _Matcher:
    """The first archive, packed and indexed by key, and which of its entries were matched."""

    packed: list[bytes] = field(default_factory=list)
    index: dict[bytes, int] = field(default_factory=dict)
    matched: bytearray = field(default_factory=bytearray)

    def load(self, entries: Iterable[EntryInfo]) -> None:
        keys = _Keys()
        for e in entries:
            key = keys.key(e.name, e.name in self.index)
            self.index[key] = len(self.packed)
            self.packed.append(pack(dataclasses.replace(e, key=key)))
        self.matched = bytearray(len(self.packed))

    def entry(self, i: int) -> EntryInfo:
        return unpack(self.packed[i])


def diff_entries(a: Iterable[EntryInfo], b: Iterable[EntryInfo]) -> ArchiveDiff:
    """Compare two entry streams; only ``a`` is kept (packed) while ``b`` streams past.

    Entries are matched by name (the n-th repeat of a name with the n-th repeat). A matched
    entry is *changed* when a content attribute differs or when it moved relative to the
    other matched entries (outside a longest common ordering); it is *inode-only* when only
    inode number, link count, device or checksum fields differ.
    """
    result = ArchiveDiff()
    m = _Matcher()
    m.load(a)
    result.entries_a = len(m.packed)
    keys_b, added_names = _Keys(), set()
    a_pos, b_pos = array("q"), array("q")  # packed index / b position of matches, b order
    pending: dict[int, Changes] = {}  # packed index -> changes
    for eb in b:
        result.entries_b += 1
        first = m.index.get(eb.name)
        seen = eb.name in added_names if first is None else bool(m.matched[first])
        eb = dataclasses.replace(eb, key=keys_b.key(eb.name, seen))
        pa = m.index.get(eb.key)
        if pa is None or m.matched[pa]:
            added_names.add(eb.name)
            result.added.append(eb)
            continue
        m.matched[pa] = 1
        changes = _attr_changes(m.entry(pa), eb, CONTENT_ATTRS + INODE_ATTRS)
        if changes:
            pending[pa] = changes
        a_pos.append(pa)
        b_pos.append(eb.position)
    for i in moved(a_pos):
        pa = a_pos[i]
        pending.setdefault(pa, {})["position"] = (m.entry(pa).position, b_pos[i])
    result.removed = [m.entry(i) for i, hit in enumerate(m.matched) if not hit]
    for pa, changes in pending.items():
        ea = m.entry(pa)
        change = EntryChange(ea.label, ea.key, changes)
        if set(changes) <= set(INODE_ATTRS):
            result.inode_only.append(change)
        else:
            result.changed.append(change)
    result.added.sort(key=lambda e: e.key)
    result.removed.sort(key=lambda e: e.key)
    result.changed.sort(key=lambda c: c.key)
    result.inode_only.sort(key=lambda c: c.key)
    return result


# ----------------------------------------------------------------- streaming, bounded memory


def _sort_key(e: EntryInfo) -> bytes:
    # names cannot hold NUL: name, then archive position, orders repeats as they occur
    return e.name + b"\0" + e.position.to_bytes(4, "big")


def _sorted_to_file(entries: Iterable[EntryInfo]) -> tuple[IO[bytes], int]:
    """Entries sorted by (name, position) into an anonymous temp file; and their count."""
    fh = tempfile.TemporaryFile(prefix="eifbuild-diff-")  # noqa: SIM115 (closed by _replay)
    n = 0
    for _, rec in external_sort((_sort_key(e), pack(e)) for e in entries):
        fh.write(_LEN4.pack(len(rec)) + rec)
        n += 1
    fh.flush()
    return fh, n


def _replay(fh: IO[bytes]) -> Iterator[EntryInfo]:
    """The sorted entries again, each keyed ``name`` or ``name\\0<n>`` for the n-th repeat."""
    fh.seek(0)
    last, occ = None, 0
    while head := fh.read(4):
        e = unpack(fh.read(_LEN4.unpack(head)[0]))
        occ = occ + 1 if e.name == last else 0
        last = e.name
        yield e if not occ else dataclasses.replace(e, key=e.name + b"\0" + str(occ).encode())


def _order(e: EntryInfo) -> tuple[bytes, int]:
    return e.name, e.occurrence


def _pairs(fa: IO[bytes], fb: IO[bytes]) -> Iterator[tuple[EntryInfo | None, EntryInfo | None]]:
    """Entries of both sorted files matched by (name, occurrence), in that order."""
    ia, ib = _replay(fa), _replay(fb)
    ea, eb = next(ia, None), next(ib, None)
    while ea is not None or eb is not None:
        if eb is None or (ea is not None and _order(ea) < _order(eb)):
            yield ea, None
            ea = next(ia, None)
        elif ea is None or _order(eb) < _order(ea):
            yield None, eb
            eb = next(ib, None)
        else:
            yield ea, eb
            ea, eb = next(ia, None), next(ib, None)


def diff_entry_streams(a: Iterable[EntryInfo], b: Iterable[EntryInfo]) -> dict[str, Any]:
    """:func:`diff_entries` in bounded memory, as the JSON document's ramdisk part.

    Both streams are sorted by name on disk (:func:`~eifbuild.diff.spill.external_sort`)
    and merged twice: once to find the moved entries (one longest increasing subsequence
    over 4-byte positions, the only per-entry memory), once to classify every entry into
    disk-backed :class:`~eifbuild.diff.spill.SpillList` categories, already in key order.
    """
    fa, na = _sorted_to_file(a)
    fb, nb = _sorted_to_file(b)
    try:
        a_of_b = array("i", [-1]) * nb  # b position -> matched a position
        for ea, eb in _pairs(fa, fb):
            if ea is not None and eb is not None:
                a_of_b[eb.position] = ea.position
        b_pos = array("i", (i for i, p in enumerate(a_of_b) if p >= 0))
        seq = array("i", (a_of_b[i] for i in b_pos))
        del a_of_b
        is_moved = bytearray(nb)
        for i, kept in enumerate(in_lis(seq)):
            if not kept:
                is_moved[b_pos[i]] = 1
        del b_pos, seq
        out = {k: SpillList() for k in ("added", "removed", "changed", "inode_only")}
        for ea, eb in _pairs(fa, fb):
            if ea is None:
                out["added"].append(eb.record())  # type: ignore[union-attr]
                continue
            if eb is None:
                out["removed"].append(ea.record())
                continue
            changes = _attr_changes(ea, eb, CONTENT_ATTRS + INODE_ATTRS)
            if is_moved[eb.position]:
                changes["position"] = (ea.position, eb.position)
            if not changes:
                continue
            rec = EntryChange(ea.label, ea.key, changes).record()
            if set(changes) <= set(INODE_ATTRS):
                out["inode_only"].append(rec)
            else:
                out["changed"].append(rec)
    finally:
        fa.close()
        fb.close()
    summary = {"entries_a": na, "entries_b": nb, **{k: len(v) for k, v in out.items()}}
    return {"summary": summary, **out}
