"""A real Debian root filesystem made by mmdebstrap, as a one-layer OCI image, for tests.

The root tarball is cached outside the clone, under ``~/.cache/eifbuild/mmdebstrap/``, named by
the SHA-256 of everything that determines it (suite, variant, packages, mirror, the epoch), so
CI builds it once; a later run reuses it. Building needs the Debian mirror (a package registry).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import require
from tests.helpers.imagegen import oci_image, oci_layout

MIRROR = "http://deb.debian.org/debian"
EPOCH = "1700000000"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "eifbuild" / "mmdebstrap"


def debian_rootfs(suite: str = "bookworm", packages: tuple[str, ...] = ("python3",)) -> Path:
    """The rootfs tarball of ``suite`` (minbase) with ``packages``, built once and cached."""
    require("mmdebstrap", shutil.which("mmdebstrap") is not None, "Debian mmdebstrap")
    recipe = {"suite": suite, "variant": "minbase", "packages": sorted(packages),
              "mirror": MIRROR, "epoch": EPOCH}  # fmt: skip
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:32]
    out = cache_dir() / f"{suite}-{key}.tar"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.stem}.{os.getpid()}.tar"  # mmdebstrap picks the format by suffix
    cmd = ["mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(packages)}"]
    cmd += ["--mode=root" if os.geteuid() == 0 else "--mode=unshare", suite, str(tmp), MIRROR]
    proc = subprocess.run(
        cmd, env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH}, capture_output=True, check=False
    )
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        require("mmdebstrap", False, proc.stderr.decode("utf-8", "replace")[-500:])
    os.replace(tmp, out)
    return out


def debian_oci(root: Path, cmd: list[str], **kw: str) -> str:
    """An OCI layout whose one layer is the cached Debian rootfs; returns its ``oci:`` ref."""
    layer = debian_rootfs(**kw).read_bytes()  # type: ignore[arg-type]
    config = {
        "Cmd": cmd,
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    }
    oci_layout(root, [oci_image(root, [layer], config=config)], ["debian"])
    return f"oci:{root}:debian"
