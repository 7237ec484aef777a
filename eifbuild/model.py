"""Core value types passed between pipeline stages.

sources/  -> Image (config + layers)
rootfs    -> Iterator[Entry] in docker-export walk order
ramdisk   -> newc byte streams built from Entries

Paths are raw ``bytes`` (image file names need not be UTF-8), relative to the rootfs root,
without a leading ``/`` or ``./`` and without a trailing ``/``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


class EntryType(enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"  # link to an earlier Entry (linkname = its path)
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"


# Opens the content of a regular file as an iterator of byte chunks (streamed, not buffered).
ContentOpener = Callable[[], Iterator[bytes]]


@dataclass(frozen=True)
class Entry:
    path: bytes
    type: EntryType
    mode: int  # permission bits incl. setuid/setgid/sticky: (mode & 0o7777)
    uid: int = 0
    gid: int = 0
    mtime: int = 0  # whole seconds
    size: int = 0  # regular files: content length; 0 otherwise
    linkname: bytes = b""  # symlink target (verbatim) or hardlink target path
    devmajor: int = 0
    devminor: int = 0
    sha256: str | None = None  # hex digest of the content for regular files, when known
    opener: ContentOpener | None = field(default=None, compare=False, repr=False)

    def open(self) -> Iterator[bytes]:
        if self.opener is None:
            if self.size == 0:
                return iter(())
            raise ValueError(f"no content for {self.path!r}")
        return self.opener()


@dataclass(frozen=True)
class ImageConfig:
    """The fields of an image configuration that eifbuild uses (OCI/Docker config JSON)."""

    architecture: str  # OCI name: "amd64", "arm64", ...
    os: str = "linux"
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] | None = None
    working_dir: str = ""
    user: str = ""
    created: str | None = None  # RFC 3339 text as stored in the config
    labels: dict[str, str] | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
