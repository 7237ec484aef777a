"""Command-line entry point: ``eifbuild <command> ...``.

Each subcommand lives in its own small module under ``eifbuild.cli`` and exposes:

* ``HELP``: one-line summary shown in ``eifbuild --help``;
* ``add_arguments(parser)``: declares its options;
* ``run(args) -> int``: does the work and returns the exit code.

Exit codes (also in README): 0 success; 1 failure (bad input, failed build or verification);
2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from eifbuild import __version__
from eifbuild.cli._stdout import guarded_stdout
from eifbuild.errors import EXIT_FAILURE, EXIT_USAGE, EifbuildError

# command name -> module (relative to eifbuild.cli). Order is the order shown in --help.
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "build": "build",
    "assemble": "assemble",
    "describe": "describe",
    "pcr": "pcr",
    "extract": "extract",
    "rootfs": "rootfs",
    "verify": "verify",
    "sign": "sign",
    "measure": "measure",
    "sign-payload": "sign_payload",
    "attach-signature": "attach_signature",
    "init": "init",
    "kernel": "kernel",
    "boot-test": "boot_test",
    "diff": "diff",
    "policy": "policy",
    "push": "push",
    "pull": "pull",
    "cache": "cache",
    "attestation": "attestation",
}

# Reserved first words after a command: `eifbuild policy lint X` runs the module policy_lint.
# Any other first word keeps the command's own form (`eifbuild policy app.eif ...`).
NESTED: dict[str, dict[str, str]] = {
    "policy": {"lint": "policy_lint", "check": "policy_check"},
}

EPILOG = """exit codes:
  0  success
  1  failure: bad input, build failed, verification failed
  2  usage error

Add --debug before the command to see tracebacks."""


def _load(modname: str) -> ModuleType:
    return importlib.import_module(f"eifbuild.cli.{modname}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eifbuild",
        description="Build, inspect, measure and sign AWS Nitro Enclave images (EIF v4), reproducibly.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"eifbuild {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, modname in COMMANDS.items():
        mod = _load(modname)
        p = sub.add_parser(
            name,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
        for word, nested_mod in NESTED.get(name, {}).items():
            sub_mod = importlib.import_module(f"eifbuild.cli.{nested_mod}")
            q = sub.add_parser(  # no help=: not listed on its own in `eifbuild --help`
                f"{name} {word}",
                description=sub_mod.DESCRIPTION,
                epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            sub_mod.add_arguments(q)
            q.set_defaults(_run=sub_mod.run)
    return parser


def _route_nested(argv: Sequence[str]) -> list[str]:
    """``policy lint ...`` -> ``"policy lint" ...`` so argparse picks the nested parser."""
    out = list(argv)
    for i, word in enumerate(out):
        if word == "--":
            break
        if word.startswith("-"):
            continue  # global options (--debug) come before the command
        if word in NESTED and i + 1 < len(out) and out[i + 1] in NESTED[word]:
            out[i : i + 2] = [f"{word} {out[i + 1]}"]
        break
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run eifbuild with ``argv`` (without the program name); return the exit code."""
    from eifbuild import _progress
    from eifbuild.cli import _bars

    _progress.set_bar_factory(_bars.progress)  # the core's bars are the CLI's tqdm bars
    parser = build_parser()
    try:
        args = parser.parse_args(_route_nested(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse: --help / --version (0) or usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    previous = _install_sigterm_handler()
    try:
        with guarded_stdout():
            return int(args._run(args))
    except EifbuildError as exc:
        if args.debug:
            raise
        print(f"eifbuild: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("eifbuild: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_FAILURE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _on_sigterm(signum: int, frame: object) -> None:
    # Unwind like Ctrl-C so that atomic outputs remove their temp files; 128 + SIGTERM.
    raise SystemExit(128 + signum)


def _install_sigterm_handler() -> Any:
    """Turn SIGTERM into an exception while a command runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)


def entry_point() -> None:
    sys.exit(main(sys.argv[1:]))
