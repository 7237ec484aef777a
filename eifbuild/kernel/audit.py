"""Build the default blobs and hold them to ``kernels/<arch>/expected.json``.

:func:`build_checked` is what ``eifbuild kernel build`` runs (cached build, then compare, or
record with ``--record``); :func:`verify_from_scratch` is ``--verify``: a new toolchain root,
kernel and init in a scratch directory (only the sha256-checked downloads are reused), compared
with ``expected.json`` and thrown away.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from eifbuild.kernel._common import Log, download_dir, quiet, scratch_cache
from eifbuild.kernel.blobsdir import build_blobs
from eifbuild.kernel.expected import Outcome, check_expected, outcome, record_expected


@dataclass(frozen=True)
class KernelReport:
    arch: str
    blobs: Path | None  # None after --verify (the scratch build is deleted)
    outcome: Outcome
    recorded: Path | None = None  # expected.json written by --record
    from_scratch: bool = False


def build_checked(arch: str = "x86_64", *, jobs: int | None = None, force: bool = False,
                  record: bool = False, log: Log = quiet) -> KernelReport:  # fmt: skip
    """Build (or reuse) the blobs; compare with expected.json (or record it)."""
    blobs = build_blobs(arch, jobs=jobs, force=force, log=log)
    got = outcome(arch, blobs)
    if record:
        return KernelReport(arch, blobs, got, recorded=record_expected(arch, got))
    check_expected(arch, got)
    return KernelReport(arch, blobs, got)


def verify_from_scratch(arch: str = "x86_64", *, jobs: int | None = None,
                        log: Log = quiet) -> KernelReport:  # fmt: skip
    """Rebuild root, kernel and init with no cache; compare with expected.json."""
    base = download_dir()
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix=".verify-") as tmp:
        log(f"verifying the {arch} kernel and init from scratch in {tmp}")
        with scratch_cache(Path(tmp)):
            got = outcome(arch, build_blobs(arch, jobs=jobs, force=True, log=log))
    check_expected(arch, got)
    return KernelReport(arch, None, got, from_scratch=True)
