"""Reproducible builds of the enclave kernel and init from the recipes in ``kernels/``.

Everything is cached by content hash under ``${XDG_CACHE_HOME:-~/.cache}/eifbuild``:

* ``init/<key>/init`` with key = sha256(init.c, Makefile, toolchain identity);
* ``kernel/<arch>-<key>/`` (image + config) with key = sha256(source tarball sha256, config
  fragment, patches, toolchain identity, SOURCE_DATE_EPOCH, recipe version);
* ``blobs/<arch>-<key>/`` = the blobs directory ``eifbuild build`` uses by default
  (``bzImage``, ``bzImage.config``, ``cmdline``, ``init``; no ``nsm.ko``: NSM is built in).

The kernel source is Debian's ``linux-source-6.12`` package, fetched through a private apt
configuration (own sources.list, state and cache under the eifbuild cache; ``/etc/apt`` is
never touched) and checked against the pin in ``kernels/<arch>/source.json``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from eifbuild._epoch import source_date_epoch
from eifbuild._progress import progress
from eifbuild.elfcheck import check_init, check_kernel
from eifbuild.errors import BlobsError, KernelBuildError

RECIPE_VERSION = "1"  # bump when the build steps below change their output
ARCHES = ("x86_64",)
_CHUNK = 1 << 20

Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


# ---------------------------------------------------------------------------- locations


def kernels_dir() -> Path:
    """The ``kernels/`` recipe directory (``$EIFBUILD_KERNELS_DIR`` overrides)."""
    env = os.environ.get("EIFBUILD_KERNELS_DIR")
    d = Path(env) if env else Path(__file__).resolve().parent.parent / "kernels"
    if not (d / "init" / "init.c").is_file():
        raise KernelBuildError(
            f"kernel recipes not found in {d}: set EIFBUILD_KERNELS_DIR to the kernels/ directory"
        )
    return d


def cache_dir() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/eifbuild``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "eifbuild"


def _check_arch(arch: str) -> None:
    if arch not in ARCHES:
        raise KernelBuildError(
            f"architecture {arch!r} is not supported by eifbuild's kernel recipe "
            f"(supported: {', '.join(ARCHES)})"
        )


# ---------------------------------------------------------------------------- hashing


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha384_file(path: Path) -> str:
    h = hashlib.sha384()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _key(parts: dict[str, object]) -> str:
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=_c_env())
    except FileNotFoundError:
        raise KernelBuildError(
            f"{cmd[0]} not found: it is needed to build the kernel/init"
        ) from None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else ""


def _c_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    env.update({"LC_ALL": "C", "TZ": "UTC"})
    if extra:
        env.update(extra)
    return env


# ---------------------------------------------------------------------------- init


def musl_toolchain_id() -> dict[str, str]:
    """What determines the init's bytes besides its source: gcc, binutils, musl's libc.a."""
    if shutil.which("musl-gcc") is None:
        raise KernelBuildError("musl-gcc not found: install the Debian package musl-tools")
    libc = subprocess.run(
        ["musl-gcc", "-print-file-name=libc.a"], capture_output=True, text=True, check=False
    ).stdout.strip()
    libc_hash = sha256_file(Path(libc)) if libc and Path(libc).is_file() else "missing"
    return {
        "gcc": _first_line(["gcc", "--version"]),
        "ld": _first_line(["ld", "--version"]),
        "strip": _first_line(["strip", "--version"]),
        "musl_libc_a": libc_hash,
    }


def init_cache_key() -> str:
    src = kernels_dir() / "init"
    return _key(
        {
            "recipe": RECIPE_VERSION,
            "init.c": sha256_file(src / "init.c"),
            "Makefile": sha256_file(src / "Makefile"),
            "toolchain": musl_toolchain_id(),
        }
    )


def build_init(arch: str = "x86_64", *, force: bool = False) -> Path:
    """Build (or reuse) the static musl init; return the cached path."""
    _check_arch(arch)
    out_dir = cache_dir() / "init" / f"{arch}-{init_cache_key()}"
    target = out_dir / "init"
    if target.is_file() and not force:
        check_init(target, arch)
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".init.{os.getpid()}"
    makefile = kernels_dir() / "init" / "Makefile"
    proc = subprocess.run(
        ["make", "-s", "-B", "-f", str(makefile), f"OUT={tmp}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=out_dir,
        env=_c_env({"SOURCE_DATE_EPOCH": "0"}),
    )
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        err = " ".join(proc.stderr.strip().splitlines()[-3:])
        raise KernelBuildError(f"building init from {makefile.parent} failed: {err}")
    check_init(tmp, arch)
    os.replace(tmp, target)
    return target


# ---------------------------------------------------------------------------- source pin


@dataclass(frozen=True)
class SourcePin:
    """``kernels/<arch>/source.json``: which Debian source package, checked how."""

    package: str
    version: str
    apt_source: str
    deb_sha256: str
    tarball: str
    tarball_sha256: str
    kernel_arch: str
    image: str
    image_name: str

    @property
    def deb_name(self) -> str:
        return f"{self.package}_{self.version.replace(':', '%3a')}_all.deb"


def load_pin(arch: str = "x86_64") -> SourcePin:
    _check_arch(arch)
    path = kernels_dir() / arch / "source.json"
    try:
        raw = json.loads(path.read_text())
        return SourcePin(**{f: str(raw[f]) for f in SourcePin.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KernelBuildError(f"kernel source pin {path} is unreadable: {exc}") from None


def _apt_options(root: Path) -> list[str]:
    return [
        "-o", f"Dir::Etc::sourcelist={root / 'sources.list'}",
        "-o", f"Dir::Etc::sourceparts={root / 'sources.list.d'}",
        "-o", f"Dir::Etc::preferencesparts={root / 'preferences.d'}",
        "-o", f"Dir::State={root / 'state'}",
        "-o", f"Dir::Cache={root / 'cache'}",
        "-o", "Dir::State::status=/dev/null",
        "-o", "APT::Sandbox::User=root" if os.geteuid() == 0 else "Debug::NoLocking=1",
        "-o", "Acquire::Languages=none",
    ]  # fmt: skip


def _apt(root: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    if shutil.which("apt-get") is None:
        raise KernelBuildError(
            "apt-get not found: the kernel source is fetched from Debian with apt"
        )
    return subprocess.run(
        ["apt-get", "-q", *_apt_options(root), *args],
        capture_output=True, text=True, check=False, cwd=cwd, env=_c_env(),
    )  # fmt: skip


def fetch_source_deb(pin: SourcePin, log: Log = _quiet) -> Path:
    """Download the pinned ``.deb`` with a private apt configuration; verify its sha256."""
    dl = cache_dir() / "sources"
    deb = dl / pin.deb_name
    if deb.is_file() and sha256_file(deb) == pin.deb_sha256:
        return deb
    root = cache_dir() / "apt"
    for sub in ("sources.list.d", "preferences.d", "state/lists/partial", "cache/archives/partial"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "sources.list").write_text(pin.apt_source + "\n")
    dl.mkdir(parents=True, exist_ok=True)
    log(f"fetching {pin.package} {pin.version} with apt ({pin.apt_source.split(']')[-1].strip()})")
    upd = _apt(root, "update")
    if upd.returncode != 0:
        tail = " ".join(upd.stderr.strip().splitlines()[-2:])
        raise KernelBuildError(f"apt-get update for {pin.package} failed: {tail}")
    got = _apt(root, "download", f"{pin.package}={pin.version}", cwd=dl)
    if got.returncode != 0 or not deb.is_file():
        raise KernelBuildError(
            f"{pin.package} version {pin.version} is not available from "
            f"'{pin.apt_source}' (Debian removes old versions): bump the pin in "
            f"kernels/<arch>/source.json (version, deb_sha256, tarball_sha256; see kernels/README.md)"
        )
    actual = sha256_file(deb)
    if actual != pin.deb_sha256:
        deb.unlink()
        raise KernelBuildError(
            f"{pin.deb_name}: sha256 {actual} does not match the pin {pin.deb_sha256}"
        )
    return deb


def extract_tarball(pin: SourcePin, deb: Path) -> Path:
    """Stream the source tarball out of the ``.deb`` (no dpkg state); verify its sha256."""
    out = cache_dir() / "sources" / f"{pin.package}_{pin.version}.tar.xz"
    if out.is_file() and sha256_file(out) == pin.tarball_sha256:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    h = hashlib.sha256()
    found = False
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if member.name.lstrip("./") != pin.tarball or not member.isfile():
                    continue
                src = tar.extractfile(member)
                assert src is not None
                with tmp.open("wb") as fh:
                    while chunk := src.read(_CHUNK):
                        h.update(chunk)
                        fh.write(chunk)
                found = True
                break
    except tarfile.TarError as exc:
        tmp.unlink(missing_ok=True)
        raise KernelBuildError(f"{deb}: unreadable package data ({exc})") from None
    finally:
        proc.stdout.close()
        proc.wait()
    if not found:
        raise KernelBuildError(f"{deb} does not contain {pin.tarball}")
    if h.hexdigest() != pin.tarball_sha256:
        tmp.unlink(missing_ok=True)
        raise KernelBuildError(
            f"{pin.tarball} in {deb.name}: sha256 {h.hexdigest()} does not match the pin "
            f"{pin.tarball_sha256}"
        )
    os.replace(tmp, out)
    return out


# ---------------------------------------------------------------------------- config fragment

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse_config(lines: Iterable[str]) -> dict[str, str | None]:
    """Kconfig lines -> {option: value}, ``None`` for ``# CONFIG_X is not set``."""
    opts: dict[str, str | None] = {}
    for raw in lines:
        line = raw.strip()
        if m := _SET.match(line):
            opts[m.group(1)] = m.group(2)
        elif m := _UNSET.match(line):
            opts[m.group(1)] = None
    return opts


