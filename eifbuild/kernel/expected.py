"""``kernels/<arch>/expected.json``: the bytes the recipe must give, and the PCR1 they make.

It records the sha384 of the kernel image and of the init, the PCR1 an EIF gets from them with
the recipe's cmdline (kernel || trimmed cmdline || bootstrap ramdisk of ``dev`` + ``init``, no
``nsm.ko``: docs/spec/eif.md, PCR table), and the inputs they came from (toolchain pin hash,
source, fragment, patches, init sources, cmdline). :func:`check_expected` compares a build with
it and says what changed when they differ; :func:`record_expected` rewrites it after a
deliberate change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eifbuild.blobs import read_cmdline_file
from eifbuild.errors import KernelMismatchError
from eifbuild.kernel._aptfetch import load_pin
from eifbuild.kernel._common import RECIPE_VERSION, kernels_dir, sha256_file, sha384_file
from eifbuild.kernel.build import patches
from eifbuild.kernel.toolpin import toolchain_key
from eifbuild.measure import PcrHasher
from eifbuild.ramdisk import bootstrap_stream

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Outcome:
    """What a build gave: hashes of a blobs directory and its PCR1."""

    image_name: str
    image_sha384: str
    init_sha384: str
    pcr1: str


def recipe_inputs(arch: str) -> dict[str, Any]:
    """Everything the kernel and init bytes depend on, by hash."""
    pin = load_pin(arch)
    d = kernels_dir() / arch
    init = kernels_dir() / "init"
    return {
        "recipe": RECIPE_VERSION,
        "toolchain": toolchain_key(),
        "source": f"{pin.package} {pin.version} {pin.tarball_sha256}",
        "source_date_epoch": pin.source_date_epoch,
        "fragment": sha256_file(d / "enclave.config"),
        "patches": {p.name: sha256_file(p) for p in patches(arch)},
        "init": {n: sha256_file(init / n) for n in ("init.c", "Makefile")},
        "cmdline": sha256_file(d / "cmdline"),
    }


def default_pcr1(kernel: Path, cmdline: str, init: Path) -> str:
    """PCR1 of an EIF with this kernel, cmdline and init and no nsm.ko (as the writer does)."""
    h = PcrHasher()
    with kernel.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    h.update(cmdline.encode())
    for chunk in bootstrap_stream(init, None):
        h.update(chunk)
    return h.hexdigest()


def outcome(arch: str, blobs: Path) -> Outcome:
    """Hashes and PCR1 of a blobs directory built for ``arch``."""
    name = load_pin(arch).image_name
    kernel, init = blobs / name, blobs / "init"
    pcr1 = default_pcr1(kernel, read_cmdline_file(blobs / "cmdline"), init)
    return Outcome(name, sha384_file(kernel), sha384_file(init), pcr1)


def expected_path(arch: str) -> Path:
    return kernels_dir() / arch / "expected.json"


def load_expected(arch: str) -> dict[str, Any]:
    path = expected_path(arch)
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict) or not isinstance(raw.get("inputs"), dict):
            raise ValueError("not an object with inputs")
        for key in ("image_sha384", "init_sha384", "pcr1"):
            if not isinstance(raw.get(key), str):
                raise ValueError(f"{key} missing")
        return raw
    except (OSError, ValueError) as exc:
        raise KernelMismatchError(f"{path} is unreadable: {exc}") from None


def _changed_inputs(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    names = {"toolchain": "toolchain pin", "source": "kernel source", "fragment": "config "
             "fragment", "patches": "patches", "init": "init sources", "cmdline": "cmdline",
             "recipe": "recipe version", "source_date_epoch": "source_date_epoch"}  # fmt: skip
    return [
        names.get(k, k) for k in sorted(set(recorded) | set(now)) if recorded.get(k) != now.get(k)
    ]


def _short(h: str) -> str:
    return f"{h[:12]}…"


def check_expected(arch: str, got: Outcome) -> None:
    """Raise :class:`KernelMismatchError` naming what differs from ``expected.json``."""
    want = load_expected(arch)
    diffs = [
        f"{label} sha384 {_short(g)} (expected {_short(w)})"
        for label, g, w in (
            (got.image_name, got.image_sha384, want["image_sha384"]),
            ("init", got.init_sha384, want["init_sha384"]),
        )
        if g != w
    ]
    if got.pcr1 != want["pcr1"]:
        diffs.append(f"PCR1 {_short(got.pcr1)} (expected {_short(want['pcr1'])})")
    if not diffs:
        return
    changed = _changed_inputs(want["inputs"], recipe_inputs(arch))
    where = expected_path(arch)
    if changed:
        cause = (
            f"inputs changed since {where.name} was recorded: {', '.join(changed)}; if that is "
            f"deliberate, run `eifbuild kernel build --arch {arch} --record` and commit it"
        )
    else:
        cause = (
            "with the same inputs (toolchain pin, source, fragment, patches, init, cmdline): "
            "this host did not reproduce the recorded bytes; please report it"
        )
    raise KernelMismatchError(f"{arch} build differs from {where}: {'; '.join(diffs)}; {cause}")


def record_expected(arch: str, got: Outcome) -> Path:
    """Write ``expected.json`` for ``got`` and the current inputs."""
    path = expected_path(arch)
    data = {
        "arch": arch,
        "image": got.image_name,
        "image_sha384": got.image_sha384,
        "init_sha384": got.init_sha384,
        "pcr1": got.pcr1,
        "pcr1_means": "kernel || cmdline (trimmed) || bootstrap ramdisk (dev, init; no nsm.ko)",
        "inputs": recipe_inputs(arch),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path
