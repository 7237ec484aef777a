"""Fuzz target ``unpack``: ``eifbuild.unpack.unpack_archive`` of a newc archive into a temp dir.

Checks: only EifbuildError escapes; nothing is created outside the destination: the
destination's parent holds only the destination afterwards, and a canary directory next to it
stays empty (seeds include members named ``../canary/x`` and symlinks pointing at it).
"""

from __future__ import annotations

import io
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
    from eifbuild.cpio import Limits
    from eifbuild.unpack import unpack_archive

TMP = Path(tempfile.mkdtemp(prefix="fuzz-unpack-"))
LIMITS = Limits(
    max_name_bytes=256, max_cpio_file_bytes=1 << 20, max_symlink_bytes=256, max_cpio_entries=1000
)


def test_one(data: bytes) -> None:
    box = TMP / "box"
    canary = TMP / "canary"
    for d in (box, canary):
        shutil.rmtree(d, ignore_errors=True)
    box.mkdir()
    canary.mkdir()
    dest = box / "dest"
    try:
        unpack_archive(io.BytesIO(data), dest, limits=LIMITS)
    finally:
        outside = [p.name for p in box.iterdir() if p.name != "dest"]
        assert not outside, f"unpack wrote outside its directory: {outside}"
        assert not any(canary.iterdir()), "unpack wrote into the canary directory"
        for p in dest.rglob("*") if dest.is_dir() else ():
            if p.is_symlink():
                continue
            assert p.resolve().is_relative_to(dest.resolve()), f"{p} resolves outside"


def seeds() -> list[bytes]:
    N = _seeds._newc
    can = str(TMP / "canary").encode()
    escape = N(b"../canary/x", 0o100644, b"x", ino=1)
    escape += N(b"link", 0o120777, can, ino=2)
    escape += N(b"link/y", 0o100644, b"y", ino=3)
    escape += N(b"TRAILER!!!", 0, ino=0)
    return [_seeds.newc_archive(), escape]


if __name__ == "__main__":
    _common.main("unpack", test_one, seeds)
