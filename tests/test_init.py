"""The enclave init: static musl build, bit-for-bit reproducible, cached, checked.

Its behaviour inside a VM (heartbeat report, /cmd and /env handling, exit status, reboot) is
tested by booting it under QEMU in tests/test_boottest.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from eifbuild.cli import main
from eifbuild.elfcheck import check_init
from tests.conftest import ROOT, require
from tests.test_toolchain import need_root, share_toolchain

pytestmark = pytest.mark.musl

INIT_SRC = ROOT / "kernels" / "init"


def _need_musl() -> None:
    require("musl", shutil.which("musl-gcc") is not None, "Debian musl-tools provides musl-gcc")


def _make(src_dir: Path, out: Path, cwd: Path) -> bytes:
    subprocess.run(
        ["make", "-s", "-f", str(src_dir / "Makefile"), f"OUT={out}"], cwd=cwd, check=True
    )
    return out.read_bytes()


def test_init_rebuild_in_another_directory_is_bit_identical(tmp_path: Path) -> None:
    _need_musl()
    a, b = tmp_path / "one" / "init", tmp_path / "elsewhere" / "deeper" / "src"
    a.parent.mkdir(parents=True)
    b.mkdir(parents=True)
    for name in ("init.c", "Makefile"):
        shutil.copyfile(INIT_SRC / name, b / name)
    first = _make(INIT_SRC, a, tmp_path)
    second = _make(b, b / "init.bin", b)
    assert first == second
    assert len(first) < 128 * 1024  # musl: tens of KB, not glibc's ~700 KB
    check_init(a, "x86_64")


def test_init_has_no_build_path_or_compiler_ident(tmp_path: Path) -> None:
    _need_musl()
    data = _make(INIT_SRC, tmp_path / "init", tmp_path)
    assert str(INIT_SRC).encode() not in data
    assert b"GCC: (" not in data


def test_cli_init_build_prints_path_and_sha384_and_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    need_root()
    share_toolchain(tmp_path / "cache", monkeypatch)
    assert main(["init", "build"]) == 0
    path_line, sha_line = capsys.readouterr().out.splitlines()
    path = Path(path_line)
    assert path.is_relative_to(tmp_path / "cache" / "eifbuild" / "init")
    assert sha_line == "sha384 " + hashlib.sha384(path.read_bytes()).hexdigest()
    expected = json.loads((ROOT / "kernels" / "x86_64" / "expected.json").read_text())
    assert sha_line == "sha384 " + expected["init_sha384"]  # built in the pinned root
    mtime = path.stat().st_mtime_ns
    assert main(["init", "build", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["path"] == str(path) and path.stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert doc["size"] == path.stat().st_size


def test_init_cache_key_follows_the_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _need_musl()
    from eifbuild.kernel import init_cache_key

    kernels = tmp_path / "kernels"
    shutil.copytree(ROOT / "kernels", kernels)
    monkeypatch.setenv("EIFBUILD_KERNELS_DIR", str(kernels))
    before = init_cache_key()
    with (kernels / "init" / "init.c").open("a") as fh:
        fh.write("/* changed */\n")
    assert init_cache_key() != before


def test_broken_init_source_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    need_root()
    kernels = tmp_path / "kernels"
    shutil.copytree(ROOT / "kernels", kernels)
    (kernels / "init" / "init.c").write_text("int main(void) { return undefined_symbol; }\n")
    monkeypatch.setenv("EIFBUILD_KERNELS_DIR", str(kernels))
    share_toolchain(tmp_path / "cache", monkeypatch)
    assert main(["init", "build"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("eifbuild: error: building the x86_64 init from") and err.count("\n") == 1
    init_dir = tmp_path / "cache" / "eifbuild" / "init"
    assert not [p for p in init_dir.rglob("*") if p.is_file()]  # no partial output
