"""Opening user-supplied input files safely: regular files only, small files with a bound.

A FIFO would block and a device such as /dev/zero would never end, so both are refused
before anything is read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from eifbuild.errors import EifbuildError


def open_regular(
    path: str | os.PathLike[str], what: str, error: type[EifbuildError] = EifbuildError
) -> BinaryIO:
    """Open ``path`` for reading; refuse anything but a regular file without blocking.

    ``what`` prefixes the one-line error message (e.g. ``"kernel /x/bzImage"``).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(f"{what}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise error(f"{what}: not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_small_file(
    path: str | os.PathLike[str],
    what: str,
    limit: int,
    error: type[EifbuildError] = EifbuildError,
) -> bytes:
    """The bytes of ``path``, refusing files over ``limit`` bytes without reading them whole.

    Failures raise ``error`` with a one-line message naming ``what`` and the path.
    """
    p = Path(path)
    with open_regular(p, f"{what} {p}", error) as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise error(f"{what} {p}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise error(f"{what} {p}: larger than {limit} bytes")
    return data
