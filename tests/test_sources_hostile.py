"""Hostile images end to end: tar header classes in every layer compression and in the outer
archive, layer counts, zstd temp ceilings, non-regular and unreadable inputs.

Every input is generated here; header blocks come from test_tarhdr's ``_hdr`` (checksums
computed independently of the reader). Each class must end in ONE line naming the input.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from eifbuild.errors import EifbuildError, ImageSourceError, RootfsError
from eifbuild.rootfs import flatten
from eifbuild.sources import Limits, open_image
from eifbuild.sources._gzindex import MAX_OPEN
from tests.helpers.imagegen import (
    E,
    layer_bytes,
    oci_image,
    oci_layout,
    simple_oci,
    write_docker_archive,
)
from tests.test_tarhdr import END, _entry, _hdr, _pad, _pax

COMPRESSIONS = ["none", "gzip", "zstd"]


@pytest.fixture(autouse=True)
def _no_hang() -> Iterator[None]:
    """A FIFO that blocks, or a quadratic parse, fails the test instead of hanging the suite."""

    def boom(signum: int, frame: object) -> None:
        raise TimeoutError("hung for 60 s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _flatten_layer(tmp_path: Path, raw: bytes, compression: str, **kw: object) -> None:
    root = tmp_path / f"oci-{compression}"
    oci_layout(root, [oci_image(root, [raw], compression=compression)], ["t"])
    with open_image(f"oci:{root}:t", **kw) as image:  # type: ignore[arg-type]
        for e in flatten(image):
            b"".join(e.open())


def _one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg
    return msg


# --- tar header classes, in every layer compression -----------------------------------------

_PAX_SMALL = _pax({b"comment": b"c" * 1000})
_CHAIN_400 = (_hdr(b"h", b"x", len(_pax({b"path": b"p"}))) + _pad(_pax({b"path": b"p"}))) * 400
_NEG = _pax({b"size": b"-1536"})
_BAD_SECOND = bytearray(_entry(b"b", b"x"))
_BAD_SECOND[0] = ord("c")

HOSTILE_LAYERS = {
    # a small PAX header, then a GNU long name declaring 1 GiB (its data is not even there)
    "chain-1GiB": (
        _hdr(b"pax", b"x", len(_PAX_SMALL)) + _pad(_PAX_SMALL) + _hdr(b"L", b"L", 1 << 30),
        r"extended headers of \d+ bytes or more before one entry \(limit 1048576\)",
    ),
    "chain-400": (_CHAIN_400 + _entry(b"f") + END, "more than 16 extended headers"),
    "pax-size-1536": (
        _hdr(b"pax", b"x", len(_NEG)) + _pad(_NEG) + _entry(b"f", b"x" * 2000) + END,
        "invalid size -1536",
    ),
    "corrupt-after-member": (
        _entry(b"a", b"data") + bytes(_BAD_SECOND) + END,
        r"corrupt tar header at offset 1024 after entry b'a': bad header checksum",
    ),
    "zero-block-then-data": (
        _entry(b"a", b"data") + bytes(512) + _entry(b"b") + END,
        r"a zero block followed by data at offset 1024 after entry b'a'",
    ),
}


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("case", sorted(HOSTILE_LAYERS))
def test_hostile_layer_tar_is_one_line_error_naming_layer(
    tmp_path: Path, compression: str, case: str
) -> None:
    raw, pattern = HOSTILE_LAYERS[case]
    with pytest.raises(RootfsError, match=r"layer 0 \(sha256:[0-9a-f]{64}\): .*" + pattern) as ei:
        _flatten_layer(tmp_path, raw, compression)
    _one_line(ei.value)


# --- the outer archive --------------------------------------------------------------------


def _archive_with_prefix(tmp_path: Path, prefix: bytes) -> Path:
    """A valid docker save archive with ``prefix`` (headers) in front of its members."""
    good = write_docker_archive(tmp_path / "good.tar", [layer_bytes([E.file("a", b"1")])], "t:1")
    out = tmp_path / "hostile.tar"
    out.write_bytes(prefix + good.read_bytes())
    return out


@pytest.mark.parametrize(
    ("prefix", "pattern"),
    [
        (_hdr(b"pax", b"x", 1 << 30), r"extended headers of 1073741824 bytes or more"),
        (
            _hdr(b"pax", b"x", len(_PAX_SMALL)) + _pad(_PAX_SMALL) + _hdr(b"L", b"L", 1 << 30),
            "extended headers of",
        ),
        (_CHAIN_400, "more than 16 extended headers"),
        (_entry(b"x", b"1") + bytes(_BAD_SECOND), r"corrupt tar header at offset 1024 after"),
    ],
)
@pytest.mark.parametrize("transport", ["docker-archive", "oci-archive"])
def test_hostile_outer_archive(tmp_path: Path, prefix: bytes, pattern: str, transport: str) -> None:
    arc = _archive_with_prefix(tmp_path, prefix)
    with pytest.raises(ImageSourceError, match="not a readable tar archive .*" + pattern) as ei:
        open_image(f"{transport}:{arc}")
    assert str(arc) in _one_line(ei.value)


def test_outer_archive_with_good_headers_still_opens(tmp_path: Path) -> None:
    """The same prefix helper with a harmless PAX header in front: the archive opens."""
    pax = _pax({b"comment": b"ok"})
    arc = _archive_with_prefix(tmp_path, _hdr(b"pax", b"x", len(pax)) + _pad(pax) + _entry(b"z"))
    with open_image(f"docker-archive:{arc}") as image:
        assert [e.path for e in flatten(image)] == [b"a"]


# --- layer count and descriptors ----------------------------------------------------------


def test_layer_count_is_bounded_before_anything_is_opened(tmp_path: Path) -> None:
    layers = [layer_bytes([E.file(f"f{i}")]) for i in range(129)]
    root = tmp_path / "oci"
    oci_layout(root, [oci_image(root, layers)], ["t"])
    with pytest.raises(ImageSourceError, match="129 layers, more than the limit of 128"):
        open_image(f"oci:{root}:t")
    arc = write_docker_archive(tmp_path / "a.tar", layers, "t:1")
    with pytest.raises(ImageSourceError, match=r"129 layers, .*\(--max-layers"):
        open_image(f"docker-archive:{arc}")
    with open_image(f"oci:{root}:t", limits=Limits(max_layers=129)) as image:
        assert len(list(flatten(image))) == 129


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_many_gzip_layers_keep_few_descriptors_open(tmp_path: Path) -> None:
    """Each gzip layer kept its blob open: >1,024 layers ended in EMFILE. Now at most MAX_OPEN
    stay open; the others reopen (identity-checked) when their content is read."""
    n = MAX_OPEN * 3
    layers = [layer_bytes([E.file(f"f{i:03d}", b"%d" % i)]) for i in range(n)]
    root = tmp_path / "oci"
    oci_layout(root, [oci_image(root, layers, compression="gzip")], ["t"])
    before = _open_fds()
    peak = 0
    with open_image(f"oci:{root}:t", limits=Limits(max_layers=n)) as image:
        entries = list(flatten(image))
        peak = max(peak, _open_fds() - before)
        got = {e.path: b"".join(e.open()) for e in entries}
        peak = max(peak, _open_fds() - before)
        # read backwards too: the least recently used layers were closed and must reopen
        for e in reversed(entries):
            assert b"".join(e.open()) == got[e.path]
        peak = max(peak, _open_fds() - before)
    assert got == {b"f%03d" % i: b"%d" % i for i in range(n)}
    assert peak <= MAX_OPEN + 2
    assert _open_fds() == before


# --- zstd temp space ----------------------------------------------------------------------


def test_zstd_layer_ratio_ceiling(tmp_path: Path) -> None:
    """A tiny zstd layer may no longer write up to 64 GiB: max(64 MiB, 1032 x its size)."""
    ref = simple_oci(tmp_path / "oci", [E.file("zeros", bytes(80 << 20))], compression="zstd")
    with open_image(ref) as image:
        with pytest.raises(
            ImageSourceError, match=r"limit for a \d+-byte zstd layer \(--max-zstd-ratio 1032"
        ) as ei:
            list(flatten(image))
        assert os.listdir(image.tmpdir()) == []  # the partial temp file is gone
    _one_line(ei.value)
    with open_image(ref, limits=Limits(max_zstd_ratio=1 << 20)) as image:
        assert [e.size for e in flatten(image)] == [80 << 20]


def test_zstd_temp_space_of_the_image_is_bounded(tmp_path: Path) -> None:
    ref = simple_oci(
        tmp_path / "oci",
        [E.file("a", os.urandom(600 << 10))],
        [E.file("b", os.urandom(600 << 10))],
        compression="zstd",
    )
    with (
        open_image(ref, limits=Limits(max_temp_bytes=1 << 20)) as image,
        pytest.raises(ImageSourceError, match=r"layer 1 .*temp space left of --max-temp-mib"),
    ):
        list(flatten(image))
    with open_image(ref, limits=Limits(max_temp_bytes=2 << 20)) as image:
        assert len(list(flatten(image))) == 2


# --- non-regular and unreadable inputs ----------------------------------------------------


@pytest.mark.parametrize("transport", ["docker-archive", "oci-archive"])
def test_fifo_and_devices_are_refused_up_front(tmp_path: Path, transport: str) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes
    with pytest.raises(ImageSourceError, match=r"fifo: not a regular file \(the archive is a FIFO"):
        open_image(f"{transport}:{fifo}")
    with pytest.raises(ImageSourceError, match=r"not a regular file .*character device"):
        open_image(f"{transport}:/dev/zero")
    with pytest.raises(ImageSourceError, match=r"not a regular file .*directory"):
        open_image(f"{transport}:{tmp_path}")


def test_oci_blob_replaced_by_a_fifo_is_refused(tmp_path: Path) -> None:
    ref = simple_oci(tmp_path / "oci", [E.file("a", b"1")])
    for blob in (tmp_path / "oci/blobs/sha256").iterdir():
        blob.unlink()
        os.mkfifo(blob)
    with pytest.raises(EifbuildError, match="not a regular file") as ei, open_image(ref) as image:
        list(flatten(image))
    _one_line(ei.value)


def test_proc_self_mem_is_a_clean_error(tmp_path: Path) -> None:
    """/proc files claim size 0 (reading /proc/self/mem at 0 is EIO): never a traceback."""
    with pytest.raises(ImageSourceError) as ei:
        open_image("docker-archive:/proc/self/mem")
    _one_line(ei.value)


NOBODY = 65534


def _as_nobody(argv: list[str]) -> tuple[int, str]:
    """Run ``eifbuild ARGV`` in a forked child that dropped to uid/gid nobody (the
    interpreter itself may live where nobody cannot exec it); (exit status, stderr)."""
    from eifbuild.cli import main

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        rc = 99
        try:
            os.close(r)
            sys.stderr = os.fdopen(w, "w")
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the child exits below
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            rc = main(argv)
        except BaseException as exc:  # reported through the exit status
            print(f"child: {exc!r}", file=sys.stderr)
        finally:
            sys.stderr.flush()
            os._exit(rc)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        err = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child as another user")
@pytest.mark.parametrize("what", ["archive", "blob"])
def test_unreadable_inputs_as_a_non_root_user(what: str) -> None:
    """PermissionError for a non-root user was a traceback: now one line and exit status 1."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        if what == "archive":
            arc = write_docker_archive(base / "a.tar", [layer_bytes([E.file("a")])], "t:1")
            arc.chmod(0o600)
            ref = f"docker-archive:{arc}"
        else:
            ref = simple_oci(base / "oci", [E.file("a", b"1")])
            for p in [base / "oci", *(base / "oci").rglob("*")]:
                p.chmod(0o755 if p.is_dir() else 0o644)
            layer = max((base / "oci/blobs/sha256").iterdir(), key=lambda p: p.stat().st_size)
            layer.chmod(0o600)
        from eifbuild.cli import main

        # As root the same command works (and imports everything the child will need).
        assert main(["rootfs", "--no-hash", ref]) == 0
        rc, err = _as_nobody(["rootfs", "--no-hash", ref])
        assert rc == 1, err
        assert err.count("\n") == 1 and err.startswith("eifbuild: error: ")
        assert "Permission denied" in err and "Traceback" not in err
        assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o755


def test_help_states_the_new_ceilings() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "eifbuild", "rootfs", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    text = " ".join(proc.stdout.split())
    assert "--max-layers N refuse images with more than N layers" in text
    assert "default 128" in text and "default 1032" in text and "default 16384" in text
