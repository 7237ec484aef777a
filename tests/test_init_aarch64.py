"""The aarch64 init: static glibc with Debian's cross gcc, reproducible, cached, checked.

Its behaviour in a VM is tested by booting it under qemu-system-aarch64 in
tests/test_boottest_aarch64.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from eifbuild.cli import main
from eifbuild.elfcheck import check_init
from eifbuild.errors import BlobsError
from eifbuild.kernel import init_cache_key
from tests.conftest import ROOT, require
from tests.test_toolchain import need_root, share_toolchain

INIT_SRC = ROOT / "kernels" / "init"
CROSS = "aarch64-linux-gnu-"


def _need_cross() -> None:
    require(
        "cross-aarch64",
        shutil.which(f"{CROSS}gcc") is not None,
        "Debian gcc-aarch64-linux-gnu (+ libc6-dev-arm64-cross) builds the aarch64 init",
    )


def _make(src_dir: Path, out: Path, cwd: Path) -> bytes:
    subprocess.run(
        ["make", "-s", "-f", str(src_dir / "Makefile"), f"OUT={out}",
         f"CC={CROSS}gcc", f"STRIP={CROSS}strip"],
        cwd=cwd, check=True,
    )  # fmt: skip
    return out.read_bytes()


def test_aarch64_init_is_reproducible_static_and_for_arm64(tmp_path: Path) -> None:
    _need_cross()
    a, b = tmp_path / "one" / "init", tmp_path / "elsewhere" / "src"
    a.parent.mkdir(parents=True)
    b.mkdir(parents=True)
    for name in ("init.c", "Makefile"):
        shutil.copyfile(INIT_SRC / name, b / name)
    first = _make(INIT_SRC, a, tmp_path)
    assert first == _make(b, b / "init.bin", b)
    assert str(INIT_SRC).encode() not in first and b"GCC: (" not in first
    with a.open("rb") as fh:
        elf = ELFFile(fh)
        assert elf["e_machine"] == "EM_AARCH64" and elf["e_type"] == "ET_EXEC"
        assert not any(seg["p_type"] == "PT_INTERP" for seg in elf.iter_segments())
    assert len(first) < 1024 * 1024  # static glibc: ~650 KB (musl on x86_64: ~65 KB)
    check_init(a, "aarch64")
    with pytest.raises(BlobsError, match="built for aarch64, not x86_64"):
        check_init(a, "x86_64")


def test_cli_init_build_aarch64_is_cached_separately(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    need_root()
    share_toolchain(tmp_path / "cache", monkeypatch)
    assert main(["init", "build", "--arch", "aarch64", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    path = Path(doc["path"])
    assert path.parent.name == f"aarch64-{init_cache_key('aarch64')}"
    assert doc["sha384"] == hashlib.sha384(path.read_bytes()).hexdigest()
    assert doc["arch"] == "aarch64"
    expected = json.loads((ROOT / "kernels" / "aarch64" / "expected.json").read_text())
    assert doc["sha384"] == expected["init_sha384"]  # built in the pinned toolchain root
