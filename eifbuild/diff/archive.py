"""Per-entry difference of two newc archives, with only the first one kept in memory.

Entries are matched by name (the n-th repeat of a name with the n-th repeat). The first
archive is held packed (:func:`~eifbuild.diff.entries.pack`) and indexed by key while the
second streams past; entries that moved relative to the others are found as those outside one
longest increasing subsequence of the matched positions.
"""

from __future__ import annotations

import bisect
import dataclasses
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from eifbuild.diff.entries import (
    CONTENT_ATTRS,
    INODE_ATTRS,
    EntryInfo,
    change_record,
    pack,
    unpack,
)

Changes = dict[str, tuple[Any, Any]]


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
    tails = array("q")  # tails[k]: smallest last value of an increasing run of length k+1
    tail_idx = array("q")
    prev = array("q", [-1]) * len(seq)
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
    return [i for i, kept in enumerate(keep) if not kept]


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
