"""Safe ramdisk listing/unpacking: no escapes, no devices unless asked, duplicates handled."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from eifbuild.cpio import S_IFDIR, S_IFLNK, S_IFREG, Member, newc_stream
from eifbuild.errors import RamdiskError
from eifbuild.model import Entry, EntryType
from eifbuild.ramdisk import customer_stream
from eifbuild.unpack import list_archive, unpack_archive


def _arc(*members: Member) -> io.BytesIO:
    return io.BytesIO(b"".join(newc_stream(members)))


def test_unpack_customer_layout_with_duplicates(tmp_path: Path) -> None:
    entries = [
        Entry(b"bin", EntryType.DIR, 0o755, mtime=100),
        Entry(b"bin/x", EntryType.FILE, 0o755, mtime=100, size=2, opener=lambda: iter([b"hi"])),
        Entry(b"bin/y", EntryType.HARDLINK, 0o755, mtime=100, linkname=b"bin/x"),
        Entry(b"tmp", EntryType.DIR, 0o1777, mtime=100),
        Entry(b"ro", EntryType.DIR, 0o555, mtime=100),
        Entry(b"ro/f", EntryType.FILE, 0o444, mtime=100),
    ]
    data = b"".join(customer_stream(entries, b"/bin/x\n", b"A=1\n"))
    res = unpack_archive(io.BytesIO(data), tmp_path / "out")
    out = tmp_path / "out"
    assert (out / "rootfs/bin/x").read_bytes() == b"hi"
    assert os.readlink(out / "rootfs/bin/y") == "x"
    assert (out / "rootfs/bin/y").read_bytes() == b"hi"
    assert (out / "cmd").read_bytes() == b"/bin/x\n"
    assert (out / "rootfs/etc/hosts").stat().st_size == 160
    # the later `files:` entry rootfs/tmp (0755) wins, as in the kernel's unpacker
    assert stat.S_IMODE((out / "rootfs/tmp").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "rootfs/ro").stat().st_mode) == 0o555
    assert (out / "rootfs/bin/x").stat().st_mtime == 100
    assert res.members > 10
    lines = list(list_archive(io.BytesIO(data)))
    assert any(ln.startswith("lrwxr-xr-x 0/0") and ln.endswith("rootfs/bin/y -> x") for ln in lines)


@pytest.mark.parametrize("name", [b"../evil", b"a/../../evil", b"..", b"x/.."])
def test_unsafe_names_rejected(tmp_path: Path, name: bytes) -> None:
    with pytest.raises(RamdiskError, match="unsafe path"):
        unpack_archive(_arc(Member(name, S_IFREG, 0o644, data=b"x")), tmp_path / "o")
    assert not (tmp_path / "evil").exists()


def test_absolute_name_stays_inside_and_root_is_skipped(tmp_path: Path) -> None:
    arc = _arc(Member(b".", S_IFDIR, 0o700), Member(b"/etc/x", S_IFREG, 0o644, data=b"x"))
    unpack_archive(arc, tmp_path / "o")
    assert (tmp_path / "o/etc/x").read_bytes() == b"x"


def test_symlink_cannot_redirect_later_writes(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    arc = _arc(
        Member(b"link", S_IFLNK, 0o777, data=os.fsencode(outside)),
        Member(b"link/pwned", S_IFREG, 0o644, data=b"x"),
    )
    with pytest.raises(RamdiskError, match="non-directory"):
        unpack_archive(arc, tmp_path / "o")
    assert not (outside / "pwned").exists()
    # a file written over an existing symlink replaces the link, never follows it
    target = outside / "t"
    target.write_bytes(b"keep")
    arc = _arc(
        Member(b"l2", S_IFLNK, 0o777, data=os.fsencode(target)),
        Member(b"l2", S_IFREG, 0o644, data=b"new"),
    )
    unpack_archive(arc, tmp_path / "o2")
    assert target.read_bytes() == b"keep"
    assert (tmp_path / "o2/l2").read_bytes() == b"new"


def test_devices_skipped_unless_requested(tmp_path: Path) -> None:
    m = Member(b"dev/null", stat.S_IFCHR, 0o666, rdevmajor=1, rdevminor=3)
    res = unpack_archive(_arc(Member(b"dev", S_IFDIR, 0o755), m), tmp_path / "o")
    assert res.skipped == ["dev/null"]
    assert not (tmp_path / "o/dev/null").exists()
    if os.geteuid() == 0:
        res = unpack_archive(_arc(m), tmp_path / "o2", devices=True)
        st = (tmp_path / "o2/dev/null").lstat()
        assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3


def test_file_cannot_replace_directory(tmp_path: Path) -> None:
    arc = _arc(Member(b"d", S_IFDIR, 0o755), Member(b"d", S_IFREG, 0o644, data=b"x"))
    with pytest.raises(RamdiskError, match="replace a directory"):
        unpack_archive(arc, tmp_path / "o")


def test_extract_unpack_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from eifbuild.cli import main
    from eifbuild.eif.metadata import encode_metadata
    from eifbuild.eif.writer import write_eif
    from eifbuild.ramdisk import bootstrap_stream, customer_stream

    (tmp_path / "init").write_bytes(b"INIT")
    entries = [
        Entry(b"bin", EntryType.DIR, 0o755, mtime=100),
        Entry(b"bin/x", EntryType.FILE, 0o755, mtime=100, size=2, opener=lambda: iter([b"hi"])),
        Entry(b"null", EntryType.CHAR, 0o666, devmajor=1, devminor=3),
    ]
    eif = tmp_path / "t.eif"
    write_eif(
        eif,
        kernel=b"K",
        cmdline="console=ttyS0",
        metadata=encode_metadata("t", "1", "1970-01-01T00:00:00+00:00", "t", "0", "Linux", "6.1"),
        ramdisks=[
            lambda: bootstrap_stream(tmp_path / "init", None),
            lambda: customer_stream(entries, b"/bin/x\n", b""),
        ],
    )
    out = tmp_path / "out"
    assert main(["extract", str(eif), str(out), "--unpack"]) == 0
    recs = {r["File"]: r for r in json.loads(capsys.readouterr().out)["Files"]}
    assert (out / "ramdisk-0.d/init").read_bytes() == b"INIT"
    assert (out / "ramdisk-1.d/rootfs/bin/x").read_bytes() == b"hi"
    assert recs["ramdisk-1"]["SkippedDevices"] == ["rootfs/null"]
    assert not (out / "ramdisk-1.d/rootfs/null").exists()
    # a second run refuses to unpack over the existing directories without --force
    assert main(["extract", str(eif), str(out), "--unpack"]) == 1
    assert main(["extract", str(eif), str(out), "--unpack", "--force"]) == 0
