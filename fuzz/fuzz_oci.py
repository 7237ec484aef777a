"""Fuzz target ``oci``: OCI index / manifest / config JSON handling in ``eifbuild.sources``.

The input is index.json, the manifest and the config joined by a ``\\n--\\n`` line;
``@MANIFEST@``, ``@CONFIG@``, ``@LAYER@`` (and ``@..._SIZE@``) are replaced by the real
digests and sizes so that mutated documents still resolve. The layer is a fixed small tar.
Opens the layout with and without ``--arch``, then reads the image config fields. Checks: only
EifbuildError escapes; an opened image has one layer per manifest layer and string Cmd/Env.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contextlib

import _common
import _seeds

with atheris.instrument_imports(include=["eifbuild"]):
    import eifbuild.sources._store
    import eifbuild.sources.oci  # noqa: F401  (imported lazily by open_image)
    from eifbuild.errors import EifbuildError
    from eifbuild.sources import open_image, select_cmd_env

TMP = Path(tempfile.mkdtemp(prefix="fuzz-oci-"))
LAYER = _seeds.layer_tar()


def test_one(data: bytes) -> None:
    root = TMP / "oci"
    shutil.rmtree(root, ignore_errors=True)
    _seeds.write_layout(root, data, LAYER)
    for arch in (None, "amd64"):
        try:
            with open_image(f"oci:{root}", arch=arch) as image:
                cfg = image.config
                for v in (cfg.cmd or [], cfg.entrypoint or [], cfg.env or []):
                    assert all(isinstance(x, str) for x in v)
                for mode in ("nitro", "docker"):
                    with contextlib.suppress(EifbuildError):
                        select_cmd_env(cfg, mode, "fuzz")
        except EifbuildError:
            pass  # the expected outcome; the other arch setting is still tried


def seeds() -> list[bytes]:
    return _seeds.oci_docs()


if __name__ == "__main__":
    _common.main("oci", test_one, seeds)
