"""A content-addressed blob cache shared by concurrent builds.

Layout under the cache root (default ``$XDG_CACHE_HOME/eifbuild/registry``, else
``~/.cache/eifbuild/registry``)::

    blobs/sha256/<hex>   a verified blob, read-only (0444), named by its digest
    used/<hex>           an empty stamp file whose mtime is the blob's last use (LRU order)
    tmp/                 downloads in progress (unique names), renamed into blobs/ when verified
    lock                 flock: shared while a process downloads or reads blobs, exclusive to prune

Writes never expose a partial blob: a download goes to ``tmp/`` and is renamed only after its
size and digest were checked. Reads verify again (size and sha256) and drop a blob that does
not match, so a corrupted or tampered cache costs a download, never a wrong image. Blob files
themselves are never touched after the rename (use is recorded on the stamp), so a build that
checked a blob's identity keeps seeing the same file. Pruning takes the exclusive lock, so it
never removes a blob another build is using; eviction for the size cap happens when a process
releases its shared lock and nobody else holds one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from eifbuild.errors import RegistryError

_HEX_RE = re.compile(r"^[0-9a-f]{64}$")
_counter = itertools.count()
LOCK_POLL = 0.1


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.environ.get("HOME") or str(Path.home()), ".cache"
    )
    return Path(base) / "eifbuild" / "registry"


@dataclass(frozen=True)
class PruneResult:
    """What :func:`BlobCache.prune` removed and kept."""

    root: str
    removed_blobs: int
    removed_bytes: int
    kept_blobs: int
    kept_bytes: int


@dataclass(frozen=True)
class CacheUsage:
    root: str
    blobs: int
    bytes: int


def _hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or not _HEX_RE.match(hexpart):
        raise RegistryError(f"invalid blob digest {digest[:80]!r}")
    return hexpart


class BlobCache:
    """Blobs by digest. Use :meth:`session` around any use of its paths."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.blobs = self.root / "blobs" / "sha256"
        self.used = self.root / "used"
        self.tmp = self.root / "tmp"
        try:
            for d in (self.blobs, self.used, self.tmp):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryError(
                f"{self.root}: cannot create the blob cache ({exc.strerror})"
            ) from None

    # ------------------------------------------------------------------ locking
    def _lock_fd(self) -> int:
        try:
            return os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise RegistryError(f"{self.root}/lock: cannot open ({exc.strerror})") from None

    @contextlib.contextmanager
    def session(self, max_bytes: int | None = None) -> Iterator[BlobCache]:
        """Hold the shared lock; on exit, evict down to ``max_bytes`` if no one else is in."""
        fd = self.acquire_shared()
        try:
            yield self
        finally:
            self.release(fd, max_bytes)

    def acquire_shared(self) -> int:
        fd = self._lock_fd()
        fcntl.flock(fd, fcntl.LOCK_SH)
        return fd

    def release(self, fd: int, max_bytes: int | None = None) -> None:
        """Drop a shared lock; then evict (least recently used first) above ``max_bytes``."""
        os.close(fd)
        if max_bytes is None or self.usage().bytes <= max_bytes:
            return
        with contextlib.suppress(BlockingIOError):
            self.prune(max_bytes, wait=0.0)

    @contextlib.contextmanager
    def _exclusive(self, wait: float) -> Iterator[None]:
        fd = self._lock_fd()
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(LOCK_POLL)
            yield
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ blobs
    def path(self, digest: str) -> Path:
        return self.blobs / _hex(digest)

    def get(self, digest: str, size: int | None = None) -> Path | None:
        """The verified cached blob, or None (absent, or dropped because it did not verify)."""
        path = self.path(digest)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        ok = (size is None or st.st_size == size) and _sha256_file(path) == digest
        if not ok:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return None
        self._touch(digest)
        return path

    def _touch(self, digest: str) -> None:
        stamp = self.used / _hex(digest)
        with contextlib.suppress(OSError):
            stamp.touch()

    @contextlib.contextmanager
    def writer(self, digest: str, *, verified: bool = False) -> Iterator[BinaryIO]:
        """A temp file that becomes blob ``digest`` if the block completes and it verifies.

        ``verified``: the caller checked the digest of what it wrote while streaming it (the
        registry client does), so the file is not read back once more.
        """
        hexpart = _hex(digest)
        tmp = self.tmp / f"{hexpart}.{os.getpid()}.{next(_counter)}"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w+b") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            if not verified and _sha256_file(tmp) != digest:
                raise RegistryError(f"blob cache: {digest}: written data does not match its digest")
            os.chmod(tmp, 0o444)
            # link, not rename: a blob another build already verified and reads is never
            # replaced by a new inode (its identity checks would fail); equal content anyway.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, self.blobs / hexpart)
            self._touch(digest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def put_bytes(self, digest: str, data: bytes) -> Path:
        with self.writer(digest) as fh:
            fh.write(data)
        return self.path(digest)

    # ------------------------------------------------------------------ maintenance
    def _entries(self) -> list[tuple[float, str, int]]:
        out = []
        for entry in os.scandir(self.blobs):
            if not _HEX_RE.match(entry.name):
                continue
            try:
                size = entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
            try:
                used = os.stat(self.used / entry.name).st_mtime
            except FileNotFoundError:
                used = 0.0
            out.append((used, entry.name, size))
        return sorted(out)

    def usage(self) -> CacheUsage:
        entries = self._entries()
        return CacheUsage(str(self.root), len(entries), sum(e[2] for e in entries))

    def prune(self, max_bytes: int = 0, wait: float = 30.0) -> PruneResult:
        """Remove least recently used blobs until at most ``max_bytes`` remain (0: all).

        Takes the exclusive lock (waiting up to ``wait`` seconds for running builds); also
        removes leftover temp files of interrupted downloads.
        """
        try:
            with self._exclusive(wait):
                for entry in os.scandir(self.tmp):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                entries = self._entries()
                total = sum(e[2] for e in entries)
                removed = removed_bytes = 0
                for _, name, size in entries:
                    if total <= max_bytes:
                        break
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.blobs / name)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.used / name)
                    total -= size
                    removed += 1
                    removed_bytes += size
                for entry in os.scandir(self.used):
                    if not (self.blobs / entry.name).exists():
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.path)
                return PruneResult(
                    str(self.root), removed, removed_bytes, len(entries) - removed, total
                )
        except BlockingIOError:
            if wait <= 0:
                raise
            raise RegistryError(
                f"{self.root}: the blob cache is in use by another eifbuild process; "
                f"try again when it finishes"
            ) from None


def _sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()
