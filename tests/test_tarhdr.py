"""The bounded tar header reader (eifbuild.sources._tarhdr).

Well-formed archives are written by Python's ``tarfile`` (USTAR, GNU and PAX formats) and read
back by both ``tarfile`` and our reader: every field must agree (an independent parser is the
oracle). Hostile streams are crafted here, block by block, with their checksums computed by
this file's own ``_hdr`` helper; large ones are generated lazily so a 1 GiB header costs nothing
unless the reader actually reads it.
"""

from __future__ import annotations

import io
import math
import tarfile
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eifbuild.errors import EifbuildError, RootfsError
from eifbuild.sources._tarhdr import (
    DEFAULT_CAPS,
    ChunkSource,
    TarCaps,
    TarHeader,
    parse_pax,
    read_headers,
)

# --- crafting ---------------------------------------------------------------------------------


def _octal(n: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, n)


def _hdr(
    name: bytes,
    typeflag: bytes = b"0",
    size: int | bytes = 0,
    *,
    mode: int = 0o644,
    linkname: bytes = b"",
    magic: bytes = b"ustar\x0000",
    chksum: int | None = None,
) -> bytes:
    """One 512-byte header block with a correct (or the given) checksum."""
    size_field = size if isinstance(size, bytes) else _octal(size, 12)
    blk = bytearray(512)
    blk[0:100] = name[:100].ljust(100, b"\0")
    blk[100:108] = _octal(mode, 8)
    blk[108:116] = _octal(0, 8)
    blk[116:124] = _octal(0, 8)
    blk[124:136] = size_field
    blk[136:148] = _octal(1_600_000_000, 12)
    blk[148:156] = b" " * 8
    blk[156:157] = typeflag
    blk[157:257] = linkname[:100].ljust(100, b"\0")
    blk[257:265] = magic
    blk[148:156] = b"%06o\0 " % (sum(blk) if chksum is None else chksum)
    return bytes(blk)


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def _pax(records: dict[bytes, bytes]) -> bytes:
    out = b""
    for k, v in records.items():
        body = b" " + k + b"=" + v + b"\n"
        n = len(body) + 1
        while len(str(n)) + len(body) != n:
            n += 1
        out += str(n).encode() + body
    return out


def _entry(name: bytes, data: bytes = b"", typeflag: bytes = b"0") -> bytes:
    return _hdr(name, typeflag, len(data)) + _pad(data)


END = bytes(1024)


def _read(raw: bytes | Iterator[bytes], caps: TarCaps = DEFAULT_CAPS) -> list[TarHeader]:
    chunks = iter([raw]) if isinstance(raw, bytes) else raw
    return list(read_headers(ChunkSource(chunks), lambda m: RootfsError(f"test: {m}"), caps))


# --- agreement with tarfile on well-formed archives ------------------------------------------

_NAMES = st.lists(
    st.sampled_from(["a", "ß", "x" * 60, "dir", "é日本", "\udcff\udcfe", "..", "sp ace"]),
    min_size=1,
    max_size=6,
).map("/".join)


@st.composite
def _infos(draw: st.DrawFn) -> list[tuple[tarfile.TarInfo, bytes]]:
    out = []
    for i in range(draw(st.integers(1, 6))):
        name = f"{i}/" + draw(_NAMES)
        kind = draw(st.sampled_from(["file", "dir", "sym", "lnk", "chr", "fifo"]))
        ti = tarfile.TarInfo(name)
        data = b""
        ti.type = {
            "file": tarfile.REGTYPE,
            "dir": tarfile.DIRTYPE,
            "sym": tarfile.SYMTYPE,
            "lnk": tarfile.LNKTYPE,
            "chr": tarfile.CHRTYPE,
            "fifo": tarfile.FIFOTYPE,
        }[kind]
        if kind == "file":
            data = draw(st.binary(max_size=1500))
            ti.size = len(data)
        if kind in ("sym", "lnk"):
            ti.linkname = draw(_NAMES)
        if kind == "chr":
            ti.devmajor, ti.devminor = draw(st.integers(0, 4095)), draw(st.integers(0, 1 << 20))
        ti.mode = draw(st.integers(0, 0o7777))
        ti.uid = draw(st.integers(0, (1 << 32) - 1))
        ti.gid = draw(st.integers(0, 1 << 40))
        ti.mtime = draw(
            st.one_of(
                st.integers(0, (1 << 33) - 1),
                st.floats(-1e9, 1e10, allow_nan=False).map(lambda f: round(f, 3)),
            )
        )
        if draw(st.booleans()):
            ti.pax_headers = {f"SCHILY.xattr.user.{draw(_NAMES)}": "v"}
        out.append((ti, data))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_infos(), st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT]))
