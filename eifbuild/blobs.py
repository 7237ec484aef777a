"""Kernel, cmdline, init and nsm.ko discovery, laid out like nitro-cli's blobs directory.

Order of precedence for the directory: ``--blobs DIR``, else ``$NITRO_CLI_BLOBS``, else
eifbuild's own kernel and init (``eifbuild.kernel.default_blobs_dir(arch)``). Individual files
can be overridden (``--kernel``, ``--kernel-config``, ``--cmdline``, ``--init``, ``--nsm``).

File names (docs/spec/ramdisk-layout.md §2, §11): ``bzImage`` (x86_64) or ``Image``
(aarch64), ``<kernel>.config``, ``cmdline``, ``init``, ``nsm.ko``. nitro-cli chooses the kernel
by the *host* architecture; eifbuild chooses it by the *image* architecture, so a build for the
other architecture needs that architecture's blobs either way. A missing ``nsm.ko`` means the
kernel has NSM built in: the bootstrap ramdisk then holds only ``dev`` and ``init``.

Before use, every blob is checked (:mod:`eifbuild.elfcheck`): the kernel must be a bzImage /
arm64 ``Image``, the init a static ELF executable for the architecture, and each module
(``nsm.ko`` or the ``modules_load_order`` list) must carry the kernel's release in its vermagic.
A bad blob is a :class:`BlobsError` at build time, not an enclave that fails to boot.
"""

from __future__ import annotations

import importlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from eifbuild.elfcheck import check_init, check_kernel, check_module, kernel_release
from eifbuild.errors import BlobsError
from eifbuild.limits import DEFAULT_LIMITS

KERNEL_NAMES = {"x86_64": "bzImage", "aarch64": "Image"}
ARCH_ALIASES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}

# Rust's char::is_whitespace (Unicode White_Space), which str::trim() strips at both ends.
_RUST_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def trim_cmdline(text: str) -> str:
    """nitro-cli's ``trim()`` of the cmdline file (Rust ``str::trim``)."""
    return text.strip(_RUST_WHITESPACE)


def canonical_arch(arch: str) -> str:
    """``amd64``/``arm64`` (OCI) or ``x86_64``/``aarch64`` -> ``x86_64``/``aarch64``."""
    try:
        return ARCH_ALIASES[arch]
    except KeyError:
        raise BlobsError(f"architecture {arch!r} is not supported (amd64 or arm64)") from None


@dataclass(frozen=True)
class Blobs:
    """Resolved boot inputs for one architecture."""

    arch: str  # x86_64 | aarch64
    kernel: Path
    kernel_config: Path
    cmdline: str  # trimmed, as measured
    init: Path
    nsm: Path | None
    source: str  # where the directory came from: "--blobs", "NITRO_CLI_BLOBS", "eifbuild"
    modules: tuple[Path, ...] = ()  # from <blobs>/modules_load_order, in load order


