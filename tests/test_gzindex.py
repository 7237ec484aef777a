"""gzip layers are read through inflate checkpoints (eifbuild.sources._gzindex), never copied.

Expected bytes come from the test's own data (the tar it wrote, tarfile's offsets), never from
the code under test; blobs are made with zlib/gzip directly.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import os
import random
import tarfile
import tempfile
import tracemalloc
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eifbuild.errors import ImageSourceError
from eifbuild.model import EntryType
from eifbuild.rootfs import flatten
from eifbuild.sources import Limits, _gzindex, open_image
from eifbuild.sources._gzindex import SNAPSHOT_BYTES, GzipIndex, IndexBudget
from tests.helpers.imagegen import E, layer_bytes, oci_layout, simple_oci

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _members(data: bytes, cuts: list[int], levels: list[int]) -> bytes:
    """``data`` as a multi-member gzip stream split at ``cuts`` (as pigz / cat a.gz b.gz)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    out = b""
    for i, (a, b) in enumerate(itertools.pairwise(points)):
        out += gzip.compress(data[a:b], compresslevel=levels[i % len(levels)], mtime=0)
    return out or gzip.compress(b"", mtime=0)


def _payload(rng: random.Random, size: int) -> bytes:
    """Half incompressible, half repetitive: checkpoints land at uneven compressed offsets."""
    out = bytearray()
    while len(out) < size:
        n = rng.randint(1, 5000)
        out += rng.randbytes(n) if rng.random() < 0.5 else bytes([rng.randrange(256)]) * n
    return bytes(out[:size])


def _index(path: Path, spacing: int, budget: int = 1 << 30) -> GzipIndex:
    size = path.stat().st_size
    return GzipIndex(str(path), 0, size, "test layer", spacing, IndexBudget(budget), 1 << 40)


@SETTINGS
@given(
    seed=st.integers(0, 2**32),
    size=st.integers(0, 300_000),
    spacing=st.integers(1, 40_000),
    in_chunk=st.sampled_from([7, 512, 4096, 32 << 10]),
    out_chunk=st.sampled_from([1, 1000, 1 << 16, 1 << 20]),
    cuts=st.lists(st.integers(0, 10**6), max_size=4),
    levels=st.lists(st.integers(0, 9), min_size=1, max_size=3),
    reads=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 50_000)), max_size=25),
)
def test_any_range_reads_back_exactly(
    seed: int,
    size: int,
    spacing: int,
    in_chunk: int,
    out_chunk: int,
    cuts: list[int],
    levels: list[int],
    reads: list[tuple[int, int]],
) -> None:
    data = _payload(random.Random(seed), size)
    with (
        tempfile.TemporaryDirectory() as tmp,
        mock.patch.object(_gzindex, "IN_CHUNK", in_chunk),
        mock.patch.object(_gzindex, "CHUNK", out_chunk),
    ):
        blob = Path(tmp) / "blob"
        blob.write_bytes(_members(data, cuts, levels))
        index = _index(blob, spacing)
        assert b"".join(index.build()) == data
        assert index.size == len(data)
        outs = [c.out for c in index.checkpoints]
        assert outs == sorted(outs) and outs[0] == 0
        if in_chunk < 4096 and size > 4 * (spacing + in_chunk * 1032):
            assert len(outs) > 1  # checkpoints were taken
        for start, n in reads:
            start = start % (len(data) + 1)
            n = min(n, len(data) - start)
            assert b"".join(index.chunks(start, n)) == data[start : start + n]
        index.close()


def _tar_with_offsets(rng: random.Random, count: int) -> tuple[bytes, dict[str, tuple[int, bytes]]]:
    entries = [
        E.file(f"f{i:03d}", _payload(rng, rng.choice([0, 10, 600, 5000, 70_000])))
        for i in range(count)
    ]
    rng.shuffle(entries)  # tar order is not sorted: export order differs from it
    raw = layer_bytes(entries)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        where = {ti.name: ti.offset_data for ti in tf if ti.isfile()}
    return raw, {e.name.decode(): (where[e.name.decode()], e.data) for e in entries}


