"""Fuzz target ``layer``: layer tar parsing and rootfs merge, on a one-layer OCI layout.

The input is the layer blob (seeds: tar in PAX and GNU format, gzip, zstd; the config's
diff_id is the digest of the decompressed input, so compressed layers verify); it is wrapped in a valid layout, opened with ``open_image`` and flattened with
``rootfs.flatten``. Checks: only EifbuildError escapes; every entry path is relative,
without ``..`` or empty components; every regular file yields exactly its size in content.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common
import _seeds

with atheris.instrument_imports(include=["eifbuild"]):
    import eifbuild.sources._store
    import eifbuild.sources.oci  # noqa: F401  (imported lazily by open_image)
    from eifbuild.model import EntryType
    from eifbuild.rootfs import flatten
    from eifbuild.sources import open_image

TMP = Path(tempfile.mkdtemp(prefix="fuzz-layer-"))
DOCS = _seeds.oci_docs()[0]


def test_one(data: bytes) -> None:
    root = TMP / "oci"
    shutil.rmtree(root, ignore_errors=True)
    _seeds.write_layout(root, DOCS, data)
    with open_image(f"oci:{root}") as image:
        for e in flatten(image):
            parts = e.path.split(b"/")
            assert e.path and not e.path.startswith(b"/"), f"bad path {e.path!r}"
            assert all(p not in (b"", b".", b"..") for p in parts), f"bad path {e.path!r}"
            if e.type is EntryType.FILE:
                got = sum(len(c) for c in e.open())
                assert got == e.size, f"{e.path!r}: {got} content bytes, size {e.size}"


def seeds() -> list[bytes]:
    return _seeds.layer_seeds()


if __name__ == "__main__":
    _common.main("layer", test_one, seeds)
