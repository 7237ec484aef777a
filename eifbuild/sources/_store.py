"""Named files of an image container: a directory (OCI layout) or a tar archive, read in place."""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from pathlib import Path

from eifbuild.errors import ImageSourceError
from eifbuild.sources._blobs import Limits, Region

_MAX_ARCHIVE_MEMBERS = 1_000_000


class Store:
    """Look up files by relative POSIX name; never escapes its root."""

    label: str

    def file(self, name: str) -> Region:
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        try:
            self.file(name)
        except ImageSourceError:
            return False
        return True

    def blob(self, digest: str) -> Region:
        algo, _, hexpart = digest.partition(":")
        return self.file(f"blobs/{algo}/{hexpart}")


def _clean(name: str, label: str) -> str:
    norm = posixpath.normpath(name.lstrip("/")) if name else ""
    if norm in ("", ".") or norm == ".." or norm.startswith("../"):
        raise ImageSourceError(f"{label}: invalid path {name!r}")
    return norm


class DirStore(Store):
    """A directory; symlinks inside it are refused (a layout has no reason to contain any)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)
        if not root.is_dir():
            raise ImageSourceError(f"{root}: not a directory")

    def file(self, name: str) -> Region:
        rel = _clean(name, self.label)
        path = self.root
        for part in rel.split("/"):
            path = path / part
            try:
                st = os.lstat(path)
            except OSError:
                raise ImageSourceError(f"{self.label}: missing {rel}") from None
            if stat.S_ISLNK(st.st_mode):
                raise ImageSourceError(f"{self.label}: {rel} is a symlink (refused)")
        if not stat.S_ISREG(st.st_mode):
            raise ImageSourceError(f"{self.label}: {rel} is not a regular file")
        return Region(str(path), 0, st.st_size)


class TarStore(Store):
    """An uncompressed tar archive (docker save output, oci-archive), indexed once by name."""

    def __init__(self, path: Path, limits: Limits) -> None:
        self.label = str(path)
        self.path = str(path)
        self.limits = limits
        self.files: dict[str, tuple[int, int]] = {}
        self.links: dict[str, str] = {}
        try:
            size = os.stat(path).st_size
            with tarfile.open(path, "r:", encoding="utf-8", errors="surrogateescape") as tf:
                for count, ti in enumerate(iter(tf.next, None)):
                    tf.members = []  # type: ignore[attr-defined]
                    if count > _MAX_ARCHIVE_MEMBERS:
                        raise ImageSourceError(f"{path}: too many archive members")
                    self._add(ti, size)
        except FileNotFoundError:
            raise ImageSourceError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise ImageSourceError(f"{path}: is a directory, expected a tar archive") from None
        except (tarfile.TarError, ValueError, UnicodeError) as exc:
            raise ImageSourceError(f"{path}: not a readable tar archive ({exc})") from None

    def _add(self, ti: tarfile.TarInfo, size: int) -> None:
        if ti.isdir():
            return
        name = _clean(ti.name, self.label)
        if name in self.files or name in self.links:
            raise ImageSourceError(f"{self.label}: duplicate archive member {name}")
        if ti.isreg():
            if ti.offset_data + ti.size > size:
                raise ImageSourceError(f"{self.label}: member {name} is truncated")
            self.files[name] = (ti.offset_data, ti.size)
        elif ti.issym():
            self.links[name] = posixpath.join(posixpath.dirname(name), ti.linkname)
        elif ti.islnk():
            self.links[name] = ti.linkname

    def file(self, name: str) -> Region:
        rel = _clean(name, self.label)
        for _ in range(self.limits.max_link_depth):
            if rel in self.files:
                off, size = self.files[rel]
                return Region(self.path, off, size)
            if rel not in self.links:
                raise ImageSourceError(f"{self.label}: missing {rel}")
            rel = _clean(self.links[rel], self.label)
        raise ImageSourceError(f"{self.label}: too many links resolving {name}")
