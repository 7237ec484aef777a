"""Fuzz target ``cpio``: the newc reader (``NewcReader``) and ``unpack.list_archive``.

Reads every member, alternating ``content()`` and ``read_small()``. Checks: only EifbuildError
escapes; each member's content has exactly its header's size; names stay within the name limit.
"""

from __future__ import annotations

import io
import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common
import _seeds

with atheris.instrument_imports(include=["eifbuild"]):
    from eifbuild.cpio import Limits, NewcReader
    from eifbuild.unpack import list_archive

LIMITS = Limits(
    max_name_bytes=256,
    max_cpio_file_bytes=1 << 20,
    max_symlink_bytes=256,
    max_cpio_entries=1000,
    cpio_chunk_bytes=7,
)


def test_one(data: bytes) -> None:
    reader = NewcReader(io.BytesIO(data), LIMITS)
    for n, h in enumerate(reader):
        got = len(reader.read_small(1 << 20)) if n % 2 else sum(map(len, reader.content()))
        assert got == h.filesize, f"member {h.name!r}: read {got} bytes, header says {h.filesize}"
        assert len(h.name) <= LIMITS.max_name_bytes
    for line in list_archive(io.BytesIO(data), LIMITS):
        assert "\n" not in line


def seeds() -> list[bytes]:
    return [_seeds.newc_archive()]


if __name__ == "__main__":
    _common.main("cpio", test_one, seeds)
