"""The same kernel bytes from other hosts: the README's setup inside clean Debian 12 and 13 roots.

For each host release, a clean root is made with mmdebstrap (minbase + python3-venv), the
checkout is copied in, and ``scripts/setup`` runs inside it (``EIFBUILD_SETUP=kernel``: the
kernel part of the setup, x86_64), which installs mmdebstrap there, bootstraps the pinned
toolchain root with that release's mmdebstrap/apt/dpkg and builds the kernel and init; then
``eifbuild kernel build --json`` reports the hashes, compared here with expected.json.
Downloads already verified on this machine (toolchain .debs, kernel source) are hard-linked in:
they are sha256-checked again at use, and the compilation happens from scratch.

Slow (a kernel build per release), so the outcome is cached outside the clone by content hash
(recipe inputs, toolchain pin, expected.json, host release; not scripts/setup, whose test-tool
package list changes often and does not reach the kernel):
``~/.cache/eifbuild/host-roots/<release>-<key>.json``. Delete it to run cold again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from eifbuild.kernel._aptfetch import DEBIAN_KEYRING, debian_mirror
from eifbuild.kernel._common import download_dir
from eifbuild.kernel.expected import load_expected, recipe_inputs
from eifbuild.kernel.toolpin import toolchain_key
from tests.conftest import ROOT, require

pytestmark = pytest.mark.slow

HOSTROOT_VERSION = "1"
RELEASES = ("bookworm", "trixie")  # Debian 12, Debian 13
_ENTER = r"""
root=$1; shift
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
exec chroot "$root" "$@"
"""


def _key(release: str) -> str:
    parts = {
        "version": HOSTROOT_VERSION,
        "release": release,
        "inputs": recipe_inputs("x86_64"),
        "toolchain": toolchain_key(),
        "expected": load_expected("x86_64"),
    }
    blob = json.dumps(parts, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def _copy_checkout(dst: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.split(b"\0")  # fmt: skip
    for name in filter(None, files):
        src = ROOT / os.fsdecode(name)
        if src.is_file() and not src.is_symlink():
            (dst / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / os.fsdecode(name))


def _share_downloads(cache: Path) -> None:
    for sub in ("toolchain/debs", "sources"):
        src = download_dir() / sub
        if src.is_dir():
            (cache / sub).parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-al", str(src), str(cache / sub)], check=True)


def _in_root(root: Path, argv: list[str], log: Path, env: dict[str, str]) -> float:
    start = time.monotonic()
    inner = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LC_ALL": "C.UTF-8", **env}
    cmd = ["unshare", "--mount", "--pid", "--fork", "--propagation=private",
           "/bin/sh", "-euc", _ENTER, "enter", str(root),
           "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in inner.items()), *argv]  # fmt: skip
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(argv)}\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    assert proc.returncode == 0, f"{argv} failed in the {root.name} root; see {log}"
    return time.monotonic() - start


def _mounted_under(path: Path) -> bool:
    return str(path) in Path("/proc/self/mounts").read_text()


def run_in_host_root(release: str, work: Path, log: Path) -> dict[str, Any]:
    mirror = debian_mirror()
    root = work / "root"
    start = time.monotonic()
    with log.open("w") as fh:
        subprocess.run(
            ["unshare", "--mount", "--propagation=private", "mmdebstrap", "--mode=root",
             "--variant=minbase",
             "--include=python3,python3-venv,ca-certificates", release, str(root),
             f"deb [signed-by={DEBIAN_KEYRING}] {mirror} {release} main"],
            stdout=fh, stderr=subprocess.STDOUT, check=True,
        )  # fmt: skip
    made = time.monotonic() - start
    _copy_checkout(root / "eifbuild")
    _share_downloads(root / "root" / ".cache" / "eifbuild")
    shutil.copyfile("/etc/resolv.conf", root / "etc" / "resolv.conf")
    # The machine's own network setup (a site CA for a TLS-inspecting egress proxy, if any) is
    # part of "this machine", not of the release under test: give the root the same trust.
    site_ca = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    for crt in site_ca:
        shutil.copyfile(crt, root / "usr/local/share/ca-certificates" / crt.name)
    env = {"EIFBUILD_SETUP": "kernel", "EIFBUILD_SETUP_ARCHES": "x86_64",
           "EIFBUILD_DEBIAN_MIRROR": mirror, "DEBIAN_FRONTEND": "noninteractive",
           "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt"}  # fmt: skip
    if site_ca:
        _in_root(root, ["update-ca-certificates"], log, env)
    setup = _in_root(root, ["/eifbuild/scripts/setup"], log, env)
    out = work / "out.json"
    _in_root(root, ["sh", "-c", "/eifbuild/.venv/bin/eifbuild kernel build --arch x86_64 --json "
                    "> /eifbuild/out.json; gcc --version 2>/dev/null | head -1 || true"],
             log, env)  # fmt: skip
    shutil.copyfile(root / "eifbuild" / "out.json", out)
    report = json.loads(out.read_text())
    host_release = (root / "etc" / "debian_version").read_text().strip()
    return {"release": release, "debian_version": host_release, "report": report,
            "mmdebstrap_seconds": round(made, 1), "setup_seconds": round(setup, 1)}  # fmt: skip


def host_root_result(release: str) -> dict[str, Any]:
    """The (cached) outcome of the README's kernel setup in a clean ``release`` root."""
    cache = download_dir() / "host-roots"
    cached = cache / f"{release}-{_key(release)}.json"
    if cached.is_file():
        result: dict[str, Any] = json.loads(cached.read_text())
        return result
    cache.mkdir(parents=True, exist_ok=True)
    work = cache / f".{release}.{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    log = cache / f"{release}.log"
    try:
        result = run_in_host_root(release, work, log)
    except BaseException:
        for nested in (work / "root/root/.cache/eifbuild/toolchain").glob(".root-*.log"):
            shutil.copyfile(nested, cache / f"{release}-{nested.name.lstrip('.')}")
        raise
    finally:
        if not _mounted_under(work):  # never delete through a leftover bind mount
            shutil.rmtree(work, ignore_errors=True)
    cached.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


@pytest.mark.parametrize("release", RELEASES)
def test_readme_setup_in_a_clean_host_root_gives_the_expected_bytes(release: str) -> None:
    require("toolchain-root", os.geteuid() == 0, "mmdebstrap --mode=root and chroot need root")
    require("mmdebstrap", shutil.which("mmdebstrap") is not None, "scripts/setup installs it")
    result = host_root_result(release)
    want = load_expected("x86_64")
    report = result["report"]
    assert report["sha384"]["bzImage"] == want["image_sha384"], result
    assert report["sha384"]["init"] == want["init_sha384"], result
    assert report["pcr1"] == want["pcr1"] and report["expected"] == "matches"
    major = {"bookworm": "12.", "trixie": "13."}[release]
    assert result["debian_version"].startswith(major)
