"""eifbuild.kernel: recipe, pin, cache keys, config checks, and the built blobs directory.

Tests never build the kernel: `eifbuild kernel build` does that once (scripts/setup in CI);
tests that need its output ask for it with require("kernel", ...).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from eifbuild.cli import main
from eifbuild.elfcheck import check_init, kernel_release, kernel_version_string
from eifbuild.errors import BlobsError, KernelBuildError
from eifbuild.kernel import (
    SourcePin,
    default_blobs_dir,
    extract_tarball,
    fetch_source_deb,
    kbuild_env,
    kbuild_timestamp,
    kernel_cache_key,
    load_pin,
    missing_options,
    parse_config,
)
from tests.conftest import ROOT, require

KERNELS = ROOT / "kernels"
# nitro-cli blobs/x86_64/cmdline @ 2950b36 (docs/spec/ramdisk-layout.md §10): 120 bytes with "\n".
NITRO_X86_CMDLINE = (
    b"reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux "
    b"i8042.nopnp i8042.dumbkbd random.trust_cpu=on\n"
)


# ------------------------------------------------------------------------- recipe files


def test_cmdline_is_nitro_clis_x86_64_cmdline() -> None:
    data = (KERNELS / "x86_64" / "cmdline").read_bytes()
    assert data == NITRO_X86_CMDLINE and len(data) == 120


def test_fragment_has_the_enclave_essentials() -> None:
    frag = parse_config((KERNELS / "x86_64" / "enclave.config").read_text().splitlines())
    for opt in (
        "NSM", "VIRTIO_MMIO", "VIRTIO_MMIO_CMDLINE_DEVICES", "VSOCKETS", "VIRTIO_VSOCKETS",
        "ACPI", "DEVTMPFS", "DEVTMPFS_MOUNT", "SERIAL_8250_CONSOLE", "BLK_DEV_INITRD",
    ):  # fmt: skip
        assert frag[f"CONFIG_{opt}"] == "y", opt
    assert frag["CONFIG_MODULES"] is None  # no loadable modules, no signing keys
    assert frag["CONFIG_RANDOMIZE_BASE"] is None


def test_pin_is_well_formed() -> None:
    pin = load_pin("x86_64")
    assert pin.package == "linux-source-6.12"
    assert re.fullmatch(r"6\.12\.\d+-\S+", pin.version)
    assert re.fullmatch(r"[0-9a-f]{64}", pin.deb_sha256)
    assert re.fullmatch(r"[0-9a-f]{64}", pin.tarball_sha256)
    assert pin.apt_suite and pin.apt_component == "main"


def test_debian_mirror_comes_from_the_host_apt_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eifbuild.errors import KernelBuildError
    from eifbuild.kernel._aptfetch import apt_source_line, debian_mirror

    monkeypatch.delenv("EIFBUILD_DEBIAN_MIRROR", raising=False)
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    with pytest.raises(KernelBuildError, match="EIFBUILD_DEBIAN_MIRROR"):
        debian_mirror(etc)
    (etc / "sources.list.d" / "a.list").write_text(
        "# comment\ndeb [arch=amd64] http://mirror.example/debian-security bookworm-security main\n"
    )
    (etc / "sources.list.d" / "b.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\nComponents: main\n"
    )
    assert debian_mirror(etc) == "http://mirror.example/debian"
    monkeypatch.setenv("EIFBUILD_DEBIAN_MIRROR", "http://other.example/debian/")
    assert debian_mirror(etc) == "http://other.example/debian"
    pin = load_pin("x86_64")
    line = apt_source_line(pin.apt_suite, pin.apt_component, "http://m.example/debian")
    assert line.startswith("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ")
    assert line.endswith(" http://m.example/debian bookworm-backports main")


def test_vsock_patch_removes_the_pushback_counter() -> None:
    patch = (KERNELS / "x86_64" / "patches").glob("*.patch")
    text = "".join(p.read_text() for p in patch)
    removed = [ln for ln in text.splitlines() if ln.startswith("-") and "queued_replies" in ln]
    added = [ln for ln in text.splitlines() if ln.startswith("+") and "queued_replies" in ln]
    # docs/spec/kernel-and-init.md §3: six references in 6.12.95
    assert len(removed) == 6 and not added


# ------------------------------------------------------------------------- config checks


def test_parse_config_and_missing_options() -> None:
    frag = parse_config(["CONFIG_A=y", "# CONFIG_B is not set", 'CONFIG_S="x"', "# comment"])
    assert frag == {"CONFIG_A": "y", "CONFIG_B": None, "CONFIG_S": '"x"'}
    good = parse_config(["CONFIG_A=y", 'CONFIG_S="x"'])
    assert missing_options(frag, good) == []
    bad = parse_config(["# CONFIG_A is not set", "CONFIG_B=y", 'CONFIG_S="y"'])
    assert missing_options(frag, bad) == [
        "CONFIG_A=y (got not set)",
        "CONFIG_B is not set (got y)",
        'CONFIG_S="x" (got "y")',
    ]


def test_kbuild_timestamp_is_parseable_by_date() -> None:
    assert kbuild_timestamp(0) == "1970-01-01 00:00:00 UTC"
    for epoch in (0, 1_700_000_000):
        out = subprocess.run(
            ["date", "-u", "-d", kbuild_timestamp(epoch), "+%s"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert int(out.stdout) == epoch
    env = kbuild_env(5)
    assert env["KBUILD_BUILD_USER"] == env["KBUILD_BUILD_HOST"] == "eifbuild"
    assert env["KBUILD_BUILD_VERSION"] == "1" and env["LOCALVERSION"] == ""


def _copy_kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    dst = tmp_path / "kernels"
    shutil.copytree(KERNELS, dst)
    monkeypatch.setenv("EIFBUILD_KERNELS_DIR", str(dst))
    return dst


def test_cache_key_follows_fragment_and_patches_not_source_date_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k = _copy_kernels(tmp_path, monkeypatch)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    base = kernel_cache_key()
    assert kernel_cache_key() == base
    # SOURCE_DATE_EPOCH sets an EIF's BuildTime; `SOURCE_DATE_EPOCH=N eifbuild build` must
    # find the kernel built without it (the README's build-server example).
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert kernel_cache_key() == base
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    with (k / "x86_64" / "enclave.config").open("a") as fh:
        fh.write("CONFIG_IPV6=y\n")
    frag_changed = kernel_cache_key()
    assert frag_changed != base
    (k / "x86_64" / "patches" / "0002-extra.patch").write_text("")
    patch_changed = kernel_cache_key()
    assert patch_changed not in (base, frag_changed)
    # The recipe's own pinned epoch (KBUILD_BUILD_TIMESTAMP) is part of the key.
    pin_file = k / "x86_64" / "source.json"
    pin = json.loads(pin_file.read_text())
    assert pin["source_date_epoch"] == 0
    pin["source_date_epoch"] = 1_700_000_000
    pin_file.write_text(json.dumps(pin))
    assert kernel_cache_key() not in (base, frag_changed, patch_changed)
    pin["source_date_epoch"] = "soon"
    pin_file.write_text(json.dumps(pin))
    with pytest.raises(KernelBuildError, match="source_date_epoch"):
        kernel_cache_key()


def test_default_blobs_dir_without_a_build_tells_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    require("musl", shutil.which("musl-gcc") is not None, "the init key needs musl-gcc")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(BlobsError, match=r"run `eifbuild kernel build --arch x86_64` first"):
        default_blobs_dir("x86_64")
    assert main(["kernel", "path"]) == 1
    assert "eifbuild kernel build" in capsys.readouterr().err


def test_unavailable_pinned_version_names_the_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require("apt", shutil.which("apt-get") is not None, "the source is fetched with apt-get")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    pin = load_pin("x86_64")
    gone = SourcePin(**{**pin.__dict__, "version": "6.12.1-0~gone1"})
    with pytest.raises(KernelBuildError) as info:
        fetch_source_deb(gone)
    msg = str(info.value)
    # Either apt cannot reach the mirror (no network) or the version is gone: both name it.
    assert "linux-source-6.12" in msg
    if "update" not in msg:
        assert "6.12.1-0~gone1" in msg and "bump the pin" in msg
    assert not Path("/etc/apt/sources.list.d/eifbuild.list").exists()


def test_tampered_package_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require("dpkg-deb", shutil.which("dpkg-deb") is not None, "dpkg-deb reads .deb files")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    # A real .deb holding a tarball at the pinned path, with the wrong content.
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: fake\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n"
    )
    pin = load_pin("x86_64")
    member = root / pin.tarball
    member.parent.mkdir(parents=True)
    member.write_bytes(b"not the kernel source")
    deb = tmp_path / "fake.deb"
    subprocess.run(["dpkg-deb", "-Znone", "--build", str(root), str(deb)], check=True,
                   capture_output=True)  # fmt: skip
    with pytest.raises(KernelBuildError, match="does not match the pin"):
        extract_tarball(pin, deb)
    assert not list((tmp_path / "eifbuild" / "sources").iterdir())  # nothing left behind
    expected = hashlib.sha256(b"not the kernel source").hexdigest()
    pin2 = SourcePin(**{**pin.__dict__, "tarball_sha256": expected})
    out = extract_tarball(pin2, deb)
    assert out.read_bytes() == b"not the kernel source"


# ------------------------------------------------------------------------- the built kernel


@pytest.fixture(scope="module")
def blobs() -> Path:
    try:
        path = default_blobs_dir("x86_64")
    except BlobsError as exc:
        require("kernel", False, str(exc))
        raise
    return path


def test_blobs_directory_layout(blobs: Path) -> None:
    assert sorted(p.name for p in blobs.iterdir()) == [
        "bzImage",
        "bzImage.config",
        "cmdline",
        "init",
    ]
    assert (blobs / "cmdline").read_bytes() == NITRO_X86_CMDLINE
    check_init(blobs / "init", "x86_64")


def test_every_fragment_option_survived(blobs: Path) -> None:
    frag = parse_config((KERNELS / "x86_64" / "enclave.config").read_text().splitlines())
    final = parse_config((blobs / "bzImage.config").read_text().splitlines())
    assert missing_options(frag, final) == []
    assert "CONFIG_MODULES" not in final or final["CONFIG_MODULES"] is None


def test_kernel_identity_is_reproducible(blobs: Path) -> None:
    version = kernel_version_string(blobs / "bzImage")
    assert kernel_release(blobs / "bzImage") == load_pin().version.split("-")[0]
    assert "(eifbuild@eifbuild)" in version
    assert "#1 SMP" in version and "1970" in version  # KBUILD_BUILD_TIMESTAMP from epoch 0


def test_cli_kernel_build_uses_the_cache(blobs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kernel", "build", "--json"]) == 0  # cached: no compile, returns at once
    out, err = capsys.readouterr()
    assert err == ""  # --json: nothing but the JSON document
    doc = json.loads(out)
    assert doc["blobs"] == str(blobs)
    digest = hashlib.sha384((blobs / "bzImage").read_bytes()).hexdigest()
    assert doc["sha384"]["bzImage"] == digest
