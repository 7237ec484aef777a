"""newc writer/reader: spec §6-§7 golden bytes, round trips, GNU cpio, hostile input."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eifbuild.cpio import (
    S_IFDIR,
    S_IFLNK,
    S_IFREG,
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
            r = NewcReader(io.BytesIO(blob), Limits(max_file=1 << 16))
            for _ in r:
                b"".join(r.content())
        except RamdiskError:
            pass


def test_reader_limits() -> None:
    data = b"".join(newc_stream([Member(b"x" * 100, S_IFREG, 0o644, data=b"a" * 50)]))
    with pytest.raises(RamdiskError, match="name size"):
        list(NewcReader(io.BytesIO(data), Limits(max_name=50)))
    with pytest.raises(RamdiskError, match="exceeds limit"):
        list(NewcReader(io.BytesIO(data), Limits(max_file=10)))
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
