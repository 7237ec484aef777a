"""Small helpers shared by subcommands (output conventions)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from eifbuild._atomic import write_atomic
from eifbuild.errors import EifbuildError


def output_path(text: str) -> str:
    """argparse type of an output file option: an empty path is a usage error (it meant '.')."""
    if not text:
        raise argparse.ArgumentTypeError("empty path")
    return text


def add_eif_output(p: argparse.ArgumentParser) -> None:
    """The required ``--output/-o OUT.eif`` of the commands that write a new EIF."""
    p.add_argument(
        "--output",
        "-o",
        required=True,
        type=output_path,
        metavar="OUT.eif",
        help="EIF file to write",
    )


def print_json(obj: Any) -> None:
    """Pretty JSON like serde_json's pretty printer (2-space indent), newline-terminated."""
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def info(msg: str) -> None:
    """Human progress/status lines go to stderr, never stdout."""
    print(msg, file=sys.stderr)


def write_output(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a small output file atomically; an OS error becomes a one-line EifbuildError."""
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise EifbuildError(f"{os.fspath(path)}: cannot write ({exc.strerror or exc})") from None
