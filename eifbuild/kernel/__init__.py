"""Reproducible builds of the enclave kernel and init from the recipes in ``kernels/``.

Everything is cached by content hash under ``${XDG_CACHE_HOME:-~/.cache}/eifbuild``:

* ``init/<arch>-<key>/init`` (:mod:`eifbuild.kernel.initbuild`);
* ``kernel/<arch>-<key>/`` image + config (:mod:`eifbuild.kernel.build`);
* ``blobs/<arch>-<key>/`` the blobs directory ``eifbuild build`` uses by default
  (:mod:`eifbuild.kernel.blobsdir`).

The kernel source is Debian's ``linux-source-6.12`` package, fetched through a private apt
configuration and checked against the pin in ``kernels/<arch>/source.json``
(:mod:`eifbuild.kernel._aptfetch`). Everything is compiled inside the pinned toolchain root
(``toolchain/root-<key>``: :mod:`eifbuild.kernel.toolpin`, :mod:`eifbuild.kernel.toolroot`)
and held to ``kernels/<arch>/expected.json`` (:mod:`eifbuild.kernel.expected`,
:mod:`eifbuild.kernel.audit`).
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
from eifbuild.kernel.audit import KernelReport, build_checked, verify_from_scratch
from eifbuild.kernel.blobsdir import build_blobs, default_blobs_dir
from eifbuild.kernel.build import build_kernel, kernel_cache_key, kernel_toolchain_id
from eifbuild.kernel.expected import Outcome, check_expected, default_pcr1, record_expected
from eifbuild.kernel.initbuild import build_init, init_cache_key, musl_toolchain_id
from eifbuild.kernel.kconfig import kbuild_env, kbuild_timestamp, missing_options, parse_config
from eifbuild.kernel.toolpin import ToolchainPin, load_toolchain_pin, toolchain_key
from eifbuild.kernel.toolroot import toolchain_root

__all__ = [
    "ARCHES",
    "RECIPE_VERSION",
    "KernelReport",
    "Outcome",
    "SourcePin",
    "ToolchainPin",
    "build_blobs",
    "build_checked",
    "build_init",
    "build_kernel",
    "cache_dir",
    "check_expected",
    "default_blobs_dir",
    "default_pcr1",
    "extract_tarball",
    "fetch_source_deb",
    "init_cache_key",
    "kbuild_env",
    "kbuild_timestamp",
    "kernel_cache_key",
    "kernel_toolchain_id",
    "kernels_dir",
    "load_pin",
    "load_toolchain_pin",
    "missing_options",
    "musl_toolchain_id",
    "parse_config",
    "record_expected",
    "sha256_file",
    "sha384_file",
    "toolchain_key",
    "toolchain_root",
    "verify_from_scratch",
]
