"""Small helpers shared by subcommands (output conventions)."""

from __future__ import annotations

import json
import sys
from typing import Any


def print_json(obj: Any) -> None:
    """Pretty JSON like serde_json's pretty printer (2-space indent), newline-terminated."""
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def info(msg: str) -> None:
    """Human progress/status lines go to stderr, never stdout."""
    print(msg, file=sys.stderr)
