"""Random access into a gzip layer without a decompressed copy: checkpoints of inflate state.

A gzip layer is read sequentially once (the pass that parses the tar and checks the
``diff_id``). Every ``spacing`` bytes of uncompressed output (``Limits.gzip_spacing_bytes``,
default 8 MiB) the inflate state is snapshotted with ``zlib.Decompress.copy()`` at a point
where all compressed input read so far has been consumed, and recorded as a
:class:`Checkpoint` (uncompressed offset, compressed offset, state). A snapshot holds zlib's
32 KiB window plus its ~7 KiB state: :data:`SNAPSHOT_BYTES` (39.2 KiB measured, 41 KiB charged).
Multi-member gzip streams (``cat a.gz b.gz``, pigz) are followed member by member; a
checkpoint inside a member carries that member's running CRC, so a read that reaches the
member's trailer still checks CRC32 and ISIZE.

Content at uncompressed offset X is read by resuming a COPY of the nearest checkpoint at or
before X and inflating forward, discarding output up to X. Each layer keeps one idle reader
(its position is exactly the end of the last read: output is never produced past what was
asked, so no decompressed data is buffered); a request at or after that position and after
the nearest checkpoint continues it instead of restarting. ``docker export`` order within a
layer is the order Docker wrote the layer tar (both are a sorted walk), so in the common case
a layer is inflated about once in total. A layer whose tar is NOT in that order (e.g. GNU tar
without ``--sort=name``, then ``docker import``) is noticed during the first pass: from the
first out-of-order entry on, its checkpoints are :data:`DENSE_SPACING` apart, so a random read
inflates ~128 KiB on average instead of half the normal spacing, and the layer keeps its last
:data:`WINDOW_BYTES` of output (also what a restart skipped over), so reads that step backwards
through the tar (e.g. a reverse-sorted directory) are mostly served from it. That window is
charged to the checkpoint budget (and skipped when the budget has no room left).

Memory: checkpoints of all gzip layers of an image share ``Limits.max_index_bytes`` (default
16 MiB, about 400 checkpoints: a 3 GiB layer at 8 MiB spacing). When a layer's next checkpoint
would exceed it, that layer keeps every other checkpoint and doubles its spacing, so memory
stays bounded whatever the layer size and only random reads get slower. Each layer also
reserves :data:`READER_BYTES` for its idle reader.

Integrity: the blob is opened ONCE; its sha256 (pass 1), the tar pass (pass 2) and every
later content read use that descriptor. Its identity (device, inode, size, mtime, ctime) is
recorded at open and compared before pass 2 and before every content read: a blob replaced,
rewritten or touched on disk after verification is refused (ctime cannot be set back by
unprivileged users), instead of silently yielding other bytes than the digest covered.
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import os
import stat
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from eifbuild._progress import progress
from eifbuild.errors import ImageSourceError

_zlib: Any
try:  # zlib-ng: the same inflate output about 1.8x faster, and its Decompress.copy() exists
    from zlib_ng import zlib_ng as _zlib

    INFLATER = "zlib-ng"
except ImportError:  # pragma: no cover - the dependency is declared; plain zlib still works
    _zlib = zlib
    INFLATER = "zlib"
ZLIB_ERRORS: tuple[type[Exception], ...] = (zlib.error, _zlib.error)

CHUNK = 1 << 20  # most uncompressed bytes produced per inflate call
IN_CHUNK = 32 << 10  # compressed bytes read per pread
# One checkpoint: a Decompress.copy() is 39.2 KiB with zlib, 41.4 KiB with zlib-ng (tracemalloc),
# plus the record.
SNAPSHOT_BYTES = 42 << 10
READAHEAD = 256 << 10  # output inflated ahead for small reads (see Inflater.read)
READER_BYTES = SNAPSHOT_BYTES + IN_CHUNK + READAHEAD  # an idle reader: state, input, output
# A restart (state copy, compressed input re-read) costs about as much as inflating this many
# bytes: the idle reader is kept when it is at most that much further from the target.
RESTART_BYTES = 64 << 10
# Once a layer's tar turns out not to be in export order: checkpoint spacing, and the most
# recent uncompressed output kept to serve reads just BEHIND the reader without a restart.
DENSE_SPACING = 256 << 10
WINDOW_BYTES = 512 << 10


class _Truncated(Exception):
    """The compressed data ended inside a gzip member."""


INFLATE_ERRORS: tuple[type[Exception], ...] = (*ZLIB_ERRORS, _Truncated)


class Inflater:
    """Sequential inflate of a (multi-member) gzip blob from a file descriptor.

    ``inp`` is the offset (relative to the blob) of the next compressed byte to read; ``out``
    the uncompressed offset of the next byte :meth:`read` returns.
    """

    __slots__ = ("_base", "_buf", "_d", "_fd", "_feed", "_pos", "_size", "in_chunk", "inp", "out")

    def __init__(
        self, fd: int, base: int, size: int, inp: int = 0, out: int = 0, state: Any = None
    ) -> None:
        self._fd, self._base, self._size = fd, base, size
        self.inp, self.out = inp, out
        self._d: Any = state.copy() if state is not None else _zlib.decompressobj(31)
        self._feed = b""
        self._buf, self._pos = b"", 0  # output inflated ahead of what was asked (READAHEAD)
        self.in_chunk = IN_CHUNK  # smaller input reads give finer snapshot points

    def _pull(self) -> bytes:
        n = min(self.in_chunk, self._size - self.inp)
        if n <= 0:
            return b""
        data = os.pread(self._fd, n, self._base + self.inp)
        if not data:
            raise _Truncated
        self.inp += len(data)
        return data

    def clean(self) -> bool:
        """True when every byte read has been consumed: the state can be snapshotted."""
        return not self._feed and not self._d.eof and self._pos >= len(self._buf)

    def snapshot(self) -> Checkpoint:
        return Checkpoint(self.out, self.inp, self._d.copy())

    def read(self, limit: int) -> bytes:
        """Up to ``limit`` (> 0) next uncompressed bytes; b"" at the end of the last member.

        Small reads (one small file of a layer, a tar header) are served from at most
        :data:`READAHEAD` bytes inflated ahead: one inflate call per small read would copy
        the unconsumed compressed input each time (zlib's ``unconsumed_tail``).
        """
        if self._pos < len(self._buf):
            end = min(len(self._buf), self._pos + limit)
            data = self._buf[self._pos : end]
            self._pos = end
        else:
            data = self._produce(max(limit, READAHEAD))
            if len(data) > limit:
                self._buf, self._pos = data, limit
                data = data[:limit]
        self.out += len(data)
        return data

    def _produce(self, limit: int) -> bytes:
        """Up to ``limit`` (> 0) next uncompressed bytes; b"" at the end of the last member."""
        while True:
            if self._d.eof:
                rest = self._d.unused_data or self._pull()
                if not rest:
                    return b""
                self._d = _zlib.decompressobj(31)  # the next gzip member
                self._feed = rest
            if not self._feed:
                self._feed = self._pull()
                if not self._feed:
                    data: bytes = self._d.decompress(b"", limit)  # output still held by zlib
                    if not data:
                        raise _Truncated
                    return data
            data = self._d.decompress(self._feed, limit)
            self._feed = self._d.unconsumed_tail
            if data:
                return data


@dataclass(frozen=True, slots=True)
class Checkpoint:
    out: int  # uncompressed offset
    inp: int  # compressed offset of the next byte to feed
    state: Any  # a zlib Decompress object; only ever copied


# Gzip layers of one image that keep their blob open at once; beyond it the least recently
# used one closes its descriptor and reopens it (checking its identity) on its next read.
MAX_OPEN = 64


@dataclass
class IndexBudget:
    """Checkpoint memory and open descriptors shared by the gzip layers of one image."""

    limit: int
    used: int = 0
    open: dict[int, GzipIndex] = field(default_factory=dict)  # id -> index, oldest use first

    def touch(self, index: GzipIndex) -> None:
        """``index`` has its blob open and was just used; close the least recently used
        descriptors beyond :data:`MAX_OPEN`."""
        self.open.pop(id(index), None)
        self.open[id(index)] = index
        if len(self.open) > MAX_OPEN:
            for other in list(self.open.values()):
                if len(self.open) <= MAX_OPEN:
                    break
                if other is not index and not other.pins:
                    other.release()  # a pinned one is mid-read through its descriptor

    def forget(self, index: GzipIndex) -> None:
        self.open.pop(id(index), None)


def identity(st: os.stat_result) -> tuple[int, ...]:
    """What must not change between verification and use: device, inode, size, mtime, ctime."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(eq=False)
class GzipIndex:
    """Checkpointed random access to one gzip blob (``size`` bytes at ``base`` of ``path``)."""

    path: str
    base: int
    blob_size: int
    what: str  # names the layer in errors
    spacing: int
    budget: IndexBudget
    max_bytes: int  # ceiling on the uncompressed size (decompression bombs)
    size: int | None = None  # uncompressed size, known after the first pass
    checkpoints: list[Checkpoint] = field(default_factory=list)
    _outs: list[int] = field(default_factory=list)
    _fd: int = -1
    _closed: bool = False
    pins: int = 0  # reads in progress through _fd (generators may be suspended)
    _ident: tuple[int, ...] = ()
    _idle: Inflater | None = None
    _window: bytearray | None = None  # unsorted layers: the latest output, ending at _win_end
    _win_end: int = 0
    restarts: int = 0  # reads that resumed from a checkpoint (statistics for tests/benchmarks)
    # How content reads reach the layer: "stream" (export order: one reader runs through it),
    # "temp-file" (out of order: inflated output from ``spool_from`` on is kept in an unnamed
    # temp file and read back with pread), "checkpoints" (out of order, no temp file: dense
    # checkpoints; see ``spool_error``).
    access: str = "stream"
    spool_from: int | None = None
    spool_bytes: int = 0
    spool_error: str | None = None
    _spool_fd: int = -1
    _built: int = 0  # uncompressed bytes the first pass has yielded so far

    def __post_init__(self) -> None:
        self._open()
        self.budget.used += READER_BYTES

    def _open(self) -> None:
        """Open the blob (non-blocking: a FIFO must not hang us) and check it is the regular
        file it was (its identity, once known)."""
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags)
        except OSError as exc:
            raise ImageSourceError(
                f"{self.what}: cannot open {self.path}: {exc.strerror}"
            ) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size < self.base + self.blob_size:
            os.close(fd)
            raise ImageSourceError(f"{self.what}: {self.path} is not the expected regular file")
        if self._ident and identity(st) != self._ident:
            os.close(fd)
            raise ImageSourceError(
                f"{self.what}: blob {self.path} changed on disk after it was verified"
            )
        self._ident = identity(st)
        self._fd = fd
        self.budget.touch(self)

    def release(self) -> None:
        """Close the descriptor but keep the checkpoints: the next read reopens the blob."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._idle = None  # its reads went through the closed descriptor
            self.budget.forget(self)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.release()
        if self._spool_fd >= 0:
            os.close(self._spool_fd)
            self._spool_fd = -1
        self.budget.used -= READER_BYTES + SNAPSHOT_BYTES * len(self.checkpoints)
        if self._window is not None:
            self.budget.used -= WINDOW_BYTES
        self.checkpoints, self._outs, self._idle, self._window = [], [], None, None

    def check_unchanged(self) -> None:
        if self._closed:
            raise ImageSourceError(f"{self.what}: read after the image was closed")
        if self._fd < 0:
            self._open()  # released to stay under MAX_OPEN; checks the identity
            return
        self.budget.touch(self)
        if identity(os.fstat(self._fd)) != self._ident:
            raise ImageSourceError(
                f"{self.what}: blob {self.path} changed on disk after it was verified"
            )

    def sha256(self) -> str:
        """sha256 of the compressed blob, read through the descriptor later reads use."""
        h = hashlib.sha256()
        pos = 0
        with progress(total=self.blob_size, desc="verify") as bar:
            while pos < self.blob_size:
                data = os.pread(self._fd, min(CHUNK, self.blob_size - pos), self.base + pos)
                if not data:
                    raise ImageSourceError(f"{self.what}: {self.path} is truncated")
                h.update(data)
                pos += len(data)
                bar.update(len(data))
        return "sha256:" + h.hexdigest()

    # -- first pass -----------------------------------------------------------------------

    def _over(self) -> bool:
        return self.budget.used + SNAPSHOT_BYTES > self.budget.limit

    def _add(self, cp: Checkpoint) -> None:
        """Record ``cp``; over the budget, keep every other checkpoint and double the spacing."""
        if self.checkpoints:
            while self._over() and len(self.checkpoints) > 1:
                kept = self.checkpoints[::2]
                self.budget.used -= SNAPSHOT_BYTES * (len(self.checkpoints) - len(kept))
                self.checkpoints, self._outs = kept, [c.out for c in kept]
                self.spacing *= 2
            if self._over() or cp.out < self.checkpoints[-1].out + self.spacing:
                return
        self.checkpoints.append(cp)
        self._outs.append(cp.out)
        self.budget.used += SNAPSHOT_BYTES

    def build(self, on_size: Callable[[int], None] | None = None) -> Iterator[bytes]:
        """Inflate the whole blob once, recording checkpoints; yields the uncompressed bytes.

        ``on_size(total)`` is called after each chunk (size ceilings of the caller). When the
        generator is exhausted, :attr:`size` is set.
        """
        self.check_unchanged()
        self.checkpoints, self._outs = [], []
        inf = Inflater(self._fd, self.base, self.blob_size)
        self._add(inf.snapshot())
        self.pins += 1
        try:
            yield from self._build(inf, on_size)
        finally:
            self.pins -= 1

    def _build(self, inf: Inflater, on_size: Callable[[int], None] | None) -> Iterator[bytes]:
        with progress(desc="read gzip layer") as bar:
            while True:
                # Snapshots need all input read so far consumed: with dense checkpoints, read
                # less input at a time so that happens often enough on compressible data.
                inf.in_chunk = min(IN_CHUNK, max(4096, self.spacing >> 6))
                data = self._inflate(inf, CHUNK)
                if not data:
                    break
                if inf.out > self.max_bytes:
                    raise ImageSourceError(
                        f"{self.what}: expands beyond the {self.max_bytes}-byte layer limit"
                        " (--max-expanded-mib)"
                        " (decompression bomb?)"
                    )
                if on_size is not None:
                    on_size(inf.out)
                if inf.out >= self.checkpoints[-1].out + self.spacing and inf.clean():
                    self._add(inf.snapshot())
                if self._spool_fd >= 0:
                    self._spool_write(data)
                self._built = inf.out
                bar.update(len(data))
                yield data
        self.size = inf.out

    def _inflate(self, inf: Inflater, limit: int) -> bytes:
        try:
            return inf.read(limit)
        except INFLATE_ERRORS as exc:
            why = "truncated" if isinstance(exc, _Truncated) else str(exc)
            raise ImageSourceError(f"{self.what}: corrupt gzip data ({why})") from None

    def spool(self, directory: str | None = None) -> None:
        """The tar is not in export order: keep the output from here on in a temp file.

        Called during the first pass. The file has no name (``O_TMPFILE``, else created and
        unlinked at once), so it disappears with its descriptor: on success, failure, SIGTERM
        and even SIGKILL. Its size is at most the layer's uncompressed size, which the first
        pass bounds (``--max-expanded-mib``). Output already yielded (before
        :attr:`spool_from`) is still read through checkpoints; it was in export order so far.
        If no temp file can be made or written, the layer falls back to :meth:`unsorted`.
        """
        if self.access != "stream":
            return
        try:
            self._spool_fd = anonymous_file(directory or tempfile.gettempdir())
        except OSError as exc:
            self._no_spool(exc)
            return
        self.access, self.spool_from = "temp-file", self._built

    def _spool_write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._spool_fd, view)
                view = view[n:]
                self.spool_bytes += n
        except OSError as exc:
            os.close(self._spool_fd)
            self._spool_fd = -1
            self.spool_from, self.spool_bytes = None, 0
            self._no_spool(exc)

    def _no_spool(self, exc: OSError) -> None:
        self.access = "checkpoints"
        self.spool_error = f"no temp file ({exc.strerror or exc})"
        self.unsorted()

    def unsorted(self) -> None:
        """The tar is not in export order: reads will jump around, so checkpoint densely (and
        keep a window of output if the budget still has room for it)."""
        self.access = "checkpoints"
        self.spacing = min(self.spacing, DENSE_SPACING)
        if self._window is None and self.budget.used + WINDOW_BYTES <= self.budget.limit:
            self._window = bytearray()
            self.budget.used += WINDOW_BYTES

    def _remember(self, data: bytes, end: int) -> None:
        """Keep ``data`` (output ending at offset ``end``) in the window of an unsorted layer."""
        win = self._window
        if win is None:
            return
        if end - len(data) != self._win_end:
            win.clear()
        win += data[-WINDOW_BYTES:]
        if len(win) > WINDOW_BYTES:
            del win[: len(win) - WINDOW_BYTES]
        self._win_end = end

    def _from_window(self, offset: int, size: int) -> bytes | None:
        win = self._window
        if win is None or offset < self._win_end - len(win) or offset + size > self._win_end:
            return None
        i = offset - (self._win_end - len(win))
        return bytes(win[i : i + size])

    # -- content reads --------------------------------------------------------------------

    def _reader(self, offset: int) -> Inflater:
        """The idle reader if it can reach ``offset`` about as soon as a checkpoint, else a new one.

        Continue when ``offset - idle.out <= (offset - cp.out) + RESTART_BYTES``, i.e. the idle
        reader is behind ``offset`` but at most RESTART_BYTES before the nearest checkpoint.
        """
        i = bisect.bisect_right(self._outs, offset) - 1
        cp = self.checkpoints[i]
        idle, self._idle = self._idle, None
        if idle is not None and cp.out - RESTART_BYTES <= idle.out <= offset:
            return idle
        self.restarts += 1
        return Inflater(self._fd, self.base, self.blob_size, cp.inp, cp.out, cp.state)

    def chunks(self, offset: int, size: int) -> Iterator[bytes]:
        """The ``size`` uncompressed bytes at ``offset`` (within the verified layer)."""
        if self.size is None or offset < 0 or offset + size > self.size:
            raise ImageSourceError(f"{self.what}: content read outside the verified layer")
        if self._closed:
            raise ImageSourceError(f"{self.what}: read after the image was closed")
        start = self.spool_from
        if start is None or offset + size <= start:
            return self._inflated(offset, size)
        return self._spooled(offset, size, start)

    def _spooled(self, offset: int, size: int, start: int) -> Iterator[bytes]:
        if offset < start:
            yield from self._inflated(offset, start - offset)
            size -= start - offset
            offset = start
        pos, end = offset - start, offset - start + size
        while pos < end:
            data = os.pread(self._spool_fd, min(CHUNK, end - pos), pos)
            if not data:
                raise ImageSourceError(f"{self.what}: the layer's temp file was truncated")
            pos += len(data)
            yield data

    def _inflated(self, offset: int, size: int) -> Iterator[bytes]:
        self.check_unchanged()
        cached = self._from_window(offset, size)
        if cached is not None:
            if cached:
                yield cached
            return
        inf = self._reader(offset)
        reuse = False
        self.pins += 1
        try:
            while inf.out < offset:
                data = self._inflate(inf, min(CHUNK, offset - inf.out))
                if not data:
                    raise ImageSourceError(f"{self.what}: gzip data changed after verification")
                self._remember(data, inf.out)
            end = offset + size
            while inf.out < end:
                data = self._inflate(inf, min(CHUNK, end - inf.out))
                if not data:
                    raise ImageSourceError(f"{self.what}: gzip data changed after verification")
                self._remember(data, inf.out)
                yield data
            reuse = True
        except GeneratorExit:
            reuse = True  # abandoned by the consumer: the reader's position is still exact
            raise
        finally:
            self.pins -= 1
            if reuse and self._fd >= 0:
                self._idle = inf


def anonymous_file(directory: str) -> int:
    """A read-write descriptor of a new file in ``directory`` that has no name."""
    flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
    tmpfile = getattr(os, "O_TMPFILE", 0)
    if tmpfile:
        try:
            return os.open(directory, flags | tmpfile, 0o600)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    fd, path = tempfile.mkstemp(prefix="eifbuild-layer-", dir=directory)
    os.unlink(path)
    return fd
