"""Shared helpers of the kernel/init builds: locations, hashing, cache keys, toolchains."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path

from eifbuild._resources import resource_dir
from eifbuild.errors import KernelBuildError

# Bump when the build steps change their output. 2: compiled in the pinned toolchain root.
RECIPE_VERSION = "2"
ARCHES = ("x86_64", "aarch64")
CHUNK = 1 << 20

# Cross-compiler prefix per target architecture, used when the host is another architecture.
CROSS_PREFIX = {"x86_64": "x86_64-linux-gnu-", "aarch64": "aarch64-linux-gnu-"}
Log = Callable[[str], None]


def quiet(_msg: str) -> None:
    """A :data:`Log` that says nothing."""


# ---------------------------------------------------------------------------- locations


def kernels_dir() -> Path:
    """The ``kernels/`` recipe directory: ``$EIFBUILD_KERNELS_DIR``, checkout, or installed data."""
    return resource_dir("kernels", "init/init.c", KernelBuildError)


# Set by `eifbuild kernel build --verify`: build everything in a scratch directory.
_SCRATCH: ContextVar[Path | None] = ContextVar("eifbuild_kernel_scratch", default=None)


def download_dir() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/eifbuild``: downloads (sha256-checked at every use)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "eifbuild"


def cache_dir() -> Path:
    """Where build results go: :func:`download_dir`, or the scratch directory of a verify."""
    return _SCRATCH.get() or download_dir()


@contextlib.contextmanager
def scratch_cache(path: Path) -> Iterator[None]:
    """Within the block, build roots, kernels, inits and blobs go to ``path`` (not the cache)."""
    token = _SCRATCH.set(path)
    try:
        yield
    finally:
        _SCRATCH.reset(token)


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


def root_prefix(arch: str) -> str:
    """Tool prefix for ``arch`` inside the (amd64) toolchain root: native or Debian cross."""
    return "" if arch == "x86_64" else CROSS_PREFIX[arch]
