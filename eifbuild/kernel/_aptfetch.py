"""The pinned kernel source: Debian's ``linux-source-6.12``, fetched with a private apt setup.

apt runs with its own sources.list, state and cache under the eifbuild cache directory, so
``/etc/apt`` and the dpkg database are never touched. The ``.deb`` and the tarball inside it are
checked against ``kernels/<arch>/source.json`` before use.

The pin names a suite and component, not a mirror: the Debian mirror is the one this machine's
apt already uses (read, never changed, from ``/etc/apt/sources.list`` and
``/etc/apt/sources.list.d``), or ``$EIFBUILD_DEBIAN_MIRROR``. The hashes make the mirror
irrelevant to what is built.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from eifbuild.errors import KernelBuildError
from eifbuild.kernel._common import (
    CHUNK,
    Log,
    c_env,
    check_arch,
    download_dir,
    kernels_dir,
    quiet,
    sha256_file,
)


@dataclass(frozen=True)
class SourcePin:
    """``kernels/<arch>/source.json``: which Debian source package, checked how."""

    package: str
    version: str
    apt_suite: str
    apt_component: str
    deb_sha256: str
    tarball: str
    tarball_sha256: str
    kernel_arch: str
    image: str
    image_name: str
    # The recipe's own SOURCE_DATE_EPOCH: KBUILD_BUILD_TIMESTAMP of the kernel. It is pinned here,
    # not read from the environment, because the environment's SOURCE_DATE_EPOCH is an
    # application build's time: letting it reach the kernel would change PCR1 with every app
    # release (and make `SOURCE_DATE_EPOCH=N eifbuild build` look for a kernel never built).
    source_date_epoch: int = 0

    @property
    def deb_name(self) -> str:
        return f"{self.package}_{self.version.replace(':', '%3a')}_all.deb"


def load_pin(arch: str = "x86_64") -> SourcePin:
    check_arch(arch)
    path = kernels_dir() / arch / "source.json"
    try:
        raw = json.loads(path.read_text())
        fields = {
            f: str(raw[f]) for f in SourcePin.__dataclass_fields__ if f != "source_date_epoch"
        }
        epoch = raw.get("source_date_epoch", 0)
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError("source_date_epoch must be a non-negative integer")
        return SourcePin(**fields, source_date_epoch=epoch)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KernelBuildError(f"kernel source pin {path} is unreadable: {exc}") from None


APT_ETC = Path("/etc/apt")
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def _configured_uris(etc: Path) -> list[str]:
    """Repository URIs of the host's apt configuration, in file order (one-line and deb822)."""
    uris: list[str] = []
    files = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*"))]
    for f in files:
        if not f.is_file() or f.suffix not in ("", ".list", ".sources"):
            continue
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if f.suffix == ".sources" and line.lower().startswith("uris:"):
                uris.extend(line.split(":", 1)[1].split())
            elif line.startswith("deb "):
                words = [w for w in line.split()[1:] if not w.startswith("[")]
                words = [w for w in words if "=" not in w and not w.endswith("]")]
                if words:
                    uris.append(words[0])
    return uris


def debian_mirror(etc: Path = APT_ETC) -> str:
    """The Debian archive mirror to fetch from: $EIFBUILD_DEBIAN_MIRROR, else the host's own."""
    env = os.environ.get("EIFBUILD_DEBIAN_MIRROR", "").strip()
    if env:
        return env.rstrip("/")
    for uri in _configured_uris(etc):
        if uri.rstrip("/").endswith("/debian"):
            return uri.rstrip("/")
    raise KernelBuildError(
        f"no Debian archive mirror found in {etc}/sources.list(.d) to fetch the kernel source "
        "from: set EIFBUILD_DEBIAN_MIRROR to a Debian mirror URL (ending in /debian)"
    )


def apt_source_line(suite: str, component: str, mirror: str) -> str:
    return f"deb [signed-by={DEBIAN_KEYRING}] {mirror} {suite} {component}"


def private_apt(name: str, sources: list[str], what: str) -> Path:
    """An apt configuration under the cache (``cache/<name>``) with ``sources``, updated."""
    root = download_dir() / name
    for sub in ("sources.list.d", "preferences.d", "state/lists/partial", "cache/archives/partial"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "sources.list").write_text("".join(s + "\n" for s in sources))
    upd = apt(root, "update")
    if upd.returncode != 0:
        tail = " ".join(upd.stderr.strip().splitlines()[-2:])
        raise KernelBuildError(f"apt-get update for {what} failed: {tail}")
    return root


def _apt_options(root: Path) -> list[str]:
    # Architecture is pinned to amd64 (the build root's and the source package's), whatever
    # the host's dpkg says; Valid-Until is not checked so that a snapshot.debian.org mirror
    # works (the pins' sha256 decide what is used, not the Release file's age).
    return [
        "-o", "APT::Architecture=amd64",
        "-o", "APT::Architectures=amd64",
        "-o", "Acquire::Check-Valid-Until=false",
        "-o", f"Dir::Etc::sourcelist={root / 'sources.list'}",
        "-o", f"Dir::Etc::sourceparts={root / 'sources.list.d'}",
        "-o", f"Dir::Etc::preferencesparts={root / 'preferences.d'}",
        "-o", f"Dir::State={root / 'state'}",
        "-o", f"Dir::Cache={root / 'cache'}",
        "-o", "Dir::State::status=/dev/null",
        "-o", "APT::Sandbox::User=root" if os.geteuid() == 0 else "Debug::NoLocking=1",
        "-o", "Acquire::Languages=none",
    ]  # fmt: skip


def apt(root: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``apt-get`` (or ``apt-cache`` when ``args[0]`` is ``"apt-cache"``) privately."""
    if shutil.which("apt-get") is None:
        raise KernelBuildError(
            "apt-get not found: the kernel source is fetched from Debian with apt"
        )
    tool = ["apt-cache"] if args and args[0] == "apt-cache" else ["apt-get", "-q"]
    args = args[1:] if args and args[0] == "apt-cache" else args
    return subprocess.run(
        [*tool, *_apt_options(root), *args],
        capture_output=True, text=True, check=False, cwd=cwd, env=c_env(),
    )  # fmt: skip


def fetch_source_deb(pin: SourcePin, log: Log = quiet) -> Path:
    """Download the pinned ``.deb`` with a private apt configuration; verify its sha256."""
    dl = download_dir() / "sources"
    deb = dl / pin.deb_name
    if deb.is_file() and sha256_file(deb) == pin.deb_sha256:
        return deb
    source = apt_source_line(pin.apt_suite, pin.apt_component, debian_mirror())
    root = private_apt("apt", [source], pin.package)
    dl.mkdir(parents=True, exist_ok=True)
    log(f"fetching {pin.package} {pin.version} with apt ({pin.apt_suite} {pin.apt_component})")
    got = apt(root, "download", f"{pin.package}={pin.version}", cwd=dl)
    if got.returncode != 0 or not deb.is_file():
        raise KernelBuildError(
            f"{pin.package} version {pin.version} is not available from "
            f"'{source}' (Debian removes old versions): bump the pin in "
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
    out = download_dir() / "sources" / f"{pin.package}_{pin.version}.tar.xz"
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
                    while chunk := src.read(CHUNK):
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
