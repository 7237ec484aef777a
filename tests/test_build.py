"""`eifbuild build` / `eifbuild demo` end to end, checked by an independent EIF/PCR reading."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require
from tests.cpio_ref import check_gocpio_invariants, parse
from tests.helpers.cli import run_main
from tests.helpers.imagegen import E, simple_oci
from tests.test_build_blobs import X86_CMDLINE, make_blobs

SDE = "1700000000"


def sections(eif: bytes) -> list[tuple[int, bytes]]:
    """(type, data) of every section, walked from offset 548 (docs/spec/eif.md §1, §3)."""
    out, off = [], 548
    while off + 12 <= len(eif):
        stype, _flags, size = struct.unpack(">HHQ", eif[off : off + 12])
        out.append((stype, eif[off + 12 : off + 12 + size]))
        off += 12 + size
    return out


def extend(data: bytes) -> str:
    return hashlib.sha384(b"\0" * 48 + hashlib.sha384(data).digest()).hexdigest()


def expected_pcrs(eif: bytes) -> dict[str, str]:
    secs = sections(eif)
    kernel = next(d for t, d in secs if t == 1)
    cmdline = next(d for t, d in secs if t == 2)
    rds = [d for t, d in secs if t == 3]
    return {
        "PCR0": extend(kernel + cmdline + b"".join(rds)),
        "PCR1": extend(kernel + cmdline + rds[0]),
        "PCR2": extend(b"".join(rds[1:])),
    }


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return run_main(capsys, *args)


def check_eif(eif_path: Path, stdout: str, blobs: Path) -> list[tuple[int, bytes]]:
    """Measurements printed == independent PCRs; kernel/cmdline/bootstrap as the blobs say."""
    eif = eif_path.read_bytes()
    printed = json.loads(stdout)["Measurements"]
    exp = expected_pcrs(eif)
    assert {k: printed[k] for k in exp} == exp
    secs = sections(eif)
    assert [t for t, _ in secs] == [1, 2, 5, 3, 3]
    assert secs[0][1] == (blobs / "bzImage").read_bytes()
    assert secs[1][1] == X86_CMDLINE.encode()
    boot = parse(secs[3][1])
    check_gocpio_invariants(boot)
    assert [(e.name, e.data) for e in boot] == [
        (b"dev", b""),
        (b"init", (blobs / "init").read_bytes()),
        (b"nsm.ko", (blobs / "nsm.ko").read_bytes()),
        (b"TRAILER!!!", b""),
    ]
    check_gocpio_invariants(parse(secs[4][1]))
    return secs


def _musl() -> None:
    require("musl", shutil.which("musl-gcc") is not None, "musl-gcc builds the demo program")


def test_demo_is_reproducible_and_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _musl()
    blobs = make_blobs(tmp_path / "blobs")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", SDE)
    outs = []
    for i in (1, 2):
        out = tmp_path / f"demo{i}.eif"
        rc, stdout, err = run_cli(["demo", "--blobs", str(blobs), "-o", str(out)], capsys)
        assert rc == 0, err
        secs = check_eif(out, stdout, blobs)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    cust = {e.name: e for e in parse(secs[4][1])}
    assert cust[b"cmd"].data == b"/bin/hello\n"
    assert cust[b"rootfs/bin/hello"].mode == 0o100755
    meta = json.loads(next(d for t, d in secs if t == 5))
    assert meta["ImageName"] == "eifbuild-demo"
    assert meta["BuildMetadata"]["BuildTime"] == "2023-11-14T22:13:20+00:00"
    assert meta["BuildMetadata"]["BuildTool"] == "eifbuild"
    assert (meta["BuildMetadata"]["OperatingSystem"], meta["BuildMetadata"]["KernelVersion"]) == (
        "Linux",
        "4.14.256",
    )


def test_demo_binary_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The demo program inside the ramdisk is a real static program (unpacked and run)."""
    _musl()
    blobs = make_blobs(tmp_path / "blobs")
    out = tmp_path / "d.eif"
    assert run_cli(["demo", "--blobs", str(blobs), "-o", str(out)], capsys)[0] == 0
    cust = {e.name: e for e in parse(sections(out.read_bytes())[4][1])}
    exe = tmp_path / "hello"
    exe.write_bytes(cust[b"rootfs/bin/hello"].data)
    exe.chmod(0o755)
    proc = subprocess.run([str(exe)], capture_output=True, env={"GREETING": "x"}, check=True)
    assert proc.stdout == b"eifbuild demo: hello from the enclave: x\n"


