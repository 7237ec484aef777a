"""Property tests of the per-entry newc diff (eifbuild.diff.read_entries / diff_entries)."""

from __future__ import annotations

import hashlib
import io
import stat
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from eifbuild.cpio import Member, newc_stream
from eifbuild.diff import ArchiveDiff, diff_entries, read_entries
from eifbuild.diff.entries import pack, unpack
from eifbuild.errors import EifbuildError

NAMES = st.sampled_from([b"a", b"b", b"a/b", b"c\xff", b"d\n", b"e", b"f"])


@st.composite
def member(draw: Any) -> Member:
    name = draw(NAMES)
    kind = draw(st.sampled_from(["file", "dir", "link", "chr"]))
    attrs = {
        "perm": draw(st.sampled_from([0o644, 0o755, 0o4755])),
        "uid": draw(st.integers(0, 2)),
        "mtime": draw(st.integers(0, 2)),
    }
    if kind == "file":
        return Member(name, stat.S_IFREG, data=draw(st.binary(max_size=8)), **attrs)
    if kind == "dir":
        return Member(name, stat.S_IFDIR, **attrs)
    if kind == "link":
        return Member(name, stat.S_IFLNK, data=draw(st.binary(min_size=1, max_size=6)), **attrs)
    return Member(name, stat.S_IFCHR, rdevmajor=1, rdevminor=draw(st.integers(0, 2)), **attrs)


ARCHIVES = st.lists(member(), max_size=12)


def archive(members: list[Member]) -> bytes:
    return b"".join(newc_stream(members))


def run(x: list[Member], y: list[Member]) -> ArchiveDiff:
    return diff_entries(read_entries(io.BytesIO(archive(x))), read_entries(io.BytesIO(archive(y))))


def keys(members: list[Member]) -> Counter[bytes]:
    """Independent occurrence keys: the n-th repeat of a name is its own entry."""
    seen: Counter[bytes] = Counter()
    out: Counter[bytes] = Counter()
    for m in members:
        out[m.name + b"#%d" % seen[m.name]] += 1
        seen[m.name] += 1
    return out


def _key(k: bytes) -> bytes:
    name, _, n = k.partition(b"\0")
    return name + b"#" + (n or b"0")


@settings(max_examples=150, deadline=None)
@given(ARCHIVES)
def test_diff_with_itself_is_empty(x: list[Member]) -> None:
    d = run(x, x)
    assert d.empty and d.entries_a == d.entries_b == len(x)


@settings(max_examples=200, deadline=None)
@given(ARCHIVES, ARCHIVES)
def test_diff_is_symmetric_and_matches_a_reference(x: list[Member], y: list[Member]) -> None:
    xy, yx = run(x, y), run(y, x)
    kx, ky = keys(x), keys(y)
    assert Counter(_key(e.key) for e in xy.added) == ky - kx
    assert Counter(_key(e.key) for e in xy.removed) == kx - ky
    assert [e.key for e in xy.added] == [e.key for e in yx.removed]
    assert [e.key for e in xy.removed] == [e.key for e in yx.added]
    assert xy.entries_a - len(xy.removed) == xy.entries_b - len(xy.added)

    def attrs(d: ArchiveDiff) -> dict[bytes, dict[str, Any]]:
        out = {}
        for c in d.changed + d.inode_only:
            rest = {k: v for k, v in c.attrs.items() if k != "position"}
            if rest:
                out[c.key] = rest
        return out

    swapped = {k: {a: (v[1], v[0]) for a, v in ch.items()} for k, ch in attrs(yx).items()}
    assert attrs(xy) == swapped
    moved = [sum("position" in c.attrs for c in d.changed) for d in (xy, yx)]
    assert moved[0] == moved[1]  # a longest common order has the same length both ways
    for c in xy.changed:  # content digests are SHA-256 hex (None for non-files)
        if "sha256" in c.attrs:
            a, b = c.attrs["sha256"]
            assert a != b and all(v is None or len(v) == 64 for v in (a, b))


@settings(max_examples=100, deadline=None)
@given(ARCHIVES)
def test_content_hashes_are_sha256_of_the_data(x: list[Member]) -> None:
    for m, e in zip(x, read_entries(io.BytesIO(archive(x))), strict=True):
        assert e.name == m.name and e.mode == m.mode
        if m.ftype == stat.S_IFREG:
            assert e.sha256 == hashlib.sha256(m.data).digest()
        if m.ftype == stat.S_IFLNK:
            assert e.target == m.data


@settings(max_examples=100, deadline=None)
@given(ARCHIVES)
def test_packed_entries_round_trip(x: list[Member]) -> None:
    # The first archive of a pair is kept packed: every header field, the position, the
    # digest or link target must come back (a new cpio Header field would show up here).
    for e in read_entries(io.BytesIO(archive(x))):
        assert unpack(pack(e)) == e
        assert len(pack(e)) <= 64 + len(e.key) + 32 + len(e.target or b"")


@settings(max_examples=300, deadline=None)
@given(ARCHIVES, st.data())
def test_corrupted_archives_give_one_line_errors(x: list[Member], data: Any) -> None:
    raw = bytearray(archive(x))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        entries = list(read_entries(io.BytesIO(bytes(raw[:cut]))))
    except EifbuildError as exc:
        assert "\n" not in exc.message
    else:
        assert len(entries) <= len(x) + 1
