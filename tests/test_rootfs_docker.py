"""Acceptance: real images through every transport agree, and match a real ``docker export``.

Each generated image is read as ``docker-daemon:``, ``docker-archive:`` (``docker save``) and
``oci:`` (``skopeo copy`` of that archive); the three listings must be identical. Then
``docker_export_entries`` must equal the tar that ``docker create`` + ``docker export`` writes,
parsed here independently; only times Docker takes from the wall clock (where eifbuild writes
LINUXKIT_MTIME) are not compared.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eifbuild._epoch import LINUXKIT_MTIME
from eifbuild.dockerexport import INIT_LAYER_PATHS, docker_export_entries
from eifbuild.rootfs import flatten
from eifbuild.rootfs_records import entry_record, listing
from eifbuild.sources import open_image
from tests.conftest import require
from tests.helpers.imagegen import (
    E,
    base_layer,
    docker_build,
    docker_export,
    docker_import,
    docker_load,
    docker_rmi,
    docker_save,
    have,
    layer_bytes,
    skopeo_oci,
    tar_dir,
    write_docker_archive,
    write_layer,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

T = 1_600_000_000
Maker = Callable[[Path, str], None]


def img_whiteouts(tmp: Path, tag: str) -> None:
    base = base_layer(
        E.file("etc/passwd", b"root:x:0:0::/:/bin/sh\n"),
        E.dir("data"),
        E.file("data/a", b"a"),
        E.dir("data/sub"),
        E.file("data/sub/b", b"b"),
        E.file("etc/hosts", b"127.0.0.1 me\n"),
        E.file("etc/hostname", b"img\n"),
    )
    docker_import(write_layer(tmp / "base.tar", base), f"{tag}-base")
    docker_build(
        tmp / "ctx",
        tag,
        f"FROM {tag}-base\nRUN rm -rf /data/sub /etc/passwd && echo n > /data/new\n",
    )


def img_opaque(tmp: Path, tag: str) -> None:
    l0 = layer_bytes(
        [
            E.dir("o"),
            E.file("o/a", b"1"),
            E.dir("o/sub"),
            E.file("o/sub/c", b"2"),
            E.dir("k"),
            E.file("k/x"),
        ]
    )
    l1 = layer_bytes(
        [
            E.dir("o", 0o750),
            E.file("o/.wh..wh..opq"),
            E.file("o/n", b"new"),
            E.dir("k"),
            E.file("k/.wh.x"),
        ]
    )
    docker_load(write_docker_archive(tmp / "in.tar", [l0, l1], tag))


def img_hardlinks(tmp: Path, tag: str) -> None:
    l0 = layer_bytes(
        [
            E.dir("h"),
            E.file("h/f", b"shared", 0o755),
            E.hardlink("h/f2", "h/f", 0o755),
            E.file("solo", b"s"),
        ]
    )
    l1 = layer_bytes([E.dir("h"), E.hardlink("h/g", "h/f", 0o755), E.hardlink("a-link", "solo")])
    l2 = layer_bytes([E.dir("h"), E.file("h/.wh.f")])
    docker_load(write_docker_archive(tmp / "in.tar", [l0, l1, l2], tag))


def img_devices(tmp: Path, tag: str) -> None:
    base = base_layer(
        E.dir("dev", 0o711),
        E.char("dev/null", 1, 3),
        E.char("dev/zero", 1, 5),
        E.block("dev/sda", 8, 0),
        E.fifo("run-fifo", 0o600),
        E.dir("sys", 0o555),
    )
    docker_import(write_layer(tmp / "base.tar", base), tag)


def img_modes(tmp: Path, tag: str) -> None:
    base = base_layer(
        E.file("bin/su", b"su", 0o4755),
        E.file("bin/wall", b"w", 0o2755, gid=5),
        E.dir("secret", 0o700),
        E.dir("group", 0o750, gid=10),
        E.dir("var"),
        E.dir("var/tmp", 0o1777),
        E.file("ro", b"r", 0o400),
    )
    docker_import(write_layer(tmp / "base.tar", base), f"{tag}-base")
    docker_build(
        tmp / "ctx", tag, f"FROM {tag}-base\nRUN chmod 4711 /bin/su && chmod 1777 /secret\n"
    )


def img_users(tmp: Path, tag: str) -> None:
    base = base_layer(
        E.dir("home"),
        E.dir("home/u", 0o750, uid=1000, gid=1000),
        E.file("home/u/f", b"u", 0o600, uid=1000, gid=1000),
        E.file("gidonly", b"g", gid=1000),
        E.file("big-id", b"b", uid=65534, gid=65534),
    )
    docker_import(write_layer(tmp / "base.tar", base), f"{tag}-base")
    docker_build(
        tmp / "ctx",
        tag,
        f"FROM {tag}-base\nRUN chown 1000:1000 /gidonly && mkdir /home/v && chown 1001 /home/v\n",
    )


def img_names(tmp: Path, tag: str) -> None:
    deep = "/".join(["d" * 50] * 5)
    base = base_layer(
        E.dir("n"),
        E.file("n/" + "x" * 200, b"long"),
        E.file("n/日本語.txt", b"utf8"),
        E.file(b"n/caf\xe9", b"latin1"),
        E.file("n/with space", b"s"),
        E.file("n/a-b"),
        E.file("n/a.c"),
        E.dir("n/a"),
        E.file("n/a/x"),
        *[E.dir("/".join(["d" * 50] * i)) for i in range(1, 6)],
        E.file(deep + "/leaf", b"deep"),
        E.symlink("n/abs", "/etc/passwd"),
        E.symlink("n/dangling", "../../nowhere"),
    )
    docker_import(write_layer(tmp / "base.tar", base), tag)


def img_replace(tmp: Path, tag: str) -> None:
    l0 = layer_bytes(
        [
            E.dir("a"),
            E.file("a/in"),
            E.file("b", b"file"),
            E.dir("empty"),
            E.dir("e2", 0o700),
            E.dir("tmp", 0o1777),
        ]
    )
    l1 = layer_bytes(
        [
            E.file("a", b"now file"),
            E.dir("b", 0o711),
            E.file("b/c", b"c"),
            E.dir("empty2"),
            E.file("e2/headerless"),
            E.file("implied/dir/f", b"i"),
        ]
    )
    docker_load(write_docker_archive(tmp / "in.tar", [l0, l1], tag))


def img_workdir(tmp: Path, tag: str) -> None:
    base = base_layer(
        E.dir("srv"),
        E.symlink("app", "srv/app"),
        E.file("etc/resolv.conf", b"nameserver 1.1.1.1\n"),
        E.symlink("etc/mtab", "/nope"),
    )
    docker_import(
        write_layer(tmp / "base.tar", base),
        tag,
        changes=['ENTRYPOINT ["/bin/sh"]', "WORKDIR /app/work/dir"],
    )


def img_build_links(tmp: Path, tag: str) -> None:
    docker_import(write_layer(tmp / "base.tar", base_layer(E.file("etc/f", b"x"))), f"{tag}-base")
    docker_build(
        tmp / "ctx",
        tag,
        f"FROM {tag}-base\nCOPY data /opt/data\nRUN ln /opt/data/orig /opt/data/link && rm /etc/f\n",
        files={"data/orig": b"orig"},
    )


IMAGES: dict[str, Maker] = {
    "whiteouts": img_whiteouts,
    "opaque": img_opaque,
    "hardlinks": img_hardlinks,
    "devices": img_devices,
    "modes": img_modes,
    "users": img_users,
    "names": img_names,
    "replace": img_replace,
    "workdir": img_workdir,
    "build-links": img_build_links,
}


def export_records(path: Path) -> list[dict[str, Any]]:
    """Parse a real ``docker export`` tar into the listing's record shape (independently)."""
    out = []
    with tarfile.open(path, encoding="utf-8", errors="surrogateescape") as tf:
        for ti in tf:
            raw = ti.name.encode("utf-8", "surrogateescape").rstrip(b"/")
            kind = {
                tarfile.REGTYPE: "file",
                tarfile.DIRTYPE: "dir",
                tarfile.SYMTYPE: "symlink",
                tarfile.LNKTYPE: "hardlink",
                tarfile.CHRTYPE: "char",
                tarfile.BLKTYPE: "block",
                tarfile.FIFOTYPE: "fifo",
            }[ti.type]
            sha = None
            if kind == "file":
                fh = tf.extractfile(ti)
                assert fh is not None
                sha = hashlib.sha256(fh.read()).hexdigest()
            link = ti.linkname.encode("utf-8", "surrogateescape")
            rec: dict[str, Any] = {}
            for key, value in (("path", raw), ("linkname", link)):
                try:
                    rec[key] = value.decode()
                except UnicodeDecodeError:
                    rec[key] = value.decode("utf-8", "replace")
                    rec[key + "_hex"] = value.hex()
            rec.update(
                type=kind,
                mode=f"{ti.mode & 0o7777:04o}",
                uid=ti.uid,
                gid=ti.gid,
                mtime=int(ti.mtime),
                size=ti.size if kind == "file" else 0,
                sha256=sha,
                rdev=[ti.devmajor, ti.devminor] if kind in ("char", "block") else None,
            )
            if not link:
                rec["linkname"] = None
            out.append(rec)
    return out


