"""Reproducible builds of the enclave kernel and init from the recipes in ``kernels/``.

Everything is cached by content hash under ``${XDG_CACHE_HOME:-~/.cache}/eifbuild``:

* ``init/<arch>-<key>/init`` (:mod:`eifbuild.kernel.initbuild`);
* ``kernel/<arch>-<key>/`` image + config (:mod:`eifbuild.kernel.build`);
* ``blobs/<arch>-<key>/`` the blobs directory ``eifbuild build`` uses by default
  (:mod:`eifbuild.kernel.blobsdir`).

The kernel source is Debian's ``linux-source-6.12`` package, fetched through a private apt
configuration and checked against the pin in ``kernels/<arch>/source.json``
(:mod:`eifbuild.kernel._aptfetch`).
"""

from eifbuild.kernel._aptfetch import SourcePin, extract_tarball, fetch_source_deb, load_pin
from eifbuild.kernel._common import (
    ARCHES,
    RECIPE_VERSION,
    cache_dir,
    kernels_dir,
    sha256_file,
    sha384_file,
)
from eifbuild.kernel.blobsdir import build_blobs, default_blobs_dir
from eifbuild.kernel.build import build_kernel, kernel_cache_key, kernel_toolchain_id
from eifbuild.kernel.initbuild import build_init, init_cache_key, musl_toolchain_id
from eifbuild.kernel.kconfig import kbuild_env, kbuild_timestamp, missing_options, parse_config

__all__ = [
    "ARCHES",
    "RECIPE_VERSION",
    "SourcePin",
    "build_blobs",
    "build_init",
    "build_kernel",
    "cache_dir",
    "default_blobs_dir",
    "extract_tarball",
    "fetch_source_deb",
    "init_cache_key",
    "kbuild_env",
    "kbuild_timestamp",
    "kernel_cache_key",
    "kernel_toolchain_id",
    "kernels_dir",
    "load_pin",
    "missing_options",
    "musl_toolchain_id",
    "parse_config",
    "sha256_file",
    "sha384_file",
]
