"""newc writer/reader: docs/spec/ramdisk-layout.md §6-§7 golden bytes, round trips, GNU cpio, hostile input."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from eifbuild.cpio import (
    S_IFDIR,
    S_IFLNK,
    S_IFREG,
    Header,
    Limits,
    Member,
    NewcReader,
    newc_stream,
)
from eifbuild.errors import RamdiskError
from eifbuild.ramdisk import bootstrap_stream
from tests.conftest import require
from tests.cpio_ref import check_gocpio_invariants, parse

SPEC_BOOTSTRAP_SHA256 = "0cb76136ca98bd530fb7405a7d5c961b3df42782ca0c144844dadeb09a33eb24"
SPEC_DEV_ENTRY = bytes.fromhex(
    "".join(
        f"{x:08x}".encode().hex() for x in (721, 0o40755, 0, 0, 2, 0x58F63F08, 0, 3, 1, 0, 0, 4, 0)
    )
)


def _bootstrap(tmp_path: Path) -> bytes:
    (tmp_path / "init").write_bytes(b"INIT")
    (tmp_path / "nsm.ko").write_bytes(b"NSM.KO")
    return b"".join(bootstrap_stream(tmp_path / "init", tmp_path / "nsm.ko"))


def test_bootstrap_worked_example_spec_7_1(tmp_path: Path) -> None:
    data = _bootstrap(tmp_path)
    assert len(data) == 512
    assert hashlib.sha256(data).hexdigest() == SPEC_BOOTSTRAP_SHA256
    # First 116 bytes exactly as printed in the spec.
    assert data[:116] == b"070701" + SPEC_DEV_ENTRY + b"dev\0\0\0"


def test_bootstrap_table_spec_7(tmp_path: Path) -> None:
    entries = parse(_bootstrap(tmp_path))
    check_gocpio_invariants(entries)
    rows = [(e.ino, e.name, e.mode, e.nlink, e.filesize, e.data, e.mtime) for e in entries]
    assert rows == [
        (721, b"dev", 0o40755, 2, 0, b"", 1492533000),
        (722, b"init", 0o100755, 1, 4, b"INIT", 1492533000),
        (723, b"nsm.ko", 0o100755, 1, 6, b"NSM.KO", 1492533000),
        (724, b"TRAILER!!!", 0, 1, 0, b"", 0),
    ]
    assert all(e.uid == e.gid == e.rdevmajor == e.rdevminor == 0 for e in entries)


def _members() -> list[Member]:
    return [
        Member(b"d", S_IFDIR, 0o1777, uid=1000, gid=1000, mtime=5),
        Member(b"d/f", S_IFREG, 0o4755, mtime=7, data=b"hello"),
        Member(b"d/s", S_IFLNK, 0o777, mtime=7, data=b"f"),
        Member(b"d/big", S_IFREG, 0o644, size=3 * 1000, opener=lambda: iter([b"x" * 1000] * 3)),
        Member(b"dev/null", stat.S_IFCHR, 0o666, rdevmajor=1, rdevminor=3),
        Member(b"p", stat.S_IFIFO, 0o600),
        Member("é/☃".encode(), S_IFREG, 0o600, data=b""),
    ]


def test_reference_reader_agrees_with_members() -> None:
    data = b"".join(newc_stream(_members()))
    entries = parse(data)
    check_gocpio_invariants(entries)
    got = [(e.name, e.mode, e.uid, e.mtime, e.data, e.rdevmajor, e.rdevminor) for e in entries[:-1]]
    assert got == [
        (b"d", 0o41777, 1000, 5, b"", 0, 0),
        (b"d/f", 0o104755, 0, 7, b"hello", 0, 0),
        (b"d/s", 0o120777, 0, 7, b"f", 0, 0),
        (b"d/big", 0o100644, 0, 0, b"x" * 3000, 0, 0),
        (b"dev/null", 0o20666, 0, 0, b"", 1, 3),
        (b"p", 0o10600, 0, 0, b"", 0, 0),
        ("é/☃".encode(), 0o100600, 0, 0, b"", 0, 0),
    ]


def test_reader_round_trip() -> None:
    data = b"".join(newc_stream(_members()))
    r = NewcReader(io.BytesIO(data))
    out = [(h.name, h.mode, b"".join(r.content())) for h in r]
    # The reader builds Header without its __init__: it must be an ordinary frozen Header.
    for h in NewcReader(io.BytesIO(data)):
        fields = {f.name: getattr(h, f.name) for f in dataclasses.fields(Header)}
        assert vars(h) == fields
        same = Header(**fields)
        assert h == same and hash(h) == hash(same) and repr(h) == repr(same)
        assert dataclasses.replace(h, uid=7) == Header(**{**fields, "uid": 7})
        assert (h.ftype, h.perm) == (stat.S_IFMT(h.mode), stat.S_IMODE(h.mode))
        with pytest.raises(dataclasses.FrozenInstanceError):
            h.uid = 1  # type: ignore[misc]
    assert [o[0] for o in out] == [m.name for m in _members()]
    assert out[3][2] == b"x" * 3000


def test_content_size_mismatch_is_an_error() -> None:
    m = Member(b"f", S_IFREG, 0o644, size=4, opener=lambda: iter([b"abc"]))
    with pytest.raises(RamdiskError, match="shorter"):
        b"".join(newc_stream([m]))
    m = Member(b"f", S_IFREG, 0o644, size=2, opener=lambda: iter([b"abc"]))
    with pytest.raises(RamdiskError, match="longer"):
        b"".join(newc_stream([m]))


def test_writer_rejects_bad_names_and_fields() -> None:
    with pytest.raises(RamdiskError):
        b"".join(newc_stream([Member(b"a\0b", S_IFREG, 0o644)]))
    with pytest.raises(RamdiskError):
        b"".join(newc_stream([Member(b"a", S_IFREG, 0o644, uid=1 << 32)]))
    with pytest.raises(RamdiskError, match="reserved"):
        b"".join(newc_stream([Member(b"TRAILER!!!", S_IFREG, 0o644)]))


names = st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b and b != b"TRAILER!!!")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(names, st.binary(max_size=70), st.integers(0, 0o7777)), max_size=8))
def test_property_round_trip_and_layout(items: list[tuple[bytes, bytes, int]]) -> None:
    members = [Member(n, S_IFREG, p, data=d) for n, d, p in items]
    data = b"".join(newc_stream(members))
    entries = parse(data)
    check_gocpio_invariants(entries)
    assert [(e.name, e.data, e.mode & 0o7777) for e in entries[:-1]] == [
        (n, d, p) for n, d, p in items
    ]
    r = NewcReader(io.BytesIO(data))
    assert [(h.name, b"".join(r.content())) for h in r] == [(n, d) for n, d, _ in items]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 600))
def test_reader_never_crashes_on_garbage(noise: bytes, cut: int) -> None:
    good = b"".join(newc_stream(_members()))
    for blob in (noise, good[:cut] + noise, good[:cut]):
        try:
            r = NewcReader(io.BytesIO(blob), Limits(max_cpio_file_bytes=1 << 16))
            for _ in r:
                b"".join(r.content())
        except RamdiskError:
            pass


def test_reader_limits() -> None:
    data = b"".join(newc_stream([Member(b"x" * 100, S_IFREG, 0o644, data=b"a" * 50)]))
    with pytest.raises(RamdiskError, match="name size"):
        list(NewcReader(io.BytesIO(data), Limits(max_name_bytes=50)))
    with pytest.raises(RamdiskError, match="exceeds limit"):
        list(NewcReader(io.BytesIO(data), Limits(max_cpio_file_bytes=10)))
    with pytest.raises(RamdiskError, match="after the trailer"):
        list(NewcReader(io.BytesIO(data + b"junk")))


def _gnu_cpio() -> str:
    path = shutil.which("cpio")
    require("cpio", path is not None, "GNU cpio not installed")
    assert path is not None
    return path


def test_gnu_cpio_reads_what_we_write(tmp_path: Path) -> None:
    cpio = _gnu_cpio()
    members = [m for m in _members() if m.ftype in (S_IFDIR, S_IFREG, S_IFLNK)]
    arc = tmp_path / "a.cpio"
    arc.write_bytes(b"".join(newc_stream(members)))
    listing = subprocess.run(
        [cpio, "-t", "--quiet", "-F", str(arc)], capture_output=True, check=True
    )
    assert listing.stdout.splitlines() == [m.name for m in members]
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(
        [cpio, "-i", "-d", "--quiet", "--no-absolute-filenames", "-F", str(arc)],
        cwd=out,
        check=True,
        capture_output=True,
    )
    assert (out / "d/f").read_bytes() == b"hello"
    assert os.readlink(out / "d/s") == "f"
    assert (out / "d/big").read_bytes() == b"x" * 3000
    assert stat.S_IMODE((out / "d/f").stat().st_mode) == 0o4755


def test_gnu_cpio_lists_bootstrap(tmp_path: Path) -> None:
    cpio = _gnu_cpio()
    arc = tmp_path / "b.cpio"
    arc.write_bytes(_bootstrap(tmp_path))
    out = subprocess.run(
        [cpio, "-itv", "--quiet", "-F", str(arc)],
        capture_output=True,
        check=True,
        env={"LC_ALL": "C", "TZ": "UTC"},
    )
    lines = out.stdout.decode().splitlines()
    assert [ln.split()[-1] for ln in lines] == ["dev", "init", "nsm.ko"]
    assert all("Apr 18  2017" in ln and "root" in ln for ln in lines), lines


# --- fast paths against straightforward references ---------------------------------------------

HEX = b"0123456789abcdefABCDEF"
FIELD_NAMES = ("ino", "mode", "uid", "gid", "nlink", "mtime", "size")
# Bytes that int(x, 16) or bytes.fromhex would tolerate although they are not hex digits.
TRICKY = b" \t\n\v\f\r+-_xX0fFgG\x00\x7f\x80\xff"


def ref_parse_header(raw: bytes) -> tuple[int, ...] | None:
    """The 13 fields of a 110-byte header, or None: magic, then 104 of [0-9a-fA-F]."""
    if len(raw) != 110 or raw[:6] != b"070701":
        return None
    if any(c not in HEX for c in raw[6:]):
        return None
    values = []
    for i in range(13):
        value = 0
        for c in raw[6 + 8 * i : 14 + 8 * i].lower():
            value = value * 16 + b"0123456789abcdef".index(c)
        values.append(value)
    return tuple(values)


def ref_header_error(raw: bytes) -> str:
    if raw[:6] != b"070701":
        return "bad magic"
    bad = next(i for i in range(13) if any(c not in HEX for c in raw[6 + 8 * i : 14 + 8 * i]))
    return f"header field {bad} is not hexadecimal: {raw[6 + 8 * bad : 14 + 8 * bad]!r}"


@st.composite
def headers(draw: st.DrawFn) -> bytes:
    """110-byte headers: valid ones in mixed case, with a few bytes replaced by tricky ones."""
    words = draw(st.lists(st.integers(0, 0xFFFFFFFF), min_size=13, max_size=13))
    text = bytearray(b"".join(b"%08x" % w for w in words))
    upper = draw(st.lists(st.integers(0, 103), max_size=20))
    for i in upper:
        text[i : i + 1] = text[i : i + 1].upper()
    raw = bytearray(draw(st.sampled_from([b"070701", b"070702", b"070707", b"07070 "])) + text)
    for pos, byte in draw(
        st.lists(
            st.tuples(
                st.integers(0, 109),
                st.one_of(st.sampled_from(list(TRICKY)), st.integers(0, 255)),
            ),
            max_size=3,
        )
    ):
        raw[pos] = byte
    return bytes(raw)


@given(headers(), st.binary(max_size=9), st.binary(max_size=9))
@settings(max_examples=1500)
def test_header_parser_matches_reference(raw: bytes, before: bytes, after: bytes) -> None:
    from eifbuild.cpio import parse_header

    expected = ref_parse_header(raw)
    event("valid" if expected else "invalid")
    for buf, at in ((raw, 0), (before + raw + after, len(before))):
        if expected is None:
            with pytest.raises(RamdiskError) as err:
                parse_header(buf, at)
            assert ref_header_error(raw) in str(err.value)
        else:
            assert parse_header(buf, at) == expected


@pytest.mark.parametrize(
    ("field", "text"),
    [(0, b" 1234567"), (3, b"+1234567"), (5, b"1234_567"), (6, b"0x123456"), (12, b"-0000001"),
     (1, "١٢٣٤٥٦٧٨".encode()[:8]), (7, b"1234567\n"), (11, b"\xff2345678"[:8])],
)  # fmt: skip
def test_header_parser_rejects_what_int_would_take(field: int, text: bytes) -> None:
    from eifbuild.cpio import parse_header

    raw = bytearray(b"070701" + b"0" * 104)
    raw[6 + 8 * field : 14 + 8 * field] = text
    with pytest.raises(RamdiskError, match=f"header field {field} is not hexadecimal"):
        parse_header(bytes(raw))
    assert parse_header(b"070701" + b"aBcDeF09" * 13) == (0xABCDEF09,) * 13


def ref_write(members: list[Member]) -> bytes:
    """gocpio's layout written the obvious way (docs/spec/ramdisk-layout.md §6), one member at a time."""
    out = bytearray()
    ino = 721

    def entry(name: bytes, mode: int, m: Member | None, size: int, body: bytes) -> None:
        nonlocal ino
        fields = (ino, mode, m.uid if m else 0, m.gid if m else 0,
                  2 if mode & 0o170000 == S_IFDIR else 1, m.mtime if m else 0, size, 3, 1,
                  m.rdevmajor if m else 0, m.rdevminor if m else 0, len(name) + 1, 0)  # fmt: skip
        ino += 1
        out.extend(b"070701" + b"".join(b"%08x" % f for f in fields) + name + b"\0")
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(body)
        out.extend(b"\0" * (-len(out) % 4))

    for m in members:
        body = m.data
        if m.opener is not None:
            body = b"".join(m.opener())
        elif m.ftype not in (S_IFREG, S_IFLNK):
            body = b""
        entry(m.name, m.ftype | m.perm, m, len(body), body)
    entry(b"TRAILER!!!", 0, None, 0, b"")
    out.extend(b"\0" * (-len(out) % 512))
    return bytes(out)


