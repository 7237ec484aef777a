"""Merge semantics of eifbuild.rootfs on layouts written in Python (no daemon needed)."""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eifbuild._epoch import LINUXKIT_MTIME
from eifbuild.dockerexport import docker_export, docker_export_entries
from eifbuild.errors import RootfsError
from eifbuild.model import Entry, EntryType
from eifbuild.rootfs import IMPLIED_DIR_MODE, flatten
from eifbuild.sources import open_image
from tests.helpers.imagegen import E, simple_oci

T = 1_600_000_000


def flat(tmp: Path, *layers: Sequence[E], export: bool = False, **kw: Any) -> list[Entry]:
    ref = simple_oci(tmp / "oci", *layers, **kw)
    warnings: list[str] = []
    with open_image(ref) as image:
        make = docker_export_entries if export else flatten
        out = list(make(image, warn=warnings.append))
    flat.warnings = warnings  # type: ignore[attr-defined]
    return out


def paths(entries: list[Entry]) -> list[bytes]:
    return [e.path for e in entries]


def by_path(entries: list[Entry]) -> dict[bytes, Entry]:
    return {e.path: e for e in entries}


def test_walk_order_is_per_directory_byte_order(tmp_path: Path) -> None:
    layer = [E.dir("a-b"), E.file("a.c"), E.dir("a"), E.file("a/x"), E.file("B"), E.file("a-b/z")]
    assert paths(flat(tmp_path, layer)) == [b"B", b"a", b"a/x", b"a-b", b"a-b/z", b"a.c"]


def test_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    base = [
        E.dir("d"),
        E.file("d/keep"),
        E.file("d/gone"),
        E.dir("d/sub"),
        E.file("d/sub/f"),
        E.dir("o"),
        E.file("o/old"),
        E.dir("o/deep"),
        E.file("o/deep/old"),
    ]
    top = [
        E.dir("d"),
        E.file("d/.wh.gone"),
        E.file("d/.wh.sub"),
        E.file("d/.wh.missing"),
        E.dir("o"),
        E.file("o/new"),
        E.file("o/.wh..wh..opq"),
        E.dir("o/deep"),
        E.file("o/deep/new"),
    ]
    got = paths(flat(tmp_path, base, top))
    assert got == [b"d", b"d/keep", b"o", b"o/deep", b"o/deep/new", b"o/new"]


def test_whiteout_after_entry_in_same_layer_removes_it(tmp_path: Path) -> None:
    got = paths(flat(tmp_path, [E.dir("d")], [E.dir("d"), E.file("d/x"), E.file("d/.wh.x")]))
    assert got == [b"d"]


def test_file_replaces_directory_and_vice_versa(tmp_path: Path) -> None:
    base = [E.dir("a"), E.file("a/inner"), E.file("b", b"old")]
    top = [E.file("a", b"now a file"), E.dir("b", 0o700), E.file("b/c")]
    got = flat(tmp_path, base, top)
    assert [(e.path, e.type) for e in got] == [
        (b"a", EntryType.FILE),
        (b"b", EntryType.DIR),
        (b"b/c", EntryType.FILE),
    ]
    assert by_path(got)[b"b"].mode == 0o700


def test_directory_over_directory_keeps_children_and_takes_attributes(tmp_path: Path) -> None:
    got = by_path(
        flat(tmp_path, [E.dir("d"), E.file("d/f")], [E.dir("d", 0o750, uid=7, gid=8, mtime=5)])
    )
    assert got[b"d"] == Entry(b"d", EntryType.DIR, 0o750, 7, 8, 5)
    assert b"d/f" in got


def test_hardlinks_within_and_across_layers(tmp_path: Path) -> None:
    base = [E.dir("x"), E.file("x/orig", b"data", 0o755), E.hardlink("x/link", "x/orig", 0o755)]
    top = [E.dir("x"), E.hardlink("a-first", "x/orig", 0o755)]
    got = flat(tmp_path, base, top)
    assert [(e.path, e.type, e.linkname) for e in got] == [
        (b"a-first", EntryType.FILE, b""),
        (b"x", EntryType.DIR, b""),
        (b"x/link", EntryType.HARDLINK, b"a-first"),
        (b"x/orig", EntryType.HARDLINK, b"a-first"),
    ]
    assert got[0].size == 4


