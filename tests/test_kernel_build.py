"""Pieces of the kernel build that run without compiling a kernel: the make progress
counter and log, toolchain lookup per architecture (native / cross) and its errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eifbuild.errors import KernelBuildError
from eifbuild.kernel import kernel_toolchain_id
from eifbuild.kernel._common import c_env, require_tool, tool_prefix
from eifbuild.kernel.build import _make_with_progress
from eifbuild.kernel.initbuild import init_toolchain_id

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


def test_cross_prefix_on_an_x86_64_host() -> None:
    if os.uname().machine != "x86_64":
        pytest.skip("prefix expectations are for an x86_64 host")
    assert tool_prefix("x86_64") == "" and tool_prefix("aarch64") == "aarch64-linux-gnu-"


def test_missing_cross_compiler_names_the_debian_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    if os.uname().machine == "x86_64":
        with pytest.raises(
            KernelBuildError, match="install the Debian package gcc-aarch64-linux-gnu"
        ):
            kernel_toolchain_id("aarch64")
        with pytest.raises(
            KernelBuildError, match="install the Debian package gcc-aarch64-linux-gnu"
        ):
            init_toolchain_id("aarch64")
        with pytest.raises(KernelBuildError, match=r"musl-gcc not found .*musl-tools"):
            init_toolchain_id("x86_64")
    with pytest.raises(KernelBuildError, match=r"^make not found .*package make$"):
        require_tool("make")


def test_cross_gcc_without_static_libc_names_the_libc_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """gcc-aarch64-linux-gnu only recommends libc6-dev-arm64-cross; say so when it is absent."""
    if os.uname().machine != "x86_64":
        pytest.skip("cross-toolchain expectations are for an x86_64 host")
    for tool in ("gcc", "ld", "strip"):  # a cross toolchain whose gcc finds no libc.a
        script = tmp_path / f"aarch64-linux-gnu-{tool}"
        script.write_text(f'#!/bin/sh\ncase "$1" in -print-file-name=*) echo libc.a;; '
                          f'*) echo "aarch64-linux-gnu-{tool} 12";; esac\n')  # fmt: skip
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with pytest.raises(KernelBuildError, match="install the Debian package libc6-dev-arm64-cross"):
        init_toolchain_id("aarch64")