def test_missing_image_is_one_line_error_and_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blobs = make_blobs(tmp_path / "blobs")
    out = tmp_path / "x.eif"
    rc, stdout, err = run_cli(
        ["build", f"oci:{tmp_path}/nope:app", "--blobs", str(blobs), "-o", str(out)], capsys
    )
    assert rc == 1 and stdout == ""
    assert err.startswith("eifbuild: error: ") and err.count("\n") == 1
    assert not out.exists() and list(tmp_path.glob(".x.eif*")) == []


def test_clamp_mtime_needs_an_epoch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    rc, _, err = run_cli(
        ["build", "oci:x:y", "-o", str(tmp_path / "o.eif"), "--clamp-mtime"], capsys
    )
    assert rc == 2 and "SOURCE_DATE_EPOCH" in err


def _oci(tmp_path: Path, config: dict[str, object], arch: str = "amd64") -> str:
    from tests.helpers.imagegen import E, simple_oci

    layer = [E.dir("bin"), E.file("bin/app", b"#!/bin/sh\n", 0o755)]
    return simple_oci(tmp_path / "img", layer, ref="app:v1", config=config, arch=arch)


def test_metadata_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    blobs = make_blobs(tmp_path / "blobs")
    ref = _oci(tmp_path, {"Cmd": ["/bin/app"], "Labels": {"b": "2", "a": "1"}, "User": "0"})
    # created is not set by imagegen: BuildTime falls back to 1970, never the clock
    out = tmp_path / "o.eif"
    rc, _, err = run_cli(["build", ref, "--blobs", str(blobs), "-o", str(out)], capsys)
    assert rc == 0, err
    meta = json.loads(next(d for t, d in sections(out.read_bytes()) if t == 5))
    cfg_digest = json.loads((tmp_path / "img/index.json").read_text())["manifests"][0]["digest"]
    manifest = json.loads((tmp_path / "img/blobs/sha256" / cfg_digest[7:]).read_text())
    image_id = manifest["config"]["digest"]
    assert meta["ImageName"] == "app"
    assert meta["ImageVersion"] == image_id.removeprefix("sha256:")
    assert meta["BuildMetadata"]["BuildTime"] == "1970-01-01T00:00:00+00:00"
    assert meta["DockerInfo"] == {
        "Architecture": "amd64",
        "Config": {"Cmd": ["/bin/app"], "Labels": {"a": "1", "b": "2"}, "User": "0"},
        "Id": image_id,
        "Os": "linux",
    }
    assert meta["CustomMetadata"] is None

    custom = tmp_path / "custom.json"
    custom.write_text('{"team": "x", "n": 1}')
    monkeypatch.setenv("SOURCE_DATE_EPOCH", SDE)
    args = ["build", ref, "--blobs", str(blobs), "-o", str(out), "--name", "N", "--version", "V"]
    rc, _, err = run_cli([*args, "--metadata", str(custom)], capsys)
    assert rc == 0, err
    meta = json.loads(next(d for t, d in sections(out.read_bytes()) if t == 5))
    assert (meta["ImageName"], meta["ImageVersion"]) == ("N", "V")
    assert meta["CustomMetadata"] == {"n": 1, "team": "x"}
    assert meta["BuildMetadata"]["BuildTime"] == "2023-11-14T22:13:20+00:00"
    custom.write_text('{"x": "' + "y" * 5000 + '"}')
    rc, _, err = run_cli([*args, "--metadata", str(custom)], capsys)
    assert rc == 1 and "4096" in err


def test_json_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib as h

    blobs = make_blobs(tmp_path / "blobs")
    ref = _oci(tmp_path, {"Entrypoint": ["/bin/app", "x"], "Env": ["A=1"]})
    out = tmp_path / "o.eif"
    rc, stdout, err = run_cli(
        ["build", ref, "--blobs", str(blobs), "-o", str(out), "--json"], capsys
    )
    assert rc == 0, err
    rec = json.loads(stdout)
    assert rec["Measurements"] == json.loads(json.dumps(rec["Measurements"]))
    assert {k: rec["Measurements"][k] for k in ("PCR0", "PCR1", "PCR2")} == expected_pcrs(
        out.read_bytes()
    )
    assert rec["inputs"]["kernel_sha384"] == h.sha384((blobs / "bzImage").read_bytes()).hexdigest()
    assert rec["inputs"]["init_sha384"] == h.sha384((blobs / "init").read_bytes()).hexdigest()
    assert rec["eif"]["sha384"] == h.sha384(out.read_bytes()).hexdigest()
    assert (rec["cmd"], rec["env"]) == (["/bin/app", "x"], ["A=1"])
    assert rec["build_tool"]["name"] == "eifbuild"


