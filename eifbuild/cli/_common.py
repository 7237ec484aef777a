"""Small helpers shared by subcommands (output conventions)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from eifbuild._atomic import write_atomic
from eifbuild.errors import EifbuildError
from eifbuild.textescape import safe_name


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


def printable(obj: Any) -> Any:
    """``obj`` with every string that UTF-8 cannot carry (lone surrogates: non-UTF-8 file
    names from the command line or an image) escaped as ``\\xNN`` (see ``safe_name``)."""
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            return safe_name(obj)
        return obj
    if isinstance(obj, dict):
        return {printable(k): printable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [printable(v) for v in obj]
    return obj


def print_json(obj: Any) -> None:
    """Pretty JSON like serde_json's pretty printer (2-space indent), newline-terminated."""
    sys.stdout.write(json.dumps(printable(obj), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_text(text: str) -> None:
    """Human text on stdout; a line UTF-8 cannot carry is escaped (see :func:`printable`)."""
    sys.stdout.write("\n".join(printable(line) for line in text.split("\n")))
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
