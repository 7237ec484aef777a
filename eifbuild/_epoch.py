"""SOURCE_DATE_EPOCH, read in exactly one place."""

from __future__ import annotations

import datetime as _dt
import os

from eifbuild.errors import UsageError


def source_date_epoch() -> int | None:
    """The SOURCE_DATE_EPOCH value as an int, or None when unset or empty."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH={raw!r} is not a non-negative integer")
    return int(raw)


def rfc3339(epoch: int) -> str:
    """Format like chrono's to_rfc3339 for whole seconds: ``YYYY-MM-DDTHH:MM:SS+00:00``."""
    return _dt.datetime.fromtimestamp(epoch, tz=_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


DEFAULT_BUILD_TIME = rfc3339(0)  # 1970-01-01T00:00:00+00:00, never the wall clock