def _chunks_of(data: bytes, sizes: list[int]) -> Callable[[], Iterator[bytes]]:
    def opener() -> Iterator[bytes]:
        at = 0
        for n in [*sizes, len(data)]:
            yield data[at : at + n]
            at += n

    return opener


@st.composite
def members(draw: st.DrawFn, max_size: int = 3000) -> list[Member]:
    out = []
    for i in range(draw(st.integers(0, 12))):
        name = draw(names) + b"%d" % i
        kind = draw(st.sampled_from(["data", "opener", "big", "dir", "link", "dev", "fifo"]))
        perm = draw(st.integers(0, 0o7777))
        uid, mtime = draw(st.integers(0, 0xFFFFFFFF)), draw(st.integers(0, 0xFFFFFFFF))
        if kind in ("data", "link"):
            data = draw(st.binary(min_size=kind == "link", max_size=70))
            out.append(
                Member(
                    name,
                    S_IFREG if kind == "data" else S_IFLNK,
                    perm,
                    data=data,
                    uid=uid,
                    mtime=mtime,
                )
            )
        elif kind in ("opener", "big"):
            size = draw(st.integers(0, max_size if kind == "opener" else 200_000))
            data = bytes([i + 1]) * size
            cuts = draw(st.lists(st.integers(0, size), max_size=4))
            out.append(
                Member(
                    name,
                    S_IFREG,
                    perm,
                    size=size,
                    opener=_chunks_of(data, cuts),
                    uid=uid,
                    mtime=mtime,
                )
            )
        elif kind == "dev":
            maj, mnr = draw(st.integers(0, 0xFFFFFFFF)), draw(st.integers(0, 0xFFFFFFFF))
            ftype = draw(st.sampled_from([stat.S_IFCHR, stat.S_IFBLK]))
            out.append(
                Member(name, ftype, perm, rdevmajor=maj, rdevminor=mnr, uid=uid, mtime=mtime)
            )
        else:
            out.append(
                Member(name, S_IFDIR if kind == "dir" else stat.S_IFIFO, perm, uid=uid, mtime=mtime)
            )
    return out


