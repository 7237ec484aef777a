"""stdout as the commands see it: write errors become one-line errors, not tracebacks.

A full disk (``> /dev/full``), an I/O error, or text that a strict encoding cannot carry
raise :class:`OutputError` naming stdout, so ``main`` prints ``eifbuild: error: stdout: …``
and exits 1. A closed pipe stays a :class:`BrokenPipeError` (``main`` exits quietly, as
``head`` users expect).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Iterator
from typing import Any

from eifbuild.errors import EifbuildError


class OutputError(EifbuildError):
    """Writing the command's output failed (stdout full, I/O error, unencodable text)."""


def _convert(exc: BaseException) -> BaseException:
    if isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno == errno.EPIPE):
        return exc
    if isinstance(exc, UnicodeEncodeError):
        return OutputError(f"stdout: cannot encode the output in {exc.encoding} ({exc.reason})")
    if isinstance(exc, OSError):
        return OutputError(f"stdout: cannot write ({exc.strerror or exc})")
    return exc


class _Guard:
    """A thin proxy of a text or binary stream that converts write errors."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def write(self, data: Any) -> int:
        try:
            return int(self._inner.write(data))
        except (OSError, UnicodeEncodeError) as exc:
            raise _convert(exc) from None

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._inner.flush()
        except (OSError, UnicodeEncodeError) as exc:
            raise _convert(exc) from None

    @property
    def buffer(self) -> _Guard:
        return _Guard(self._inner.buffer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _silence(stream: Any) -> None:
    """Point fd 1 at /dev/null so that the interpreter's final flush cannot fail again."""
    with contextlib.suppress(Exception):
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)


@contextlib.contextmanager
def guarded_stdout() -> Iterator[None]:
    """Run a command with the guarded stdout; flush it before leaving (errors converted)."""
    original = sys.stdout
    sys.stdout = _Guard(original)
    try:
        yield
        sys.stdout.flush()
    except (OutputError, BrokenPipeError):
        _silence(original)
        raise
    finally:
        sys.stdout = original
