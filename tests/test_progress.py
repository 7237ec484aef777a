"""Progress bars on a real pseudo-terminal: shown on a TTY (sized or not), silent otherwise."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import sys
import termios
from collections.abc import Iterator
from typing import TextIO

import pytest

from eifbuild.cli import _bars as _progress


def _drain(fd: int) -> bytes:
    out = b""
    os.set_blocking(fd, False)
    while True:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            return out
        if not chunk:
            return out
        out += chunk


@pytest.fixture
def tty(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, int]]:
    """A pty whose slave becomes sys.stderr when a bar runs (pytest's capture resets
    sys.stderr between fixture setup and the test, so it is swapped in by _run_bar)."""
    master, slave = pty.openpty()
    stream = os.fdopen(slave, "w", encoding="utf-8")
    monkeypatch.setattr(_progress, "_quiet", False)
    _streams.append(stream)
    try:
        yield master, slave
    finally:
        _streams.clear()
        stream.close()
        os.close(master)


_streams: list[TextIO] = []


def _run_bar() -> None:
    saved = sys.stderr
    if _streams:
        sys.stderr = _streams[0]
    try:
        _bar()
    finally:
        sys.stderr = saved


def _bar() -> None:
    with _progress.progress(total=100, desc="work", mininterval=0) as bar:
        for _ in range(4):
            bar.update(25)
    sys.stderr.flush()


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@pytest.mark.parametrize(("rows", "cols"), [(0, 0), (0, 100), (24, 0), (24, 100)])
def test_bar_shows_on_a_tty_even_without_a_size(tty: tuple[int, int], rows: int, cols: int) -> None:
    """`script -qc` gives a 0x0 pty: tqdm then sees -1 rows and printed nothing."""
    master, slave = tty
    _set_size(slave, rows, cols)
    _run_bar()
    shown = _drain(master)
    assert b"work:" in shown and b"100%" in shown


def test_bar_silent_when_quiet(tty: tuple[int, int]) -> None:
    master, slave = tty
    _set_size(slave, 24, 100)
    _progress.set_quiet(True)
    _run_bar()
    assert _drain(master) == b""


def test_bar_silent_off_a_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    r, w = os.pipe()
    stream = os.fdopen(w, "w", encoding="utf-8")
    monkeypatch.setattr(_progress, "_quiet", False)
    _streams.append(stream)
    try:
        _run_bar()
    finally:
        _streams.clear()
    stream.close()
    assert os.read(r, 65536) == b""
    os.close(r)
