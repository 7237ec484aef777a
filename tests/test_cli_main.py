from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from eifbuild import __version__
from eifbuild.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-command"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "exit codes" in out and "usage error" in out


def test_sigterm_leaves_no_partial_output(tmp_path: Path) -> None:
    """A build interrupted by SIGTERM removes its temp file and writes no output."""
    script = (
        "import os, sys, time\n"
        "from eifbuild.cli import main\n"
        "from eifbuild import _atomic\n"
        "orig = _atomic.atomic_output\n"
        "def slow(path, mode=0o644):\n"
        "    cm = orig(path, mode)\n"
        "    class Slow:\n"
        "        def __init__(self, fh): self.fh = fh\n"
        "        def __getattr__(self, name): return getattr(self.fh, name)\n"
        "        def write(self, b):\n"
        "            print('ready', flush=True); time.sleep(30); return self.fh.write(b)\n"
        "    class W:\n"
        "        def __enter__(self): return Slow(cm.__enter__())\n"
        "        def __exit__(self, *a): return cm.__exit__(*a)\n"
        "    return W()\n"
        "_atomic.atomic_output = slow\n"
        "import eifbuild.eif.writer as w\n"
        "w.atomic_output = slow\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    kernel = tmp_path / "k"
    kernel.write_bytes(b"KERNEL")
    out = tmp_path / "out.eif"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            script,
            "assemble",
            "--kernel",
            str(kernel),
            "--cmdline",
            "x",
            "--ramdisk",
            str(kernel),
            "--output",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    assert proc.returncode == 143
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]


@pytest.mark.parametrize(
    "argv",
    [
        ["build", "docker-archive:x.tar", "-o", ""],
        ["assemble", "--kernel", "k", "--cmdline", "c", "--ramdisk", "r", "-o", ""],
        ["demo", "-o", ""],
        ["sign", "a.eif", "--signing-certificate", "c", "--private-key", "k", "-o", ""],
        ["attach-signature", "a.eif", "--signature", "s", "--signing-certificate", "c", "-o", ""],
        ["sign-payload", "p.cbor", "--private-key", "k", "-o", ""],
        ["measure", "a.eif", "--payload", ""],
        ["diff", "a.eif", "b.eif", "--html", ""],
        ["policy", "a.eif", "--account-id", "111122223333", "--role-arn", "r", "-o", ""],
    ],
)
def test_empty_output_path_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o ""` meant '.' and failed later with 'Device or resource busy'."""
    assert main(argv) == 2
    assert "empty path" in capsys.readouterr().err