def test_arm64_image_uses_Image_and_arch_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blobs = make_blobs(tmp_path / "blobs", kernel="Image", nsm=False)
    ref = _oci(tmp_path, {"Cmd": ["/bin/app"]}, arch="arm64")
    out = tmp_path / "o.eif"
    rc, _, err = run_cli(
        ["build", ref, "--blobs", str(blobs), "-o", str(out), "--arch", "arm64"], capsys
    )
    assert rc == 0, err
    eif = out.read_bytes()
    flags = struct.unpack(">H", eif[6:8])[0]
    assert flags & 1 == 1  # aarch64 bit
    boot = parse(sections(eif)[3][1])
    assert [e.name for e in boot] == [b"dev", b"init", b"TRAILER!!!"]  # NSM built in


def test_image_without_cmd_or_entrypoint_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blobs = make_blobs(tmp_path / "blobs")
    ref = _oci(tmp_path, {"Env": ["A=1"]})
    out = tmp_path / "o.eif"
    rc, stdout, err = run_cli(["build", ref, "--blobs", str(blobs), "-o", str(out)], capsys)
    assert rc == 1 and stdout == "" and "Cmd" in err and err.count("\n") == 1
    assert err.startswith(f"eifbuild: error: {ref}: ")
    assert not out.exists()


@pytest.mark.parametrize(
    ("layer", "workdir", "warned"),
    [
        ([E.dir("srv"), E.symlink("app", "/srv/new")], "/app", True),  # link to nothing
        ([E.dir("srv"), E.dir("srv/real"), E.symlink("app", "/srv/real")], "/app", False),
        ([E.dir("srv"), E.dir("srv/real"), E.symlink("app", "srv/real")], "/app/sub", True),
        ([E.dir("srv")], "/proc", False),  # the init layer makes it, not the WorkingDir
    ],
)
def test_missing_workdir_warning_follows_symlinks(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    layer: list[E],
    workdir: str,
    warned: bool,
) -> None:
    blobs = make_blobs(tmp_path / "blobs")
    ref = simple_oci(tmp_path / "img", layer, config={"Cmd": ["/x"], "WorkingDir": workdir})
    out = tmp_path / "o.eif"
    rc, stdout, err = run_cli(
        ["build", ref, "--blobs", str(blobs), "-o", str(out), "--json"], capsys
    )
    assert rc == 0, err
    rec = json.loads(stdout)
    assert ("parity_exceptions" in rec) is warned
    assert any("is missing from the image" in w for w in rec["warnings"]) is warned


@pytest.mark.parametrize(
    ("mode", "cmd"), [(None, b"y\n"), ("nitro", b"y\n"), ("docker", b"/bin/app\nx\ny\n")]
)
def test_entrypoint_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str | None, cmd: bytes
) -> None:
    blobs = make_blobs(tmp_path / "blobs")
    ref = _oci(tmp_path, {"Entrypoint": ["/bin/app", "x"], "Cmd": ["y"], "WorkingDir": "/bin"})
    out = tmp_path / "o.eif"
    extra = ["--entrypoint-mode", mode] if mode else []
    rc, stdout, err = run_cli(
        ["build", ref, "--blobs", str(blobs), "-o", str(out), "--json", *extra], capsys
    )
    assert rc == 0, err
    rec = json.loads(stdout)
    assert (rec["entrypoint_mode"], rec["working_dir"]) == (mode or "nitro", "/bin")
    members = {e.name: e.data for e in parse(sections(out.read_bytes())[4][1])}
    assert members[b"cmd"] == cmd
    # nitro mode reports the ignored WorkingDir (it exists, so no parity exception)
    assert any("WorkingDir '/bin' is ignored" in w for w in rec["warnings"]) is (mode != "docker")
    assert "parity_exceptions" not in rec


def test_build_arch_accepts_both_spellings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--arch takes the OCI and the kernel spellings alike: aarch64 selects the arm64 image."""
    blobs = make_blobs(tmp_path / "blobs", kernel="Image", nsm=False)
    ref = _oci(tmp_path, {"Cmd": ["/bin/app"]}, arch="arm64")
    outs = []
    for given in ("arm64", "aarch64"):
        out = tmp_path / f"{given}.eif"
        rc, _, err = run_cli(
            ["build", ref, "--blobs", str(blobs), "-o", str(out), "--arch", given], capsys
        )
        assert rc == 0, err
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    rc, _, err = run_cli(
        ["build", ref, "--blobs", str(blobs), "-o", str(tmp_path / "x.eif"), "--arch", "x86_64"],
        capsys,
    )
    assert rc == 1 and "amd64" in err and not (tmp_path / "x.eif").exists()
