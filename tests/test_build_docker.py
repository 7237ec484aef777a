"""Customer ramdisks of generated images vs. a real `docker export`, across transports.

The expected ramdisk is computed here from the daemon's own `docker export` tar with an
independent reading of docs/spec/ramdisk-layout.md §8 (linuxkit's exclude/replace/touch rules,
hard links as relative symlinks, the files: section, gocpio fields), and compared entry by
entry with what `eifbuild build` wrote, read back with tests/cpio_ref.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from eifbuild.cli import main
from tests.conftest import require
from tests.cpio_ref import RefEntry, check_gocpio_invariants, parse
from tests.helpers.imagegen import (
    E,
    base_layer,
    docker_export,
    docker_rmi,
    docker_save,
    simple_oci,
    skopeo_oci,
    tar_dir,
)
from tests.test_build import expected_pcrs, sections
from tests.test_build_blobs import make_blobs

LK = 1492533000
SDE = "1700000000"
HOSTS = (
    b"127.0.0.1       localhost\n::1     localhost ip6-localhost ip6-loopback\n"
    b"fe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n"
)
LONG = "l" * 120 + "/" + "ö" * 50 + ".txt"  # > 100 bytes: PAX path in the layer tar
TAG = "eifbuild-test-build/{}:v1"

# --- the generated images -------------------------------------------------------------------


def image_a_layers() -> tuple[list[E], list[E]]:
    """Everything the issue lists, in two layers (whiteouts and an opaque dir in the second)."""
    base = [e for e in base_layer() if e.name != b"etc"] + [
        E.file("Dockerfile", b"FROM scratch\n"),
        E.dir("etc", 0o700, uid=5, gid=6),
        E.file("etc/hosts", b"10.0.0.1 mine\n"),
        E.file("etc/resolv.conf", b"nameserver 9.9.9.9\n"),
        E.file("etc/hostname", b"myhost\n"),
        E.file("etc/passwd", b"root:x:0:0::/:/bin/sh\n"),
        E.dir("opt"),
        E.dir("opt/data", 0o750, uid=1000, gid=1000),
        E.file("opt/data/link.txt", b"shared\n", 0o644, uid=1000, gid=1000),
        E.hardlink("opt/data/orig.txt", "opt/data/link.txt", 0o644, uid=1000, gid=1000),
        E.hardlink("opt/other", "opt/data/link.txt", 0o644, uid=1000, gid=1000),
        E.file("opt/suid", b"#!/bin/sh\n", 0o4755),
        E.file("opt/sgid", b"x", 0o2750, gid=50),
        E.dir("opt/d\u00efr"),
        E.file("opt/d\u00efr/\u540d\u524d", b"unicode\n"),
        E.dir("opt/" + LONG.split("/")[0]),
        E.file("opt/" + LONG, b"long\n"),
        E.dir("a"),
        E.file("a/x", b"ax"),
        E.file("a-b", b"ab"),
        E.file("a.c", b"ac"),
        E.dir("dev"),
        E.char("dev/null", 1, 3),
        E.block("dev/loop9", 7, 9),
        E.fifo("opt/fifo", 0o600),
        E.dir("old"),
        E.file("old/gone", b"1"),
        E.file("old/kept", b"2"),
        E.dir("opq"),
        E.file("opq/lower", b"lower"),
        E.dir("srv"),
        E.dir("var"),
    ]
    top = [
        E.dir("old"),
        E.file("old/.wh.gone"),
        E.dir("opq"),
        E.file("opq/.wh..wh..opq"),
        E.file("opq/upper", b"upper"),
        E.dir("bin"),  # real diffs carry the changed parent; without it Docker stamps the clock
        E.file("bin/added", b"added", 0o755),
    ]
    return base, top


CONFIG_A = {
    "Cmd": ["/bin/sh", "-c", "echo hi"],
    "Entrypoint": ["/ignored"],
    "Env": ["PATH=/bin", "A=b c"],
    "WorkingDir": "/srv",
}
CONFIG_B = {"Entrypoint": ["/bin/busybox", "true"]}  # no hosts/resolv.conf in the image, no Cmd
CONFIG_C = {"Cmd": ["/bin/sh"], "WorkingDir": "/work/dir"}  # WorkingDir missing


def load_into_docker(oci_ref: str, tag: str, tmp: Path) -> None:
    arc = tmp / f"load-{tag.replace('/', '_').replace(':', '_')}.tar"
    subprocess.run(
        ["skopeo", "copy", "-q", oci_ref, f"docker-archive:{arc}:{tag}"],
        check=True,
        capture_output=True,
    )
    subprocess.run(["docker", "load", "-q", "-i", str(arc)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, docker_host: str) -> Iterator[dict[str, Any]]:
    require("skopeo", shutil.which("skopeo") is not None, "skopeo converts between transports")
    require("docker", shutil.which("docker") is not None, "docker CLI")
    os.environ["DOCKER_HOST"] = docker_host
    tmp = tmp_path_factory.mktemp("imgs")
    base, top = image_a_layers()
    specs: dict[str, tuple[list[list[E]], Mapping[str, object]]] = {
        "a": ([base, top], CONFIG_A),
        "b": ([base_layer(E.dir("var"))], CONFIG_B),
        "c": ([base_layer(E.dir("var"))], CONFIG_C),
    }
    out: dict[str, Any] = {"tmp": tmp}
    for key, (layers, cfg) in specs.items():
        tag = TAG.format(key)
        ref = simple_oci(tmp / f"gen-{key}", *layers, ref="gen", config=cfg)
        load_into_docker(ref, tag, tmp)
        out[key] = tag
    yield out
    docker_rmi(*(TAG.format(k) for k in specs))


# --- independent expectation from `docker export` --------------------------------------------


Row = tuple[bytes, int, int, int, int, bytes, int, int]


def _row(
    name: bytes,
    mode: int,
    uid: int,
    gid: int,
    mtime: int,
    data: bytes = b"",
    rdev: tuple[int, int] = (0, 0),
) -> Row:
    return (name, mode, uid, gid, mtime, data, *rdev)


def expected_from_export(tar_path: Path, cmd: bytes, env: bytes) -> list[Row]:
    """docs/spec/ramdisk-layout.md §8.1-§8.5 applied to a real export tar (written from the spec, not from eifbuild)."""
    exclude = {".dockerenv", "Dockerfile", "dev/console", "dev/pts", "dev/shm", "etc/hostname"}
    touch = {
        "dev/",
        "dev/pts/",
        "dev/shm/",
        "etc/",
        "etc/mtab",
        "etc/resolv.conf",
        "etc/hosts",
        "proc/",
        "sys/",
    }
    rows = [_row(b"rootfs", 0o40755, 0, 0, LK)]
    seen: set[str] = set()
    with tarfile.open(tar_path, encoding="utf-8", errors="surrogateescape") as tf:
        for m in tf:
            name = m.name + "/" if m.isdir() else m.name  # Python's tarfile strips the slash
            if name in exclude:
                continue
            full = ("rootfs/" + name).encode("utf-8", "surrogateescape")
            perm = m.mode & 0o7777
            mtime = LK if name in touch else int(m.mtime)
            if name in touch:
                seen.add(name)
            if name == "etc/hosts":
                rows.append(_row(full, 0o100000 | perm, m.uid, m.gid, LK, HOSTS))
            elif name == "etc/resolv.conf":
                rows.append(
                    _row(full, 0o120000 | perm, m.uid, m.gid, LK, b"/run/resolvconf/resolv.conf")
                )
            elif m.isdir():
                rows.append(_row(full, 0o40000 | perm, m.uid, m.gid, mtime))
            elif m.isreg():
                f = tf.extractfile(m)
                assert f is not None
                rows.append(_row(full, 0o100000 | perm, m.uid, m.gid, mtime, f.read()))
            elif m.issym():
                rows.append(
                    _row(
                        full,
                        0o120000 | perm,
                        m.uid,
                        m.gid,
                        mtime,
                        m.linkname.encode("utf-8", "surrogateescape"),
                    )
                )
            elif m.islnk():
                rel = os.path.relpath("rootfs/" + m.linkname, os.path.dirname("rootfs/" + m.name))
                rows.append(
                    _row(
                        full,
                        0o120000 | perm,
                        m.uid,
                        m.gid,
                        mtime,
                        rel.encode("utf-8", "surrogateescape"),
                    )
                )
            elif m.ischr() or m.isblk():
                t = 0o20000 if m.ischr() else 0o60000
                rows.append(
                    _row(full, t | perm, m.uid, m.gid, mtime, b"", (m.devmajor, m.devminor))
                )
            elif m.isfifo():
                rows.append(_row(full, 0o10000 | perm, m.uid, m.gid, mtime))
            else:
                raise AssertionError(f"unexpected export member {m.name}")
    assert seen == touch, f"export lacked touch entries {touch - seen}"
    rows.append(_row(b"rootfs", 0o40755, 0, 0, LK))
    rows += [
        _row(b"rootfs/" + d, 0o40755, 0, 0, LK)
        for d in (b"dev", b"run", b"sys", b"var", b"proc", b"tmp")
    ]
    rows += [_row(b"cmd", 0o100644, 0, 0, LK, cmd), _row(b"env", 0o100644, 0, 0, LK, env)]
    return rows


def actual_rows(entries: list[RefEntry]) -> list[Row]:
    check_gocpio_invariants(entries)
    return [
        _row(e.name, e.mode, e.uid, e.gid, e.mtime, e.data, (e.rdevmajor, e.rdevminor))
        for e in entries[:-1]
    ]


def build(
    image: str, out: Path, blobs: Path, *extra: str
) -> tuple[dict[str, Any], list[tuple[int, bytes]]]:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["build", image, "--blobs", str(blobs), "-o", str(out), "--json", *extra])
    assert rc == 0
    record = json.loads(buf.getvalue())
    eif = out.read_bytes()
    assert {k: record["Measurements"][k] for k in ("PCR0", "PCR1", "PCR2")} == expected_pcrs(eif)
    return record, sections(eif)


# --- tests ----------------------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.parametrize(
    ("key", "cmd", "env"),
    [
        ("a", b"/bin/sh\n-c\necho hi\n", b"PATH=/bin\nA=b c\n"),
        ("b", b"/bin/busybox\ntrue\n", b""),
    ],
)
def test_customer_ramdisk_matches_docker_export(
    images: dict[str, Any],
    tmp_path: Path,
    key: str,
    cmd: bytes,
    env: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", SDE)
    blobs = make_blobs(tmp_path / "blobs")
    tag = images[key]
    _, secs = build(f"docker-daemon:{tag}", tmp_path / "o.eif", blobs)
    got = actual_rows(parse(secs[4][1]))
    want = expected_from_export(docker_export(tag, tmp_path / "export.tar"), cmd, env)
    assert [r[0] for r in got] == [r[0] for r in want]  # names and order first: clearer diffs
    for g, w in zip(got, want, strict=True):
        assert g == w


@pytest.mark.docker
def test_image_a_specific_rules(images: dict[str, Any], tmp_path: Path) -> None:
    blobs = make_blobs(tmp_path / "blobs")
    _, secs = build(f"docker-daemon:{images['a']}", tmp_path / "o.eif", blobs)
    e = {x.name: x for x in parse(secs[4][1])}
    assert b"rootfs/Dockerfile" not in e and b"rootfs/etc/hostname" not in e
    assert (e[b"rootfs/etc/"].mode, e[b"rootfs/etc/"].uid, e[b"rootfs/etc/"].gid) == (0o40700, 5, 6)
    assert e[b"rootfs/etc/hosts"].data == HOSTS and e[b"rootfs/etc/hosts"].mode == 0o100755
    assert e[b"rootfs/opt/data/link.txt"].mode == 0o100644
    assert (e[b"rootfs/opt/data/orig.txt"].mode, e[b"rootfs/opt/data/orig.txt"].data) == (
        0o120644,
        b"link.txt",
    )
    assert e[b"rootfs/opt/other"].data == b"data/link.txt"
    assert e[b"rootfs/opt/suid"].mode == 0o104755 and e[b"rootfs/opt/sgid"].mode == 0o102750
    assert b"rootfs/old/gone" not in e and b"rootfs/old/kept" in e
    assert b"rootfs/opq/lower" not in e and e[b"rootfs/opq/upper"].data == b"upper"
    names = [x.name for x in parse(secs[4][1])]
    assert names.index(b"rootfs/a/x") < names.index(b"rootfs/a-b") < names.index(b"rootfs/a.c")


@pytest.mark.docker
def test_missing_workdir_is_the_documented_exception(
    images: dict[str, Any], tmp_path: Path
) -> None:
    blobs = make_blobs(tmp_path / "blobs")
    tag = images["c"]
    record, secs = build(f"docker-daemon:{tag}", tmp_path / "o.eif", blobs)
    assert record["parity_exceptions"] and any("WorkingDir" in w for w in record["warnings"])
    got = actual_rows(parse(secs[4][1]))
    want = expected_from_export(docker_export(tag, tmp_path / "export.tar"), b"/bin/sh\n", b"")
    wd = {b"rootfs/work/", b"rootfs/work/dir/"}
    assert [r[0] for r in got] == [r[0] for r in want]
    for g, w in zip(got, want, strict=True):
        if g[0] in wd:  # Docker: wall clock; eifbuild: linuxkit's fixed time
            assert g[4] == LK and g[:4] == w[:4]
        else:
            assert g == w


@pytest.mark.docker
def test_same_eif_across_transports_and_runs(
    images: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One image (one config, one set of layers) through every transport: identical EIFs."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", SDE)
    blobs = make_blobs(tmp_path / "blobs")
    tag = images["a"]
    arc = docker_save(tag, tmp_path / "a.tar")
    gen = images["tmp"] / "gen-a"  # the OCI layout the daemon's image was loaded from
    refs = [
        f"docker-daemon:{tag}",
        f"docker-daemon:{tag}",
        f"docker-archive:{arc}:{tag}",
        f"oci:{gen}:gen",
        f"oci-archive:{tar_dir(gen, tmp_path / 'gen.tar')}:gen",
    ]
    outs, pcrs = [], []
    for i, ref in enumerate(refs):
        # ImageName follows the reference text ("eifbuild-test-build/a" vs "gen"): pin it.
        record, _ = build(ref, tmp_path / f"o{i}.eif", blobs, "--name", "app")
        pcrs.append(record["Measurements"])
        outs.append((tmp_path / f"o{i}.eif").read_bytes())
    assert all(p == pcrs[0] for p in pcrs)
    for i, data in enumerate(outs[1:], start=1):
        assert data == outs[0], f"{refs[i]} gave a different EIF than {refs[0]}"


@pytest.mark.docker
def test_skopeo_converted_oci_same_pcrs(images: dict[str, Any], tmp_path: Path) -> None:
    """skopeo's docker-archive -> OCI conversion rewrites the config (a new image ID), so
    only ImageVersion/DockerInfo.Id differ; every PCR stays the same."""
    blobs = make_blobs(tmp_path / "blobs")
    tag = images["a"]
    oci = skopeo_oci(docker_save(tag, tmp_path / "a.tar"), tmp_path / "oci", "a:v1")
    r1, s1 = build(f"docker-daemon:{tag}", tmp_path / "d.eif", blobs)
    r2, s2 = build(f"oci:{oci}:a:v1", tmp_path / "o.eif", blobs)
    assert r1["Measurements"] == r2["Measurements"]
    assert [x for x in s1 if x[0] != 5] == [x for x in s2 if x[0] != 5]
    m1, m2 = (json.loads(next(d for t, d in s if t == 5)) for s in (s1, s2))
    assert m1["ImageName"] == "eifbuild-test-build/a" and m2["ImageName"] == "a"


@pytest.mark.docker
def test_gnu_cpio_reads_both_ramdisks(images: dict[str, Any], tmp_path: Path) -> None:
    cpio = shutil.which("cpio")
    require("cpio", cpio is not None, "GNU cpio")
    assert cpio is not None
    blobs = make_blobs(tmp_path / "blobs")
    _, secs = build(f"docker-daemon:{images['a']}", tmp_path / "o.eif", blobs)
    for i, (_, data) in enumerate(s for s in secs if s[0] == 3):
        arc = tmp_path / f"rd{i}.cpio"
        arc.write_bytes(data)
        listed = subprocess.run(
            [cpio, "-t", "--quiet", "-F", str(arc)], capture_output=True, check=True
        ).stdout
        assert listed.splitlines() == [e.name for e in parse(data)[:-1]]
        dest = tmp_path / f"x{i}"
        dest.mkdir()
        subprocess.run(
            [cpio, "-i", "-d", "--quiet", "--no-absolute-filenames", "-F", str(arc)],
            cwd=dest,
            check=True,
            capture_output=True,
        )
    assert (tmp_path / "x1/rootfs/opt/data/orig.txt").read_bytes() == b"shared\n"
    assert (tmp_path / "x1/cmd").read_bytes() == b"/bin/sh\n-c\necho hi\n"
    assert (tmp_path / "x0/init").read_bytes() == (blobs / "init").read_bytes()


@pytest.mark.docker
def test_clamp_mtime_makes_rebuilt_dockerfile_images_equal(
    images: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    blobs = make_blobs(tmp_path / "blobs")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {images['b']}\nRUN echo hello > /greeting\n")
    tags = [TAG.format(f"rebuilt{i}") for i in (1, 2)]
    try:
        for tag in tags:
            subprocess.run(
                ["docker", "build", "-q", "--no-cache", "--network", "none", "-t", tag, str(ctx)],
                check=True,
                capture_output=True,
                env=dict(os.environ, DOCKER_BUILDKIT="0"),
            )
            time.sleep(1.1)  # a different second for the RUN step's mtimes
        plain = [
            build(f"docker-daemon:{t}", tmp_path / f"p{i}.eif", blobs)[0]
            for i, t in enumerate(tags)
        ]
        assert plain[0]["Measurements"]["PCR2"] != plain[1]["Measurements"]["PCR2"]
        monkeypatch.setenv("SOURCE_DATE_EPOCH", SDE)
        clamped = [
            build(f"docker-daemon:{t}", tmp_path / f"c{i}.eif", blobs, "--clamp-mtime")[0]
            for i, t in enumerate(tags)
        ]
        assert clamped[0]["Measurements"] == clamped[1]["Measurements"]
        assert clamped[0]["clamp_mtime"] == int(SDE)
        # an explicit epoch works without SOURCE_DATE_EPOCH and gives the same PCRs
        monkeypatch.delenv("SOURCE_DATE_EPOCH")
        explicit = build(
            f"docker-daemon:{tags[0]}", tmp_path / "e.eif", blobs, "--clamp-mtime", SDE
        )[0]
        assert explicit["Measurements"] == clamped[0]["Measurements"]
    finally:
        docker_rmi(*tags)
