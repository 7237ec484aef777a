"""The pinned toolchain: pin file, fetch + verify, the root, entering it, expected.json checks.

Tests that need the bootstrapped root use the one in the shared cache (scripts/setup builds it)
through :func:`share_toolchain`, so a private XDG cache does not bootstrap another 550 MB root.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from eifbuild.errors import KernelMismatchError, ToolchainError
from eifbuild.kernel._common import download_dir
from eifbuild.kernel.expected import Outcome, check_expected, load_expected
from eifbuild.kernel.toolpin import (
    REQUEST,
    PinnedDeb,
    ToolchainPin,
    load_toolchain_pin,
    toolchain_key,
)
from eifbuild.kernel.toolroot import Bind, enter_command, fetch_debs, run_in_root, toolchain_root
from tests.conftest import ROOT, require

KERNELS = ROOT / "kernels"


def need_root() -> None:
    """The pinned toolchain root exists (scripts/setup bootstraps it) and we can enter it."""
    require("toolchain-root", os.geteuid() == 0, "entering the toolchain root needs root")
    key = toolchain_key()
    have = (download_dir() / "toolchain" / f"root-{key}" / "usr/bin/gcc").exists()
    require("toolchain-root", have, "run scripts/setup (eifbuild kernel build) first")


def share_toolchain(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A private XDG cache whose ``eifbuild/toolchain`` is the shared one (root + debs)."""
    real = download_dir() / "toolchain"
    (cache / "eifbuild").mkdir(parents=True, exist_ok=True)
    (cache / "eifbuild" / "toolchain").symlink_to(real, target_is_directory=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))


# ------------------------------------------------------------------------- the pin file


def test_pin_names_every_requested_package_with_a_sha256() -> None:
    pin = load_toolchain_pin()
    names = {d.name: d for d in pin.packages}
    for want in [r for r in REQUEST if not r.startswith("?")]:
        assert want in names, want
    for tool in ("gcc-12", "binutils-aarch64-linux-gnu", "musl-dev", "libc6-dev-arm64-cross",
                 "dpkg", "coreutils", "dash", "mawk"):  # fmt: skip
        assert tool in names, tool  # compilers and the Essential base are pinned too
    assert pin.suite == "bookworm" and pin.architecture == "amd64"
    assert all(len(d.sha256) == 64 and d.filename.startswith("pool/") for d in pin.packages)
    assert pin.include == [r for r in REQUEST if not r.startswith("?")]


def test_pin_file_is_sorted_and_generated_by_pin_toolchain() -> None:
    raw = json.loads((KERNELS / "toolchain" / "bookworm.json").read_text())
    names = [p["name"] for p in raw["packages"]]
    assert names == sorted(names) and raw["request"] == list(REQUEST)


def _edited(tmp_path: Path, edit: dict[str, str], name: str = "gcc-12") -> ToolchainPin:
    raw = json.loads((KERNELS / "toolchain" / "bookworm.json").read_text())
    for p in raw["packages"]:
        if p["name"] == name:
            p.update(edit)
    path = tmp_path / "bookworm.json"
    path.write_text(json.dumps(raw))
    return load_toolchain_pin(path)


def test_toolchain_key_follows_every_version_and_hash(tmp_path: Path) -> None:
    base = toolchain_key()
    assert toolchain_key(load_toolchain_pin()) == base
    assert toolchain_key(_edited(tmp_path, {"version": "12.2.0-99"})) != base
    assert toolchain_key(_edited(tmp_path, {"sha256": "0" * 64})) != base
    assert toolchain_key(_edited(tmp_path, {"filename": "pool/main/x.deb"})) == base  # not bytes


@pytest.mark.parametrize(
    ("edit", "msg"),
    [
        ({"sha256": "xyz"}, "bad arch or sha256"),
        ({"arch": "arm64"}, "bad arch or sha256"),
        ({"filename": "../../etc/passwd"}, "pool/ path"),
        ({"version": "1 2"}, "bad package name or version"),
    ],
)
def test_malformed_pin_is_one_line_error(tmp_path: Path, edit: dict[str, str], msg: str) -> None:
    with pytest.raises(ToolchainError, match=msg) as info:
        _edited(tmp_path, edit)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------- fetch + verify


def _one_package_pin(tmp_path: Path, deb: PinnedDeb) -> ToolchainPin:
    pin = load_toolchain_pin()
    return ToolchainPin(tmp_path / "bookworm.json", pin.suite, pin.component, pin.architecture,
                        pin.request, (deb,))  # fmt: skip


