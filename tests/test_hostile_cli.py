"""Hostile inputs and environments end as one ``eifbuild: error:`` line, never a traceback.

Each test generates its input here (EIFs with the real writer, OCI layouts with
tests.helpers.imagegen) and runs the real CLI in a subprocess when the environment matters (stdout
on /dev/full, a strict UTF-8 stdout), so the interpreter's own last flush is covered too.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest

from eifbuild._atomic import atomic_output, make_temp_dir
from eifbuild.cli import main
from eifbuild.errors import EifbuildError
from tests.helpers.imagegen import E, layer_bytes, oci_image, oci_layout, simple_oci
from tests.test_build_blobs import make_blobs
from tests.test_diff import APP, cpio, eif, reg

STRICT = {"PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"}


def cli(*args: str | bytes, stdout: object = subprocess.PIPE, **env: str) -> tuple[int, bytes, str]:
    """Run ``python -m eifbuild ARGS``; (exit code, stdout bytes, stderr text)."""
    proc = subprocess.run(
        [sys.executable, "-m", "eifbuild", *args],
        stdout=cast(int, stdout),
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
        check=False,
    )
    return proc.returncode, proc.stdout or b"", proc.stderr.decode("utf-8", "replace")


def one_line_error(err: str, *needles: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if not line.startswith("eifbuild: warning:")]
    assert len(lines) == 1 and lines[0].startswith("eifbuild: error: "), err
    for n in needles:
        assert n in lines[0], err


@pytest.fixture
def two_eifs(tmp_path: Path) -> tuple[str, str]:
    a = eif(tmp_path / "a.eif", cpio(APP))
    b = eif(tmp_path / "b.eif", cpio([*APP, reg(b"rootfs/new\x1b[31m\nforged", b"x")]))
    return a, b


@pytest.mark.parametrize(
    "args",
    [
        ["describe", "{a}"],
        ["pcr", "{a}"],
        ["verify", "{a}"],
        ["verify", "--json", "{a}"],
        ["diff", "{a}", "{b}"],
        ["diff", "--json", "{a}", "{b}"],
    ],
)
def test_stdout_full_is_one_line_error(two_eifs: tuple[str, str], args: list[str]) -> None:
    a, b = two_eifs
    with open("/dev/full", "wb") as full:
        rc, _, err = cli(*(x.format(a=a, b=b) for x in args), stdout=full)
    assert rc == 1
    one_line_error(err, "stdout: cannot write (No space left on device)")


def test_rootfs_to_full_stdout(tmp_path: Path) -> None:
    ref = simple_oci(tmp_path / "oci", [E.file("etc/a", b"x")])
    with open("/dev/full", "wb") as full:
        rc, _, err = cli("rootfs", ref, stdout=full)
    assert rc == 1
    one_line_error(err, "stdout: cannot write")


def test_non_utf8_eif_names_with_strict_stdout(two_eifs: tuple[str, str], tmp_path: Path) -> None:
    a, b = two_eifs
    na, nb = tmp_path / "n\udcff.eif", tmp_path / "m\udcfe\x1b.eif"
    os.rename(a, na)
    os.rename(b, nb)
    raw_a, raw_b = os.fsencode(na), os.fsencode(nb)
    for args in (["diff"], ["diff", "--json"], ["diff", "--html", str(tmp_path / "r.html")]):
        rc, out, err = cli(*args, raw_a, raw_b, **STRICT)
        assert rc == 0 and "Traceback" not in err, err
        text = out.decode("utf-8")  # strict: what was printed is UTF-8
        assert "\x1b" not in text
        if "--json" in args:
            doc = json.loads(text)
            assert doc["a"]["path"].endswith("n\\xff.eif")
            assert doc["b"]["path"].endswith("m\\xfe\\x1b.eif")
        else:
            assert "n\\xff.eif" in text and "m\\xfe\\x1b.eif" in text
    for args in (["verify"], ["verify", "--json"]):
        rc, out, err = cli(*args, raw_a, **STRICT)
        assert rc == 0 and "Traceback" not in err, err
        text = out.decode("utf-8")
        shown = json.loads(text)["File"] if "--json" in args else text
        assert "n\\xff.eif" in shown


def test_text_diff_escapes_esc_and_newline_in_entry_names(
    two_eifs: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diff", *two_eifs]) == 0
    out = capsys.readouterr().out
    assert "  + rootfs/new\\x1b[31m\\x0aforged: file" in out
    assert "\x1b" not in out and "\nforged" not in out


def test_expect_deeply_nested_json(two_eifs: tuple[str, str], tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000)
    rc, out, err = cli("verify", two_eifs[0], "--expect", str(deep))
    assert rc == 1 and out == b""  # a bad input file, not a usage error (issue 12)
    one_line_error(err, "nested too deeply")


@pytest.mark.parametrize(
    "config",
    [
        {"Cmd": ["/bin/\ud800"]},
        {"Cmd": ["/a"], "Env": ["A=\udc80"]},
        {"Cmd": ["/a"], "WorkingDir": "/\ud800"},
        {"Cmd": ["/a"], "Labels": {"\udfff": "x"}},
    ],
)
def test_lone_surrogates_in_image_config(tmp_path: Path, config: dict[str, object]) -> None:
    ref = simple_oci(tmp_path / "oci", [E.file("a", b"x")], config=config)
    out = tmp_path / "o.eif"
    blobs = make_blobs(tmp_path / "blobs")
    rc, stdout, err = cli("build", ref, "--blobs", str(blobs), "-o", str(out), **STRICT)
    assert rc == 1 and stdout == b""
    one_line_error(err, "lone surrogate")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs", "oci"]


def _xattr_image(root: Path) -> str:
    # tarfile only writes UTF-8 PAX keywords: patch same-length bytes into the record.
    layer = layer_bytes([E.file("x", b"1", pax={"SCHILY.xattr.user.QQ": "v"})])
    layer = layer.replace(b"user.QQ", b"user.\xff\xfe")
    oci_layout(root, [oci_image(root, [layer], config={"Cmd": ["/x"]})], ["t"])
    return f"oci:{root}:t"


def test_build_json_with_non_utf8_xattr_name(tmp_path: Path) -> None:
    ref = _xattr_image(tmp_path / "oci")
    blobs = make_blobs(tmp_path / "blobs")
    out = tmp_path / "o.eif"
    rc, stdout, err = cli("build", ref, "--blobs", str(blobs), "-o", str(out), "--json", **STRICT)
    assert rc == 0 and "Traceback" not in err, err
    record = json.loads(stdout.decode("utf-8"))
    assert any("user.\\xff\\xfe" in w for w in record["warnings"])
    assert "user.\\xff\\xfe" in err
    out.unlink()
    # the same build with nowhere to print the record: failed, so no EIF is left behind
    with open("/dev/full", "wb") as full:
        rc, _, err = cli(
            "build", ref, "--blobs", str(blobs), "-o", str(out), "--json", stdout=full, **STRICT
        )
    assert rc == 1
    one_line_error(err, "stdout: cannot write")
    assert not out.exists() and not list(tmp_path.glob(".o.eif*"))


def _targets(tmp_path: Path) -> list[tuple[str, Path]]:
    real = tmp_path / "real.bin"
    real.write_bytes(b"keep")
    link = tmp_path / "link.eif"
    link.symlink_to(real)
    fifo = tmp_path / "fifo.eif"
    os.mkfifo(fifo)
    out = [("a symlink", link), ("not a regular file", fifo)]
    if os.geteuid() == 0:
        dev = tmp_path / "null.eif"
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        out.append(("a device node", dev))
    return out


def test_non_regular_output_targets_are_refused(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    for kind, target in _targets(work):
        before = os.lstat(target)
        with (
            pytest.raises(EifbuildError, match=f"refusing to replace {kind}"),
            atomic_output(target) as fh,
        ):
            fh.write(b"x")
        after = os.lstat(target)
        assert (before.st_mode, before.st_ino) == (after.st_mode, after.st_ino)
    assert (work / "real.bin").read_bytes() == b"keep"
    assert not list(work.glob(".*eifbuild-tmp*"))


@pytest.mark.parametrize("command", ["assemble", "diff-html", "build"])
def test_every_command_refuses_a_non_regular_target(
    tmp_path: Path, two_eifs: tuple[str, str], command: str
) -> None:
    work = tmp_path / "w"
    work.mkdir()
    blobs = make_blobs(tmp_path / "blobs")
    ref = simple_oci(tmp_path / "oci", [E.file("a", b"x")])
    for kind, target in _targets(work):
        if command == "assemble":
            args: list[str] = ["assemble", "--kernel", str(blobs / "bzImage"), "--cmdline", "x"]
            args += ["--ramdisk", str(blobs / "init"), "-o", str(target)]
        elif command == "diff-html":
            args = ["diff", *two_eifs, "--html", str(target)]
        else:
            args = ["build", ref, "--blobs", str(blobs), "-o", str(target)]
        rc, _, err = cli(*args)
        assert rc == 1
        one_line_error(err, f"refusing to replace {kind}")
    assert (work / "real.bin").read_bytes() == b"keep"
    assert not list(work.glob(".*eifbuild-tmp*"))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temp_files_of_dead_runs_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    dead, alive = _dead_pid(), os.getppid()
    out = tmp_path / "o.bin"
    stale = tmp_path / f".o.bin.eifbuild-tmp-{dead}"
    live = tmp_path / f".o.bin.eifbuild-tmp-{alive}"
    other = tmp_path / f".p.bin.eifbuild-tmp-{dead}"  # another output's: not ours to judge now
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    stale_dir = tmpdir / f"eifbuild-image-{dead}-abc123"
    (stale_dir / "sub").mkdir(parents=True)
    (stale_dir / "sub" / "image.tar").write_bytes(b"x")
    live_dir = tmpdir / f"eifbuild-image-{alive}-def456"
    live_dir.mkdir()
    foreign = tmpdir / f"eifbuild-cache-{dead}-x"  # not a pattern eifbuild creates
    foreign.mkdir()
    with atomic_output(out) as fh:
        fh.write(b"new")
    assert not stale.exists() and live.exists() and other.exists()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    new = make_temp_dir("image")
    assert Path(new).parent == tmpdir and f"-{os.getpid()}-" in Path(new).name
    assert not stale_dir.exists() and live_dir.exists() and foreign.exists()
    os.rmdir(new)


def test_extract_unpack_non_cpio_ramdisk_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = cpio(APP)
    bad = eif(tmp_path / "bad.eif", good[:100] + b"this is not newc")  # ramdisk 1 broken
    out = tmp_path / "out"
    assert main(["extract", bad, str(out), "--unpack"]) == 1
    err = capsys.readouterr().err
    one_line_error(err, "ramdisk-1: cannot unpack")
    assert list(out.iterdir()) == []  # no sections, no ramdisk-0.d, no staging directory
    # --force over a complete earlier extraction keeps it whole when the new one fails
    ok = eif(tmp_path / "ok.eif", good)
    assert main(["extract", ok, str(out), "--unpack"]) == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert main(["extract", bad, str(out), "--unpack", "--force"]) == 1
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert (out / "ramdisk-1").read_bytes() == good


def test_docker_info_drops_empty_config_values(tmp_path: Path) -> None:
    """`docker save` keeps "User": "" and "WorkingDir": "", a converting `skopeo copy` to
    oci: drops them: both must give the same DockerInfo (and, as before, the same PCRs)."""
    blobs = make_blobs(tmp_path / "blobs")
    layer = [E.file("bin/app", b"x", mode=0o755)]
    full = {"Cmd": ["/bin/app"], "User": "", "WorkingDir": "", "Env": [], "Labels": {}}
    infos, measurements = [], []
    for name, config in (("kept", full), ("dropped", {"Cmd": ["/bin/app"]})):
        ref = simple_oci(tmp_path / name, layer, config=config)
        out = tmp_path / f"{name}.eif"
        rc, stdout, err = cli("build", ref, "--blobs", str(blobs), "-o", str(out), "--json")
        assert rc == 0, err
        measurements.append(json.loads(stdout)["Measurements"])
        rc, stdout, err = cli("describe", str(out))
        assert rc == 0, err
        info = json.loads(stdout)["Metadata"]["DockerInfo"]
        infos.append({k: v for k, v in info.items() if k != "Id"})
    assert (
        infos[0]
        == infos[1]
        == {
            "Architecture": "amd64",
            "Config": {"Cmd": ["/bin/app"]},
            "Os": "linux",
        }
    )
    assert measurements[0] == measurements[1]


def _long_path(total: int) -> str:
    parts, left = [], total
    while left > 0:
        n = min(200, left)
        parts.append("d" * n)
        left -= n + 1
    return "/".join(parts)[:total]


@pytest.mark.parametrize(
    ("entries", "config", "needle"),
    [
        # "rootfs/" + 4095 bytes: a legal layer path, but a ramdisk name beyond 4096 bytes
        ([E.file(_long_path(4095), b"x")], {}, "ramdisk name longer than 4096 bytes"),
        ([E.char("dev/big", 2097151, 2097151)], {}, "device number 2097151:2097151"),
        ([E.char("dev/major", 4096, 0)], {}, "device number 4096:0"),
        ([E.symlink("l", "t" * 4097)], {}, "symlink target longer than 4096"),
        ([E.file("a", b"x")], {"Labels": {"big": "x" * (1 << 20)}}, "accept at most 1048576"),
    ],
)
def test_build_refuses_what_its_own_readers_refuse(
    tmp_path: Path, entries: list[E], config: dict[str, object], needle: str
) -> None:
    ref = simple_oci(tmp_path / "oci", entries, config={"Cmd": ["/a"], **config})
    blobs = make_blobs(tmp_path / "blobs")
    out = tmp_path / "o.eif"
    rc, stdout, err = cli("build", ref, "--blobs", str(blobs), "-o", str(out))
    assert rc == 1 and stdout == b""
    one_line_error(err, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs", "oci"]


def test_limits_at_the_edge_build_and_read_back(tmp_path: Path) -> None:
    """What the writer accepts, the readers accept: the largest device numbers, a 4096-byte
    ramdisk name and metadata just under 1 MiB build, describe, and extract --unpack."""
    label = "x" * ((1 << 20) - 4096)
    entries = [E.char("dev/edge", 4095, 1048575), E.file(_long_path(4096 - 7), b"x")]
    ref = simple_oci(tmp_path / "oci", entries, config={"Cmd": ["/a"], "Labels": {"l": label}})
    blobs = make_blobs(tmp_path / "blobs")
    out = tmp_path / "o.eif"
    rc, _, err = cli("build", ref, "--blobs", str(blobs), "-o", str(out))
    assert rc == 0, err
    rc, stdout, err = cli("describe", str(out))
    assert rc == 0, err
    assert json.loads(stdout)["Metadata"]["DockerInfo"]["Config"]["Labels"]["l"] == label
    rc, _, err = cli("extract", str(out), str(tmp_path / "x"), "--unpack")
    assert rc == 0, err
