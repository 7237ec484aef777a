"""Progress reporting of the core, without a UI: the caller supplies the bars.

Core stages write ``with progress(total=..., desc=...) as bar: bar.update(n)``. Unless a bar
factory is installed (the CLI installs its tqdm bars, ``eifbuild.cli._bars``), ``progress``
returns a bar that only counts, so library callers (``eifbuild.api``) see nothing printed;
they follow long steps with ``progress=`` callbacks instead.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol


class Bar(Protocol):
    """What the core uses of a progress bar (a subset of tqdm's interface)."""

    total: float | None
    n: float

    def update(self, n: float = 1) -> object: ...


BarFactory = Callable[..., AbstractContextManager[Any]]


class NullBar:
    """Counts and shows nothing."""

    def __init__(self, total: float | None = None) -> None:
        self.total = total
        self.n: float = 0

    def update(self, n: float = 1) -> None:
        self.n += n

    def __enter__(self) -> NullBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_factory: BarFactory | None = None


def set_bar_factory(factory: BarFactory | None) -> None:
    """Install (or with None remove) what :func:`progress` returns bars from."""
    global _factory
    _factory = factory


def progress(total: int | None = None, desc: str = "", unit: str = "B", **kw: Any) -> Any:
    """A bar from the installed factory, else a :class:`NullBar`."""
    if _factory is None:
        return NullBar(total)
    return _factory(total=total, desc=desc, unit=unit, **kw)
