"""The bounded-memory diff (sorted on disk, merged) against the in-memory one, and its JSON.

``diff_entry_streams`` must give exactly what the original in-memory ``diff_entries`` gives
(that implementation is the oracle here), also when the external sort spills many runs; the
streamed JSON must be byte-identical to ``json.dumps`` of the materialised document.
"""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import given, settings

import eifbuild.diff.spill as spill
from eifbuild.cpio import Member
from eifbuild.diff import diff_entries, read_entries
from eifbuild.diff.archive import diff_entry_streams
from eifbuild.diff.listing import diff_listings
from eifbuild.diff.render import render_json, render_text
from eifbuild.diff.spill import SpillList, external_sort
from tests.test_diff_entries import ARCHIVES, archive


def materialise(value: Any) -> Any:
    if isinstance(value, (SpillList, list)):
        return [materialise(v) for v in value]
    if isinstance(value, dict):
        return {k: materialise(v) for k, v in value.items()}
    return value


def both(x: list[Member], y: list[Member]) -> tuple[dict[str, Any], dict[str, Any]]:
    def entries(m: list[Member]) -> Any:
        return read_entries(io.BytesIO(archive(m)))

    old = diff_entries(entries(x), entries(y)).records()
    new = diff_entry_streams(entries(x), entries(y))
    return old, new


@settings(max_examples=300, deadline=None)
@given(ARCHIVES, ARCHIVES)
def test_streaming_diff_equals_the_in_memory_diff(x: list[Member], y: list[Member]) -> None:
    old, new = both(x, y)
    assert materialise(new) == old
    doc = {"format": "t", "ramdisks": [{"index": 1, "error": None, **new}]}
    assert (
        render_json(doc)
        == json.dumps(materialise(doc), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )
    render_text({**doc, "format": "eifbuild-rootfs-diff/1", "a": {"path": "a"},
                 "b": {"path": "b"}, **new})  # fmt: skip


@settings(max_examples=50, deadline=None)
@given(ARCHIVES, ARCHIVES)
def test_many_tiny_runs_merge_the_same(x: list[Member], y: list[Member]) -> None:
    old_run = spill.RUN_BYTES
    try:
        spill.RUN_BYTES = 1  # every entry its own run: the k-way merge does all the work
        import eifbuild.diff.archive as archive_mod

        names = vars(archive_mod)  # the module's namespace: patch the name archive.py calls
        saved = names["external_sort"]
        names["external_sort"] = lambda items: external_sort(items, run_bytes=1)
        try:
            old, new = both(x, y)
        finally:
            names["external_sort"] = saved
    finally:
        spill.RUN_BYTES = old_run
    assert materialise(new) == old


def test_external_sort_spills_and_merges() -> None:
    keys = [b"%05d" % ((i * 7919) % 10007) for i in range(10007)]
    out = list(external_sort(((k, k[::-1]) for k in keys), run_bytes=4096))
    assert [k for k, _ in out] == sorted(keys) and all(r == k[::-1] for k, r in out)


def test_spill_list_behaves_like_a_list() -> None:
    s = SpillList()
    assert not s and len(s) == 0 and list(s) == [] and s == []
    for i in range(5):
        s.append({"i": i, "p": "\u00e9\\x1b"})
    assert len(s) == 5 and s[1:3] == [{"i": 1, "p": "\u00e9\\x1b"}, {"i": 2, "p": "\u00e9\\x1b"}]
    assert s[-1]["i"] == 4 and s[:0] == [] and list(s) == list(s)


def test_listing_diff_streams_and_refuses_repeats(tmp_path: Any) -> None:
    def listing(name: str, paths: list[str], size: int = 1) -> str:
        p = tmp_path / name
        p.write_text("".join(json.dumps({"path": x, "type": "file", "size": size}) + "\n"
                             for x in paths))  # fmt: skip
        return str(p)

    a = listing("a", ["z", "b", "a"])
    b = listing("b", ["a", "c", "z"], size=2)
    d = diff_listings(a, b)
    assert d["summary"] == {"entries_a": 3, "entries_b": 3, "added": 1, "removed": 1,
                            "changed": 2}  # fmt: skip
    assert [r["path"] for r in d["added"]] == ["c"]
    assert [r["path"] for r in d["removed"]] == ["b"]
    assert [r["path"] for r in d["changed"]] == ["a", "z"]
    dup = listing("d", ["a", "b", "a"])
    try:
        diff_listings(a, dup)
    except Exception as exc:
        assert "path a is listed twice" in str(exc)
    else:
        raise AssertionError("a repeated path was accepted")
    try:
        diff_listings(a, b, max_entries=2)
    except Exception as exc:
        assert "more than 2 entries (see --max-entries)" in str(exc)
    else:
        raise AssertionError("--max-entries was not applied")
