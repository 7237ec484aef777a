"""The build root: the pinned ``.deb`` files, verified, bootstrapped with mmdebstrap, cached.

1. Every package of ``kernels/toolchain/bookworm.json`` is downloaded with the private apt
   configuration (``cache/toolchain-apt``; the mirror is the host's or
   ``$EIFBUILD_DEBIAN_MIRROR``, e.g. a snapshot.debian.org URL) into ``cache/toolchain/debs``
   and its sha256 checked against the pin.
2. The verified files become a local flat repository (``Packages`` written here from each
   ``.deb``'s control data), the only source mmdebstrap sees: the root can hold nothing else.
3. ``mmdebstrap --variant=essential --include=…`` bootstraps ``cache/toolchain/root-<key>``
   (``key`` = :func:`~eifbuild.kernel.toolpin.toolchain_key`); a finished root is renamed into
   place, so a half-built one is never used.
4. :func:`run_in_root` enters it for one command only: a private mount namespace (``unshare``)
   bind-mounts the build directories, mounts ``/proc``, ``chroot``s and runs the command with
   an empty environment plus what the build passes. Root only (``unshare -m`` and ``chroot``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from eifbuild.errors import ToolchainError
from eifbuild.kernel._aptfetch import apt, apt_source_line, debian_mirror, private_apt
from eifbuild.kernel._common import Log, c_env, cache_dir, download_dir, quiet, sha256_file
from eifbuild.kernel.toolpin import PinnedDeb, ToolchainPin, load_toolchain_pin, toolchain_key

ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Mount points created in the root at bootstrap, bound per command.
MOUNT_POINTS = ("build", "recipe", "sources")


@dataclass(frozen=True)
class Bind:
    host: Path
    inside: str  # one of MOUNT_POINTS (absolute, e.g. "/build")
    writable: bool = False


def _bump_hint(pin: ToolchainPin) -> str:
    return (
        f"bump the pin with `eifbuild kernel pin-toolchain` (rewrites {pin.path.name}; the "
        "kernel bytes and PCR1 may change: rebuild and record them with `eifbuild kernel build "
        "--record`), or set EIFBUILD_DEBIAN_MIRROR to a snapshot.debian.org archive that still "
        "has it (see kernels/README.md)"
    )


def _download(pin: ToolchainPin, missing: list[PinnedDeb], dl: Path, log: Log) -> None:
    mirror = debian_mirror()
    source = apt_source_line(pin.suite, pin.component, mirror)
    root = private_apt("toolchain-apt", [source], f"the {pin.suite} toolchain")
    log(f"fetching {len(missing)} toolchain package(s) with apt ({pin.suite} {pin.component})")
    # apt-get download stops at the first version it cannot find: ask for each separately
    # only when the batch fails, to name the culprit.
    got = apt(root, "download", *(f"{d.name}={d.version}" for d in missing), cwd=dl)
    if got.returncode == 0:
        return
    for d in missing:
        if (dl / d.deb_name).is_file():
            continue
        one = apt(root, "download", f"{d.name}={d.version}", cwd=dl)
        if one.returncode != 0 or not (dl / d.deb_name).is_file():
            raise ToolchainError(
                f"toolchain package {d.name} {d.version} is not available from {mirror} "
                f"{pin.suite} (Debian replaces versions at point releases): {_bump_hint(pin)}"
            )


def fetch_debs(pin: ToolchainPin, log: Log = quiet) -> list[Path]:
    """Every pinned ``.deb``, downloaded if needed, its sha256 checked; in pin order."""
    dl = download_dir() / "toolchain" / "debs"
    dl.mkdir(parents=True, exist_ok=True)
    missing = [d for d in pin.packages if not (dl / d.deb_name).is_file()]
    if missing:
        _download(pin, missing, dl, log)
    paths = []
    for d in pin.packages:
        path = dl / d.deb_name
        actual = sha256_file(path) if path.is_file() else "missing"
        if actual != d.sha256:
            path.unlink(missing_ok=True)
            raise ToolchainError(
                f"toolchain package {d.deb_name}: sha256 {actual} does not match the pin "
                f"{d.sha256} in {pin.path.name} (the file was removed; run again to refetch)"
            )
        paths.append(path)
    return paths


def _control(deb: Path) -> str:
    proc = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True,
                          check=False, env=c_env())  # fmt: skip
    if proc.returncode != 0:
        raise ToolchainError(f"{deb.name}: unreadable package ({proc.stderr.strip()})")
    return proc.stdout.rstrip("\n")


def make_repo(pin: ToolchainPin, debs: Sequence[Path], repo: Path) -> None:
    """A flat apt repository of exactly the verified files (hard links) in ``repo``."""
    repo.mkdir(parents=True)
    stanzas = []
    for d, path in zip(pin.packages, debs, strict=True):
        os.link(path, repo / path.name)
        size = path.stat().st_size
        stanzas.append(
            f"{_control(path)}\nFilename: ./{path.name}\nSize: {size}\nSHA256: {d.sha256}\n"
        )
    packages = "\n".join(stanzas).encode()
    (repo / "Packages").write_bytes(packages)
    digest = hashlib.sha256(packages).hexdigest()
    (repo / "Release").write_text(
        f"Suite: {pin.suite}\nCodename: {pin.suite}\nArchitectures: {pin.architecture} all\n"
        f"SHA256:\n {digest} {len(packages)} Packages\n"
    )


def _require(tool: str, package: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise ToolchainError(
            f"{tool} not found (needed to bootstrap the pinned toolchain root): install the "
            f"Debian package {package} (scripts/setup does)"
        )
    return found


def _check_host() -> None:
    if os.uname().machine != "x86_64":
        raise ToolchainError(
            f"the pinned toolchain root is amd64; this host is {os.uname().machine}"
        )
    if os.geteuid() != 0:
        raise ToolchainError(
            "bootstrapping and entering the pinned toolchain root needs root (chroot and a "
            "private mount namespace): run eifbuild kernel build as root (scripts/setup does)"
        )


# bookworm's usr-is-merged requires merged /usr before it unpacks; mmdebstrap leaves that to a
# hook, and this one line is what every mmdebstrap version (Debian 12's 1.3, 13's 1.5) runs.
_MERGED_USR = (
    'for d in bin sbin lib lib64; do mkdir -p "$1/usr/$d"; '
    '[ -e "$1/$d" ] || [ -L "$1/$d" ] || ln -s "usr/$d" "$1/$d"; done'
)


def _bootstrap(pin: ToolchainPin, staging: Path, log: Log) -> None:
    debs = fetch_debs(pin, log)
    repo = staging.with_name(staging.name + ".repo")
    shutil.rmtree(repo, ignore_errors=True)
    make_repo(pin, debs, repo)
    log_path = staging.with_name(staging.name + ".log")
    # In a private mount namespace: mmdebstrap's /dev, /proc, /sys mounts in the new root then
    # vanish with it even if it is killed, and never show (or get deleted through) on the host.
    cmd = [
        _require("unshare", "util-linux"), "--mount", "--propagation=unchanged",
        "/bin/sh", "-c", _PRIVATE + 'exec "$@"', "mmdebstrap",
        _require("mmdebstrap", "mmdebstrap"), "--mode=root", "--variant=essential",
        f"--architectures={pin.architecture}", f"--include={','.join(pin.include)}",
        "--aptopt=Acquire::Languages \"none\"", "--skip=cleanup/apt/lists",
        f"--setup-hook={_MERGED_USR}",
        pin.suite, str(staging), f"deb [trusted=yes] copy://{repo} ./",
    ]  # fmt: skip
    log(f"bootstrapping the toolchain root with mmdebstrap from {len(debs)} verified packages")
    with log_path.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=c_env(), check=False)
    shutil.rmtree(repo, ignore_errors=True)
    if proc.returncode != 0:
        errors = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln[:2] == "E:"]
        why = f": {errors[0][:300]}" if errors else ""
        raise ToolchainError(f"mmdebstrap failed (exit {proc.returncode}){why}; see {log_path}")
    for point in MOUNT_POINTS:
        (staging / point).mkdir(exist_ok=True)
    log_path.unlink()


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def toolchain_root(log: Log = quiet, *, base: Path | None = None) -> Path:
    """The bootstrapped root for the current pin (built once, cached by its content hash)."""
    _check_host()
    pin = load_toolchain_pin()
    parent = base or cache_dir() / "toolchain"
    root = parent / f"root-{toolchain_key(pin)}"
    if (root / "usr/bin/gcc").exists():
        return root
    with _locked(parent / f".{root.name}.lock"):
        if (root / "usr/bin/gcc").exists():
            return root
        staging = root.with_name(f".{root.name}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            _bootstrap(pin, staging, log)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        os.replace(staging, root)
    return root


# Make the new mount namespace private. Inside a chroot (a host-root test) "/" is no mount
# point and this fails, but there the namespace around us is private already; `unshare
# --propagation=private` would refuse to start in that case.
_PRIVATE = "mount --make-rprivate / 2>/dev/null || true; "

_ENTER = (
    _PRIVATE
    + r"""