def _strip_wallclock(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    for a, b in zip(ours, theirs, strict=False):
        if a["mtime"] == LINUXKIT_MTIME and a["path"] == b["path"]:
            b["mtime"] = LINUXKIT_MTIME


@pytest.fixture(scope="module")
def built(
    docker_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Path]]:
    require("skopeo", have("skopeo"), "apt install skopeo")
    root = tmp_path_factory.mktemp("acceptance")
    out: dict[str, Path] = {}
    for name, make in IMAGES.items():
        d = root / name
        d.mkdir()
        tag = f"eifbuild-test/{name}:1"
        make(d, tag)
        docker_save(tag, d / "save.tar")
        skopeo_oci(d / "save.tar", d / "oci", "img")
        tar_dir(d / "oci", d / "oci.tar")
        docker_export(tag, d / "export.tar")
        out[name] = d
    yield out
    docker_rmi(*[f"eifbuild-test/{n}:{t}" for n in IMAGES for t in ("1", "1-base")])


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_transports_agree_and_match_docker_export(built: dict[str, Path], name: str) -> None:
    d = built[name]
    refs = [
        f"docker-daemon:eifbuild-test/{name}:1",
        f"docker-archive:{d / 'save.tar'}",
        f"oci:{d / 'oci'}:img",
        f"oci-archive:{d / 'oci.tar'}:img",
    ]
    listings = []
    for ref in refs:
        with open_image(ref) as image:
            listings.append(listing(flatten(image)))
    assert listings[0] == listings[1], "docker-daemon: and docker-archive: differ"
    assert listings[0] == listings[2], "docker-archive: and oci: (skopeo) differ"
    assert listings[0] == listings[3], "docker-archive: and oci-archive: differ"

    with open_image(f"docker-archive:{d / 'save.tar'}") as image:
        ours = [entry_record(e) for e in docker_export_entries(image)]
    theirs = export_records(d / "export.tar")
    _strip_wallclock(ours, theirs)
    assert [r["path"] for r in ours] == [r["path"] for r in theirs], (
        "walk order or entry set differs"
    )
    assert ours == theirs

    # flatten == export minus Docker's init-layer entries (and their fresh parent directories)
    init = {p.decode() for p in INIT_LAYER_PATHS}
    flat_paths = {r["path"] for r in listings[0]}
    extra = {r["path"] for r in theirs if r["path"] not in flat_paths}
    allowed = (
        init
        | {"dev", "etc"}
        | {p for p in extra if image.config.working_dir.strip("/").startswith(p)}
    )
    assert extra <= allowed | {r["path"] for r in ours if r["mtime"] == LINUXKIT_MTIME}


def test_daemon_build_from_docker_dir(docker_client: Any, tmp_path: Path) -> None:
    docker_import(write_layer(tmp_path / "b.tar", base_layer()), "eifbuild-test/dir-base:1")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        'FROM eifbuild-test/dir-base:1\nRUN echo hi > /hi\nCMD ["/bin/sh"]\n'
    )
    try:
        with open_image("eifbuild-test/dir-app:1", docker_dir=ctx) as image:
            got = {e.path: b"".join(e.open()) for e in flatten(image) if e.path == b"hi"}
        assert got == {b"hi": b"hi\n"}
    finally:
        docker_rmi("eifbuild-test/dir-app:1", "eifbuild-test/dir-base:1")
