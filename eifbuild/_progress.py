"""Progress bars that show on a terminal and stay silent otherwise (CI, --json, pipes)."""

from __future__ import annotations

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
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=scale,
        unit_divisor=1024 if scale else 1000,
        disable=disable,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
        **kw,
    )
