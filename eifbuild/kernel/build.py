"""Reproducible kernel builds from ``kernels/<arch>/``, cached by content hash.

``kernel/<arch>-<key>/`` holds the image (``bzImage`` or arm64 ``Image``), its ``.config``
and ``build-info.json``; key = sha256(source tarball sha256, config fragment, patches,
toolchain pin hash, SOURCE_DATE_EPOCH, recipe version). Unpacking, patching and compiling all
run inside the pinned toolchain root (:mod:`eifbuild.kernel.toolroot`), never with the host's
tools: the work directory is ``/build``, the recipe ``/recipe``, the source tarball
``/sources`` there. aarch64 is cross-compiled with the root's ``gcc-aarch64-linux-gnu``, and
its ``Image`` header gets ``text_offset`` = 2 MiB (the Nitro loader refuses 0, which is what
Linux >= 5.8 writes).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from eifbuild._progress import progress
from eifbuild.elfcheck import ARM64_TEXT_OFFSET, check_kernel, set_arm64_text_offset
from eifbuild.errors import KernelBuildError
from eifbuild.kernel._aptfetch import SourcePin, extract_tarball, fetch_source_deb, load_pin
from eifbuild.kernel._common import (
    RECIPE_VERSION,
    Log,
    c_env,
    cache_dir,
    cache_key,
    kernels_dir,
    quiet,
    root_prefix,
    sha256_file,
)
from eifbuild.kernel.kconfig import kbuild_env, missing_options, parse_config
from eifbuild.kernel.toolpin import toolchain_key
from eifbuild.kernel.toolroot import Bind, enter_command, run_in_root, toolchain_root


def patches(arch: str) -> list[Path]:
    return sorted((kernels_dir() / arch / "patches").glob("*.patch"))


def kernel_toolchain_id(arch: str = "x86_64") -> dict[str, str]:
    """The toolchain part of the cache key: the pinned root's content hash (and prefix)."""
    return {"pin": "kernels/toolchain/bookworm.json", "key": toolchain_key(),
            "prefix": root_prefix(arch)}  # fmt: skip


def kernel_cache_key(arch: str = "x86_64") -> str:
    pin = load_pin(arch)
    d = kernels_dir() / arch
    parts: dict[str, object] = {
        "recipe": RECIPE_VERSION,
        "base": "tinyconfig",
        "source": [pin.package, pin.version, pin.tarball_sha256],
        "fragment": sha256_file(d / "enclave.config"),
        "patches": [[p.name, sha256_file(p)] for p in patches(arch)],
        "toolchain": kernel_toolchain_id(arch),
        "epoch": pin.source_date_epoch,
    }
    if arch == "aarch64":
        parts["text_offset"] = ARM64_TEXT_OFFSET
    return cache_key(parts)


OBJ = "/build/obj"  # paths inside the toolchain root
SRC = "/build/src"


def _make_base(pin: SourcePin, arch: str) -> list[str]:
    cmd = ["make", f"O={OBJ}", f"ARCH={pin.kernel_arch}"]
    if prefix := root_prefix(arch):
        cmd.append(f"CROSS_COMPILE={prefix}")
    return cmd


@dataclass(frozen=True)
class _Root:
    """The toolchain root and what a kernel build binds into it."""

    path: Path
    binds: tuple[Bind, ...]
    env: dict[str, str]

    def run(self, argv: list[str], log_fh: IO[str], what: str, cwd: str = SRC) -> None:
        run_in_root(self.path, argv, self.binds, cwd=cwd, env=self.env, log_fh=log_fh, what=what)

    def command(self, argv: list[str], cwd: str = SRC) -> list[str]:
        return enter_command(self.path, argv, self.binds, cwd, self.env)


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


