"""Printable, unambiguous text for hostile bytes and strings (paths, cmdlines, metadata)."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

# Control, format (bidi overrides), surrogate, private, unassigned and line/paragraph separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def safe_text(raw: bytes) -> str:
    """Printable, unambiguous text for hostile bytes (paths, cmdlines).

    UTF-8 is kept; invalid bytes become ``\\xNN``; control, format (bidi overrides), separator
    and private characters become ``\\xNN``/``\\uNNNN``; a backslash is doubled.
    """
    out: list[str] = []
    for ch in raw.decode("utf-8", "surrogateescape"):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif unicodedata.category(ch) in _ESCAPED_CATEGORIES:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def safe_str(text: str) -> str:
    """:func:`safe_text` for a decoded string (lone surrogates shown as their bytes)."""
    return safe_text(text.encode("utf-8", "surrogatepass"))


def safe_json(value: Any) -> str:
    """Compact JSON text of ``value`` with unsafe characters as ``\\uXXXX`` escapes.

    Like ``json.dumps(value, sort_keys=True, ensure_ascii=False)`` (readable non-ASCII), but
    control, format (bidi overrides), surrogate, private and unassigned characters are
    escaped, so the text cannot drive a terminal and stays valid JSON.
    """
    out: list[str] = []
    for ch in json.dumps(value, sort_keys=True, ensure_ascii=False):
        if unicodedata.category(ch) in _ESCAPED_CATEGORIES:
            out.append(json.dumps(ch)[1:-1])  # \uXXXX, a surrogate pair above U+FFFF
        else:
            out.append(ch)
    return "".join(out)


def safe_name(text: str) -> str:
    """:func:`safe_text` for an OS name decoded with ``surrogateescape`` (``os.fsdecode``,
    ``sys.argv``, tar names): its undecodable bytes shown as ``\\xNN``; any other lone
    surrogate as its UTF-8-like bytes."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return safe_text(raw)