@given(members())
@settings(max_examples=150)
def test_writer_matches_reference_writer(ms: list[Member]) -> None:
    from eifbuild.cpio import NewcWriter

    chunks = list(newc_stream(ms))
    assert b"".join(chunks) == ref_write(ms)
    # Coalescing: every chunk but the last reaches FLUSH unless a large content chunk follows.
    assert all(len(c) > 0 for c in chunks)
    w = NewcWriter()
    pieces = [p for m in ms for p in w.member(m)] + list(w.trailer())
    assert b"".join(pieces) == b"".join(chunks)
    assert w.offset == sum(map(len, chunks)) and w.offset % 512 == 0


def test_writer_coalesces_small_members_and_passes_big_chunks() -> None:
    from eifbuild.cpio import FLUSH

    big = b"B" * (FLUSH + 3)
    ms = [Member(b"f%05d" % i, S_IFREG, 0o644, data=b"x" * (i % 50)) for i in range(5000)]
    ms.append(Member(b"big", S_IFREG, 0o644, size=len(big), opener=lambda: iter([big])))
    chunks = list(newc_stream(ms))
    assert b"".join(chunks) == ref_write(ms)
    assert any(c is big for c in chunks)  # not copied
    small = [c for c in chunks if c is not big]
    assert all(FLUSH <= len(c) < FLUSH + 200 for c in small[:-2])
    assert len(chunks) <= sum(map(len, chunks)) // FLUSH + 2


