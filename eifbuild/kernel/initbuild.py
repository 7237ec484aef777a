"""Reproducible builds of the enclave init (``kernels/init/``), cached by content hash.

``init/<arch>-<key>/init`` with key = sha256(init.c, Makefile, toolchain pin hash). The
Makefile runs inside the pinned toolchain root (:mod:`eifbuild.kernel.toolroot`), with the
recipe at ``/recipe`` and the output directory at ``/build``:

* x86_64: static musl with the root's ``musl-tools`` (``musl-gcc``), about 65 KB.
* aarch64: static glibc with the root's cross compiler ``gcc-aarch64-linux-gnu`` and
  ``libc6-dev-arm64-cross``, about 650 KB. Debian ships musl for arm64 only as the arm64
  architecture's own ``musl-dev:arm64`` (dpkg multiarch); the cross glibc needs none. The same
  Makefile is used with ``CC``/``STRIP`` given on the make command line.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from eifbuild.elfcheck import check_init
from eifbuild.errors import KernelBuildError
from eifbuild.kernel._common import (
    RECIPE_VERSION,
    Log,
    cache_dir,
    cache_key,
    check_arch,
    kernels_dir,
    quiet,
    root_prefix,
    sha256_file,
)
from eifbuild.kernel.toolpin import toolchain_key
from eifbuild.kernel.toolroot import Bind, run_in_root, toolchain_root


def _tools(arch: str) -> tuple[str, str]:
    """(CC, STRIP) for the init of ``arch`` inside the root."""
    if arch == "x86_64":
        return "musl-gcc", "strip"
    prefix = root_prefix(arch)
    return f"{prefix}gcc", f"{prefix}strip"


def init_toolchain_id(arch: str = "x86_64") -> dict[str, str]:
    """The toolchain part of the init's cache key: the pinned root and the compiler used."""
    check_arch(arch)
    cc = _tools(arch)[0]
    return {"pin": "kernels/toolchain/bookworm.json", "key": toolchain_key(), "cc": cc,
            "libc": "musl-static" if cc == "musl-gcc" else "glibc-static"}  # fmt: skip


def musl_toolchain_id() -> dict[str, str]:
    """The x86_64 init's toolchain identity (kept for callers of the old name)."""
    return init_toolchain_id("x86_64")


def init_cache_key(arch: str = "x86_64") -> str:
    check_arch(arch)
    src = kernels_dir() / "init"
    return cache_key(
        {
            "recipe": RECIPE_VERSION,
            "init.c": sha256_file(src / "init.c"),
            "Makefile": sha256_file(src / "Makefile"),
            "toolchain": init_toolchain_id(arch),
        }
    )


def _make_command(arch: str, out: str) -> list[str]:
    cmd = ["make", "-s", "-B", "-f", "/recipe/init/Makefile", f"OUT={out}"]
    cc, strip = _tools(arch)
    if cc != "musl-gcc":  # command-line variables override the Makefile's CC := musl-gcc
        cmd += [f"CC={cc}", f"STRIP={strip}"]
    return cmd


def build_init(arch: str = "x86_64", *, force: bool = False, log: Log = quiet) -> Path:
    """Build (or reuse) the static init for ``arch`` in the toolchain root; the cached path."""
    out_dir = cache_dir() / "init" / f"{arch}-{init_cache_key(arch)}"
    target = out_dir / "init"
    if target.is_file() and not force:
        check_init(target, arch)
        return target
    root = toolchain_root(log)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / f".work.{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        run_in_root(
            root, _make_command(arch, "/build/init"),
            (Bind(work, "/build", writable=True), Bind(kernels_dir(), "/recipe")),
            env={"SOURCE_DATE_EPOCH": "0"}, what=f"building the {arch} init from kernels/init",
        )  # fmt: skip
        if not (work / "init").is_file():
            raise KernelBuildError(f"building the {arch} init produced no file")
        check_init(work / "init", arch)
        os.replace(work / "init", target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
