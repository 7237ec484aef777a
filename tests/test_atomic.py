from __future__ import annotations

from pathlib import Path

import pytest

from eifbuild._atomic import atomic_output


def test_atomic_output_renames_on_success(tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    with atomic_output(dest) as fh:
        fh.write(b"abc")
        assert not dest.exists()
    assert dest.read_bytes() == b"abc"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_output_leaves_nothing_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(dest) as fh:
        fh.write(b"partial")
        raise RuntimeError("boom")
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