def test_hardlink_partner_deleted_becomes_plain_file(tmp_path: Path) -> None:
    base = [E.file("f", b"abc"), E.hardlink("g", "f")]
    got = flat(tmp_path, base, [E.file(".wh.f")])
    assert [(e.path, e.type, e.size) for e in got] == [(b"g", EntryType.FILE, 3)]


def test_replacing_one_path_of_a_hardlink_breaks_the_link(tmp_path: Path) -> None:
    got = flat(tmp_path, [E.file("f", b"abc"), E.hardlink("g", "f")], [E.file("f", b"new")])
    assert [(e.path, e.type) for e in got] == [(b"f", EntryType.FILE), (b"g", EntryType.FILE)]


def test_special_files_names_and_metadata_kept(tmp_path: Path) -> None:
    long = "l/" + "n" * 200
    layer = [
        E.dir("l"),
        E.file(long, b"long"),
        E.file(b"caf\xe9", b"latin1"),
        E.file("日本", b"utf8"),
        E.char("null", 1, 3),
        E.block("sda", 8, 0),
        E.fifo("pipe", 0o600),
        E.file("suid", b"", 0o4755),
        E.file("sgid", b"", 0o2711),
        E.dir("tmp", 0o1777),
        E.file("user", b"u", 0o640, uid=1000, gid=1000, mtime=12345),
        E.symlink("abs", "/etc/passwd"),
        E.symlink("rel", "../../outside"),
        E.dir("empty"),
    ]
    got = by_path(flat(tmp_path, layer))
    assert got[long.encode()].size == 4
    assert got["日本".encode()].size == 4 and got[b"caf\xe9"].size == 6
    assert (got[b"null"].type, got[b"null"].devmajor, got[b"null"].devminor) == (
        EntryType.CHAR,
        1,
        3,
    )
    assert (got[b"sda"].type, got[b"sda"].devmajor) == (EntryType.BLOCK, 8)
    assert got[b"pipe"].type is EntryType.FIFO and got[b"pipe"].mode == 0o600
    assert (
        got[b"suid"].mode == 0o4755 and got[b"sgid"].mode == 0o2711 and got[b"tmp"].mode == 0o1777
    )
    assert (got[b"user"].uid, got[b"user"].gid, got[b"user"].mtime, got[b"user"].mode) == (
        1000,
        1000,
        12345,
        0o640,
    )
    assert got[b"abs"].linkname == b"/etc/passwd" and got[b"rel"].linkname == b"../../outside"
    assert got[b"empty"].type is EntryType.DIR


def test_entries_under_symlinked_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RootfsError, match=r"layer 1 .*entry b'etc/x'.*symlink"):
        flat(tmp_path, [E.symlink("etc", "/tmp")], [E.file("etc/x")])