def test_headers_agree_with_tarfile(infos: list[tuple[tarfile.TarInfo, bytes]], fmt: int) -> None:
    buf = io.BytesIO()
    try:
        with tarfile.open(
            fileobj=buf, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape"
        ) as tf:
            for ti, data in infos:
                tf.addfile(ti, io.BytesIO(data))
    except ValueError:
        return  # a field the format cannot hold (ustar: long names, big numbers)
    raw = buf.getvalue()
    with tarfile.open(fileobj=io.BytesIO(raw), encoding="utf-8", errors="surrogateescape") as tf:
        want = tf.getmembers()
    # Feed the stream in odd-sized chunks: the reader must not depend on chunk boundaries.
    got = _read(iter([raw[i : i + 777] for i in range(0, len(raw), 777)]))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        raw_name = w.name.encode("utf-8", "surrogateescape")
        assert (g.name, g.linkname) == (raw_name, w.linkname.encode("utf-8", "surrogateescape"))
        assert g.typeflag == (tarfile.REGTYPE if w.type == tarfile.AREGTYPE else w.type)
        assert (g.mode, g.uid, g.gid, g.size) == (w.mode, w.uid, w.gid, w.size)
        assert g.mtime == math.floor(w.mtime)
        assert (g.devmajor, g.devminor) == (w.devmajor, w.devminor)
        assert g.offset == w.offset and g.data_offset == w.offset_data
        xattrs = sorted(k[13:] for k in w.pax_headers if k.startswith("SCHILY.xattr."))
        assert list(g.xattrs) == xattrs
        if w.isreg():
            assert raw[g.data_offset : g.data_offset + g.size] == tf_data(raw, w)


def tf_data(raw: bytes, w: tarfile.TarInfo) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        fh = tf.extractfile(w.name)
        assert fh is not None
        return fh.read()


def test_pax_mtime_is_floored_exactly() -> None:
    raw = b""
    for name, mtime in [(b"a", b"-1.5"), (b"b", b"1700000000.9999999999"), (b"c", b"+7")]:
        pax = _pax({b"mtime": mtime})
        raw += _hdr(b"pax", b"x", len(pax)) + _pad(pax) + _entry(name)
    assert [h.mtime for h in _read(raw + END)] == [-2, 1700000000, 7]


def test_v7_regular_with_trailing_slash_is_a_directory() -> None:
    raw = _hdr(b"d/", b"\0", magic=bytes(8)) + _hdr(b"f", b"\0", magic=bytes(8)) + END
    assert [(h.name, h.typeflag) for h in _read(raw)] == [(b"d", b"5"), (b"f", b"0")]


# --- ends and corruption ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tail", "ok"),
    [
        (b"", True),  # end of data on an entry boundary
        (bytes(512), True),  # one zero block, then the end
        (END, True),
        (END + b"trailing garbage is not read", True),
        (bytes(512) + b"x" * 512, False),  # a zero block then data
        (bytes(512) + bytes(100), False),  # a zero block then a partial block
        (b"\0" * 100, False),  # a partial block
    ],
)
def test_end_of_archive(tail: bytes, ok: bool) -> None:
    raw = _entry(b"a", b"data") + tail
    if ok:
        assert [h.name for h in _read(raw)] == [b"a"]
    else:
        with pytest.raises(RootfsError, match="after entry b'a'"):
            _read(raw)


def test_corrupt_header_after_a_member_is_an_error() -> None:
    """tarfile ends the archive silently here; Go's archive/tar (Docker) fails: so do we."""
    second = bytearray(_entry(b"b", b"x"))
    second[0] = ord("c")  # the checksum no longer matches
    raw = _entry(b"a", b"data") + bytes(second) + END
    with pytest.raises(RootfsError, match=r"corrupt tar header at offset 1024 after entry b'a'"):
        _read(raw)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        assert tf.getnames() == ["a"]  # the behaviour this replaces


@pytest.mark.parametrize(
    "size_field",
    [
        b"\xff" + b"\xff" * 9 + b"\xfa\x00",  # base-256 -1536
        b"\x80" + b"\x7f" + b"\xff" * 10,  # base-256 beyond int64
        b"0000000001-\0",
        b"0o17\0\0\0\0\0\0\0\0",
        b"1_000\0\0\0\0\0\0\0",
    ],
)
def test_bad_size_fields_are_refused(size_field: bytes) -> None:
    raw = _hdr(b"f", b"0", size_field) + END
    with pytest.raises(RootfsError, match="corrupt tar header at offset 0: invalid size"):
        _read(raw)


def test_pax_negative_size_is_refused_at_once() -> None:
    """A PAX size of -1536 made tarfile loop on its own header for 46 s."""
    pax = _pax({b"size": b"-1536"})
    raw = _hdr(b"pax", b"x", len(pax)) + _pad(pax) + _entry(b"f", b"x" * 10) + END
    with pytest.raises(RootfsError, match="invalid size -1536"):
        _read(raw)


