"""Shared plumbing for the atheris harnesses in this directory.

Each harness calls :func:`main` with its target name, a one-input test function and a seed
generator. The test function feeds the input to eifbuild; :func:`main` wraps it so that:

- ``EifbuildError`` (any subclass) is the expected outcome for bad input and is swallowed;
- any other exception is a crash: the input is saved to ``fuzz/crashes/<target>-<sig>.bin``
  with the traceback next to it (``.txt``), a ``CRASH <target> <sig>`` line goes to stderr and
  fuzzing continues, so one run reports every distinct crash (signature = exception type +
  innermost eifbuild frame);
- with ``FUZZ_RAISE=1`` the exception propagates instead (to reproduce one input:
  ``FUZZ_RAISE=1 python fuzz/fuzz_eif.py fuzz/crashes/eif-XXXX.bin``).

Seeds are written to ``fuzz/corpus/<target>/`` (gitignored) before fuzzing starts.
"""

from __future__ import annotations

import hashlib
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
CRASHES = HERE / "crashes"
CORPUS = HERE / "corpus"
ROOT = HERE.parent

_seen: set[str] = set()


def _signature(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/eifbuild/" in f.filename] or frames
    last = ours[-1] if ours else None
    where = f"{Path(last.filename).name}:{last.lineno}" if last else "?"
    return f"{type(exc).__name__}@{where}"


def _record(target: str, data: bytes, exc: BaseException) -> None:
    sig = _signature(exc)
    if sig in _seen:
        return
    _seen.add(sig)
    CRASHES.mkdir(exist_ok=True)
    tag = hashlib.sha256(sig.encode()).hexdigest()[:12]
    (CRASHES / f"{target}-{tag}.bin").write_bytes(data)
    text = "".join(traceback.format_exception(exc))
    (CRASHES / f"{target}-{tag}.txt").write_text(f"{sig}\n\n{text}")
    print(f"CRASH {target} {sig} -> fuzz/crashes/{target}-{tag}.bin", file=sys.stderr, flush=True)


def main(
    target: str,
    test_one: Callable[[bytes], None],
    seeds: Callable[[], Iterable[bytes]],
) -> None:
    from eifbuild.errors import EifbuildError

    reraise = os.environ.get("FUZZ_RAISE") == "1"

    def one(data: bytes) -> None:
        try:
            try:
                test_one(data)
            except EifbuildError as exc:
                msg = str(exc)
                if "\n" in msg or not msg.strip():
                    raise AssertionError(f"{type(exc).__name__} message not one line") from exc
        except Exception as exc:
            if reraise:
                raise
            _record(target, data, exc)

    argv = list(sys.argv)
    if not any(not a.startswith("-") for a in argv[1:]):
        corpus = CORPUS / target
        corpus.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(seeds()):
            (corpus / f"seed-{i}").write_bytes(seed)
        argv.append(str(corpus))
    atheris.Setup(argv, one)
    atheris.Fuzz()