def test_content_streams_from_layer(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # > 2 MiB: several chunks
    ref = simple_oci(
        tmp_path / "oci", [E.file("big", data)], [E.file("small", b"s")], compression="gzip"
    )
    with open_image(ref) as image:
        got = by_path(list(flatten(image)))
        assert (
            hashlib.sha256(b"".join(got[b"big"].open())).digest() == hashlib.sha256(data).digest()
        )
        assert b"".join(got[b"small"].open()) == b"s"


def test_implied_parents_and_headerless_changes_get_the_constant_time(tmp_path: Path) -> None:
    got = by_path(
        flat(tmp_path, [E.dir("d", mtime=T), E.file("d/a")], [E.file("d/b"), E.file("p/q/r")])
    )
    assert got[b"d"].mtime == LINUXKIT_MTIME
    assert got[b"p"] == Entry(b"p", EntryType.DIR, IMPLIED_DIR_MODE, 0, 0, LINUXKIT_MTIME)
    assert got[b"p/q"].mtime == LINUXKIT_MTIME


def test_xattrs_dropped_with_one_warning(tmp_path: Path) -> None:
    cap = {"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}
    flat(
        tmp_path,
        [E.file("ping", b"x", pax=cap), E.file("b", b"y", pax={"SCHILY.xattr.user.a": "1"})],
    )
    warnings = flat.warnings  # type: ignore[attr-defined]
    assert len(warnings) == 1
    assert (
        "security.capability" in warnings[0]
        and "user.a" in warnings[0]
        and "2 entries" in warnings[0]
    )


# --- docker create / export emulation ------------------------------------------------------


def test_init_layer_entries(tmp_path: Path) -> None:
    layer = [
        E.dir("dev", 0o711, mtime=T),
        E.dir("etc", 0o700, uid=5, gid=6),
        E.file("etc/hosts", b"mine"),
        E.file("etc/hostname", b"h"),
        E.file("etc/mtab", b"m"),
        E.file(".dockerenv", b"x"),
        E.file("keep", b"k"),
    ]
    got = by_path(flat(tmp_path, layer, export=True, config={"Cmd": ["x"], "WorkingDir": "/w/d"}))
    W = LINUXKIT_MTIME
    assert got[b"dev"] == Entry(b"dev", EntryType.DIR, 0o711, 0, 0, W)
    assert got[b"etc"] == Entry(b"etc", EntryType.DIR, 0o700, 5, 6, W)
    for f in (b".dockerenv", b"etc/hosts", b"etc/hostname", b"etc/resolv.conf", b"dev/console"):
        assert got[f] == Entry(f, EntryType.FILE, 0o755, 0, 0, W), f
    assert got[b"etc/mtab"] == Entry(
        b"etc/mtab", EntryType.SYMLINK, 0o777, 0, 0, W, linkname=b"/proc/mounts"
    )
    for d in (b"dev/pts", b"dev/shm", b"proc", b"sys", b"w", b"w/d"):
        assert got[d] == Entry(d, EntryType.DIR, 0o755, 0, 0, W), d
    assert got[b"keep"].size == 1


def test_init_layer_replaces_non_directory_parents(tmp_path: Path) -> None:
    got = by_path(flat(tmp_path, [E.file("dev", b"x"), E.symlink("proc", "/x")], export=True))
    assert got[b"dev"].type is EntryType.DIR and got[b"proc"].type is EntryType.DIR


def test_working_dir_follows_symlinks_in_scope_and_refuses_files(tmp_path: Path) -> None:
    got = by_path(
        flat(
            tmp_path / "a",
            [E.dir("srv"), E.symlink("app", "../../srv/app")],
            export=True,
            config={"Cmd": ["x"], "WorkingDir": "/app/sub"},
        )
    )
    assert got[b"srv/app/sub"].type is EntryType.DIR and got[b"app"].type is EntryType.SYMLINK
    with pytest.raises(RootfsError, match="WorkingDir"):
        flat(
            tmp_path / "b",
            [E.file("app")],
            export=True,
            config={"Cmd": ["x"], "WorkingDir": "/app"},
        )


@pytest.mark.parametrize(
    ("layer", "workdir", "created"),
    [
        ([E.dir("srv"), E.dir("srv/real"), E.symlink("app", "/srv/real")], "/app", False),
        ([E.dir("srv"), E.dir("srv/real"), E.symlink("app", "srv/real")], "/app/", False),
        ([E.dir("srv"), E.dir("srv/real"), E.symlink("app", "../srv/real")], "/app/.", False),
        ([E.dir("srv"), E.symlink("app", "/srv/new")], "/app", True),
        ([E.dir("srv"), E.dir("srv/real"), E.symlink("app", "/srv/real")], "/app/x", True),
        ([E.dir("srv")], "/srv/../srv", False),
        ([E.dir("srv")], "/proc", False),  # made by the init layer, not as the WorkingDir
        ([E.dir("srv")], "/", False),
        ([E.dir("srv")], "/work", True),
    ],
)
def test_created_workdir_is_judged_after_symlink_resolution(
    tmp_path: Path, layer: list[E], workdir: str, created: bool
) -> None:
    ref = simple_oci(tmp_path / "oci", layer, config={"Cmd": ["x"], "WorkingDir": workdir})
    with open_image(ref) as image:
        view = docker_export(image)
        names = [e.path for e in view.entries]
    assert view.created_workdir is created
    if not created:  # nothing but the init layer was added
        init = (b"dev", b"proc", b"sys", b"etc", b".dockerenv")
        assert [n for n in names if not n.startswith(init)] == sorted(e.name for e in layer)


def test_working_dir_symlink_loop_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(RootfsError, match=r"oci:.*: WorkingDir '/a/x': more than 40 symlinks"):
        flat(
            tmp_path,
            [E.symlink("a", "b"), E.symlink("b", "a")],
            export=True,
            config={"Cmd": ["x"], "WorkingDir": "/a/x"},
        )


# --- hostile layers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "pattern"),
    [
        ([E.file("../evil")], r"entry b'\.\./evil': '\.\.' in name"),
        ([E.file("a/../../evil")], r"'\.\.' in name"),
        ([E.file("/etc/abs")], r"absolute name"),
        ([E.hardlink("l", "../etc/shadow")], r"hard link target .* escapes"),
        ([E.hardlink("l", "/etc/shadow")], r"hard link target .* escapes"),
        ([E.hardlink("l", "missing")], r"hard link target b'missing' does not exist"),
        ([E.dir("d"), E.hardlink("l", "d")], r"is a directory"),
        ([E.file("x", b"1"), E.file("x", b"2")], r"entry b'x': duplicate entry"),
        ([E.file("f"), E.file("f/child")], r"parent b'f' is not a directory"),
        ([E.file("n" * 300)], r"name component longer"),
    ],
)
def test_hostile_entries_name_layer_and_entry(tmp_path: Path, layer: list[E], pattern: str) -> None:
    with pytest.raises(RootfsError, match=r"layer 0 \(sha256:[0-9a-f]{64}\).*" + pattern):
        flat(tmp_path, layer)


def test_size_field_disagreeing_with_data(tmp_path: Path) -> None:
    from tests.helpers.imagegen import layer_bytes, oci_image, oci_layout

    raw = layer_bytes([E.file("a", b"x" * 600), E.file("big", b"y" * 5000)])
    cut = raw[: raw.index(b"y" * 5000) + 100]  # header says 5000, 100 bytes follow
    root = tmp_path / "oci"
    oci_layout(root, [oci_image(root, [cut])], ["t"])
    with (
        open_image(f"oci:{root}:t") as image,
        pytest.raises(RootfsError, match=r"entry b'big': size field 5000"),
    ):
        list(flatten(image))


def test_non_tar_layer_is_an_error_naming_the_layer(tmp_path: Path) -> None:
    from tests.helpers.imagegen import oci_image, oci_layout

    root = tmp_path / "oci"
    oci_layout(root, [oci_image(root, [b"not a tar at all" * 40])], ["t"])
    with (
        open_image(f"oci:{root}:t") as image,
        pytest.raises(RootfsError, match=r"layer 0 .*corrupt tar"),
    ):
        list(flatten(image))


def test_too_many_entries(tmp_path: Path) -> None:
    from eifbuild.sources import Limits

    ref = simple_oci(tmp_path / "oci", [E.file(f"f{i}") for i in range(20)])
    with (
        open_image(ref, limits=Limits(max_entries=10)) as image,
        pytest.raises(RootfsError, match="more than 10 entries"),
    ):
        list(flatten(image))


def test_tar_gnu_format_long_names(tmp_path: Path) -> None:
    from tests.helpers.imagegen import layer_bytes, oci_image, oci_layout

    name = "g/" + "x" * 150
    raw = layer_bytes(
        [E.dir("g"), E.file(name, b"gnu"), E.symlink("s", "t" * 150)], fmt=tarfile.GNU_FORMAT
    )
    root = tmp_path / "oci"
    oci_layout(root, [oci_image(root, [raw])], ["t"])
    with open_image(f"oci:{root}:t") as image:
        got = by_path(list(flatten(image)))
    assert got[name.encode()].size == 3 and got[b"s"].linkname == b"t" * 150


def test_entry_limit_counts_all_layers(tmp_path: Path) -> None:
    from eifbuild.sources import Limits

    ref = simple_oci(tmp_path / "oci", [E.file("a"), E.file("b")], [E.file("c"), E.file("d")])
    with (
        open_image(ref, limits=Limits(max_entries=3)) as image,
        pytest.raises(
            RootfsError, match=r"layer 1 .*entry b'd': the image has more than 3 entries"
        ),
    ):
        list(flatten(image))


def test_tree_memory_ceiling_counts_implied_parents(tmp_path: Path) -> None:
    """One member may imply ~2000 parent directories: they count against the memory ceiling."""
    from eifbuild.rootfs import NODE_BYTES
    from eifbuild.sources import Limits

    deep = "/".join(["d"] * 2000) + "/f"  # 4001 bytes: one tar member, 2001 tree nodes
    ref = simple_oci(tmp_path / "oci", [E.file(deep)])
    budget = 2000 * (NODE_BYTES + 1)  # room for the 2000 implied dirs but not for f
    with open_image(ref, limits=Limits(max_tree_bytes=budget + NODE_BYTES + 1)) as image:
        assert len(list(flatten(image))) == 2001
    with (
        open_image(ref, limits=Limits(max_tree_bytes=budget)) as image,
        pytest.raises(RootfsError, match=r"layer 0 .*needs more than 0 MiB of memory") as ei,
    ):
        list(flatten(image))
    assert len(str(ei.value)) < 600  # the 4001-byte name is shortened in the message


def test_tree_memory_ceiling_counts_names_and_link_targets(tmp_path: Path) -> None:
    from eifbuild.rootfs import NODE_BYTES
    from eifbuild.sources import Limits

    layer = [E.symlink(f"s{i}", "t" * 1000) for i in range(10)]  # 10 x (2 + 1000) bytes
    ref = simple_oci(tmp_path / "oci", layer)
    exact = 10 * (NODE_BYTES + 2 + 1000)
    with open_image(ref, limits=Limits(max_tree_bytes=exact)) as image:
        assert len(list(flatten(image))) == 10
    with (
        open_image(ref, limits=Limits(max_tree_bytes=exact - 1)) as image,
        pytest.raises(RootfsError, match=r"entry b's9': the image's file tree needs more"),
    ):
        list(flatten(image))


def test_overlong_symlink_target_is_refused(tmp_path: Path) -> None:
    ref = simple_oci(tmp_path / "oci", [E.symlink("s", "t" * 5000)])
    with open_image(ref) as image, pytest.raises(RootfsError, match="symlink target longer"):
        list(flatten(image))


def _entry_tuple(e: Entry) -> tuple[object, ...]:
    return (e.path, e.type, e.mode, e.uid, e.gid, e.mtime, e.size, e.linkname)


def test_path_order_is_sorted_export_order_with_export_link_targets(tmp_path: Path) -> None:
    layer = [
        E.dir("a"),
        E.file("a/x", b"data"),
        E.dir("a/x.d"),
        E.file("a/x.d/y"),
        E.file("a-b"),
        E.hardlink("a.c", "a/x"),  # sorts before a/x by whole path; a/x comes first in export
        E.dir("b"),
    ]
    ref = simple_oci(tmp_path / "oci", layer, config={"Cmd": ["x"]})
    with open_image(ref) as image:
        export = [_entry_tuple(e) for e in docker_export_entries(image)]
        by_path = [_entry_tuple(e) for e in docker_export_entries(image, order="path")]
    assert by_path == sorted(export, key=lambda t: cast(bytes, t[0]))
    assert [t[0] for t in by_path] != [t[0] for t in export]
    link = next(t for t in by_path if t[0] == b"a.c")
    assert link[1] is EntryType.HARDLINK and link[7] == b"a/x"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.lists(st.sampled_from(["a", "a-", "a.", "b", "a0", "-", "Z"]), min_size=1, max_size=4),
        min_size=1,
        max_size=25,
    )
)
def test_path_order_matches_sorting_for_any_tree(tmp_path: Path, names: list[list[str]]) -> None:
    leaves = {"/".join(p) for p in names}
    dirs = {"/".join(p[:i]) for p in names for i in range(1, len(p))}
    layer = [E.dir(d) for d in sorted(dirs)] + [E.file(f) for f in sorted(leaves - dirs)]
    root = tmp_path / f"oci{len(list(tmp_path.iterdir()))}"
    ref = simple_oci(root, layer)
    with open_image(ref) as image:
        export = [_entry_tuple(e) for e in flatten(image)]
        by_path = [_entry_tuple(e) for e in flatten(image, order="path")]
    assert by_path == sorted(export, key=lambda t: cast(bytes, t[0]))


def test_cli_arch_accepts_kernel_names_and_rejects_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eifbuild.cli import main

    ref = simple_oci(tmp_path / "oci", [E.file("a", b"x")])
    assert main(["rootfs", "--arch", "x86_64", ref]) == 0
    assert '"path": "a"' in capsys.readouterr().out
    assert main(["rootfs", "--arch", "aarch64", ref]) == 1
    assert "image is linux/amd64, but --arch aarch64 was asked" in capsys.readouterr().err
    assert main(["rootfs", "--arch", "foo", ref]) == 2
    assert "invalid choice: 'foo'" in capsys.readouterr().err
