"""The demo image: a static "hello" program compiled with ``musl-gcc`` (reproducible flags),
packed into one uncompressed layer with fixed owners and times, written as an OCI image layout
whose bytes depend only on the program's bytes. ``eifbuild demo`` builds it; the boot tests
boot it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from eifbuild._epoch import LINUXKIT_MTIME
from eifbuild.errors import DemoError
from eifbuild.types import Arch

DEMO_REF = "demo"
DEMO_NAME = "eifbuild-demo"
DEMO_MARKER = "eifbuild demo: hello from the enclave"

HELLO_C = r"""/* eifbuild demo program: prints one line and exits 0. */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    const char *greeting = getenv("GREETING");
    printf("%s%s%s\n", "eifbuild demo: hello from the enclave",
           greeting ? ": " : "", greeting ? greeting : "");
    fflush(stdout);
    return 0;
}
"""

# Flags that keep the binary a function of the source and the toolchain only.
CFLAGS = ("-static", "-Os", "-s", "-Wl,--build-id=none", "-fno-ident")


def host_arch() -> str:
    """The OCI name of this machine's architecture (its own name if eifbuild knows no other)."""
    arch = Arch.host()
    return arch.oci if arch is not None else platform.machine().lower()


def compile_hello(workdir: Path) -> bytes:
    """The static demo binary's bytes (musl-gcc, reproducible flags)."""
    cc = shutil.which("musl-gcc")
    if cc is None:
        raise DemoError("musl-gcc not found: install musl-tools to build the demo image")
    src = workdir / "hello.c"
    src.write_text(HELLO_C)
    out = workdir / "hello"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "SOURCE_DATE_EPOCH": "0"}
    proc = subprocess.run(
        [cc, *CFLAGS, "-o", str(out), "hello.c"], cwd=workdir, env=env, capture_output=True
    )
    if proc.returncode != 0:
        raise DemoError(
            f"musl-gcc failed to build the demo program: {proc.stderr.decode(errors='replace').strip()[:300]}"
        )
    return out.read_bytes()


def _layer(binary: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("bin/", None), ("bin/hello", binary)):
            ti = tarfile.TarInfo(name.rstrip("/"))
            ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = LINUXKIT_MTIME, 0, 0, "", ""
            ti.mode = 0o755
            if data is None:
                ti.type = tarfile.DIRTYPE
                tar.addfile(ti)
            else:
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _put(layout: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def make_demo_layout(layout: Path, binary: bytes, arch: str) -> str:
    """Write the demo OCI layout into ``layout``; return the ``oci:`` image reference."""
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    layer = _layer(binary)
    layer_desc = _put(layout, layer)
    config = {
        "architecture": arch,
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/hello"], "Env": ["PATH=/bin", "GREETING=built by eifbuild"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
    }
    config_desc = _put(layout, _dumps(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
    }
    manifest_desc = _put(layout, _dumps(manifest))
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest_desc,
                "platform": {"architecture": arch, "os": "linux"},
                "annotations": {"org.opencontainers.image.ref.name": DEMO_REF},
            }
        ],
    }
    (layout / "index.json").write_bytes(_dumps(index))
    (layout / "oci-layout").write_bytes(_dumps({"imageLayoutVersion": "1.0.0"}))
    return f"oci:{layout}:{DEMO_REF}"
