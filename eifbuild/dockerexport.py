"""``docker create`` + ``docker export`` emulation on a merged tree (:mod:`eifbuild.rootfs`).

What a container created from an image adds to the image's merged rootfs: Docker's init layer
(moby ``daemon/initlayer/setup_unix.go``) and a missing ``WorkingDir``. :func:`docker_export`
is the ONE code path for this view: ``eifbuild rootfs --export`` and ``eifbuild build`` use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from eifbuild._epoch import LINUXKIT_MTIME
from eifbuild.errors import RootfsError
from eifbuild.limits import DEFAULT_LIMITS, Limits
from eifbuild.model import Entry, EntryType
from eifbuild.rootfs import Node, Tree, merge, new_dir, remove, walk
from eifbuild.sources.image import Image
from eifbuild.types import Warn

# moby daemon/initlayer/setup_unix.go: path -> "dir", "file" or a symlink target.
INIT_LAYER: tuple[tuple[bytes, bytes], ...] = (
    (b"dev/pts", b"dir"),
    (b"dev/shm", b"dir"),
    (b"proc", b"dir"),
    (b"sys", b"dir"),
    (b".dockerenv", b"file"),
    (b"etc/resolv.conf", b"file"),
    (b"etc/hosts", b"file"),
    (b"etc/hostname", b"file"),
    (b"dev/console", b"file"),
    (b"etc/mtab", b"/proc/mounts"),
)
INIT_LAYER_PATHS = tuple(p for p, _ in INIT_LAYER)


class _Mutator:
    """Filesystem operations on a merged tree, stamping touched directories with ``mtime``."""

    def __init__(self, tree: Tree, mtime: int) -> None:
        self.tree = tree
        self.mtime = mtime
        self.created = False

    def unlink(self, parts: list[bytes]) -> None:
        """Remove a non-directory at ``parts`` (like unlink(2); directories stay)."""
        parent = self.tree.lookup(parts[:-1])
        if parent is None or parent.children is None:
            return
        node = parent.children.get(parts[-1])
        if node is not None and node.children is None:
            remove(parent.children.pop(parts[-1]))
            parent.inode.mtime = self.mtime

    def mkdir_all(self, parts: list[bytes]) -> Node:
        """MkdirAllAndChownNew(path, 0755, root): only new directories get mode and owner.

        Sets :attr:`created` when a directory had to be made.
        """
        node = self.tree.root
        for i, p in enumerate(parts):
            assert node.children is not None
            nxt = node.children.get(p)
            if nxt is None:
                nxt = new_dir(mtime=self.mtime)
                node.children[p] = nxt
                node.inode.mtime = self.mtime
                self.created = True
            elif nxt.children is None:
                raise RootfsError(
                    f"cannot create {b'/'.join(parts).decode(errors='replace')}: "
                    f"{b'/'.join(parts[: i + 1]).decode(errors='replace')} is not a directory"
                )
            node = nxt
        return node

    def create(self, parts: list[bytes], kind: bytes) -> None:
        parent = self.mkdir_all(parts[:-1])
        assert parent.children is not None
        if kind == b"dir":
            ino = Node(EntryType.DIR, 0o755, 0, 0, self.mtime)
        elif kind == b"file":
            ino = Node(EntryType.FILE, 0o755, 0, 0, self.mtime)
        else:
            ino = Node(EntryType.SYMLINK, 0o777, 0, 0, self.mtime)
            ino.linkname = kind
        parent.children[parts[-1]] = ino
        parent.inode.mtime = self.mtime

    def resolve(self, path: bytes, limits: Limits) -> list[bytes]:
        """Resolve symlinks in ``path`` inside the root (FollowSymlinkInScope)."""
        todo = [p for p in path.split(b"/") if p not in (b"", b".")]
        done: list[bytes] = []
        hops = 0
        while todo:
            p = todo.pop(0)
            if p == b"..":
                if done:
                    done.pop()
                continue
            node = self.tree.lookup([*done, p])
            if node is not None and node.inode.type is EntryType.SYMLINK:
                hops += 1
                if hops > limits.max_link_depth:
                    raise RootfsError(f"more than {limits.max_link_depth} symlinks to follow")
                target = node.inode.linkname
                if target.startswith(b"/"):
                    done = []
                todo = [q for q in target.split(b"/") if q not in (b"", b".")] + todo
                continue
            done.append(p)
        return done


def add_init_layer(
    tree: Tree,
    working_dir: str = "",
    *,
    mtime: int = LINUXKIT_MTIME,
    limits: Limits = DEFAULT_LIMITS,
    label: str = "image",
) -> bool:
    """What ``docker create`` adds: Docker's init layer, then a missing WorkingDir.

    The WorkingDir is resolved inside the rootfs as Docker does (symlinks followed, ``..``
    clamped at the root), after the init layer. Returns True when (part of) the WorkingDir did
    not exist and was created: Docker stamps it with the wall clock, so that is the one place
    where the export cannot be reproduced exactly.
    """
    mut = _Mutator(tree, mtime)
    for path, kind in INIT_LAYER:
        parts = path.split(b"/")
        for i in range(1, len(parts) + 1):
            mut.unlink(parts[:i])
        if tree.lookup(parts) is None:
            mut.create(parts, kind)
    if not working_dir:
        return False
    try:
        parts = mut.resolve(working_dir.encode("utf-8", "surrogateescape"), limits)
    except RootfsError as exc:
        raise RootfsError(f"{label}: WorkingDir {working_dir!r}: {exc}") from None
    mut.created = False
    if parts:
        try:
            mut.mkdir_all(parts)
        except RootfsError:
            raise RootfsError(
                f"{label}: WorkingDir {working_dir!r}: not a directory in the image"
            ) from None
    return mut.created


@dataclass
class Export:
    """The ``docker export`` view: entries in export order, and whether WorkingDir was made."""

    entries: Iterator[Entry]
    created_workdir: bool


def docker_export(
    image: Image,
    *,
    limits: Limits | None = None,
    warn: Warn | None = None,
    mtime: int = LINUXKIT_MTIME,
    order: str = "export",
) -> Export:
    """What ``docker export`` of a container created from ``image`` contains.

    The merged rootfs plus Docker's init layer (``dev/pts``, ``dev/shm``, ``proc``, ``sys``;
    empty 0755 root files ``.dockerenv``, ``etc/resolv.conf``, ``etc/hosts``, ``etc/hostname``,
    ``dev/console``, which replace the image's own; ``etc/mtab`` -> ``/proc/mounts``) and a
    missing ``WorkingDir`` (0755 root). Existing directories keep their mode and owner. Every
    time Docker takes from the wall clock is ``mtime`` (default :data:`LINUXKIT_MTIME`).
    This is the ONE export code path: ``eifbuild rootfs --export`` and ``eifbuild build`` use it.
    """
    lim = limits or image.limits or DEFAULT_LIMITS
    tree = merge(image, limits=lim)
    created = add_init_layer(
        tree, image.config.working_dir, mtime=mtime, limits=lim, label=str(image.reference)
    )
    return Export(walk(tree, warn, order=order), created)


def docker_export_entries(
    image: Image,
    *,
    limits: Limits | None = None,
    warn: Warn | None = None,
    mtime: int = LINUXKIT_MTIME,
    order: str = "export",
) -> Iterator[Entry]:
    """The entries of :func:`docker_export`."""
    return docker_export(image, limits=limits, warn=warn, mtime=mtime, order=order).entries
