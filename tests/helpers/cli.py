"""Run the eifbuild CLI in-process and capture what it printed."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from eifbuild.cli import main


class CliResult(NamedTuple):
    rc: int
    out: str
    err: str


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> CliResult:
    """``eifbuild ARGV`` through ``eifbuild.cli.main``: exit code, stdout, stderr of this call
    only (anything captured before is drained first)."""
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return CliResult(rc, out, err)