def stat_regular(path: Path, what: str) -> os.stat_result:
    """``stat`` of a blob that must be a regular file (symlinks followed), else BlobsError."""
    try:
        st = path.stat()
    except OSError as exc:
        raise BlobsError(f"{path}: {what} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise BlobsError(f"{path}: {what} is not a regular file")
    return st


def _regular_file(path: Path, what: str) -> Path:
    stat_regular(path, what)
    return path


def read_cmdline_file(path: Path) -> str:
    """Read and trim a cmdline file (UTF-8, bounded)."""
    _regular_file(path, "kernel command line")
    with open(path, "rb") as fh:
        raw = fh.read(DEFAULT_LIMITS.max_cmdline_file_bytes + 1)
    if len(raw) > DEFAULT_LIMITS.max_cmdline_file_bytes:
        raise BlobsError(
            f"{path}: kernel command line is longer than {DEFAULT_LIMITS.max_cmdline_file_bytes} bytes"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BlobsError(f"{path}: kernel command line is not UTF-8") from None
    return check_cmdline(trim_cmdline(text), str(path))


def check_cmdline(text: str, name: str) -> str:
    if "\0" in text:
        raise BlobsError(f"{name}: kernel command line contains a NUL byte")
    return text


def _default_dir(arch: str) -> tuple[Path, str]:
    env = os.environ.get("NITRO_CLI_BLOBS", "")
    if env:
        return Path(env), "NITRO_CLI_BLOBS"
    try:
        kernel = importlib.import_module("eifbuild.kernel")
    except ImportError:
        raise BlobsError(
            "no blobs directory: pass --blobs DIR or set NITRO_CLI_BLOBS "
            "(eifbuild's own kernel is not available in this installation)"
        ) from None
    return Path(str(kernel.default_blobs_dir(arch))), "eifbuild"


def resolve_blobs(
    arch: str,
    *,
    blobs_dir: str | os.PathLike[str] | None = None,
    kernel: str | os.PathLike[str] | None = None,
    kernel_config: str | os.PathLike[str] | None = None,
    cmdline: str | None = None,
    init: str | os.PathLike[str] | None = None,
    nsm: str | os.PathLike[str] | None = None,
    no_nsm: bool = False,
) -> Blobs:
    """Find every boot input; explicit arguments win over the directory's files."""
    arch = canonical_arch(arch)
    need_dir = (
        None in (kernel, kernel_config, init) or cmdline is None or (nsm is None and not no_nsm)
    )
    if blobs_dir is not None:
        base, source = Path(blobs_dir), "--blobs"
    elif need_dir:
        base, source = _default_dir(arch)
    else:
        base, source = Path("."), "explicit"
    if need_dir and not base.is_dir():
        raise BlobsError(f"{base}: blobs directory does not exist ({source})")
    kname = KERNEL_NAMES[arch]
    kpath = _regular_file(Path(kernel) if kernel else base / kname, "kernel")
    cfg = (
        Path(kernel_config)
        if kernel_config
        else (base / f"{kname}.config" if not kernel else Path(f"{kpath}.config"))
    )
    try:
        _regular_file(cfg, "kernel config")
    except BlobsError as exc:
        if kernel and not kernel_config:  # looked for <kernel>.config next to --kernel
            raise BlobsError(f"{exc}; pass --kernel-config FILE with --kernel") from None
        raise
    if cmdline is not None:
        cmd = check_cmdline(trim_cmdline(cmdline), "--cmdline")
    else:
        cmd = read_cmdline_file(base / "cmdline")
    init_path = _regular_file(Path(init) if init else base / "init", "init")
    nsm_path: Path | None = None
    if nsm is not None:
        nsm_path = _regular_file(Path(nsm), "nsm.ko")
    elif not no_nsm and (base / "nsm.ko").exists():
        nsm_path = _regular_file(base / "nsm.ko", "nsm.ko")
    modules = read_modules(base) if need_dir or blobs_dir is not None else ()
    blobs = Blobs(arch, kpath, cfg, cmd, init_path, nsm_path, source, modules)
    check_blobs(blobs)
    return blobs


def check_blobs(blobs: Blobs) -> None:
    """Refuse a kernel, init or module that cannot work together in the enclave."""
    check_kernel(blobs.kernel, blobs.arch)
    check_init(blobs.init, blobs.arch)
    # The bootstrap ramdisk carries the module list when there is one, else nsm.ko.
    kos = blobs.modules or (() if blobs.nsm is None else (blobs.nsm,))
    if kos:
        release = kernel_release(blobs.kernel, blobs.arch)
        for ko in kos:
            check_module(ko, release, blobs.arch)


MODULES_FILE = "modules_load_order"
MAX_MODULES = 256


def read_modules(base: Path) -> tuple[Path, ...]:
    """``<blobs>/modules_load_order``: one ``.ko`` file name (in ``base``) per line, if present.

    Used for kernels that need modules (e.g. a distribution kernel): the bootstrap ramdisk
    then carries these files and the list instead of a lone ``nsm.ko``.
    """
    listing = base / MODULES_FILE
    if not listing.exists():
        return ()
    _regular_file(listing, "module list")
    with open(listing, "rb") as fh:
        raw = fh.read(MAX_MODULES * 256 + 1)
    try:
        names = [ln.strip() for ln in raw.decode("utf-8").splitlines() if ln.strip()]
    except UnicodeDecodeError:
        raise BlobsError(f"{listing}: not UTF-8") from None
    if len(names) > MAX_MODULES:
        raise BlobsError(f"{listing}: more than {MAX_MODULES} modules")
    for n in names:
        if "/" in n or n.startswith(".") or not n.endswith(".ko"):
            raise BlobsError(f"{listing}: {n!r} is not a .ko file name in the blobs directory")
    return tuple(_regular_file(base / n, "kernel module") for n in names)
