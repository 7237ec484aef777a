"""Reproducible kernel builds from ``kernels/<arch>/``, cached by content hash.

``kernel/<arch>-<key>/`` holds the image (``bzImage`` or arm64 ``Image``), its ``.config``
and ``build-info.json``; key = sha256(source tarball sha256, config fragment, patches,
toolchain identity, SOURCE_DATE_EPOCH, recipe version). aarch64 is cross-compiled with
Debian's ``gcc-aarch64-linux-gnu`` on an x86_64 host, and its ``Image`` header gets
``text_offset`` = 2 MiB (the Nitro loader refuses 0, which is what Linux >= 5.8 writes).
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
    first_line,
    kernels_dir,
    quiet,
    sha256_file,
    tool_prefix,
)
from eifbuild.kernel.kconfig import kbuild_env, missing_options, parse_config


def patches(arch: str) -> list[Path]:
    return sorted((kernels_dir() / arch / "patches").glob("*.patch"))


def kernel_toolchain_id(arch: str = "x86_64") -> dict[str, str]:
    prefix = tool_prefix(arch)
    return {
        "gcc": first_line([f"{prefix}gcc", "--version"]),
        "ld": first_line([f"{prefix}ld", "--version"]),
        "make": first_line(["make", "--version"]),
    }


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


def _make_base(pin: SourcePin, arch: str, obj: Path) -> list[str]:
    cmd = ["make", f"O={obj}", f"ARCH={pin.kernel_arch}"]
    if prefix := tool_prefix(arch):
        cmd.append(f"CROSS_COMPILE={prefix}")
    return cmd


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


def _unpack_source(tarball: Path, arch: str, work: Path, log_path: Path) -> Path:
    src = work / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    with log_path.open("a") as log_fh:
        _run_logged(
            ["tar", "-xJf", str(tarball), "-C", str(src), "--strip-components=1", "--no-same-owner"],
            work, c_env(), log_fh, f"unpacking {tarball.name}",
        )  # fmt: skip
        for patch in patches(arch):
            _run_logged(
                ["patch", "-p1", "--forward", "--batch", "-i", str(patch)],
                src, c_env(), log_fh, f"applying {patch.name}",
            )  # fmt: skip
    return src


def _configure(
    src: Path, base: list[str], obj: Path, fragment: Path, env: dict[str, str], log_path: Path
) -> None:
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
    log_path = work / "build.log"
    log_path.write_text("")
    env = c_env(kbuild_env(pin.source_date_epoch))
    log(f"unpacking {tarball.name} and applying {len(patches(arch))} patch(es) in {work}")
    src = _unpack_source(tarball, arch, work, log_path)
    obj = work / "obj"
    if obj.exists():
        shutil.rmtree(obj)
    obj.mkdir()
    base = _make_base(pin, arch, obj)
    _configure(src, base, obj, kernels_dir() / arch / "enclave.config", env, log_path)
    n = jobs or os.cpu_count() or 1
    log(f"compiling the {arch} kernel with make -j{n} (log: {log_path})")
    start = time.monotonic()
    steps = _make_with_progress(
        [*base, f"-j{n}", pin.image_name], src, env, log_path, _previous_steps(arch)
    )
    return {
        "package": pin.package, "version": pin.version, "tarball_sha256": pin.tarball_sha256,
        "patches": [p.name for p in patches(arch)], "toolchain": kernel_toolchain_id(arch),
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
