"""Bounded reads of small user-supplied files (certificates, keys, metadata, payloads, JSON)."""

from __future__ import annotations

import os
from pathlib import Path

from eifbuild.errors import EifbuildError


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
    try:
        with p.open("rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise error(f"{what} {p}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise error(f"{what} {p}: larger than {limit} bytes")
    return data
