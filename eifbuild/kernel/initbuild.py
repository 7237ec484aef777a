"""Reproducible builds of the enclave init (``kernels/init/``), cached by content hash.

``init/<arch>-<key>/init`` with key = sha256(init.c, Makefile, toolchain identity).

* x86_64: static musl with Debian's ``musl-tools`` (``musl-gcc``), about 65 KB.
* aarch64: static glibc with Debian's cross compiler ``gcc-aarch64-linux-gnu`` (and its
  ``libc6-dev-arm64-cross``), about 650 KB. Debian ships musl for arm64 only as the arm64
  architecture's own ``musl-dev:arm64``, which needs dpkg multiarch (a change to the user's
  system that eifbuild must not make); the cross glibc installs without it. The same
  Makefile is used with ``CC``/``STRIP`` given on the make command line.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from eifbuild.elfcheck import check_init
from eifbuild.errors import KernelBuildError
from eifbuild.kernel._common import (
    RECIPE_VERSION,
    c_env,
    cache_dir,
    cache_key,
    check_arch,
    first_line,
    kernels_dir,
    require_tool,
    sha256_file,
    tool_prefix,
)

# Debian package with the static glibc for a cross compiler (a Recommends of the cross gcc,
# so missing after `apt-get install --no-install-recommends gcc-aarch64-linux-gnu`).
_LIBC_PACKAGES = {"aarch64": "libc6-dev-arm64-cross", "x86_64": "libc6-dev-amd64-cross"}


def _libc_a_hash(cc: str) -> str:
    libc = subprocess.run(
        [cc, "-print-file-name=libc.a"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return sha256_file(Path(libc)) if libc and Path(libc).is_file() else "missing"


def musl_toolchain_id() -> dict[str, str]:
    """What determines the x86_64 init's bytes besides its source: gcc, binutils, musl libc.a."""
    require_tool("musl-gcc")
    return {
        "gcc": first_line(["gcc", "--version"]),
        "ld": first_line(["ld", "--version"]),
        "strip": first_line(["strip", "--version"]),
        "musl_libc_a": _libc_a_hash("musl-gcc"),
    }


def _tools(arch: str) -> tuple[str, str]:
    """(CC, STRIP) for the init of ``arch``."""
    if arch == "x86_64" and tool_prefix(arch) == "":
        return "musl-gcc", "strip"
    prefix = tool_prefix(arch)
    return f"{prefix}gcc", f"{prefix}strip"


def init_toolchain_id(arch: str = "x86_64") -> dict[str, str]:
    """The toolchain part of the init's cache key."""
    if _tools(arch)[0] == "musl-gcc":
        return musl_toolchain_id()
    cc, strip = _tools(arch)
    prefix = tool_prefix(arch)
    ident = {
        "libc": "glibc-static",
        "gcc": first_line([cc, "--version"]),
        "ld": first_line([f"{prefix}ld", "--version"]),
        "strip": first_line([strip, "--version"]),
        "glibc_libc_a": _libc_a_hash(cc),
    }
    if ident["glibc_libc_a"] == "missing":
        pkg = _LIBC_PACKAGES[arch] if prefix else "libc6-dev"
        raise KernelBuildError(f"{cc} has no static libc.a: install the Debian package {pkg}")
    return ident


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


def _make_command(arch: str, makefile: Path, out: Path) -> list[str]:
    cmd = ["make", "-s", "-B", "-f", str(makefile), f"OUT={out}"]
    cc, strip = _tools(arch)
    if cc != "musl-gcc":  # command-line variables override the Makefile's CC := musl-gcc
        cmd += [f"CC={cc}", f"STRIP={strip}"]
    return cmd


def build_init(arch: str = "x86_64", *, force: bool = False) -> Path:
    """Build (or reuse) the static init for ``arch``; return the cached path."""
    out_dir = cache_dir() / "init" / f"{arch}-{init_cache_key(arch)}"
    target = out_dir / "init"
    if target.is_file() and not force:
        check_init(target, arch)
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".init.{os.getpid()}"
    makefile = kernels_dir() / "init" / "Makefile"
    proc = subprocess.run(
        _make_command(arch, makefile, tmp),
        capture_output=True,
        text=True,
        check=False,
        cwd=out_dir,
        env=c_env({"SOURCE_DATE_EPOCH": "0"}),
    )
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        err = " ".join(proc.stderr.strip().splitlines()[-3:])
        raise KernelBuildError(f"building the {arch} init from {makefile.parent} failed: {err}")
    check_init(tmp, arch)
    os.replace(tmp, target)
    return target
