"""Blob access for image sources: file regions, digest checks, decompression, size limits.

Every blob (a file in an OCI layout, or a member of a tar archive) is a :class:`Region`: a byte
range of a file on disk. Nothing is extracted to the host filesystem; archives are read in place.

Layers are verified before use: the blob's sha256 against its digest, and the uncompressed
stream's sha256 against the config's ``diff_id``. File contents are later read by offset into
the uncompressed tar (``docker export`` order differs from tar order, so access is random):

* uncompressed layers are read in place;
* gzip layers (detected by magic bytes, as media types can lie) are NOT copied: random access
  goes through checkpoints of the inflate state taken during the one sequential pass
  (:mod:`eifbuild.sources._gzindex`), with memory bounded by ``Limits.max_index_bytes``;
* zstd layers are decompressed ONCE into a temp file owned by the image
  (:func:`materialize_layer`): python-zstandard cannot copy a decompressor's state, so that is
  the one case that costs disk space (the layer's uncompressed size).

Between verification and use, a layer file on disk must not change: its identity (device,
inode, size, mtime, ctime) is taken before it is verified and compared before every later read
(a hostile process rewriting a blob after its digest was checked is refused, not trusted).

``docker-daemon:`` images are first saved to a temp ``docker save`` archive (the Engine API
gives no random access to layers); that archive is then read in place like any other.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import zstandard

from eifbuild._progress import progress
from eifbuild.errors import ImageSourceError
from eifbuild.limits import Limits

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


# A zstd layer may always expand to this much, whatever its compressed size (tiny layers of
# empty files compress far beyond any ratio).
ZSTD_FLOOR_BYTES = 64 << 20


def zstd_ceiling(compressed: int, limits: Limits) -> int:
    """Most uncompressed bytes a zstd layer of ``compressed`` bytes may expand to."""
    return min(limits.max_layer_bytes, max(ZSTD_FLOOR_BYTES, compressed * limits.max_zstd_ratio))


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def open_regular(path: str | os.PathLike[str], what: str) -> int:
    """A read-only descriptor of the REGULAR file ``path``, or a one-line ImageSourceError.

    Opened non-blocking (a FIFO would otherwise block the open until a writer comes) and
    checked with fstat, so what is checked is what is read. ``what`` names the role (archive,
    blob) in the message.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ImageSourceError(f"{path}: cannot open the {what}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:  # pragma: no cover - fstat of an open descriptor
        os.close(fd)
        raise ImageSourceError(f"{path}: cannot stat the {what}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = next((name for test, name in _KINDS if test(mode)), "a special file")
        raise ImageSourceError(f"{path}: not a regular file (the {what} is {kind})")
    return fd


def _io_error(path: str, exc: OSError) -> ImageSourceError:
    return ImageSourceError(f"{path}: read error: {exc.strerror or exc}")


@dataclass(frozen=True, slots=True)
class Region:
    """``size`` bytes of ``path`` starting at ``offset``."""

    path: str
    offset: int
    size: int

    def sub(self, offset: int, size: int) -> Region:
        return Region(self.path, self.offset + offset, size)

    def chunks(self, chunk: int = CHUNK) -> Iterator[bytes]:
        """Stream the region; a short file is an error (it was truncated or replaced)."""
        left = self.size
        fd = open_regular(self.path, "blob")
        try:
            while left > 0:
                pos = self.offset + self.size - left
                try:
                    data = os.pread(fd, min(chunk, left), pos)
                except OSError as exc:
                    raise _io_error(self.path, exc) from None
                if not data:
                    raise ImageSourceError(f"{self.path}: unexpected end of data at offset {pos}")
                left -= len(data)
                yield data
        finally:
            os.close(fd)

    def read_all(self, limit: int, what: str) -> bytes:
        if self.size > limit:
            raise ImageSourceError(f"{what}: {self.size} bytes exceeds the {limit}-byte limit")
        return b"".join(self.chunks())

    def head(self, n: int) -> bytes:
        fd = open_regular(self.path, "blob")
        try:
            return os.pread(fd, min(n, self.size), self.offset)
        except OSError as exc:
            raise _io_error(self.path, exc) from None
        finally:
            os.close(fd)


def check_digest_text(digest: object, what: str) -> str:
    """Validate a ``sha256:<64 hex>`` digest string (the only algorithm accepted)."""
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise ImageSourceError(f"{what}: invalid or unsupported digest {str(digest)[:80]!r}")
    return digest


def sha256_region(region: Region, desc: str = "verify") -> str:
    h = hashlib.sha256()
    with progress(total=region.size, desc=desc) as bar:
        for chunk in region.chunks():
            h.update(chunk)
            bar.update(len(chunk))
    return "sha256:" + h.hexdigest()


def verify_region(region: Region, digest: str, what: str) -> None:
    got = sha256_region(region)
    if got != digest:
        raise ImageSourceError(f"{what}: digest mismatch (expected {digest}, got {got})")


def load_json(region: Region, what: str, limits: Limits, digest: str | None = None) -> Any:
    data = region.read_all(limits.max_json_bytes, what)
    if digest is not None:
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        if got != digest:
            raise ImageSourceError(f"{what}: digest mismatch (expected {digest}, got {got})")
    try:
        doc = json.loads(data, parse_constant=_reject_constant)
    except RecursionError:
        raise ImageSourceError(f"{what}: invalid JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageSourceError(f"{what}: invalid JSON ({exc.__class__.__name__})") from None
    if _MAYBE_SURROGATE.search(data):
        _no_lone_surrogates(doc, what)
    return doc


# A \uD800-\uDFFF escape: the only way a JSON text can hold a UTF-16 surrogate.
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def _no_lone_surrogates(doc: Any, what: str) -> None:
    """Refuse strings with a lone surrogate (``"\\ud800"``): they are not Unicode text, no
    ramdisk, metadata or report can encode them (Go's decoder would silently turn them into
    U+FFFD)."""
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                bad = ord(item[exc.start])
                raise ImageSourceError(
                    f"{what}: invalid JSON (a string holds the lone surrogate \\u{bad:04x}, "
                    "which is not Unicode text)"
                ) from None


def _reject_constant(name: str) -> Any:
    """NaN / Infinity are not JSON (RFC 8259); Python's parser would accept them."""
    raise ValueError(f"{name} is not JSON")


def compression_of(region: Region) -> str:
    """``gzip``, ``zstd`` or ``none`` from the blob's magic bytes (media types can lie)."""
    head = region.head(4)
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


class RegionReader(io.RawIOBase):
    """A read-only file object over a Region (for gzip/zstd stream readers)."""

    def __init__(self, region: Region) -> None:
        self._fh = os.fdopen(open_regular(region.path, "blob"), "rb")
        self.name = region.path
        self._fh.seek(region.offset)
        self._left = region.size

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), self._left)
        if n <= 0:
            return 0
        try:
            data = self._fh.read(n)
        except OSError as exc:
            raise _io_error(self.name, exc) from None
        buf[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        self._fh.close()
        super().close()


def decompressed(region: Region, kind: str) -> Iterator[bytes]:
    """Stream the decompressed bytes, at most CHUNK at a time (bounded memory, even for bombs)."""
    if kind == "none":
        yield from region.chunks()
        return
    raw = RegionReader(region)
    try:
        reader: Any
        if kind == "gzip":
            reader = gzip.GzipFile(fileobj=raw, mode="rb")
        else:
            reader = zstandard.ZstdDecompressor().stream_reader(
                raw,  # type: ignore[arg-type]
                read_across_frames=True,
            )
        with reader:
            while True:
                data = reader.read(CHUNK)
                if not data:
                    break
                yield data
    finally:
        raw.close()


def materialize_layer(
    region: Region,
    *,
    blob_digest: str | None,
    diff_id: str | None,
    what: str,
    tmpdir: str,
    limits: Limits,
    temp_left: int | None = None,
) -> Region:
    """Verify a layer blob and return a Region of its UNCOMPRESSED tar.

    Checks the blob digest (when known) and the diff_id (when known), and the expanded-size
    ceiling. Compressed layers are written once to a temp file in ``tmpdir`` (used for zstd;
    gzip layers go through :mod:`eifbuild.sources._gzindex` instead).
    """
    kind = compression_of(region)
    if kind == "none":
        if region.size > limits.max_layer_bytes:
            raise ImageSourceError(
                f"{what}: {region.size} bytes exceeds the {limits.max_layer_bytes}-byte layer"
                " limit (--max-expanded-mib)"
            )
        got = sha256_region(region)
        for want in (blob_digest, diff_id):
            if want is not None and got != want:
                raise ImageSourceError(f"{what}: digest mismatch (expected {want}, got {got})")
        return region
    if blob_digest is not None:
        verify_region(region, blob_digest, what)
    h = hashlib.sha256()
    total = 0
    ceiling, why = limits.max_layer_bytes, "layer limit (--max-expanded-mib)"
    if kind == "zstd":
        ratio_cap = zstd_ceiling(region.size, limits)
        if ratio_cap < ceiling:
            ceiling = ratio_cap
            why = (
                f"limit for a {region.size}-byte zstd layer (--max-zstd-ratio"
                f" {limits.max_zstd_ratio}, at least {ZSTD_FLOOR_BYTES >> 20} MiB)"
            )
        if temp_left is not None and temp_left < ceiling:
            ceiling = max(0, temp_left)
            why = f"temp space left of --max-temp-mib {limits.max_temp_bytes >> 20}"
    name = (diff_id or blob_digest or what).replace(":", "-").replace("/", "_")[-80:]
    path = os.path.join(tmpdir, f"layer-{name}.tar")
    try:
        with open(path, "wb") as out, progress(desc=f"unpack {kind} layer") as bar:
            for chunk in decompressed(region, kind):
                bar.update(len(chunk))
                total += len(chunk)
                if total > ceiling:
                    raise ImageSourceError(
                        f"{what}: expands beyond the {ceiling}-byte {why} (decompression bomb?)"
                    )
                h.update(chunk)
                out.write(chunk)
    except (gzip.BadGzipFile, zlib.error, zstandard.ZstdError, EOFError) as exc:
        os.unlink(path)
        raise ImageSourceError(f"{what}: corrupt {kind} data ({exc})") from None
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise ImageSourceError(f"{what}: cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        os.unlink(path)
        raise
    got = "sha256:" + h.hexdigest()
    if diff_id is not None and got != diff_id:
        os.unlink(path)
        raise ImageSourceError(
            f"{what}: uncompressed digest mismatch (diff_id {diff_id}, got {got})"
        )
    return Region(path, 0, total)