def test_writer_field_errors_name_the_field() -> None:
    for kw, label in (({"uid": 1 << 32}, "uid"), ({"gid": -1}, "gid"), ({"mtime": -5}, "mtime"),
                      ({"rdevminor": 1 << 40}, "rdevminor")):  # fmt: skip
        m = Member(b"a", stat.S_IFCHR, 0o644, **kw)  # type: ignore[arg-type]
        with pytest.raises(RamdiskError, match=f"cpio entry b'a': {label} -?\\d+ does not fit"):
            b"".join(newc_stream([m]))
    with pytest.raises(RamdiskError, match="non-file entry with size 3"):
        b"".join(newc_stream([Member(b"d", S_IFDIR, 0o755, size=3)]))
    with pytest.raises(RamdiskError, match="unsupported file type"):
        b"".join(newc_stream([Member(b"s", 0o140000, 0o755)]))


class RefError(Exception):
    pass


def ref_read(data: bytes, lim: Limits) -> list[tuple[bytes, tuple[int, ...], bytes]]:
    """Every member (name, 13 fields, content) of a newc archive, checked field by field."""
    out: list[tuple[bytes, tuple[int, ...], bytes]] = []
    off = 0

    def take(n: int) -> bytes:
        nonlocal off
        if len(data) - off < n:
            raise RefError("truncated")
        off += n
        return data[off - n : off]

    while True:
        fields = ref_parse_header(take(110))
        if fields is None:
            raise RefError("header")
        namesize, size, ftype = fields[11], fields[6], fields[1] & 0o170000
        if not 2 <= namesize <= lim.max_name_bytes + 1:
            raise RefError("name size")
        name = take(namesize)
        if name[-1] != 0 or 0 in name[:-1]:
            raise RefError("name")
        take(-off % 4)
        if name[:-1] == b"TRAILER!!!":
            if any(data[off:]):
                raise RefError("tail")
            return out
        if len(out) == lim.max_cpio_entries:
            raise RefError("entries")
        if ftype not in (0o040000, 0o100000, 0o120000, 0o020000, 0o060000, 0o010000):
            raise RefError("type")
        if size > (lim.max_symlink_bytes if ftype == 0o120000 else lim.max_cpio_file_bytes):
            raise RefError("size")
        content = take(size)
        take(-off % 4)
        out.append((name[:-1], fields, content))


