"""Shared helpers of the kernel/init builds: locations, hashing, cache keys, toolchains."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from eifbuild._resources import resource_dir
from eifbuild.errors import KernelBuildError
from eifbuild.types import Arch

RECIPE_VERSION = "1"  # bump when the build steps change their output
ARCHES = ("x86_64", "aarch64")
CHUNK = 1 << 20

# Cross-compiler prefix per target architecture, used when the host is another architecture.
CROSS_PREFIX = {"x86_64": "x86_64-linux-gnu-", "aarch64": "aarch64-linux-gnu-"}
# Debian package that provides each tool (for "not found" messages).
_PACKAGES = {
    "gcc": "gcc",
    "ld": "binutils",
    "strip": "binutils",
    "make": "make",
    "musl-gcc": "musl-tools",
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
    "aarch64-linux-gnu-ld": "binutils-aarch64-linux-gnu",
    "aarch64-linux-gnu-strip": "binutils-aarch64-linux-gnu",
    "x86_64-linux-gnu-gcc": "gcc-x86-64-linux-gnu",
    "x86_64-linux-gnu-ld": "binutils-x86-64-linux-gnu",
    "x86_64-linux-gnu-strip": "binutils-x86-64-linux-gnu",
}

Log = Callable[[str], None]


def quiet(_msg: str) -> None:
    """A :data:`Log` that says nothing."""


# ---------------------------------------------------------------------------- locations


def kernels_dir() -> Path:
    """The ``kernels/`` recipe directory: ``$EIFBUILD_KERNELS_DIR``, checkout, or installed data."""
    return resource_dir("kernels", "init/init.c", KernelBuildError)


def cache_dir() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/eifbuild``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "eifbuild"


def check_arch(arch: str) -> None:
    if arch not in ARCHES:
        raise KernelBuildError(
            f"architecture {arch!r} is not supported by eifbuild's kernel recipe "
            f"(supported: {', '.join(ARCHES)})"
        )


# ---------------------------------------------------------------------------- hashing


def _digest_file(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    return _digest_file(path, "sha256")


def sha384_file(path: Path) -> str:
    return _digest_file(path, "sha384")


def cache_key(parts: dict[str, object]) -> str:
    """A short stable hash of a JSON-able description of a build's inputs."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


# ---------------------------------------------------------------------------- toolchains


def c_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for build tools: no locale, UTC."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    env.update({"LC_ALL": "C", "TZ": "UTC"})
    if extra:
        env.update(extra)
    return env


def _host_arch() -> str:
    arch = Arch.host()
    return arch.kernel if arch is not None else platform.machine()


def tool_prefix(arch: str) -> str:
    """``""`` for a native build, else the Debian cross-toolchain prefix for ``arch``."""
    return "" if _host_arch() == arch else CROSS_PREFIX[arch]


def require_tool(name: str) -> str:
    """Path of ``name``, or a one-line error naming the Debian package that provides it."""
    found = shutil.which(name)
    if found is None:
        pkg = _PACKAGES.get(name)
        hint = f": install the Debian package {pkg}" if pkg else ""
        raise KernelBuildError(f"{name} not found (needed to build the kernel/init){hint}")
    return found


def first_line(cmd: list[str]) -> str:
    """First line of a tool's ``--version`` output (its identity in cache keys)."""
    require_tool(cmd[0])
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=c_env())
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else ""
