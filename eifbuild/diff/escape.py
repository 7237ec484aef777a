"""Printable, unambiguous text for hostile bytes (paths, cmdlines, error messages)."""

from __future__ import annotations

import unicodedata

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