@pytest.mark.parametrize(
    "records",
    [
        b"5 a=\n" + b"x",  # trailing bytes that are no record
        b"4 a=\n",  # length too small
        b"99 a=b\n",  # length beyond the header
        b"6 ab\n\n",  # no '='
        b"6 =ab\n",  # empty key
        b"7 a=bc ",  # no final newline
        b"10 path=\0\n",  # NUL in a path
        b"x 0=\n",
    ],
)
def test_malformed_pax_records_are_refused(records: bytes) -> None:
    raw = _hdr(b"pax", b"x", len(records)) + _pad(records) + _entry(b"f") + END
    with pytest.raises(RootfsError, match=r"corrupt tar header at offset 0: .*PAX"):
        _read(raw)


def test_sparse_entries_are_refused() -> None:
    pax = _pax({b"GNU.sparse.major": b"1", b"GNU.sparse.minor": b"0"})
    with pytest.raises(RootfsError, match="sparse"):
        _read(_hdr(b"pax", b"x", len(pax)) + _pad(pax) + _entry(b"f") + END)
    with pytest.raises(RootfsError, match="sparse"):
        _read(_hdr(b"s", b"S", 0) + END)


# --- bounds on extended headers --------------------------------------------------------------


class _Lazy:
    """A stream: ``prefix`` then ``total`` zero bytes made on demand; counts what was pulled."""

    def __init__(self, prefix: bytes, total: int) -> None:
        self.prefix, self.total, self.pulled = prefix, total, 0

    def __iter__(self) -> Iterator[bytes]:
        yield self.prefix
        self.pulled += len(self.prefix)
        chunk = bytes(1 << 20)
        left = self.total
        while left > 0:
            n = min(left, len(chunk))
            self.pulled += n
            yield chunk[:n]
            left -= n


@pytest.mark.parametrize("second", [b"L", b"K", b"x", b"g"])
def test_chained_extended_headers_are_bounded_by_their_sum(second: bytes) -> None:
    """A small PAX header then a 1 GiB GNU long name: refused on the declared sizes, before
    the 1 GiB is read (tarfile read it all: 2 GiB RSS, 408 s; then it succeeded)."""
    pax = _pax({b"comment": b"c" * 1000})
    prefix = _hdr(b"pax", b"x", len(pax)) + _pad(pax) + _hdr(b"long", second, 1 << 30)
    stream = _Lazy(prefix, 1 << 30)
    t0 = time.monotonic()
    with pytest.raises(RootfsError, match=r"extended headers of \d+ bytes or more"):
        _read(iter(stream))
    assert stream.pulled <= len(prefix) + (1 << 20)  # at most one lazy chunk was made
    assert time.monotonic() - t0 < 10  # generous: a full read of 1 GiB takes minutes


def test_sum_of_a_chain_counts_not_only_the_first() -> None:
    """Two headers each under the cap but over it together."""
    pax = _pax({b"comment": b"c" * (600 << 10)})
    longname = b"n" * (600 << 10)
    raw = _hdr(b"pax", b"x", len(pax)) + _pad(pax) + _hdr(b"L", b"L", len(longname))
    raw += _pad(longname) + _entry(b"f") + END
    with pytest.raises(RootfsError, match="extended headers of"):
        _read(raw)
    assert _read(raw, TarCaps(max_meta_bytes=2 << 20))[0].name == b"n" * (600 << 10)


@pytest.mark.parametrize("typeflag", [b"x", b"L", b"g"])
def test_long_chains_are_refused_without_recursion(typeflag: bytes) -> None:
    """400 chained headers: tarfile recursed once per header (RecursionError)."""
    one = _pax({b"path": b"p"}) if typeflag != b"L" else b"name\0"
    raw = (_hdr(b"h", typeflag, len(one)) + _pad(one)) * 400 + _entry(b"f") + END
    with pytest.raises(RootfsError, match="more than 16 extended headers before one entry"):
        _read(raw)
    want = {b"x": b"p", b"L": b"name", b"g": b"f"}[typeflag]  # g headers are ignored
    assert _read(raw, TarCaps(max_chain=400))[0].name == want


@pytest.mark.parametrize(
    "payload",
    [
        _pax({b"comment": b"9" * (256 << 10)}),  # one 256 KiB record
        _pax({b"path": b"1 " * (128 << 10)}),
        b"9" * (1 << 20),  # digits and no space: refused at once
        (b"1 " * (1 << 19)),
        b"1048576 " + b"a" * ((1 << 20) - 8),
    ],
)
def test_big_pax_records_are_parsed_in_linear_time(payload: bytes) -> None:
    """CVE-2024-6232: tarfile's PAX regex is quadratic (a 256 KiB record took 62 s)."""
    raw = _hdr(b"pax", b"x", len(payload)) + _pad(payload) + _entry(b"f") + END
    t0 = time.monotonic()
    try:
        _read(raw)
    except EifbuildError as exc:
        assert "PAX" in str(exc)
    assert time.monotonic() - t0 < 10  # generous hang guard; figures: benchmarks/bench_tarhdr.py


def test_parse_pax_keeps_the_last_of_repeated_keys() -> None:
    assert parse_pax(b"6 a=1\n6 a=2\n6 b=3\n") == {b"a": b"2", b"b": b"3"}
