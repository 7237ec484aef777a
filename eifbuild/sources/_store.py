"""Named files of an image container: a directory (OCI layout) or a tar archive, read in place."""

from __future__ import annotations

import os
import posixpath
import stat
from pathlib import Path

from eifbuild.errors import ImageSourceError
from eifbuild.limits import DEFAULT_LIMITS, Limits
from eifbuild.sources._blobs import Region, open_regular
from eifbuild.sources._tarhdr import CONT, LNK, REG, SYM, FileSource, TarHeader, read_headers


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
    """An uncompressed tar archive (docker save output, oci-archive), indexed once by name.

    Only regular files and links are indexed (directories are implied). The archive must be a
    regular file (a FIFO or a device would block or never end); its headers are read with the
    bounded reader of :mod:`._tarhdr` (same caps as layers), at most
    :data:`DEFAULT_LIMITS.max_archive_members` members whose indexed names add up to at most
    :data:`DEFAULT_LIMITS.max_archive_name_bytes`.
    """

    def __init__(self, path: Path, limits: Limits) -> None:
        self.label = str(path)
        self.path = str(path)
        self.limits = limits
        self.files: dict[str, tuple[int, int]] = {}
        self.links: dict[str, str] = {}
        self._name_bytes = 0
        fd = open_regular(path, "archive")
        try:
            size = os.fstat(fd).st_size

            def bad(msg: str) -> ImageSourceError:
                return ImageSourceError(f"{path}: not a readable tar archive ({msg})")

            for count, h in enumerate(read_headers(FileSource(fd, 0, size), bad), 1):
                if count > DEFAULT_LIMITS.max_archive_members:
                    raise ImageSourceError(
                        f"{path}: more than {DEFAULT_LIMITS.max_archive_members} archive members"
                    )
                self._add(h)
        except OSError as exc:
            raise ImageSourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
        finally:
            os.close(fd)

    def _add(self, h: TarHeader) -> None:
        if h.typeflag not in (REG, CONT, SYM, LNK):
            return
        text = h.name.decode("utf-8", "surrogateescape")
        name = _clean(text, self.label)
        if name in self.files or name in self.links:
            raise ImageSourceError(f"{self.label}: duplicate archive member {name}")
        self._name_bytes += len(h.name) + len(h.linkname)
        if self._name_bytes > DEFAULT_LIMITS.max_archive_name_bytes:
            raise ImageSourceError(
                f"{self.label}: archive member names exceed {DEFAULT_LIMITS.max_archive_name_bytes} bytes"
            )
        link = h.linkname.decode("utf-8", "surrogateescape")
        if h.typeflag in (REG, CONT):
            self.files[name] = (h.data_offset, h.size)
        elif h.typeflag == SYM:
            self.links[name] = posixpath.join(posixpath.dirname(name), link)
        else:
            self.links[name] = link

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
