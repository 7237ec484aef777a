"""Layer order does not change the output: walk-order and random-order gzip layers of the SAME
files give byte-identical ramdisks and the same PCRs; out-of-order layers go through a temp file
that leaves nothing behind, also when the build fails."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from tests.helpers.imagegen import E, layer_bytes, oci_image, oci_layout
from tests.test_build import check_eif, run_cli, sections
from tests.test_build_blobs import make_blobs


def _layers(rng: random.Random) -> list[list[E]]:
    """Three layers: shared and private directories, whiteouts and an opaque directory across
    layers, overwrites, symlinks and a hard link; half random, half text contents."""
    text = b"".join(b"line %d of a text file\n" % i for i in range(4000))
    layers: list[list[E]] = []
    names: list[list[str]] = []
    for li in range(3):
        entries = [E.dir("usr"), E.dir("usr/share"), E.dir(f"opt{li}")]
        mine = []
        for d in range(6):
            entries.append(E.dir(f"usr/share/d{d}"))
            for f in range(12):
                name = f"usr/share/d{d}/l{li}-f{f:02d}" if d < 3 else f"opt{li}/d{d}-f{f:02d}"
                size = min(int(rng.expovariate(1 / 3000)), 60_000)
                data = rng.randbytes(size) if f % 2 else text[:size]
                entries.append(E.file(name, data))
                mine.append(name)
        entries.append(E.file(f"opt{li}/big.bin", rng.randbytes(300_000 + li)))
        entries.append(E.symlink(f"opt{li}/link", f"/{mine[3]}"))
        entries.append(E.hardlink(f"{mine[5]}~hl", mine[5]))
        layers.append(entries)
        names.append(mine)
    for name in rng.sample(names[0], 10):
        parent, _, base = name.rpartition("/")
        layers[1].append(E.file(f"{parent}/.wh.{base}"))
    layers[1].append(E.file("usr/share/d1/.wh..wh..opq"))
    for name in rng.sample(names[0], 8) + rng.sample(names[1], 4):
        if not any(e.name == name.encode() for e in layers[2]):
            layers[2].append(E.file(name, rng.randbytes(500)))
    layers[2].append(E.file("opt1/.wh.big.bin"))
    return layers


def _order(entries: list[E], order: str, seed: int) -> list[E]:
    if order == "walk":
        return sorted(entries, key=lambda e: e.name.split(b"/"))
    dirs = sorted((e for e in entries if e.kind == "dir"), key=lambda e: e.name.split(b"/"))
    links = [e for e in entries if e.kind == "hardlink"]
    rest = [e for e in entries if e.kind not in ("dir", "hardlink")]
    random.Random(seed).shuffle(rest)
    return dirs + rest + links


def _image(root: Path, order: str) -> str:
    layers = _layers(random.Random(42))
    blobs = [layer_bytes(_order(entries, order, i)) for i, entries in enumerate(layers)]
    manifest = oci_image(root, blobs, compression="gzip", config={"Cmd": ["/opt0/big.bin"]})
    oci_layout(root, [manifest], ["app"])
    return f"oci:{root}:app"


def test_walk_and_random_order_give_the_same_eif(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blobs = make_blobs(tmp_path / "blobs")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    results = {}
    for order in ("walk", "random"):
        out = tmp_path / f"{order}.eif"
        ref = _image(tmp_path / order, order)
        rc, stdout, err = run_cli(
            ["build", ref, "--blobs", str(blobs), "-o", str(out), "--json", "--tmp-dir", str(tmp)],
            capsys,
        )
        assert rc == 0, err
        check_eif(out, stdout, blobs)
        record = json.loads(stdout)
        results[order] = record
        assert os.listdir(tmp) == []
        access = [layer["access"] for layer in record["layers"]]
        if order == "walk":
            assert access == ["stream"] * 3
        else:
            assert access == ["temp-file"] * 3
            assert all(layer["temp_file_bytes"] > 0 for layer in record["layers"])
    walk, rand = (sections((tmp_path / f"{o}.eif").read_bytes()) for o in ("walk", "random"))
    assert walk[3:] == rand[3:]  # both ramdisks, byte for byte
    assert results["walk"]["Measurements"] == results["random"]["Measurements"]


def test_temp_file_is_gone_after_a_failed_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A random-order layer is spooled, then the build fails (a later layer is corrupt): one
    error line, no output file, nothing left in --tmp-dir, no descriptor left open."""
    blobs = make_blobs(tmp_path / "blobs")
    root = tmp_path / "img"
    layers = _layers(random.Random(1))
    data = [layer_bytes(_order(e, "random", i)) for i, e in enumerate(layers)]
    data[2] = data[2][: len(data[2]) // 2]  # truncated tar: caught after layer 0 spooled
    manifest = oci_image(root, data, compression="gzip", config={"Cmd": ["/x"]})
    oci_layout(root, [manifest], ["app"])
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "out.eif"
    fds = set(os.listdir("/proc/self/fd"))
    rc, _, err = run_cli(
        ["build", f"oci:{root}:app", "--blobs", str(blobs), "-o", str(out), "--tmp-dir", str(tmp)],
        capsys,
    )
    assert rc == 1 and err.startswith("eifbuild: error: ") and err.count("\n") == 1, err
    assert not out.exists() and os.listdir(tmp) == []
    assert set(os.listdir("/proc/self/fd")) <= fds
