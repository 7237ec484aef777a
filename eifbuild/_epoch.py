"""SOURCE_DATE_EPOCH, read in exactly one place."""

from __future__ import annotations

import datetime as _dt
import os
import re

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


# linuxkit's fixed mtime (moby/build/dir.go defaultModTime, 2017-04-18T16:30:00Z): every entry
# linuxkit adds to a ramdisk has it, and eifbuild gives it to every entry Docker would stamp with
# the wall clock (init-layer files, a created WorkingDir, implied directories) and to the demo.
LINUXKIT_MTIME = 1492533000

DEFAULT_BUILD_TIME = rfc3339(0)  # 1970-01-01T00:00:00+00:00, never the wall clock


# RFC 3339 date-time (``T``/``t``/space separator, ``Z``/``z`` or a numeric offset). Go writes
# image configs' ``created`` this way (RFC3339Nano: up to 9 fraction digits).
_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def normalize_rfc3339(text: str) -> str | None:
    """``text`` re-written as chrono's ``DateTime<Utc>::to_rfc3339`` writes it, or None.

    That is nitro-cli's BuildTime form (docs/spec/eif.md §5.2): the instant converted to UTC,
    ``YYYY-MM-DDTHH:MM:SS``, then ``.fff``, ``.ffffff`` or ``.fffffffff`` (the shortest that is
    exact; nothing for whole seconds), then ``+00:00`` (never ``Z``). Fraction digits past
    nanoseconds are dropped, as chrono's parser does. None when ``text`` is not an RFC 3339
    date-time in years 0001-9999 (leap seconds included: chrono has no ``:60`` in UTC output).
    """
    m = _RFC3339_RE.fullmatch(text.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac, sign, off_h, off_m = m.group(7), m.group(8), m.group(9), m.group(10)
    nanos = int((frac or "0")[:9].ljust(9, "0"))
    offset = _dt.timedelta(0)
    if sign is not None:
        if int(off_h) > 23 or int(off_m) > 59:
            return None
        offset = _dt.timedelta(hours=int(off_h), minutes=int(off_m))
        if sign == "-":
            offset = -offset
    try:
        local = _dt.datetime(year, month, day, hour, minute, second, tzinfo=_dt.timezone(offset))
        utc = local.astimezone(_dt.UTC)
    except (ValueError, OverflowError):
        return None
    if not 1 <= utc.year <= 9999:
        return None
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + _fraction(nanos) + "+00:00"


def _fraction(nanos: int) -> str:
    """chrono's SecondsFormat::AutoSi: milli-, micro- or nanosecond digits, or nothing."""
    if nanos == 0:
        return ""
    if nanos % 1_000_000 == 0:
        return f".{nanos // 1_000_000:03d}"
    if nanos % 1_000 == 0:
        return f".{nanos // 1_000:06d}"
    return f".{nanos:09d}"