@SETTINGS
@given(
    seed=st.integers(0, 2**32),
    count=st.integers(1, 40),
    spacing=st.sampled_from([512, 4096, 30_000, 1 << 20]),
    cuts=st.lists(st.integers(0, 10**6), max_size=3),
    unsorted=st.booleans(),
)
def test_every_entry_of_a_layer_in_any_order(
    seed: int, count: int, spacing: int, cuts: list[int], unsorted: bool
) -> None:
    """Entries spanning checkpoints, read in tar order, sorted order and random order (also
    with the output window of layers seen out of export order)."""
    rng = random.Random(seed)
    raw, files = _tar_with_offsets(rng, count)
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(_gzindex, "IN_CHUNK", 1024):
        blob = Path(tmp) / "blob"
        blob.write_bytes(_members(raw, cuts, [1, 6]))
        index = _index(blob, spacing)
        if unsorted:
            index.unsorted()
        assert hashlib.sha256(b"".join(index.build())).digest() == hashlib.sha256(raw).digest()
        by_tar = sorted(files.values())
        by_name = [files[name] for name in sorted(files)]
        shuffled = list(files.values())
        rng.shuffle(shuffled)
        for order in (by_tar, by_name, shuffled):
            for off, content in order:
                assert b"".join(index.chunks(off, len(content))) == content
        index.close()


def test_tar_order_reads_continue_one_reader(tmp_path: Path) -> None:
    """Reading entries in tar order never goes back to a checkpoint after the first read."""
    rng = random.Random(7)
    raw, files = _tar_with_offsets(rng, 60)
    (tmp_path / "blob").write_bytes(gzip.compress(raw, mtime=0))
    index = _index(tmp_path / "blob", 4096)
    for _ in index.build():
        pass
    assert len(index.checkpoints) > 10
    for off, content in sorted(files.values()):
        assert b"".join(index.chunks(off, len(content))) == content
    assert index.restarts == 1
    backwards = sorted(files.values())[::-1]
    for off, content in backwards[1:6]:  # [0] may be empty, ending where the reader is
        assert b"".join(index.chunks(off, len(content))) == content
    assert index.restarts == 6
    index.close()


def test_checkpoint_memory_stays_in_budget(tmp_path: Path) -> None:
    data = _payload(random.Random(3), 3 << 20)
    (tmp_path / "blob").write_bytes(gzip.compress(data, compresslevel=1, mtime=0))
    budget = 10 * SNAPSHOT_BYTES + _gzindex.READER_BYTES
    index = _index(tmp_path / "blob", 16 << 10, budget)
    with mock.patch.object(_gzindex, "IN_CHUNK", 4096):
        assert b"".join(index.build()) == data
        assert index.budget.used <= budget
        assert 5 <= len(index.checkpoints) <= 10
        assert index.spacing > 16 << 10  # thinned: spacing doubled
        gaps = [b.out - a.out for a, b in itertools.pairwise(index.checkpoints)]
        assert max(gaps) < 2 * index.spacing
        for start in (0, 1, 999_999, len(data) - 10):
            assert b"".join(index.chunks(start, 10)) == data[start : start + 10]
    index.close()
    assert index.budget.used == 0


def test_blob_changed_on_disk_after_verification_is_refused(tmp_path: Path) -> None:
    data = _payload(random.Random(1), 200_000)
    blob = tmp_path / "blob"
    blob.write_bytes(gzip.compress(data, mtime=0))
    index = _index(blob, 8192)
    assert b"".join(index.build()) == data
    with open(blob, "r+b") as fh:  # same inode, same size, rewritten in place
        fh.seek(100)
        fh.write(b"\0")
    with pytest.raises(ImageSourceError, match="changed on disk after it was verified"):
        b"".join(index.chunks(50_000, 10))
    index.close()


def test_truncated_and_trailing_garbage_are_corrupt(tmp_path: Path) -> None:
    good = gzip.compress(b"x" * 100_000, mtime=0)
    for name, blob in (("cut", good[:-5]), ("junk", good + b"junk")):
        (tmp_path / name).write_bytes(blob)
        index = _index(tmp_path / name, 4096)
        with pytest.raises(ImageSourceError, match=r"test layer: corrupt gzip data"):
            b"".join(index.build())
        index.close()


def test_crc_is_checked_at_member_end(tmp_path: Path) -> None:
    blob = bytearray(gzip.compress(b"payload" * 1000, mtime=0))
    blob[-8] ^= 0xFF  # CRC32 field of the trailer
    (tmp_path / "b").write_bytes(bytes(blob))
    index = _index(tmp_path / "b", 4096)
    with pytest.raises(ImageSourceError, match="corrupt gzip data"):
        b"".join(index.build())
    index.close()