def _unpack_source(root: _Root, tarball: Path, arch: str, work: Path, log_path: Path) -> None:
    for sub in ("src", "obj"):
        if (work / sub).exists():
            shutil.rmtree(work / sub)
        (work / sub).mkdir(parents=True)
    with log_path.open("a") as log_fh:
        root.run(["tar", "-xJf", f"/sources/{tarball.name}", "-C", SRC, "--strip-components=1",
                  "--no-same-owner"], log_fh, f"unpacking {tarball.name}", cwd="/build")  # fmt: skip
        for patch in patches(arch):
            root.run(["patch", "-p1", "--forward", "--batch", "-i",
                      f"/recipe/{arch}/patches/{patch.name}"], log_fh, f"applying {patch.name}")  # fmt: skip


def _configure(root: _Root, base: list[str], arch: str, work: Path, log_path: Path) -> None:
    fragment = kernels_dir() / arch / "enclave.config"
    with log_path.open("a") as log_fh:
        root.run([*base, "tinyconfig"], log_fh, "make tinyconfig")
        root.run(["scripts/kconfig/merge_config.sh", "-m", "-O", OBJ, f"{OBJ}/.config",
                  f"/recipe/{arch}/enclave.config"], log_fh, "merging the config fragment")  # fmt: skip
        root.run([*base, "olddefconfig"], log_fh, "make olddefconfig")
    want = parse_config(fragment.read_text().splitlines())
    have = parse_config((work / "obj" / ".config").read_text().splitlines())
    lost = missing_options(want, have)
    if lost:
        raise KernelBuildError(
            f"{fragment}: {len(lost)} option(s) did not survive olddefconfig: {'; '.join(lost)}"
        )


def build_kernel(arch: str = "x86_64", *, jobs: int | None = None, force: bool = False,
                 keep_tree: bool = False, log: Log = quiet) -> Path:  # fmt: skip
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


def _compile(
    pin: SourcePin, arch: str, work: Path, jobs: int | None, log: Log
) -> dict[str, object]:
    """Unpack, patch, configure and compile in ``work``; return the build-info record."""
    tarball = extract_tarball(pin, fetch_source_deb(pin, log))
    root = _Root(
        toolchain_root(log),
        (Bind(work, "/build", writable=True), Bind(kernels_dir(), "/recipe"),
         Bind(tarball.parent, "/sources")),
        kbuild_env(pin.source_date_epoch),
    )  # fmt: skip
    log_path = work / "build.log"
    log_path.write_text("")
    log(f"unpacking {tarball.name} and applying {len(patches(arch))} patch(es) in {work}")
    _unpack_source(root, tarball, arch, work, log_path)
    base = _make_base(pin, arch)
    _configure(root, base, arch, work, log_path)
    n = jobs or os.cpu_count() or 1
    log(f"compiling the {arch} kernel with make -j{n} in the toolchain root (log: {log_path})")
    start = time.monotonic()
    steps = _make_with_progress(
        root.command([*base, f"-j{n}", pin.image_name]), work, c_env(), log_path,
        _previous_steps(arch),
    )  # fmt: skip
    gcc = run_in_root(root.path, [f"{root_prefix(arch)}gcc", "--version"], ())
    return {
        "package": pin.package, "version": pin.version, "tarball_sha256": pin.tarball_sha256,
        "patches": [p.name for p in patches(arch)], "toolchain": kernel_toolchain_id(arch),
        "gcc": gcc.splitlines()[0] if gcc else "",
        "kbuild_env": kbuild_env(pin.source_date_epoch), "make_steps": steps, "jobs": n,
        "compile_seconds": round(time.monotonic() - start, 1),
    }  # fmt: skip


def _build_kernel_locked(
    pin: SourcePin, arch: str, out: Path, jobs: int | None, keep_tree: bool, log: Log
) -> Path:
    work = cache_dir() / "work" / out.name
    work.mkdir(parents=True, exist_ok=True)
    info = _compile(pin, arch, work, jobs, log)
    built = work / "obj" / pin.image
    if arch == "aarch64":
        info["text_offset_was"] = set_arm64_text_offset(built)
    check_kernel(built, arch)
    staging = out.with_name(f".{out.name}.{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    shutil.copyfile(built, staging / pin.image_name)
    shutil.copyfile(work / "obj" / ".config", staging / f"{pin.image_name}.config")
    (staging / "build-info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)
    if not keep_tree:
        shutil.rmtree(work, ignore_errors=True)
    return out
