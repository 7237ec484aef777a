"""Customer/bootstrap layouts on synthetic export entries (docs/spec/ramdisk-layout.md §8.6 worked example and rules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eifbuild.errors import BlobsError
from eifbuild.model import Entry, EntryType
from eifbuild.ramdisk import (
    bootstrap_stream,
    customer_stream,
    go_rel,
    list_file,
)
from tests.cpio_ref import check_gocpio_invariants, parse

LK = 1492533000
T = 1_600_000_000
W = 1_800_000_000  # stands for Docker's wall-clock times on init-layer entries
HOSTS_TEXT = (
    b"127.0.0.1       localhost\n::1     localhost ip6-localhost ip6-loopback\n"
    b"fe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n"
)
BUSYBOX = b"\x7fELF" + b"b" * 97


def _f(path: bytes, data: bytes, mode: int = 0o644, mtime: int = T, **kw: Any) -> Entry:
    return Entry(
        path, EntryType.FILE, mode, mtime=mtime, size=len(data), opener=lambda: iter([data]), **kw
    )


def _d(path: bytes, mode: int = 0o755, mtime: int = T, **kw: Any) -> Entry:
    return Entry(path, EntryType.DIR, mode, mtime=mtime, **kw)


def worked_example_export() -> list[Entry]:
    """What rootfs.docker_export_entries yields for the docs/spec/ramdisk-layout.md §8.6 image (init layer included)."""
    return [
        _f(b".dockerenv", b"", 0o755, W),
        _d(b"bin"),
        _f(b"bin/busybox", BUSYBOX, 0o755),
        Entry(b"bin/sh", EntryType.HARDLINK, 0o755, mtime=T, linkname=b"bin/busybox"),
        _d(b"dev", mtime=W),
        _f(b"dev/console", b"", 0o755, W),
        _d(b"dev/pts", mtime=W),
        _d(b"dev/shm", mtime=W),
        _d(b"etc", mtime=W),
        _f(b"etc/hostname", b"", 0o755, W),
        _f(b"etc/hosts", b"", 0o755, W),
        Entry(b"etc/mtab", EntryType.SYMLINK, 0o777, mtime=W, linkname=b"/proc/mounts"),
        _f(b"etc/passwd", b"root:x:0:0::/:/bin/sh\n"),
        _f(b"etc/resolv.conf", b"", 0o755, W),
        _d(b"proc", mtime=W),
        _d(b"srv", 0o1777),
        _d(b"sys", mtime=W),
        _d(b"var"),
    ]


def _customer(entries: list[Entry], cmd: list[str], env: list[str], **kw: int) -> bytes:
    return b"".join(customer_stream(entries, list_file(cmd), list_file(env), **kw))


def test_worked_example_spec_8_6() -> None:
    data = _customer(worked_example_export(), ["/bin/sh", "-c", "echo hi"], ["PATH=/bin"])
    entries = parse(data)
    check_gocpio_invariants(entries)
    got = [(e.ino, e.name, e.mode, e.mtime, e.filesize) for e in entries]
    files = [
        (b"rootfs/" + d, 0o40755, LK, 0) for d in (b"dev", b"run", b"sys", b"var", b"proc", b"tmp")
    ]
    expected = [
        (b"rootfs", 0o40755, LK, 0),
        (b"rootfs/bin/", 0o40755, T, 0),
        (b"rootfs/bin/busybox", 0o100755, T, len(BUSYBOX)),
        (b"rootfs/bin/sh", 0o120755, T, 7),
        (b"rootfs/dev/", 0o40755, LK, 0),
        (b"rootfs/dev/pts/", 0o40755, LK, 0),
        (b"rootfs/dev/shm/", 0o40755, LK, 0),
        (b"rootfs/etc/", 0o40755, LK, 0),
        (b"rootfs/etc/hosts", 0o100755, LK, 160),
        (b"rootfs/etc/mtab", 0o120777, LK, 12),
        (b"rootfs/etc/passwd", 0o100644, T, 22),
        (b"rootfs/etc/resolv.conf", 0o120755, LK, 27),
        (b"rootfs/proc/", 0o40755, LK, 0),
        (b"rootfs/srv/", 0o41777, T, 0),
        (b"rootfs/sys/", 0o40755, LK, 0),
        (b"rootfs/var/", 0o40755, T, 0),
        (b"rootfs", 0o40755, LK, 0),
        *files,
        (b"cmd", 0o100644, LK, 19),
        (b"env", 0o100644, LK, 10),
        (b"TRAILER!!!", 0, 0, 0),
    ]
    assert got == [(721 + i, *row) for i, row in enumerate(expected)]
    by_name = {e.name: e for e in entries}
    assert by_name[b"rootfs/bin/sh"].data == b"busybox"
    assert by_name[b"rootfs/bin/busybox"].data == BUSYBOX
    assert by_name[b"rootfs/etc/hosts"].data == HOSTS_TEXT
    assert by_name[b"rootfs/etc/resolv.conf"].data == b"/run/resolvconf/resolv.conf"
    assert by_name[b"rootfs/etc/mtab"].data == b"/proc/mounts"
    assert by_name[b"cmd"].data == b"/bin/sh\n-c\necho hi\n"
    assert by_name[b"env"].data == b"PATH=/bin\n"
    assert all(e.uid == e.gid == 0 for e in entries)


def test_missing_touch_entries_are_synthesised_sorted() -> None:
    data = _customer([_d(b"bin")], [], [])
    names = [(e.name, e.mode, e.mtime, e.data) for e in parse(data)][2:11]
    assert names == [
        (b"rootfs/dev", 0o40755, LK, b""),
        (b"rootfs/dev/pts", 0o40755, LK, b""),
        (b"rootfs/dev/shm", 0o40755, LK, b""),
        (b"rootfs/etc", 0o40755, LK, b""),
        (b"rootfs/etc/hosts", 0o100644, LK, HOSTS_TEXT),
        (b"rootfs/etc/mtab", 0o120755, LK, b"/proc/mounts"),
        (b"rootfs/etc/resolv.conf", 0o120755, LK, b"/run/resolvconf/resolv.conf"),
        (b"rootfs/proc", 0o40755, LK, b""),
        (b"rootfs/sys", 0o40755, LK, b""),
    ]
    e = parse(data)
    cmd = next(x for x in e if x.name == b"cmd")
    assert cmd.filesize == 0


def test_root_dockerfile_dropped_but_nested_kept() -> None:
    entries = [_f(b"Dockerfile", b"FROM x\n"), _d(b"app"), _f(b"app/Dockerfile", b"FROM y\n")]
    names = [e.name for e in parse(_customer(entries, [], []))]
    assert b"rootfs/Dockerfile" not in names
    assert b"rootfs/app/Dockerfile" in names


def test_owner_devices_setuid_and_names_kept() -> None:
    weird = "dïr/名前".encode() + b"\xff" + b"x" * 200
    entries = [
        _d(b"d\xc3\xafr", 0o750, uid=1000, gid=1000),
        _f(weird, b"abc", 0o4755, uid=1000, gid=5),
        Entry(b"null", EntryType.CHAR, 0o666, mtime=T, devmajor=1, devminor=3),
        Entry(b"sda", EntryType.BLOCK, 0o660, mtime=T, gid=6, devmajor=8, devminor=0),
        Entry(b"fifo", EntryType.FIFO, 0o600, mtime=T),
    ]
    e = {x.name: x for x in parse(_customer(entries, [], []))}
    assert (e[b"rootfs/d\xc3\xafr/"].mode, e[b"rootfs/d\xc3\xafr/"].uid) == (0o40750, 1000)
    f = e[b"rootfs/" + weird]
    assert (f.mode, f.uid, f.gid, f.data) == (0o104755, 1000, 5, b"abc")
    assert (e[b"rootfs/null"].mode, e[b"rootfs/null"].rdevmajor, e[b"rootfs/null"].rdevminor) == (
        0o20666,
        1,
        3,
    )
    assert (e[b"rootfs/sda"].mode, e[b"rootfs/sda"].rdevmajor, e[b"rootfs/sda"].gid) == (
        0o60660,
        8,
        6,
    )
    assert e[b"rootfs/fifo"].mode == 0o10600


@pytest.mark.parametrize(
    ("base", "target", "rel"),
    [
        (b"rootfs/usr/bin", b"rootfs/usr/bin/a", b"a"),
        (b"rootfs/opt/data", b"rootfs/opt/data/link.txt", b"link.txt"),
        (b"rootfs/a/b", b"rootfs/c/d", b"../../c/d"),
        (b"rootfs", b"rootfs/x", b"x"),
        (b"rootfs/a", b"rootfs/a", b"."),
        (b"rootfs/a/../..", b"x", b"x"),
        (b"../a", b"b", None),
    ],
)
def test_go_rel(base: bytes, target: bytes, rel: bytes | None) -> None:
    assert go_rel(base, target) == rel


def test_hardlink_across_directories() -> None:
    entries = [
        _d(b"a"),
        _f(b"a/orig", b"data", 0o640),
        _d(b"b"),
        Entry(b"b/link", EntryType.HARDLINK, 0o640, mtime=T, linkname=b"a/orig"),
    ]
    e = {x.name: x for x in parse(_customer(entries, [], []))}
    assert (e[b"rootfs/b/link"].mode, e[b"rootfs/b/link"].data) == (0o120640, b"../a/orig")


def test_clamp_mtime_only_affects_image_mtimes() -> None:
    entries = [_d(b"bin", mtime=T), _f(b"bin/x", b"1", mtime=100), _d(b"etc", mtime=W)]
    e = {x.name: x for x in parse(_customer(entries, [], [], clamp_mtime=1000))}
    assert e[b"rootfs/bin/"].mtime == 1000
    assert e[b"rootfs/bin/x"].mtime == 100
    assert e[b"rootfs/etc/"].mtime == LK  # touch rule, not clamped
    assert e[b"cmd"].mtime == LK


def test_bootstrap_modules_form_and_builtin_nsm(tmp_path: Path) -> None:
    (tmp_path / "init").write_bytes(b"I")
    for n in ("virtio.ko", "nsm.ko"):
        (tmp_path / n).write_bytes(n.encode())
    mods = [tmp_path / "virtio.ko", tmp_path / "nsm.ko"]
    e = parse(b"".join(bootstrap_stream(tmp_path / "init", None, mods)))
    check_gocpio_invariants(e)
    assert [x.name for x in e] == [
        b"dev",
        b"init",
        b"virtio.ko",
        b"nsm.ko",
        b"modules_load_order",
        b"TRAILER!!!",
    ]
    assert e[4].data == b"virtio.ko\nnsm.ko\n"
    e = parse(b"".join(bootstrap_stream(tmp_path / "init", None)))
    assert [x.name for x in e] == [b"dev", b"init", b"TRAILER!!!"]
    with pytest.raises(BlobsError, match="init cannot be read"):
        b"".join(bootstrap_stream(tmp_path / "missing", None))


_names = st.sampled_from(
    [b"a", b"a-b", b"a.c", b"etc", b"etc/hosts", b"etc/mtab", b"dev", b"dev/pts", b"Dockerfile",
     b".dockerenv", b"etc/hostname", b"x/y", b"\xff\xfe", "\u00e9".encode(), b"l" * 200]
)  # fmt: skip
_entries = st.lists(
    st.tuples(
        _names, st.sampled_from(list(EntryType)), st.integers(0, 0o7777), st.integers(0, 2**31)
    ),
    max_size=12,
    unique_by=lambda t: t[0],
)


@settings(max_examples=150, deadline=None)
@given(_entries, st.none() | st.integers(0, 2**31))
def test_property_customer_rules(
    items: list[tuple[bytes, EntryType, int, int]], clamp: int | None
) -> None:
    """Every export entry ends up exactly as docs/spec/ramdisk-layout.md §8.3 says, whatever the mix of names/types."""
    entries = []
    for name, t, mode, mtime in items:
        kw = {
            "linkname": b"a" if t is EntryType.HARDLINK else b"t" if t is EntryType.SYMLINK else b""
        }
        entries.append(Entry(name, t, mode, mtime=mtime, **kw))  # type: ignore[arg-type]
    parsed = parse(b"".join(customer_stream(entries, b"c\n", b"", clamp_mtime=clamp)))
    check_gocpio_invariants(parsed)
    exclude = {
        b".dockerenv",
        b"Dockerfile",
        b"dev/console",
        b"dev/pts",
        b"dev/shm",
        b"etc/hostname",
    }
    touch = {
        b"dev/",
        b"dev/pts/",
        b"dev/shm/",
        b"etc/",
        b"etc/mtab",
        b"etc/resolv.conf",
        b"etc/hosts",
        b"proc/",
        b"sys/",
    }
    kept = [
        e for e in entries if (e.path + b"/" if e.type is EntryType.DIR else e.path) not in exclude
    ]
    body = parsed[1 : 1 + len(kept)]
    for e, c in zip(kept, body, strict=True):
        tar_name = e.path + b"/" if e.type is EntryType.DIR else e.path
        assert c.name == b"rootfs/" + tar_name
        if tar_name in touch or tar_name == b"etc/hosts":
            assert c.mtime == LK
        else:
            assert c.mtime == (e.mtime if clamp is None else min(e.mtime, clamp))
        assert c.mode & 0o7777 == e.mode & 0o7777
    names = [c.name for c in parsed]
    assert names[0] == b"rootfs" and names[-10:] == [
        b"rootfs", b"rootfs/dev", b"rootfs/run", b"rootfs/sys", b"rootfs/var",
        b"rootfs/proc", b"rootfs/tmp", b"cmd", b"env", b"TRAILER!!!",
    ]  # fmt: skip