# --- through open_image / flatten -----------------------------------------------------------


def _multi_member_layout(root: Path, tar: bytes, blob: bytes) -> str:
    root.mkdir(parents=True)
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, object]:
        hexd = hashlib.sha256(data).hexdigest()
        (blobs / hexd).write_bytes(data)
        return {"digest": f"sha256:{hexd}", "size": len(data)}

    cfg = put(
        json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Cmd": ["/x"]},
                "rootfs": {
                    "type": "layers",
                    "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()],
                },
            }
        ).encode()
    )
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **put(blob)}
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
        "layers": [layer],
    }
    desc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **put(json.dumps(manifest).encode()),
    }
    oci_layout(root, [desc], ["t"])
    return f"oci:{root}:t"


def _no_temp_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point every temp file at an empty directory and make temp dirs an error."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))

    def refuse(*a: object, **k: object) -> str:
        raise AssertionError("a temp directory was created")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    return tmp


def test_gzip_layers_make_no_temp_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rng = random.Random(11)
    big = _payload(rng, 3 << 20)
    layer0 = [E.dir("d"), E.file("d/big", big), E.file("d/a", b"a" * 5000), E.file("z", b"zz")]
    layer1 = [E.file("d/b", _payload(rng, 100_000)), E.file("d/.wh.a")]
    ref = simple_oci(tmp_path / "oci", layer0, layer1, compression="gzip")
    tmp = _no_temp_files(monkeypatch, tmp_path)
    limits = Limits(gzip_spacing_bytes=256 << 10)
    with open_image(ref, limits=limits) as image:
        got = {e.path: b"".join(e.open()) for e in flatten(image) if e.type is EntryType.FILE}
        assert image._tmp is None
        index = image.layers[0].content()
        assert isinstance(index, GzipIndex) and len(index.checkpoints) > 4
    assert got == {b"d/big": big, b"d/b": layer1[0].data, b"z": b"zz"}
    assert list(tmp.iterdir()) == []


def test_zstd_layers_still_use_a_temp_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ref = simple_oci(tmp_path / "oci", [E.file("f", b"data")], compression="zstd")
    _no_temp_files(monkeypatch, tmp_path)
    with open_image(ref) as image, pytest.raises(AssertionError, match="temp directory"):
        list(flatten(image))


@pytest.mark.parametrize("cuts", [[1], [700, 5000, 90_000], list(range(0, 200_000, 20_000))])
def test_multi_member_gzip_layer(tmp_path: Path, cuts: list[int]) -> None:
    rng = random.Random(len(cuts))
    raw, files = _tar_with_offsets(rng, 30)
    ref = _multi_member_layout(tmp_path / "oci", raw, _members(raw, cuts, [1, 9]))
    with open_image(ref, limits=Limits(gzip_spacing_bytes=8192)) as image:
        got = {e.path.decode(): b"".join(e.open()) for e in flatten(image)}
    assert got == {name: content for name, (_, content) in files.items()}


def test_wrong_diff_id_of_multi_member_layer(tmp_path: Path) -> None:
    raw = layer_bytes([E.file("a", b"1" * 1000)])
    other = layer_bytes([E.file("a", b"2" * 1000)])
    ref = _multi_member_layout(tmp_path / "oci", raw, _members(other, [100], [6]))
    with (
        open_image(ref) as image,
        pytest.raises(ImageSourceError, match=r"layer 0 .*uncompressed digest mismatch"),
    ):
        list(flatten(image))


def test_total_size_ceiling_is_enforced_while_inflating(tmp_path: Path) -> None:
    ref = simple_oci(tmp_path / "oci", [E.file("z", bytes(4 << 20))], compression="gzip")
    with (
        open_image(ref, limits=Limits(max_total_bytes=1 << 20)) as image,
        pytest.raises(ImageSourceError, match=r"layer 0 .*total size limit"),
    ):
        list(flatten(image))


def test_reading_after_close_is_an_error(tmp_path: Path) -> None:
    ref = simple_oci(tmp_path / "oci", [E.file("f", b"data" * 100)], compression="gzip")
    with open_image(ref) as image:
        entries = list(flatten(image))
    with pytest.raises(ImageSourceError, match="closed"):
        b"".join(entries[0].open())


