"""Regression tests for crashes found by the coverage-guided fuzzers in ``fuzz/``.

Each test feeds the (minimised) crashing input; the expected outcome is an ``EifbuildError``
subclass or a safe result, never another exception.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from eifbuild.cpio import S_IFDIR, S_IFLNK, S_IFREG, Member, newc_stream
from eifbuild.errors import RamdiskError
from eifbuild.unpack import list_archive, unpack_archive


def _arc(*members: Member) -> bytes:
    return b"".join(newc_stream(members))


def test_unpack_symlink_target_with_nul_is_a_ramdisk_error(tmp_path: Path) -> None:
    # fuzz target unpack: os.symlink raised ValueError (embedded null character)
    arc = _arc(Member(b"dev", S_IFDIR, 0o755), Member(b"dev/l", S_IFLNK, 0o777, data=b"a\0b"))
    with pytest.raises(RamdiskError, match=r"dev/l.*symlink target has a NUL byte"):
        unpack_archive(io.BytesIO(arc), tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("name", [b"a\nb", b"a\rb", b"x\x1b[2Jy", b"\xe2\x80\xaeevil"])
def test_listing_escapes_control_characters_in_names(name: bytes) -> None:
    # fuzz target cpio: a member name with a newline forged a second listing line
    arc = _arc(
        Member(name, S_IFREG, 0o644, data=b"x"),
        Member(b"l", S_IFLNK, 0o777, data=b"t\nu"),
    )
    lines = list(list_archive(io.BytesIO(arc)))
    assert len(lines) == 2
    for line in lines:
        assert line.isprintable(), repr(line)
    assert lines[1].endswith(" l -> t\\x0au")