class ShortReads(io.RawIOBase):
    """A file that returns at most a few bytes per read, as pipes and sockets may."""

    def __init__(self, data: bytes, steps: list[int]) -> None:
        self.data, self.at, self.steps, self.calls = data, 0, steps or [1 << 30], 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        step = self.steps[self.calls % len(self.steps)]
        self.calls += 1
        n = min(n, step) if n >= 0 else step
        self.at += len(chunk := self.data[self.at : self.at + n])
        return chunk


def our_read(
    data: bytes, lim: Limits, steps: list[int], small: bool
) -> list[tuple[bytes, tuple[int, ...], bytes]]:
    r = NewcReader(ShortReads(data, steps), lim)  # type: ignore[arg-type]
    out: list[tuple[bytes, tuple[int, ...], bytes]] = []
    for h in r:
        if small and h.filesize <= 100:
            content = r.read_small(100)
        else:
            chunks = list(r.content())
            assert all(0 < len(c) <= lim.cpio_chunk_bytes for c in chunks)
            content = b"".join(chunks)
        fields = (h.ino, h.mode, h.uid, h.gid, h.nlink, h.mtime, h.filesize,
                  h.devmajor, h.devminor, h.rdevmajor, h.rdevminor, len(h.name) + 1, h.check)  # fmt: skip
        out.append((h.name, fields, content))
    return out


