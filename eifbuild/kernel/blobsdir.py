"""The blobs directory ``eifbuild build`` uses by default: kernel + config + cmdline + init.

``blobs/<arch>-<key>/`` under the eifbuild cache, with key = sha256(kernel key, init key,
cmdline). No ``nsm.ko``: eifbuild's kernels have NSM built in.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from eifbuild.errors import BlobsError, KernelBuildError
from eifbuild.kernel._aptfetch import load_pin
from eifbuild.kernel._common import Log, cache_dir, cache_key, kernels_dir, quiet, sha256_file
from eifbuild.kernel.build import build_kernel, kernel_cache_key
from eifbuild.kernel.initbuild import build_init, init_cache_key


def _blobs_path(arch: str) -> Path:
    key = cache_key({"kernel": kernel_cache_key(arch), "init": init_cache_key(arch),
                     "cmdline": sha256_file(kernels_dir() / arch / "cmdline")})  # fmt: skip
    return cache_dir() / "blobs" / f"{arch}-{key}"


def build_blobs(arch: str = "x86_64", *, jobs: int | None = None, force: bool = False,
                log: Log = quiet) -> Path:  # fmt: skip
    """Kernel + init + cmdline as a nitro-cli style blobs directory; cached."""
    kdir = build_kernel(arch, jobs=jobs, force=force, log=log)
    init = build_init(arch, force=force, log=log)
    dest = _blobs_path(arch)
    pin = load_pin(arch)
    if dest.is_dir() and not force:
        return dest
    staging = dest.with_name(f".{dest.name}.{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name in (pin.image_name, f"{pin.image_name}.config"):
        shutil.copyfile(kdir / name, staging / name)
    shutil.copyfile(kernels_dir() / arch / "cmdline", staging / "cmdline")
    shutil.copyfile(init, staging / "init")
    (staging / "init").chmod(0o755)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(staging, dest)
    return dest


def default_blobs_dir(arch: str = "x86_64") -> Path:
    """The cached blobs directory for the current recipes and toolchain.

    Raises :class:`BlobsError` telling the user to run ``eifbuild kernel build`` when it is
    not there (building takes minutes, so it never happens implicitly).
    """
    try:
        path = _blobs_path(arch)
    except KernelBuildError as exc:
        raise BlobsError(f"no default {arch} blobs: {exc}") from None
    if not (path / "init").is_file():
        raise BlobsError(
            f"no eifbuild kernel blobs for {arch} in {path.parent} (for these recipes and this "
            f"toolchain): run `eifbuild kernel build --arch {arch}` first, or pass --blobs DIR"
        )
    return path