def test_snapshot_cost_constant_is_not_an_underestimate(tmp_path: Path) -> None:
    """SNAPSHOT_BYTES covers one checkpoint of a used inflate state (zlib allocates through
    PyMem_RawMalloc, which tracemalloc sees)."""
    (tmp_path / "b").write_bytes(gzip.compress(random.Random(0).randbytes(1 << 20), mtime=0))
    index = _index(tmp_path / "b", 1)
    inf = _gzindex.Inflater(index._fd, 0, index.blob_size)
    inf.read(100_000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        snaps = [inf.snapshot() for _ in range(200)]
        per = (tracemalloc.get_traced_memory()[0] - before) / len(snaps)
    finally:
        tracemalloc.stop()
        index.close()
    assert 32 << 10 < per <= SNAPSHOT_BYTES


def test_unsorted_layer_gets_dense_checkpoints(tmp_path: Path) -> None:
    """A tar not in export order is noticed in the first pass; sorted ones keep the spacing.
    Without a temp file (spool_layers off) the unsorted one gets dense checkpoints."""
    rng = random.Random(5)
    files = [E.file(f"f{i:02d}", _payload(rng, 60_000)) for i in range(40)]
    refs = {
        "sorted": simple_oci(tmp_path / "a", files, compression="gzip"),
        "reversed": simple_oci(tmp_path / "b", files[::-1], compression="gzip"),
    }
    spacing = {}
    for name, ref in refs.items():
        with open_image(ref, limits=Limits(gzip_spacing_bytes=1 << 20)) as image:
            image.spool_layers = False
            got = {e.path: b"".join(e.open()) for e in flatten(image)}
            index = image.layers[0].content()
            assert isinstance(index, GzipIndex)
            spacing[name] = index.spacing, len(index.checkpoints), index.restarts
            assert index.access == ("stream" if name == "sorted" else "checkpoints")
        assert got == {e.name: e.data for e in files}
    assert spacing["sorted"] == (1 << 20, 3, 1)  # one reader ran through the layer
    dense, checkpoints, restarts = spacing["reversed"]
    assert dense == _gzindex.DENSE_SPACING and checkpoints >= 8
    assert restarts <= checkpoints < len(files)  # the window served most backward steps


def test_gzip_options_reach_the_limits(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from eifbuild.cli import main
    from eifbuild.cli._common import add_limit_arguments, limits_from_args
    from eifbuild.errors import UsageError

    p = argparse.ArgumentParser()
    add_limit_arguments(p)
    lim = limits_from_args(p.parse_args(["--gzip-checkpoint-mib", "2", "--max-index-mib", "5"]))
    assert (lim.gzip_spacing_bytes, lim.max_index_bytes) == (2 << 20, 5 << 20)
    with pytest.raises(UsageError, match="--gzip-checkpoint-mib 0: must be a positive"):
        limits_from_args(p.parse_args(["--gzip-checkpoint-mib", "0"]))
    for command in ("rootfs", "build"):
        try:
            rc: object = main([command, "--help"])
        except SystemExit as exc:
            rc = exc.code
        assert rc in (0, None)
        text = " ".join(capsys.readouterr().out.split())
        assert "zstd layers are decompressed once into a temp file" in text
        assert "gzip layers through checkpoints" in text and "--gzip-checkpoint-mib" in text


_FUZZ_SEED = layer_bytes(
    [
        E.dir("d"),
        E.file("d/f", b"x" * 700),
        E.hardlink("h", "d/f"),
        E.symlink("s", "/t"),
        E.file("p" * 120, b"pax"),
        E.file("d/.wh.gone"),
        E.file("z", bytes(range(256)) * 40),
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flips=st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 15_000),
    in_gzip=st.booleans(),
    spacing=st.sampled_from([512, 8192]),
)
def test_mutated_gzip_layers_never_crash(
    flips: list[tuple[int, int]], cut: int, in_gzip: bool, spacing: int
) -> None:
    """A corrupted tar inside valid gzip, or corrupted gzip bytes whose diff_id is the intact
    tar's: a clean one-line EifbuildError or a rootfs whose contents read back in full."""
    from eifbuild.errors import EifbuildError
    from tests.helpers.imagegen import oci_image

    raw = bytearray(_FUZZ_SEED)
    blob = bytearray(gzip.compress(_FUZZ_SEED, mtime=0))
    target = blob if in_gzip else raw
    for pos, value in flips:
        target[pos % len(target)] = value
    del target[len(target) - cut % len(target) :]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "oci"
        if in_gzip:
            ref = _multi_member_layout(root, _FUZZ_SEED, bytes(blob))
        else:
            oci_layout(root, [oci_image(root, [bytes(raw)], compression="gzip")], ["t"])
            ref = f"oci:{root}:t"
        try:
            with open_image(ref, limits=Limits(gzip_spacing_bytes=spacing)) as image:
                for e in flatten(image):
                    if e.type is EntryType.FILE:
                        assert sum(len(c) for c in e.open()) == e.size
        except EifbuildError as exc:
            assert "\n" not in str(exc)


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_layer_rewritten_after_verification_is_refused(tmp_path: Path, compression: str) -> None:
    """Any layer kind: content is not read from a file that changed since its digest check."""
    ref = simple_oci(tmp_path / "oci", [E.file("f", b"data" * 5000)], compression=compression)
    with open_image(ref) as image:
        entries = {e.path: e for e in flatten(image)}
        assert b"".join(entries[b"f"].open()) == b"data" * 5000
        target = image.layers[0].content()
        path = Path(target.path if isinstance(target, GzipIndex) else target.region.path)  # type: ignore[attr-defined]
        os.utime(path, ns=(0, path.stat().st_mtime_ns))  # same bytes; only ctime moves
        with pytest.raises(ImageSourceError, match="changed on disk after it was verified"):
            b"".join(entries[b"f"].open())


def test_window_only_when_the_budget_has_room(tmp_path: Path) -> None:
    (tmp_path / "b").write_bytes(gzip.compress(b"x" * 1000, mtime=0))
    roomy = _index(tmp_path / "b", 4096)
    roomy.unsorted()
    tight = _index(tmp_path / "b", 4096, budget=_gzindex.READER_BYTES + SNAPSHOT_BYTES)
    tight.unsorted()
    assert roomy._window is not None and tight._window is None
    assert tight.spacing == roomy.spacing == 4096
    for index in (roomy, tight):
        assert b"".join(index.build()) == b"x" * 1000
        assert b"".join(index.chunks(10, 20)) == b"x" * 20
        index.close()


def test_unsorted_layer_is_read_back_from_an_unnamed_temp_file(tmp_path: Path) -> None:
    """Out of export order: from the first out-of-order entry on, the inflated output goes to
    a temp file without a name in tmp_dir (nothing visible there, gone when the image closes);
    the contents are the same and the layer is not re-inflated per file."""
    rng = random.Random(6)
    files = [E.file(f"f{i:02d}", _payload(rng, 60_000)) for i in range(40)]
    ref = simple_oci(tmp_path / "b", files[::-1], compression="gzip")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    before = set(os.listdir("/proc/self/fd"))
    with open_image(ref, limits=Limits(gzip_spacing_bytes=1 << 20), tmp_dir=str(tmp)) as image:
        got = {e.path: b"".join(e.open()) for e in flatten(image)}
        index = image.layers[0].content()
        assert isinstance(index, GzipIndex)
        assert index.access == "temp-file" and index.spool_from is not None
        assert index.spool_from + index.spool_bytes == index.size
        assert index.restarts <= 4  # only the few entries before spool_from
        assert os.listdir(tmp) == []
        assert image.layer_access()[0]["access"] == "temp-file"
    assert got == {e.name: e.data for e in files}
    assert set(os.listdir("/proc/self/fd")) <= before | {str(index._fd)}


def test_temp_file_failure_falls_back_to_checkpoints(tmp_path: Path) -> None:
    """A tmp_dir that cannot hold a file: same contents through dense checkpoints, and why."""
    rng = random.Random(7)
    files = [E.file(f"f{i:02d}", _payload(rng, 30_000)) for i in range(20)]
    ref = simple_oci(tmp_path / "b", files[::-1], compression="gzip")
    with open_image(ref, tmp_dir=str(tmp_path / "missing")) as image:
        got = {e.path: b"".join(e.open()) for e in flatten(image)}
        index = image.layers[0].content()
        assert isinstance(index, GzipIndex)
        assert index.access == "checkpoints" and "no temp file" in (index.spool_error or "")
    assert got == {e.name: e.data for e in files}
