"""The pinned toolchain: ``kernels/toolchain/bookworm.json``, every package of the build root.

The file lists what was asked for (``request``) and the full closure apt resolved from it
against an empty system (``packages``: name, version, architecture, sha256, pool file name),
Essential packages included, so the root holds nothing that is not pinned. Its content hash
(:func:`toolchain_key`) stands for the compilers in every kernel and init cache key.

:func:`resolve_pin` regenerates the file from the mirror (``eifbuild kernel pin-toolchain``):
the bump to make when Debian's point release has replaced a pinned version.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from eifbuild.errors import ToolchainError
from eifbuild.kernel._aptfetch import apt, apt_source_line, debian_mirror, private_apt
from eifbuild.kernel._common import cache_key, kernels_dir

ROOT_RECIPE = "1"  # bump when the way the root is bootstrapped or entered changes
PIN_NAME = "bookworm"
_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]*$")
_VERSION = re.compile(r"^[A-Za-z0-9.+~:-]+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_INST = re.compile(r"^Inst (\S+) \((\S+) .*\[(\S+)\]\)")

# What the build root is asked to contain (apt adds the dependencies and Essential packages).
REQUEST = (
    "?essential", "usr-is-merged",
    "make", "patch", "xz-utils", "bc", "bison", "flex", "perl", "libelf-dev", "libssl-dev",
    "gcc", "libc6-dev", "binutils", "musl-tools",
    "gcc-aarch64-linux-gnu", "binutils-aarch64-linux-gnu", "libc6-dev-arm64-cross",
)  # fmt: skip


@dataclass(frozen=True)
class PinnedDeb:
    name: str
    version: str
    arch: str
    sha256: str
    filename: str  # path in the archive's pool (what a snapshot mirror serves)

    @property
    def deb_name(self) -> str:
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


@dataclass(frozen=True)
class ToolchainPin:
    path: Path
    suite: str
    component: str
    architecture: str
    request: tuple[str, ...]
    packages: tuple[PinnedDeb, ...]

    @property
    def include(self) -> list[str]:
        """Package names to install on top of the Essential set (the request minus patterns)."""
        return [r for r in self.request if not r.startswith("?")]


def pin_path() -> Path:
    return kernels_dir() / "toolchain" / f"{PIN_NAME}.json"


def _deb(raw: object, where: str) -> PinnedDeb:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is not an object")
    d = {k: raw.get(k) for k in ("name", "version", "arch", "sha256", "filename")}
    if not all(isinstance(v, str) for v in d.values()):
        raise ValueError(f"{where} needs string name, version, arch, sha256, filename")
    deb = PinnedDeb(**{k: str(v) for k, v in d.items()})
    if not _NAME.match(deb.name) or not _VERSION.match(deb.version):
        raise ValueError(f"{where}: bad package name or version {deb.name!r} {deb.version!r}")
    if deb.arch not in ("amd64", "all") or not _SHA256.match(deb.sha256):
        raise ValueError(f"{where} ({deb.name}): bad arch or sha256")
    if ".." in deb.filename or not deb.filename.startswith("pool/"):
        raise ValueError(f"{where} ({deb.name}): filename must be a pool/ path")
    return deb


def load_toolchain_pin(path: Path | None = None) -> ToolchainPin:
    path = path or pin_path()
    try:
        raw = json.loads(path.read_text())
        debs = tuple(_deb(p, f"packages[{i}]") for i, p in enumerate(raw["packages"]))
        names = [d.name for d in debs]
        if len(set(names)) != len(names) or not debs:
            raise ValueError("packages must be non-empty with each name once")
        request = tuple(str(r) for r in raw["request"])
        return ToolchainPin(path, str(raw["suite"]), str(raw["component"]),
                            str(raw["architecture"]), request, debs)  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ToolchainError(f"toolchain pin {path} is unreadable: {exc}") from None


def toolchain_key(pin: ToolchainPin | None = None) -> str:
    """Content hash of the pinned root: every package's name, version, arch and sha256."""
    pin = pin or load_toolchain_pin()
    return cache_key(
        {
            "root_recipe": ROOT_RECIPE,
            "suite": pin.suite,
            "arch": pin.architecture,
            "include": pin.include,
            "packages": sorted([d.name, d.version, d.arch, d.sha256] for d in pin.packages),
        }
    )


def _show(root: Path, wanted: list[str]) -> dict[tuple[str, str], dict[str, str]]:
    """``apt-cache show`` of ``name=version`` items: {(name, version): fields}."""
    proc = apt(root, "apt-cache", "show", *wanted)
    if proc.returncode != 0:
        raise ToolchainError(f"apt-cache show failed: {proc.stderr.strip()}")
    found: dict[tuple[str, str], dict[str, str]] = {}
    for stanza in proc.stdout.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if ":" in line and not line.startswith(" "):
                k, v = line.split(":", 1)
                fields[k] = v.strip()
        if "Package" in fields:
            found.setdefault((fields["Package"], fields.get("Version", "")), fields)
    return found


def resolve_pin(suite: str = "bookworm", component: str = "main") -> dict[str, object]:
    """Resolve :data:`REQUEST` against the mirror as on an empty system: the new pin file."""
    source = apt_source_line(suite, component, debian_mirror())
    root = private_apt("toolchain-apt", [source], f"the {suite} toolchain")
    proc = apt(root, "-s", "install", "--no-install-recommends", *REQUEST)
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-2:])
        raise ToolchainError(f"resolving the {suite} toolchain failed: {tail}")
    inst = [m.groups() for line in proc.stdout.splitlines() if (m := _INST.match(line))]
    shown = _show(root, [f"{name}={version}" for name, version, _ in inst])
    packages = []
    for name, version, arch in inst:
        f = shown.get((name, version), {})
        packages.append({"name": name, "version": version, "arch": arch,
                         "sha256": f.get("SHA256", ""), "filename": f.get("Filename", "")})  # fmt: skip
    packages.sort(key=lambda p: p["name"])
    return {
        "suite": suite,
        "component": component,
        "architecture": "amd64",
        "request": list(REQUEST),
        "packages": packages,
    }


def write_pin(data: dict[str, object], path: Path | None = None) -> Path:
    """Write a resolved pin (checked by loading it back) to ``kernels/toolchain/``."""
    path = path or pin_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    load_toolchain_pin(tmp)
    tmp.replace(path)
    return path
