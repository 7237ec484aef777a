"""The CLI's progress bars: tqdm on stderr when it is a terminal, silent otherwise (CI, --json,
pipes). ``eifbuild.cli.main`` installs :func:`progress` as the core's bar factory
(:func:`eifbuild._progress.set_bar_factory`); the core itself never creates a tqdm bar.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm import tqdm

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Force progress off (the CLI calls this for --json and --quiet)."""
    global _quiet
    _quiet = quiet


def progress(total: int | None = None, desc: str = "", unit: str = "B", **kw: Any) -> tqdm[Any]:
    """A tqdm bar on stderr, disabled unless stderr is a TTY and progress is not silenced."""
    disable = _quiet or not sys.stderr.isatty()
    scale = unit == "B"
    # A terminal that reports no size (`script`, some CI ptys, `docker exec -t` at start)
    # gives tqdm -1 rows and columns, and it then prints nothing: use 80x24 there.
    sized = disable or min(_size()) > 0
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=scale,
        unit_divisor=1024 if scale else 1000,
        disable=disable,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=sized,
        ncols=None if sized else 80,
        nrows=None if sized else 24,
        **kw,
    )


def _size() -> tuple[int, int]:
    try:
        cols, rows = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError):
        return 0, 0
    return cols, rows
