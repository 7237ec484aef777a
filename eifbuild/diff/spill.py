"""Disk-backed pieces that keep ``eifbuild diff`` within a fixed memory budget.

* :class:`SpillList`: a list of JSON records written to an anonymous temp file as they are
  produced; it knows its length and can be iterated (or sliced from the start) any number
  of times, so a report with millions of entries never holds them in memory.
* :func:`external_sort`: (key, record) byte pairs sorted by key with bounded memory: runs of
  at most ``run_bytes`` are sorted in memory, written to anonymous temp files, and merged.

Temp files are ``tempfile.TemporaryFile`` (unlinked at creation on Linux): a killed diff
leaves nothing behind.
"""

from __future__ import annotations

import heapq
import json
import struct
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any

RUN_BYTES = 24 << 20  # in-memory run size of the external sort (keys + records)
_LEN = struct.Struct("<II")


def _tempfile() -> IO[bytes]:
    return tempfile.TemporaryFile(prefix="eifbuild-diff-")


class SpillList:
    """An append-only list of JSON-compatible records kept in a temp file."""

    def __init__(self) -> None:
        self._fh: IO[bytes] | None = None
        self._n = 0

    def append(self, record: Any) -> None:
        if self._fh is None:
            self._fh = _tempfile()
        self._fh.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
        self._n += 1

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    def __iter__(self) -> Iterator[Any]:
        if self._fh is None:
            return
        fh = self._fh
        fh.flush()
        end = fh.seek(0, 2)
        pos = 0
        while pos < end:
            fh.seek(pos)
            line = fh.readline()
            pos = fh.tell()
            yield json.loads(line)
        fh.seek(0, 2)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._n)
            if step != 1:
                return list(self)[index]
            out = []
            for i, rec in enumerate(self):
                if i >= stop:
                    break
                if i >= start:
                    out.append(rec)
            return out
        if index < 0:
            index += self._n
        if not 0 <= index < self._n:
            raise IndexError(index)
        for i, rec in enumerate(self):
            if i == index:
                return rec
        raise IndexError(index)  # pragma: no cover

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (SpillList, list)):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SpillList({self._n} records)"


def _write_run(items: list[tuple[bytes, bytes]]) -> IO[bytes]:
    items.sort(key=lambda kv: kv[0])
    fh = _tempfile()
    for key, rec in items:
        fh.write(_LEN.pack(len(key), len(rec)) + key + rec)
    fh.flush()
    fh.seek(0)
    return fh


def _read_run(fh: IO[bytes]) -> Iterator[tuple[bytes, bytes]]:
    reader = fh
    while head := reader.read(_LEN.size):
        klen, rlen = _LEN.unpack(head)
        body = reader.read(klen + rlen)
        yield body[:klen], body[klen:]
    fh.close()


def external_sort(
    items: Iterable[tuple[bytes, bytes]], run_bytes: int = RUN_BYTES
) -> Iterator[tuple[bytes, bytes]]:
    """``items`` sorted by key (stable for equal keys is not promised: make keys unique)."""
    runs: list[IO[bytes]] = []
    buf: list[tuple[bytes, bytes]] = []
    size = 0
    for key, rec in items:
        buf.append((key, rec))
        size += len(key) + len(rec) + 120  # tuple and two bytes objects
        if size >= run_bytes:
            runs.append(_write_run(buf))
            buf, size = [], 0
    if not runs:
        buf.sort(key=lambda kv: kv[0])
        yield from buf
        return
    if buf:
        runs.append(_write_run(buf))
    del buf
    yield from heapq.merge(*(_read_run(r) for r in runs), key=lambda kv: kv[0])
