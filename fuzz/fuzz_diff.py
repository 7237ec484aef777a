"""Fuzz target ``diff``: the bounded-memory entry diff against the in-memory one.

The input is split in two newc archives (at its first ``|`` byte, or in half). Checks: only
EifbuildError escapes; ``diff_entry_streams`` (sorted on disk with one-entry runs, merged)
gives exactly the records of ``diff_entries``; the streamed JSON equals ``json.dumps``.
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import Any

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common
import _seeds

with atheris.instrument_imports(include=["eifbuild"]):
    import eifbuild.diff.archive as archive
    from eifbuild.cpio import Limits
    from eifbuild.diff import diff_entries, read_entries
    from eifbuild.diff.render import render_json
    from eifbuild.diff.spill import SpillList, external_sort
    from eifbuild.errors import EifbuildError

LIMITS = Limits(max_name_bytes=256, max_cpio_file_bytes=1 << 16, max_cpio_entries=200)
archive.external_sort = lambda items: external_sort(items, run_bytes=1)  # many runs


def _plain(value: Any) -> Any:
    if isinstance(value, (SpillList, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def test_one(data: bytes) -> None:
    cut = data.find(b"|")
    a, b = (
        (data[:cut], data[cut + 1 :])
        if cut >= 0
        else (data[: len(data) // 2], data[len(data) // 2 :])
    )

    def entries(raw: bytes) -> Any:
        return read_entries(io.BytesIO(raw), LIMITS)

    try:
        old = diff_entries(entries(a), entries(b)).records()
    except EifbuildError:
        return
    new = archive.diff_entry_streams(entries(a), entries(b))
    assert _plain(new) == old, "streaming diff differs from the in-memory diff"
    doc = {"format": "x", "ramdisks": [new]}
    assert (
        render_json(doc)
        == json.dumps(_plain(doc), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )


def seeds() -> list[bytes]:
    arc = _seeds.newc_archive()
    return [arc + b"|" + arc, arc + b"|" + arc[: len(arc) // 2]]


if __name__ == "__main__":
    _common.main("diff", test_one, seeds)