def missing_options(fragment: dict[str, str | None], config: dict[str, str | None]) -> list[str]:
    """Fragment lines that did not survive into the final ``.config``, as readable strings."""
    lost = []
    for opt, want in sorted(fragment.items()):
        have = config.get(opt)
        if want in (None, "n"):
            if have not in (None, "n"):
                lost.append(f"{opt} is not set (got {have})")
        elif have != want:
            lost.append(f"{opt}={want} (got {'not set' if have is None else have})")
    return lost


def kbuild_timestamp(epoch: int) -> str:
    """``KBUILD_BUILD_TIMESTAMP`` in a form ``date -d`` parses (not a bare number)."""
    return _dt.datetime.fromtimestamp(epoch, tz=_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def kbuild_env(epoch: int) -> dict[str, str]:
    return {
        "KBUILD_BUILD_TIMESTAMP": kbuild_timestamp(epoch),
        "KBUILD_BUILD_USER": "eifbuild",
        "KBUILD_BUILD_HOST": "eifbuild",
        "KBUILD_BUILD_VERSION": "1",
        "LOCALVERSION": "",
        "SOURCE_DATE_EPOCH": str(epoch),
    }


# ---------------------------------------------------------------------------- kernel


def _patches(arch: str) -> list[Path]:
    return sorted((kernels_dir() / arch / "patches").glob("*.patch"))


def kernel_toolchain_id() -> dict[str, str]:
    return {
        "gcc": _first_line(["gcc", "--version"]),
        "ld": _first_line(["ld", "--version"]),
        "make": _first_line(["make", "--version"]),
    }


def _epoch() -> int:
    epoch = source_date_epoch()
    return 0 if epoch is None else epoch


def kernel_cache_key(arch: str = "x86_64") -> str:
    pin = load_pin(arch)
    d = kernels_dir() / arch
    return _key(
        {
            "recipe": RECIPE_VERSION,
            "base": "tinyconfig",
            "source": [pin.package, pin.version, pin.tarball_sha256],
            "fragment": sha256_file(d / "enclave.config"),
            "patches": [[p.name, sha256_file(p)] for p in _patches(arch)],
            "toolchain": kernel_toolchain_id(),
            "epoch": _epoch(),
        }
    )


def _run_logged(cmd: list[str], cwd: Path, env: dict[str, str], log_fh: IO[str], what: str) -> None:
    log_fh.flush()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=log_fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise KernelBuildError(f"{what} failed (exit {proc.returncode}); see {log_fh.name}")


def _make_with_progress(
    cmd: list[str], cwd: Path, env: dict[str, str], log_path: Path, expected: int | None
) -> int:
    """Run the long ``make``; one progress tick per build step; full log to a file.

    Returns the number of steps, which the next build uses as its progress total.
    """
    steps = 0
    with (
        log_path.open("a", buffering=1) as log_fh,
        progress(total=expected, desc="kernel", unit="step") as bar,
    ):
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log_fh.write(line)
            if line.lstrip().startswith(("CC ", "AS ", "LD ")):
                steps += 1
                bar.update(1)
        rc = proc.wait()
    if rc != 0:
        raise KernelBuildError(f"kernel build failed (make exit {rc}); see {log_path}")
    return steps


def _previous_steps(arch: str) -> int | None:
    """Build steps of the most recent earlier build of ``arch`` (a progress estimate)."""
    infos = sorted((cache_dir() / "kernel").glob(f"{arch}-*/build-info.json"))
    for info in infos:
        try:
            return int(json.loads(info.read_text())["make_steps"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def _unpack_source(tarball: Path, patches: list[Path], work: Path, log_path: Path) -> Path:
    src = work / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    with log_path.open("a") as log_fh:
        _run_logged(
            ["tar", "-xJf", str(tarball), "-C", str(src), "--strip-components=1", "--no-same-owner"],
            work, _c_env(), log_fh, f"unpacking {tarball.name}",
        )  # fmt: skip
        for patch in patches:
            _run_logged(
                ["patch", "-p1", "--forward", "--batch", "-i", str(patch)],
                src, _c_env(), log_fh, f"applying {patch.name}",
            )  # fmt: skip
    return src


def _configure(
    src: Path, obj: Path, fragment: Path, pin: SourcePin, env: dict[str, str], log_path: Path
) -> None:
    base = ["make", f"O={obj}", f"ARCH={pin.kernel_arch}"]
    with log_path.open("a") as log_fh:
        _run_logged([*base, "tinyconfig"], src, env, log_fh, "make tinyconfig")
        _run_logged(
            ["scripts/kconfig/merge_config.sh", "-m", "-O", str(obj), str(obj / ".config"), str(fragment)],
            src, env, log_fh, "merging the config fragment",
        )  # fmt: skip
        _run_logged([*base, "olddefconfig"], src, env, log_fh, "make olddefconfig")
    want = parse_config(fragment.read_text().splitlines())
    have = parse_config((obj / ".config").read_text().splitlines())
    lost = missing_options(want, have)
    if lost:
        raise KernelBuildError(
            f"{fragment}: {len(lost)} option(s) did not survive olddefconfig: {'; '.join(lost)}"
        )


def build_kernel(arch: str = "x86_64", *, jobs: int | None = None, force: bool = False,
                 keep_tree: bool = False, log: Log = _quiet) -> Path:  # fmt: skip
    """Build (or reuse) the kernel; return the cache directory holding image + config."""
    pin = load_pin(arch)
    out = cache_dir() / "kernel" / f"{arch}-{kernel_cache_key(arch)}"
    image = out / pin.image_name
    if image.is_file() and (out / f"{pin.image_name}.config").is_file() and not force:
        check_kernel(image, arch)
        return out
    with _exclusive(cache_dir() / "kernel" / f".{out.name}.lock", log):
        if image.is_file() and not force:  # another process built it while we waited
            return out
        return _build_kernel_locked(pin, arch, out, jobs, keep_tree, log)


@contextlib.contextmanager
def _exclusive(lock: Path, log: Log) -> Iterator[None]:
    """One kernel build per cache entry at a time (the work tree is shared)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another eifbuild is building this kernel; waiting for {lock}")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _build_kernel_locked(
    pin: SourcePin, arch: str, out: Path, jobs: int | None, keep_tree: bool, log: Log
) -> Path:
    deb = fetch_source_deb(pin, log)
    tarball = extract_tarball(pin, deb)
    work = cache_dir() / "work" / out.name
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "build.log"
    log_path.write_text("")
    env = _c_env(kbuild_env(_epoch()))
    log(f"unpacking {tarball.name} and applying {len(_patches(arch))} patch(es) in {work}")
    src = _unpack_source(tarball, _patches(arch), work, log_path)
    obj = work / "obj"
    if obj.exists():
        shutil.rmtree(obj)
    obj.mkdir()
    _configure(src, obj, kernels_dir() / arch / "enclave.config", pin, env, log_path)
    n = jobs or os.cpu_count() or 1
    log(f"compiling the kernel with make -j{n} (log: {log_path})")
    start = time.monotonic()
    steps = _make_with_progress(
        ["make", f"O={obj}", f"ARCH={pin.kernel_arch}", f"-j{n}", pin.image_name],
        src, env, log_path, _previous_steps(arch),
    )  # fmt: skip
    info = {
        "package": pin.package, "version": pin.version, "tarball_sha256": pin.tarball_sha256,
        "patches": [p.name for p in _patches(arch)], "toolchain": kernel_toolchain_id(),
        "kbuild_env": kbuild_env(_epoch()), "make_steps": steps, "jobs": n,
        "compile_seconds": round(time.monotonic() - start, 1),
    }  # fmt: skip
    built = obj / pin.image
    check_kernel(built, arch)
    staging = out.with_name(f".{out.name}.{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    shutil.copyfile(built, staging / pin.image_name)
    shutil.copyfile(obj / ".config", staging / f"{pin.image_name}.config")
    (staging / "build-info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)
    if not keep_tree:
        shutil.rmtree(work, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------- blobs


def _blobs_path(arch: str) -> Path:
    key = _key({"kernel": kernel_cache_key(arch), "init": init_cache_key(),
                "cmdline": sha256_file(kernels_dir() / arch / "cmdline")})  # fmt: skip
    return cache_dir() / "blobs" / f"{arch}-{key}"


def build_blobs(arch: str = "x86_64", *, jobs: int | None = None, force: bool = False,
                log: Log = _quiet) -> Path:  # fmt: skip
    """Kernel + init + cmdline as a nitro-cli style blobs directory; cached."""
    kdir = build_kernel(arch, jobs=jobs, force=force, log=log)
    init = build_init(arch, force=force)
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
