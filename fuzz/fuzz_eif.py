"""Fuzz target ``eif``: EifReader on a temp file (open, sections, scan, metadata, signatures).

Checks: only EifbuildError escapes; an accepted file's sections lie inside the file, in order,
without overlap; scan() hashes exactly the section bytes (CRC computed is stable).
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common
import _seeds

with atheris.instrument_imports(include=["eifbuild"]):
    from eifbuild.eif.reader import EifReader

TMP = tempfile.mkdtemp(prefix="fuzz-eif-")
PATH = os.path.join(TMP, "in.eif")


def test_one(data: bytes) -> None:
    with open(PATH, "wb") as f:
        f.write(data)
    with EifReader(PATH) as r:
        end = 0
        for s in r.sections:
            assert s.offset >= end, f"section {s.index} overlaps or is out of order"
            end = s.data_offset + s.size
            assert end <= len(data), f"section {s.index} runs past the end of the file"
        r.cmdline()
        r.metadata()
        r.signature_entries()
        res = r.scan()
        assert res.crc_computed == r.scan().crc_computed


def seeds() -> list[bytes]:
    return [_seeds.spec_eif(), _seeds.signed_eif()]


if __name__ == "__main__":
    _common.main("eif", test_one, seeds)
