"""Fuzz target ``metadata``: the EIF metadata section parser (``parse_metadata``).

Checks: only EifbuildError escapes (deep nesting, huge numbers, NaN, bad UTF-8 included); an
accepted section is a dict with string ImageName/ImageVersion and the two defaulted keys.
"""

from __future__ import annotations

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common
import _seeds

with atheris.instrument_imports(include=["eifbuild"]):
    from eifbuild.eif.metadata import parse_metadata, to_json


def test_one(data: bytes) -> None:
    value = parse_metadata(data, "fuzz")
    assert isinstance(value["ImageName"], str) and isinstance(value["ImageVersion"], str)
    assert "DockerInfo" in value and "CustomMetadata" in value
    to_json(value)


def seeds() -> list[bytes]:
    return [_seeds.S["metadata"].encode(), b'{"a":[1,2.5e3,-0,true,null,"\\u00e9"]}']


if __name__ == "__main__":
    _common.main("metadata", test_one, seeds)