MUTATION_BYTES = st.one_of(
    st.sampled_from(list(TRICKY + b"0123456789aAfF\x00")), st.integers(0, 255)
)


def layout(archive: bytes) -> tuple[list[tuple[int, int, int]], int]:
    """(header offset, name offset, name size) of every entry, and where the tail starts."""
    spots, off = [], 0
    for e in parse(archive):
        spots.append((off, off + 110, e.namesize))
        off += 110 + e.namesize
        off += -off % 4 + e.filesize
        off += -off % 4
    return spots, off


@st.composite
def mutated(draw: st.DrawFn, archive: bytes) -> bytes:
    """``archive`` with a few bytes changed where the reader checks them, cut or extended."""
    spots, tail = layout(archive)
    data = bytearray(archive + draw(st.binary(max_size=4) | st.just(b"\0" * 600)))
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
        hdr, name, namesize = draw(st.sampled_from(spots))
        kind = draw(st.sampled_from(["any", "field", "name", "nul", "tail"]))
        if kind == "any":
            pos, byte = draw(st.integers(0, len(data) - 1)), draw(MUTATION_BYTES)
        elif kind == "field":  # a digit of mode, size or namesize, or any header byte
            field = draw(st.sampled_from([1, 6, 11]) | st.integers(0, 12))
            pos = hdr + 6 + 8 * field + draw(st.integers(0, 7))
            byte = draw(st.sampled_from(list(b"0123456789abcdef")) | MUTATION_BYTES)
        elif kind == "name":
            at = draw(st.sampled_from([0, max(0, namesize - 2)]) | st.integers(0, namesize - 1))
            pos, byte = name + at, 0
        elif kind == "nul":
            pos, byte = name + namesize - 1, draw(st.integers(1, 255))
        else:
            pos = draw(st.integers(tail, len(data) - 1))
            byte = draw(st.sampled_from([1, 0x30, 0xFF]) | st.integers(1, 255))
        data[pos] = byte
    cut = None
    if draw(st.integers(0, 3)) == 0:
        cut = draw(st.integers(0, len(data)) | st.sampled_from([h for h, _, _ in spots]))
        cut = max(0, cut + draw(st.integers(-2, 2)))
    return bytes(data[:cut])


@st.composite
def limits_near(draw: st.DrawFn, ms: list[Member]) -> Limits:
    """Each limit either the default or within one of the largest name, file, link, count."""
    default = Limits()

    def near(values: list[int], fallback: int) -> int:
        if not values or draw(st.booleans()):
            return fallback
        return max(0, max(values) + draw(st.integers(-1, 1)))

    files = [len(m.data) if m.opener is None else m.size for m in ms if m.ftype == S_IFREG]
    return Limits(
        max_name_bytes=max(1, near([len(m.name) for m in ms], default.max_name_bytes)),
        max_cpio_file_bytes=near(files, default.max_cpio_file_bytes),
        max_symlink_bytes=near(
            [len(m.data) for m in ms if m.ftype == S_IFLNK], default.max_symlink_bytes
        ),
        max_cpio_entries=near([len(ms)], default.max_cpio_entries),
        cpio_chunk_bytes=draw(st.integers(1, 300) | st.just(default.cpio_chunk_bytes)),
    )


@given(
    members(max_size=300),
    st.data(),
    st.sampled_from([1, 3, 7, 64, 1 << 16]),
    st.lists(st.integers(1, 200), max_size=4),
    st.booleans(),
)
@settings(max_examples=500)
def test_reader_accepts_and_rejects_like_reference(
    ms: list[Member], data: st.DataObject, read_ahead: int, steps: list[int], small: bool
) -> None:
    """Mutated, truncated and extended archives, tight limits, any read-ahead, short reads."""
    import eifbuild.cpio

    blob = data.draw(mutated(b"".join(newc_stream(ms))))
    lim = data.draw(limits_near(ms))
    try:
        expected: object = ref_read(blob, lim)
    except RefError as exc:
        expected = RefError, str(exc)
    event(f"reference: {expected[1] if isinstance(expected, tuple) else 'accepted'}")
    with mock.patch.object(eifbuild.cpio, "READ_AHEAD", read_ahead):
        try:
            got: object = our_read(blob, lim, steps, small)
        except RamdiskError as exc:
            got = RefError, str(exc)
    if isinstance(expected, tuple):
        assert isinstance(got, tuple), (expected, got)
    else:
        assert got == expected