def test_tampered_toolchain_deb_is_refused_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    real = next(d for d in load_toolchain_pin().packages if d.name == "make")
    dl = tmp_path / "eifbuild" / "toolchain" / "debs"
    dl.mkdir(parents=True)
    (dl / real.deb_name).write_bytes(b"not make")
    with pytest.raises(ToolchainError, match=r"make_.*sha256 .* does not match the pin") as info:
        fetch_debs(_one_package_pin(tmp_path, real))
    assert "\n" not in str(info.value)
    assert not (dl / real.deb_name).exists()


def test_version_gone_from_the_mirror_says_how_to_bump(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require("apt", shutil.which("apt-get") is not None, "the toolchain is fetched with apt-get")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    real = next(d for d in load_toolchain_pin().packages if d.name == "make")
    gone = PinnedDeb("make", "4.3-0~gone1", "amd64", "0" * 64, real.filename)
    with pytest.raises(ToolchainError) as info:
        fetch_debs(_one_package_pin(tmp_path, gone))
    msg = str(info.value)
    if "apt-get update" not in msg:  # (no network: the update fails first, naming itself)
        assert "make 4.3-0~gone1 is not available" in msg
        assert "eifbuild kernel pin-toolchain" in msg and "EIFBUILD_DEBIAN_MIRROR" in msg
    assert "\n" not in msg


# ------------------------------------------------------------------------- entering the root


def test_enter_command_binds_only_the_known_mount_points(tmp_path: Path) -> None:
    cmd = enter_command(tmp_path, ["true"], [Bind(tmp_path, "/build", True)], "/build", {})
    assert cmd[cmd.index("--") + 1 :][:2] == ["/usr/bin/env", "-i"]
    with pytest.raises(ToolchainError, match="cannot bind"):
        enter_command(tmp_path, ["true"], [Bind(tmp_path, "/etc")], "/build", {})


def test_the_root_has_the_pinned_compilers_and_no_host_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    need_root()
    monkeypatch.setenv("CC", "clang-from-the-host")
    root = toolchain_root()
    out = run_in_root(root, ["sh", "-c", "gcc --version; aarch64-linux-gnu-gcc --version; env"], ())
    assert "gcc (Debian 12.2.0-14+deb12u1) 12.2.0" in out
    assert "aarch64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0" in out
    assert "CC=" not in out and "LC_ALL=C" in out and "TZ=UTC" in out
    assert "\nclang-from-the-host" not in out


def test_the_root_is_read_only_where_not_bound_writable(tmp_path: Path) -> None:
    need_root()
    (tmp_path / "in").mkdir()
    root = toolchain_root()
    with pytest.raises(ToolchainError, match="in the toolchain root failed"):
        run_in_root(root, ["touch", "/recipe/x"], [Bind(tmp_path / "in", "/recipe")])
    run_in_root(root, ["touch", "/build/y"], [Bind(tmp_path / "in", "/build", writable=True)])
    assert (tmp_path / "in" / "y").exists() and not (tmp_path / "in" / "x").exists()


# ------------------------------------------------------------------------- expected.json


def _outcome(arch: str, **change: str) -> Outcome:
    want = load_expected(arch)
    fields = {"image_name": want["image"], "image_sha384": want["image_sha384"],
              "init_sha384": want["init_sha384"], "pcr1": want["pcr1"], **change}  # fmt: skip
    return Outcome(**fields)


def test_expected_matches_itself_and_names_what_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_expected("x86_64", _outcome("x86_64"))
    with pytest.raises(KernelMismatchError, match="this host did not reproduce") as info:
        check_expected("x86_64", _outcome("x86_64", image_sha384="ab" * 48))
    assert "bzImage sha384 abababababab…" in str(info.value) and "\n" not in str(info.value)
    kernels = tmp_path / "kernels"
    shutil.copytree(KERNELS, kernels)
    monkeypatch.setenv("EIFBUILD_KERNELS_DIR", str(kernels))
    with (kernels / "x86_64" / "enclave.config").open("a") as fh:
        fh.write("CONFIG_IPV6=y\n")
    raw = json.loads((kernels / "toolchain" / "bookworm.json").read_text())
    raw["packages"][0]["sha256"] = "0" * 64
    (kernels / "toolchain" / "bookworm.json").write_text(json.dumps(raw))
    with pytest.raises(KernelMismatchError) as info:
        check_expected("x86_64", _outcome("x86_64", pcr1="cd" * 48))
    msg = str(info.value)
    assert "PCR1 cdcdcdcdcdcd…" in msg and "config fragment" in msg and "toolchain pin" in msg
    assert "--record" in msg