root=$1; shift
while [ "$1" != -- ]; do
  mount --bind "$1" "$root$2"
  [ "$3" = rw ] || mount -o remount,bind,ro "$root$2"
  shift 3
done
shift
mount -t proc proc "$root/proc"
exec chroot "$root" "$@"
"""
)


def enter_command(root: Path, argv: Sequence[str], binds: Sequence[Bind], cwd: str,
                  env: dict[str, str]) -> list[str]:  # fmt: skip
    """The host command that runs ``argv`` in ``root`` (cwd and environment inside)."""
    spec: list[str] = []
    for b in binds:
        if b.inside.strip("/") not in MOUNT_POINTS:
            raise ToolchainError(f"cannot bind {b.host} at {b.inside} in the toolchain root")
        spec += [str(b.host), b.inside, "rw" if b.writable else "ro"]
    inner = {"PATH": ROOT_PATH, "HOME": "/build", "LC_ALL": "C", "TZ": "UTC", **env}
    return [
        _require("unshare", "util-linux"), "--mount", "--pid", "--fork", "--propagation=unchanged",
        "/bin/sh", "-euc", _ENTER, "enter", str(root), *spec, "--",
        "/usr/bin/env", "-i", "-C", cwd, *(f"{k}={v}" for k, v in sorted(inner.items())), *argv,
    ]  # fmt: skip


def run_in_root(root: Path, argv: Sequence[str], binds: Sequence[Bind], *, cwd: str = "/build",
                env: dict[str, str] | None = None, log_fh: IO[str] | None = None,
                what: str = "") -> str:  # fmt: skip
    """Run ``argv`` in the root; return its stdout (or write all output to ``log_fh``)."""
    cmd = enter_command(root, argv, binds, cwd, env or {})
    if log_fh is not None:
        log_fh.flush()
        proc = subprocess.run(cmd, stdout=log_fh, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            raise ToolchainError(f"{what or argv[0]} failed (exit {proc.returncode}); see "
                                 f"{log_fh.name}")  # fmt: skip
        return ""
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        err = " ".join(out.stderr.strip().splitlines()[-3:])
        raise ToolchainError(f"{what or argv[0]} in the toolchain root failed: {err}")
    return out.stdout