def test_reader_streams_big_content_in_bounded_chunks() -> None:
    big = bytes(range(256)) * 4096 + b"end"  # 1 MiB + 3, past any read-ahead
    ms = [Member(b"a", S_IFREG, 0o644, data=b"1"),
          Member(b"big", S_IFREG, 0o644, size=len(big), opener=lambda: iter([big])),
          Member(b"z", S_IFLNK, 0o777, data=b"a")]  # fmt: skip
    data = b"".join(newc_stream(ms))
    r = NewcReader(io.BytesIO(data), Limits(cpio_chunk_bytes=100_000))
    seen = []
    for h in r:
        chunks = list(r.content())
        assert all(0 < len(c) <= 100_000 for c in chunks)
        seen.append((h.name, b"".join(chunks)))
    assert seen == [(b"a", b"1"), (b"big", big), (b"z", b"a")]
    # Skipping unread content (partly read or not at all) lands on the next header.
    r = NewcReader(io.BytesIO(data), Limits(cpio_chunk_bytes=4096))
    names = []
    for h in r:
        names.append(h.name)
        if h.name == b"big":
            next(iter(r.content()))
    assert names == [b"a", b"big", b"z"]
    assert r.offset == len(data)
    with pytest.raises(RamdiskError, match="truncated while reading file content"):
        list(NewcReader(io.BytesIO(data[: len(data) // 2])))


def test_limits_need_a_positive_chunk() -> None:
    with pytest.raises(ValueError, match="chunk"):
        Limits(cpio_chunk_bytes=0)


def test_reader_limits_are_exact() -> None:
    def read(ms: list[Member], **limits: int) -> list[bytes]:
        r = NewcReader(io.BytesIO(b"".join(newc_stream(ms))), Limits(**limits))
        return [h.name + b"".join(r.content()) for h in r]

    five = [Member(b"n%d" % i, S_IFREG, 0o644, data=b"abc") for i in range(5)]
    assert len(read(five, max_cpio_entries=5)) == 5
    with pytest.raises(RamdiskError, match="more than 4 members"):
        read(five, max_cpio_entries=4)
    assert read([Member(b"x" * 12, S_IFDIR, 0o755)], max_name_bytes=12) == [b"x" * 12]
    with pytest.raises(RamdiskError, match="name size 13 at offset 0 out of bounds"):
        read([Member(b"x" * 12, S_IFDIR, 0o755)], max_name_bytes=11)
    assert read(five[:1], max_cpio_file_bytes=3) == [b"n0abc"]
    with pytest.raises(RamdiskError, match="size 3 exceeds limit 2"):
        read(five[:1], max_cpio_file_bytes=2)
    link = [Member(b"l", S_IFLNK, 0o777, data=b"target")]
    assert read(link, max_symlink_bytes=6, max_cpio_file_bytes=0) == [b"ltarget"]
    with pytest.raises(RamdiskError, match="size 6 exceeds limit 5"):
        read(link, max_symlink_bytes=5)


@pytest.mark.parametrize("where", [0, 4, 5, 6])
def test_reader_rejects_nul_inside_name_and_missing_terminator(where: int) -> None:
    data = bytearray(b"".join(newc_stream([Member(b"abcdef", S_IFREG, 0o644, data=b"z")])))
    data[110 + where] ^= 0xFF if where == 6 else data[110 + where]  # NUL in, or NUL gone
    with pytest.raises(RamdiskError, match="not a single NUL-terminated string"):
        list(NewcReader(io.BytesIO(bytes(data))))


@pytest.mark.parametrize("byte", [1, 0x30, 0xFF])
def test_reader_rejects_any_nonzero_byte_after_trailer(byte: int) -> None:
    data = b"".join(newc_stream([Member(b"a", S_IFREG, 0o644, data=b"z")]))
    assert list(NewcReader(io.BytesIO(data + bytes(70_000))))
    for at in (len(data) - 1, len(data) + 69_999):
        blob = bytearray(data + bytes(70_000))
        blob[at] = byte
        with pytest.raises(RamdiskError, match="non-zero bytes after the trailer"):
            list(NewcReader(io.BytesIO(bytes(blob))))
