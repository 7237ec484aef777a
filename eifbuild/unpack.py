"""List and unpack a newc ramdisk safely (``eifbuild extract --unpack``).

The archive is hostile input. Every path is resolved component by component with
``O_NOFOLLOW`` directory descriptors under the destination, so neither ``..``, absolute names
nor symlinks planted by earlier members can make a write land outside it. Device nodes are
created only when running as root *and* ``devices=True``; otherwise they are skipped and
reported. Owners are applied only as root; setuid/setgid bits only as root. Directory modes
and mtimes are applied at the end, so a read-only directory does not block its own content.
Duplicate directory entries (nitro-cli's ramdisks have them) update the mode, as the kernel's
initramfs unpacker does; a later file replaces an earlier non-directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from eifbuild._atomic import TMP_MARK
from eifbuild.cpio import (
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFREG,
    Header,
    Limits,
    NewcReader,
)
from eifbuild.diff.escape import safe_text
from eifbuild.errors import RamdiskError
from eifbuild.limits import DEFAULT_LIMITS

# Linux dev_t: 12-bit major, 20-bit minor (include/linux/kdev_t.h, as the initramfs unpacker).
MAX_MAJOR = DEFAULT_LIMITS.max_dev_major  # the build refuses the same (eifbuild.ramdisk)
MAX_MINOR = DEFAULT_LIMITS.max_dev_minor
_TYPE_CHARS = {S_IFDIR: "d", S_IFREG: "-", S_IFLNK: "l", S_IFCHR: "c", S_IFBLK: "b", S_IFIFO: "p"}


def safe_parts(name: bytes) -> list[bytes]:
    """Split an archive name into path components, refusing anything that could escape.

    The root itself (``.``, ``/``) gives an empty list: such members are skipped.
    """
    parts = [p for p in name.split(b"/") if p not in (b"", b".")]
    if b".." in parts:
        raise RamdiskError(f"ramdisk member {name!r}: unsafe path")
    return parts


def mode_string(mode: int) -> str:
    return _TYPE_CHARS.get(stat.S_IFMT(mode), "?") + stat.filemode(mode)[1:]


def describe(h: Header, target: bytes = b"") -> str:
    """One ``cpio -tv``-like line (numeric owners, size, mtime in epoch seconds)."""
    name = safe_text(h.name)  # hostile names must not forge listing lines
    line = f"{mode_string(h.mode)} {h.uid}/{h.gid} {h.filesize:>10} {h.mtime:>10} {name}"
    if h.ftype == S_IFLNK:
        line += " -> " + safe_text(target)
    elif h.ftype in (S_IFCHR, S_IFBLK):
        line += f" [{h.rdevmajor},{h.rdevminor}]"
    return line


def list_archive(fh: BinaryIO, limits: Limits | None = None) -> Iterator[str]:
    """Describe each member of the archive read from ``fh``."""
    reader = NewcReader(fh, limits)
    for h in reader:
        target = reader.read_small(reader.limits.max_symlink_bytes) if h.ftype == S_IFLNK else b""
        yield describe(h, target)


def _device_number(h: Header) -> int:
    """The ``dev_t`` for mknod: 0 for a FIFO; a device's numbers within Linux's 12/20 bits."""
    if h.ftype not in (S_IFCHR, S_IFBLK):
        return 0
    if h.rdevmajor > MAX_MAJOR or h.rdevminor > MAX_MINOR:
        raise RamdiskError(
            f"ramdisk member {h.name!r}: device number {h.rdevmajor},{h.rdevminor} out of range"
        )
    return os.makedev(h.rdevmajor, h.rdevminor)


@dataclass
class UnpackResult:
    members: int = 0
    skipped: list[str] = field(default_factory=list)


class _Unpacker:
    def __init__(self, dest: Path, devices: bool) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        self.root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        self.is_root = os.geteuid() == 0
        self.devices = devices and self.is_root
        self.dirs: dict[tuple[bytes, ...], Header] = {}
        self.result = UnpackResult()

    def close(self) -> None:
        os.close(self.root)

    @contextlib.contextmanager
    def parent(self, parts: list[bytes]) -> Iterator[int]:
        """An fd of the parent directory of ``parts``, creating missing directories."""
        fd = os.dup(self.root)
        try:
            for comp in parts[:-1]:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(comp, 0o700, dir_fd=fd)
                try:
                    nxt = os.open(comp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except OSError:
                    raise RamdiskError(
                        f"ramdisk member path {b'/'.join(parts)!r} goes through a non-directory"
                    ) from None
                os.close(fd)
                fd = nxt
            yield fd
        finally:
            os.close(fd)

    def _clear(self, name: bytes, fd: int) -> None:
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise RamdiskError(f"ramdisk member {name!r} would replace a directory")
        os.unlink(name, dir_fd=fd)

    def _perm(self, h: Header) -> int:
        return h.perm if self.is_root else h.perm & 0o1777

    def member(self, reader: NewcReader, h: Header) -> None:
        parts = safe_parts(h.name)
        if not parts:
            return
        leaf = parts[-1]
        with self.parent(parts) as fd:
            if h.ftype == S_IFDIR:
                try:
                    os.mkdir(leaf, 0o700, dir_fd=fd)
                except FileExistsError:
                    st = os.stat(leaf, dir_fd=fd, follow_symlinks=False)
                    if not stat.S_ISDIR(st.st_mode):
                        raise RamdiskError(
                            f"ramdisk member {h.name!r}: exists as a non-directory"
                        ) from None
                self.dirs[tuple(parts)] = h
                return
            if h.ftype in (S_IFCHR, S_IFBLK) and not self.devices:
                self.result.skipped.append(h.name.decode("utf-8", errors="backslashreplace"))
                return
            dev = _device_number(h)
            self._clear(leaf, fd)
            if h.ftype == S_IFREG:
                self._file(reader, h, leaf, fd)
            elif h.ftype == S_IFLNK:
                target = reader.read_small(reader.limits.max_symlink_bytes)
                if b"\0" in target:
                    raise RamdiskError(f"ramdisk member {h.name!r}: symlink target has a NUL byte")
                os.symlink(target, leaf, dir_fd=fd)
            else:
                os.mknod(leaf, h.ftype | (self._perm(h) & 0o777), dev, dir_fd=fd)
            self._attrs(leaf, fd, h)

    def _file(self, reader: NewcReader, h: Header, leaf: bytes, fd: int) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        out = os.open(leaf, flags, 0o600, dir_fd=fd)
        with os.fdopen(out, "wb") as fh:
            for chunk in reader.content():
                fh.write(chunk)

    def _attrs(self, leaf: bytes, fd: int, h: Header) -> None:
        if self.is_root:
            os.chown(leaf, h.uid, h.gid, dir_fd=fd, follow_symlinks=False)
        if h.ftype != S_IFLNK:
            os.chmod(leaf, self._perm(h), dir_fd=fd)
        os.utime(leaf, (h.mtime, h.mtime), dir_fd=fd, follow_symlinks=False)

    def finish_dirs(self) -> None:
        for parts in sorted(self.dirs, key=len, reverse=True):
            h = self.dirs[parts]
            with self.parent(list(parts)) as fd:
                self._attrs(parts[-1], fd, h)


def unpack_archive(
    fh: BinaryIO, dest: Path, *, devices: bool = False, limits: Limits | None = None
) -> UnpackResult:
    """Unpack the newc archive read from ``fh`` into ``dest`` (created if missing)."""
    up = _Unpacker(dest, devices)
    try:
        reader = NewcReader(fh, limits)
        for h in reader:
            up.member(reader, h)
            up.result.members += 1
        up.finish_dirs()
    except OSError as exc:
        raise RamdiskError(f"{dest}: cannot unpack ramdisk ({exc.strerror})") from None
    finally:
        up.close()
    return up.result


def _rmtree(path: Path) -> None:
    """Remove a (possibly partial) unpacked tree, whatever modes the archive gave it."""

    def retry(func: Any, name: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(name), 0o700)
            if os.path.isdir(name) and not os.path.islink(name):
                os.chmod(name, 0o700)
            func(name)

    shutil.rmtree(path, onerror=retry)


@dataclass
class StagedUnpack:
    """Ramdisks unpacked into hidden ``.ramdisk-N.d.eifbuild-tmp-PID`` directories next to
    their final ``ramdisk-N.d``: :meth:`commit` renames them into place, :meth:`discard`
    removes them, so a failed ``extract --unpack`` leaves no partial tree."""

    staged: list[tuple[Path, Path]] = field(default_factory=list)  # (staging, final)

    def commit(self) -> None:
        for tmp, dest in self.staged:
            if dest.is_dir() and not dest.is_symlink():
                _rmtree(dest)  # --force: the old tree goes only once the new one is complete
            os.replace(tmp, dest)
        self.staged = []

    def discard(self) -> None:
        for tmp, _ in self.staged:
            _rmtree(tmp)
        self.staged = []


def stage_unpack(
    outdir: Path,
    ramdisks: Sequence[tuple[str, Callable[[], contextlib.AbstractContextManager[BinaryIO]]]],
    *,
    devices: bool = False,
    force: bool = False,
    label: str = "",
) -> tuple[StagedUnpack, dict[str, UnpackResult]]:
    """For ``extract --unpack``: unpack each ramdisk (file name, opener of its bytes) into a
    staging directory. Any error discards every staged tree and names the ramdisk."""
    for name, _ in ramdisks:
        dest = outdir / f"{name}.d"
        if (dest.exists() or dest.is_symlink()) and not force:
            raise RamdiskError(f"{dest}: already exists (use --force to unpack over it)")
        if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
            raise RamdiskError(f"{dest}: exists and is not a directory")
    staged = StagedUnpack()
    results: dict[str, UnpackResult] = {}
    try:
        for name, opener in ramdisks:
            dest = outdir / f"{name}.d"
            tmp = outdir / f".{name}.d{TMP_MARK}{os.getpid()}"
            if tmp.is_dir() and not tmp.is_symlink():
                _rmtree(tmp)
            staged.staged.append((tmp, dest))
            try:
                with opener() as fh:
                    results[name] = unpack_archive(fh, tmp, devices=devices)
            except RamdiskError as exc:
                where = f"{label}: " if label else ""
                raise RamdiskError(f"{where}{name}: cannot unpack ({exc.message})") from None
    except BaseException:
        staged.discard()
        raise
    return staged, results
