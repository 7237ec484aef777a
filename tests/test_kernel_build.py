"""Pieces of the kernel build that run without compiling a kernel: the make progress
counter and log, the toolchain identity (the pinned root, never the host's compilers)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from eifbuild.errors import KernelBuildError
from eifbuild.kernel import kernel_toolchain_id, sha384_file
from eifbuild.kernel._common import c_env, root_prefix
from eifbuild.kernel.build import _make_with_progress
from eifbuild.kernel.initbuild import build_init, init_toolchain_id
from eifbuild.kernel.toolpin import toolchain_key
from tests.conftest import ROOT
from tests.test_toolchain import need_root, share_toolchain

FAKE_KBUILD = """\
all:
\t@echo "  CC      kernel/fork.o"
\t@echo "  AS      arch/arm64/kernel/head.o"
\t@echo "  AR      lib/built-in.a"
\t@echo "  LD      vmlinux"
\t@echo "  OBJCOPY arch/arm64/boot/Image"
fail:
\t@echo "  CC      broken.o"
\t@echo "broken.c:1: error: nope" >&2
\t@false
"""


def test_make_progress_counts_compile_steps_and_logs_everything(tmp_path: Path) -> None:
    (tmp_path / "Makefile").write_text(FAKE_KBUILD)
    log = tmp_path / "build.log"
    steps = _make_with_progress(["make", "-s", "all"], tmp_path, c_env(), log, expected=None)
    assert steps == 3  # CC, AS, LD; not AR / OBJCOPY
    assert "OBJCOPY arch/arm64/boot/Image" in log.read_text()


def test_failed_make_names_the_log(tmp_path: Path) -> None:
    (tmp_path / "Makefile").write_text(FAKE_KBUILD)
    log = tmp_path / "build.log"
    with pytest.raises(KernelBuildError, match=rf"make exit 2\); see {log}$"):
        _make_with_progress(["make", "-s", "fail"], tmp_path, c_env(), log, expected=5)
    assert "broken.c:1: error: nope" in log.read_text()  # stderr goes to the log too


def test_tool_prefix_inside_the_amd64_root() -> None:
    assert root_prefix("x86_64") == "" and root_prefix("aarch64") == "aarch64-linux-gnu-"


def test_toolchain_identity_is_the_pin_not_the_host(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no host compiler at all: the key still works
    for arch in ("x86_64", "aarch64"):
        assert kernel_toolchain_id(arch)["key"] == toolchain_key()
        assert init_toolchain_id(arch)["key"] == toolchain_key()
    assert init_toolchain_id("aarch64")["cc"] == "aarch64-linux-gnu-gcc"
    assert init_toolchain_id("x86_64")["cc"] == "musl-gcc"


def test_init_builds_without_any_host_compiler(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Only unshare, mount and chroot come from the host: the init is compiled in the root."""
    need_root()
    share_toolchain(tmp_path / "cache", monkeypatch)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("unshare", "mount", "chroot"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    for arch in ("x86_64", "aarch64"):
        init = build_init(arch)
        want = json.loads((ROOT / "kernels" / arch / "expected.json").read_text())
        assert sha384_file(init) == want["init_sha384"], arch
