"""Fuzz target ``tarhdr``: the bounded tar header reader, as layers and as the outer archive.

The input is a tar stream with a one-byte prefix ``R``: the first 1,024 bytes after it are
repeated ``R`` times (0-255) before the rest, so chains of hundreds of extended headers, the
shape that made ``tarfile`` recurse, are a one-byte mutation away. The stream is read:

* by ``read_headers`` over a ``ChunkSource`` fed in chunks of a size taken from the input
  (a gzip layer's path), and over a ``FileSource`` on a temp file (an uncompressed layer's
  path): both must give the same headers or the same error message;
* by ``TarStore`` (the docker-archive / oci-archive index) on the same temp file.

Checks: only EifbuildError escapes; entries start at increasing 512-aligned offsets, their data
lies inside the stream, names and link names stay under the extended-header cap; the run
stays in libFuzzer's RSS and time limits (a 1 GiB declared header must cost nothing).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common
import _seeds

with atheris.instrument_imports(include=["eifbuild"]):
    from eifbuild.errors import EifbuildError, RootfsError
    from eifbuild.limits import DEFAULT_LIMITS
    from eifbuild.sources._store import TarStore
    from eifbuild.sources._tarhdr import (
        DEFAULT_CAPS,
        ChunkSource,
        FileSource,
        TarHeader,
        read_headers,
    )

TMP = Path(tempfile.mkdtemp(prefix="fuzz-tarhdr-"))


def expand(data: bytes) -> bytes:
    if not data:
        return b""
    return data[1:1025] * data[0] + data[1:]


def _err(msg: str) -> RootfsError:
    return RootfsError(f"fuzz: {msg}")


def _headers(source: ChunkSource | FileSource) -> tuple[list[TarHeader], str | None]:
    out: list[TarHeader] = []
    try:
        for h in read_headers(source, _err):
            out.append(h)
    except EifbuildError as exc:
        return out, str(exc)
    return out, None


def test_one(data: bytes) -> None:
    step = 1 + (data[1] if len(data) > 1 else 0) * 7
    raw = expand(data)
    chunks = iter([raw[i : i + step] for i in range(0, len(raw), step)])
    streamed = _headers(ChunkSource(chunks))
    path = TMP / "in.tar"
    path.write_bytes(raw)
    fd = os.open(path, os.O_RDONLY)
    try:
        in_place = _headers(FileSource(fd, 0, len(raw)))
    finally:
        os.close(fd)
    assert streamed == in_place, "chunked and in-place reads disagree"
    prev = -1
    for h in streamed[0]:
        assert h.offset > prev and h.offset % 512 == 0, f"offset {h.offset} after {prev}"
        assert h.data_offset % 512 == 0 and h.data_offset + h.data_size <= len(raw)
        assert len(h.name) <= DEFAULT_CAPS.max_meta_bytes + 256
        assert len(h.linkname) <= DEFAULT_CAPS.max_meta_bytes + 256
        prev = h.offset
    if streamed[1] is not None:
        assert "\n" not in streamed[1]
    TarStore(path, DEFAULT_LIMITS)  # raises only EifbuildError


def seeds() -> list[bytes]:
    out = []
    for layer in _seeds.layer_seeds()[:2]:  # the PAX and GNU tars (not the compressed ones)
        out.append(b"\x01" + layer)
    pax = b"18 path=" + b"p" * 7 + b"\n"
    hdr = _seeds.tar_header(b"h", b"x", len(pax)) + pax + bytes(512 - len(pax))
    longname = _seeds.tar_header(b"L", b"L", 5) + b"name\0" + bytes(507)
    entry = _seeds.tar_header(b"f", b"0", 3) + b"abc" + bytes(509)
    out.append(b"\x02" + hdr + longname + entry + bytes(1024))  # a chain of 3 x, L, f
    return out


if __name__ == "__main__":
    _common.main("tarhdr", test_one, seeds)
