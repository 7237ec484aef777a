"""Kconfig fragments and the reproducible-build environment of the kernel."""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse_config(lines: Iterable[str]) -> dict[str, str | None]:
    """Kconfig lines -> {option: value}, ``None`` for ``# CONFIG_X is not set``."""
    opts: dict[str, str | None] = {}
    for raw in lines:
        line = raw.strip()
        if m := _SET.match(line):
            opts[m.group(1)] = m.group(2)
        elif m := _UNSET.match(line):
            opts[m.group(1)] = None
    return opts


def missing_options(fragment: dict[str, str | None], config: dict[str, str | None]) -> list[str]:
    """Fragment lines that did not survive into the final ``.config``, as readable strings."""
    lost = []
    for opt, want in sorted(fragment.items()):
        have = config.get(opt)
        if want in (None, "n"):
            if have not in (None, "n"):
                lost.append(f"{opt} is not set (got {have})")
        elif have != want:
            lost.append(f"{opt}={want} (got {'not set' if have is None else have})")
    return lost


def kbuild_timestamp(epoch: int) -> str:
    """``KBUILD_BUILD_TIMESTAMP`` in a form ``date -d`` parses (not a bare number)."""
    return _dt.datetime.fromtimestamp(epoch, tz=_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def kbuild_env(epoch: int) -> dict[str, str]:
    return {
        "KBUILD_BUILD_TIMESTAMP": kbuild_timestamp(epoch),
        "KBUILD_BUILD_USER": "eifbuild",
        "KBUILD_BUILD_HOST": "eifbuild",
        "KBUILD_BUILD_VERSION": "1",
        "LOCALVERSION": "",
        "SOURCE_DATE_EPOCH": str(epoch),
    }
