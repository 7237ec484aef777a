"""Flatten image layers into the merged root filesystem a container sees, without extracting.

Layers are applied in order onto an in-memory tree of METADATA only (names, modes, owners,
times, link targets, and for regular files the offset of their data inside a verified,
uncompressed layer tar). File contents are never held in memory: each emitted Entry's opener
re-reads the bytes by offset through the layer's content (:meth:`Layer.content`: in place for
uncompressed layers, inflate checkpoints for gzip, a temp file for zstd only). Memory therefore
grows with the number of paths (about 0.35 KiB each plus the name), not with the image size,
and is capped by ``Limits.max_tree_bytes`` (default 192 MiB) plus the gzip checkpoints'
``Limits.max_index_bytes`` (default 16 MiB), so the process stays under 256 MiB.

The merge follows Docker's layer application (moby ``pkg/archive/diff.go`` ``UnpackLayer``):

* ``.wh.NAME`` removes NAME (whole subtree); ``.wh..wh..opq`` removes every child of its
  directory that this layer did not itself add; other ``.wh..wh.*`` entries are ignored;
* an entry replaces whatever is at its path unless both are directories (then attributes are
  updated and children kept); a missing parent is created 0600 root (:data:`IMPLIED_DIR_MODE`);
* a hard link joins the target's inode (also a file from a lower layer): the inode's owner is
  taken from the link header, its mode and mtime too unless it is a symlink;
* directories whose content a layer changed without carrying their own header get the
  wall-clock time in Docker; here they get :data:`LINUXKIT_MTIME` (the same for every
  synthesised time, see below).

Output order is ``docker export``'s: pre-order depth-first, each directory's children in byte
order of their names; no root entry; the first path of a multiply-linked inode is emitted as
the object, later paths as HARDLINK entries naming that first path.

Hostile layers (``..``, absolute names, entries under a non-directory or a symlink, hard links
to missing, escaping or directory targets, duplicate entries, over-long names, size limits)
raise :class:`RootfsError` naming the layer and the entry.

What ``docker create`` adds on top (init layer, WorkingDir) is :mod:`eifbuild.dockerexport`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from eifbuild._epoch import LINUXKIT_MTIME
from eifbuild.errors import RootfsError
from eifbuild.limits import DEFAULT_LIMITS, Limits
from eifbuild.model import Entry, EntryType
from eifbuild.sources import TarMember as Member
from eifbuild.sources.image import Image, LayerContent
from eifbuild.textescape import safe_name
from eifbuild.types import Warn

# moby's UnpackLayer creates a missing parent directory with MkdirAll(path, 0600) (seen on
# Docker 20.10: `docker load` of a layer whose entries lack their parents' headers).
IMPLIED_DIR_MODE = 0o600


WHITEOUT = b".wh."
OPAQUE = b".wh..wh..opq"
META_PREFIX = b".wh..wh."


class Node:
    """A path in the tree, carrying its own attributes (compact: one object per path).

    Directories have ``children``. Paths that share an inode (hard links) point ``shared`` at
    one detached Node holding the common attributes and the link count; :attr:`inode` is the
    Node whose attributes apply. File data is ``size`` bytes at offset ``off`` of the
    uncompressed tar of layer ``src``.
    """

    __slots__ = (
        "children",
        "devmajor",
        "devminor",
        "gid",
        "layer",
        "linkname",
        "mode",
        "mtime",
        "nlink",
        "off",
        "shared",
        "size",
        "src",
        "type",
        "uid",
        "xattrs",
    )

    def __init__(self, type: EntryType, mode: int, uid: int, gid: int, mtime: int) -> None:
        self.type = type
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.mtime = mtime
        self.size = 0
        self.off = 0
        self.src = -1
        self.linkname = b""
        self.devmajor = 0
        self.devminor = 0
        self.nlink = 1
        self.xattrs: tuple[str, ...] = ()
        self.children: dict[bytes, Node] | None = {} if type is EntryType.DIR else None
        self.layer = -1  # index of the layer whose explicit entry made this path, -1 if none
        self.shared: Node | None = None

    @property
    def inode(self) -> Node:
        return self.shared if self.shared is not None else self

    def detach(self) -> Node:
        """A copy of this node's attributes, to be shared by hard-linked paths."""
        copy = Node(self.type, self.mode, self.uid, self.gid, self.mtime)
        copy.size, copy.off, copy.src, copy.xattrs = self.size, self.off, self.src, self.xattrs
        copy.linkname, copy.devmajor, copy.devminor = self.linkname, self.devmajor, self.devminor
        return copy


def new_dir(mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: int = LINUXKIT_MTIME) -> Node:
    return Node(EntryType.DIR, mode, uid, gid, mtime)


# Process memory per path besides its name: peak RSS growth of benchmarks/bench_rootfs.py,
# (232.6 MiB - 27.0 MiB) / 600606 entries = 359 bytes with 13-byte names (tracemalloc alone
# counts 242; the rest is allocator overhead and the walk).
NODE_BYTES = 346


@dataclass
class Tree:
    root: Node
    contents: list[LayerContent] = field(default_factory=list)  # of each layer, by index
    cost: int = 0  # estimated bytes of every node ever created (see Limits.max_tree_bytes)

    def lookup(self, parts: list[bytes]) -> Node | None:
        """The node at ``parts`` without following symlinks, or None."""
        node = self.root
        for p in parts:
            if node.children is None:
                return None
            nxt = node.children.get(p)
            if nxt is None:
                return None
            node = nxt
        return node


def remove(node: Node) -> None:
    """Account for a removed subtree (hard-link counts of the inodes it held)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if n.children is not None:
            stack.extend(n.children.values())
        else:
            n.inode.nlink -= 1


def short_name(name: bytes, keep: int = 100) -> bytes:
    """``name`` for an error message: long names keep their start and end."""
    return name if len(name) <= 2 * keep + 3 else name[:keep] + b"..." + name[-keep:]


def split_name(raw: bytes, limits: Limits) -> list[bytes] | str:
    """Path components of a tar name, or a reason why it is refused."""
    if len(raw) > limits.max_name_bytes:
        return f"name longer than {limits.max_name_bytes} bytes"
    if b"\x00" in raw:
        return "NUL byte in name"
    if raw.startswith(b"/"):
        return "absolute name"
    parts = [p for p in raw.split(b"/") if p not in (b"", b".")]
    for p in parts:
        if p == b"..":
            return "'..' in name"
        if len(p) > limits.max_component_bytes:
            return f"name component longer than {limits.max_component_bytes} bytes"
    return parts


class _LayerApplier:
    """Applies one layer's members to the tree."""

    def __init__(self, tree: Tree, index: int, label: str, limits: Limits) -> None:
        self.tree = tree
        self.index = index
        self.label = label
        self.limits = limits
        self.changed: set[Node] = set()  # directories whose children this layer changed

    def fail(self, name: bytes, why: str) -> RootfsError:
        return RootfsError(f"{self.label}: entry {short_name(name)!r}: {why}")

    def charge(self, m: Member, name: bytes, extra: int = 0) -> None:
        """Account for one new node; refuse a tree that would outgrow the memory ceiling."""
        self.tree.cost += NODE_BYTES + len(name) + extra
        if self.tree.cost > self.limits.max_tree_bytes:
            raise self.fail(
                m.name,
                f"the image's file tree needs more than {self.limits.max_tree_bytes >> 20} MiB "
                "of memory (too many or too long paths; see --max-tree-mib)",
            )

    def parent(self, m: Member, parts: list[bytes]) -> Node:
        node = self.tree.root
        for p in parts[:-1]:
            assert node.children is not None
            nxt = node.children.get(p)
            if nxt is None:
                self.charge(m, p)
                nxt = new_dir(IMPLIED_DIR_MODE)
                node.children[p] = nxt
                self.changed.add(node)
            elif nxt.children is None:
                kind = "a symlink" if nxt.inode.type is EntryType.SYMLINK else "not a directory"
                raise self.fail(m.name, f"parent {b'/'.join(parts[:-1])!r} is {kind}")
            node = nxt
        return node

    def apply(self, m: Member) -> None:
        parts = split_name(m.name, self.limits)
        if isinstance(parts, str):
            raise self.fail(m.name, parts)
        if not parts:
            return  # the root entry: docker export does not emit it
        parent = self.parent(m, parts)
        assert parent.children is not None
        base = parts[-1]
        if base.startswith(WHITEOUT):
            self.whiteout(parent, base)
            return
        old = parent.children.get(base)
        if old is not None:
            if old.layer == self.index:
                raise self.fail(m.name, "duplicate entry in the same layer")
            if old.children is not None and m.type is EntryType.DIR:
                ino = old.inode
                ino.mode, ino.uid, ino.gid, ino.mtime = m.mode, m.uid, m.gid, m.mtime
                ino.xattrs = m.xattrs
                old.layer = self.index
                return
            remove(old)
        self.charge(m, base, len(m.linkname))
        node = self.hardlink(m) if m.type is EntryType.HARDLINK else self.node(m)
        node.layer = self.index
        parent.children[base] = node
        self.changed.add(parent)

    def node(self, m: Member) -> Node:
        ino = Node(m.type, m.mode, m.uid, m.gid, m.mtime)
        ino.size, ino.xattrs = m.size, m.xattrs
        if m.data_offset is not None:
            ino.off, ino.src = m.data_offset, self.index
        ino.devmajor, ino.devminor = m.devmajor, m.devminor
        if m.type is EntryType.SYMLINK:
            if len(m.linkname) > self.limits.max_name_bytes:
                raise self.fail(m.name, f"symlink target longer than {self.limits.max_name_bytes}")
            ino.linkname = m.linkname
        return ino

    def hardlink(self, m: Member) -> Node:
        parts = split_name(m.linkname, self.limits)
        if isinstance(parts, str) or not parts:
            raise self.fail(m.name, f"hard link target {m.linkname!r} escapes the root")
        target = self.tree.lookup(parts)
        if target is None:
            raise self.fail(m.name, f"hard link target {m.linkname!r} does not exist")
        if target.children is not None:
            raise self.fail(m.name, f"hard link target {m.linkname!r} is a directory")
        if target.shared is None:
            target.shared = target.detach()
        ino = target.shared
        ino.nlink += 1
        ino.uid, ino.gid = m.uid, m.gid
        if ino.type is not EntryType.SYMLINK:
            ino.mode, ino.mtime = m.mode, m.mtime
        node = Node(ino.type, ino.mode, ino.uid, ino.gid, ino.mtime)
        node.shared = ino
        return node

    def whiteout(self, parent: Node, base: bytes) -> None:
        assert parent.children is not None
        if base == OPAQUE:
            self.prune(parent)
        elif base.startswith(META_PREFIX):
            return
        else:
            gone = parent.children.pop(base[len(WHITEOUT) :], None)
            if gone is not None:
                remove(gone)
                self.changed.add(parent)

    def prune(self, directory: Node) -> None:
        """Opaque directory: drop everything below it that this layer did not add."""
        stack = [directory]
        while stack:
            d = stack.pop()
            assert d.children is not None
            for name in list(d.children):
                child = d.children[name]
                if child.layer != self.index:
                    remove(d.children.pop(name))
                    self.changed.add(d)
                elif child.children is not None:
                    stack.append(child)

    def finish(self) -> None:
        for d in self.changed:
            if d.layer != self.index:
                d.inode.mtime = LINUXKIT_MTIME


def merge(image: Image, *, limits: Limits | None = None) -> Tree:
    """Apply all layers of ``image`` in order; return the merged tree."""
    lim = limits or image.limits or DEFAULT_LIMITS
    tree = Tree(new_dir())
    total = 0
    for layer in image.layers:
        label = f"{image.reference}: {layer.label}"
        applier = _LayerApplier(tree, layer.index, label, lim)
        for member in layer.members(max_entries=lim.max_entries):
            total += 1
            if total > lim.max_entries:
                raise applier.fail(
                    member.name,
                    f"the image has more than {lim.max_entries} entries (--max-entries)",
                )
            applier.apply(member)
        applier.finish()
        tree.contents.append(layer.content())
    return tree


def _opener(content: LayerContent, off: int, size: int) -> Callable[[], Iterator[bytes]]:
    return lambda: content.chunks(off, size)


def _export_order(root: Node) -> Iterator[tuple[bytes, Node]]:
    """Pre-order depth-first, each directory's children in byte order (docker export)."""
    assert root.children is not None
    stack = [(name, root.children[name]) for name in sorted(root.children, reverse=True)]
    while stack:
        path, node = stack.pop()
        yield path, node
        if node.children is not None:
            for name in sorted(node.children, reverse=True):
                stack.append((path + b"/" + name, node.children[name]))


def _path_order(root: Node) -> Iterator[tuple[bytes, Node]]:
    """Every path in byte order of the whole path (``a``, ``a-b``, ``a/x``), streaming.

    A directory's subtree is one contiguous run in that order, sorting as ``name + b"/"``; so
    each directory contributes its children (key ``name``) and their subtrees (``name/``).
    """
    stack: list[tuple[bytes, bool, bytes, Node]] = []

    def expand(prefix: bytes, node: Node) -> None:
        assert node.children is not None
        items = [(name, False, prefix + name, child) for name, child in node.children.items()]
        items += [
            (name + b"/", True, prefix + name, child)
            for name, child in node.children.items()
            if child.children
        ]
        stack.extend(sorted(items, key=lambda item: item[0], reverse=True))

    expand(b"", root)
    while stack:
        _, subtree, path, node = stack.pop()
        if subtree:
            expand(path + b"/", node)
        else:
            yield path, node


def _first_paths(root: Node) -> dict[int, bytes]:
    """The docker-export-order first path of every multiply-linked inode."""
    first: dict[int, bytes] = {}
    for path, node in _export_order(root):
        if node.children is None and node.inode.nlink > 1:
            first.setdefault(id(node.inode), path)
    return first


def walk(tree: Tree, warn: Warn | None = None, *, order: str = "export") -> Iterator[Entry]:
    """The tree as Entries, in docker-export order (see the module docstring).

    ``order="path"`` yields the same entries sorted by whole path bytes instead (the
    ``eifbuild rootfs`` listing), streaming; hard links still name their export-order first path.
    """
    if order not in ("export", "path"):
        raise ValueError(f"unknown order {order!r}")
    by_path = order == "path"
    first_path = _first_paths(tree.root) if by_path else {}
    xattr_names: set[str] = set()
    xattr_count = 0
    for path, node in _path_order(tree.root) if by_path else _export_order(tree.root):
        ino = node.inode
        if ino.xattrs:
            xattr_count += 1
            xattr_names.update(ino.xattrs)
        if node.children is not None:
            yield Entry(path, EntryType.DIR, ino.mode, ino.uid, ino.gid, ino.mtime)
            continue
        if ino.nlink > 1:
            first = first_path.setdefault(id(ino), path)
            if first != path:
                yield Entry(
                    path, EntryType.HARDLINK, ino.mode, ino.uid, ino.gid, ino.mtime, linkname=first
                )
                continue
        yield Entry(
            path,
            ino.type,
            ino.mode,
            ino.uid,
            ino.gid,
            ino.mtime,
            size=ino.size if ino.type is EntryType.FILE else 0,
            linkname=ino.linkname,
            devmajor=ino.devmajor,
            devminor=ino.devminor,
            opener=_opener(tree.contents[ino.src], ino.off, ino.size)
            if ino.src >= 0 and ino.size
            else None,
        )
    if xattr_count and warn is not None:
        warn(
            f"dropped extended attributes ({', '.join(sorted(map(safe_name, xattr_names)))}) of "
            f"{xattr_count}"
            " entries: newc ramdisks cannot carry them (file capabilities are lost)"
        )


def flatten(
    image: Image, *, limits: Limits | None = None, warn: Warn | None = None, order: str = "export"
) -> Iterator[Entry]:
    """The merged rootfs of ``image`` as an Entry stream (docker-export order by default)."""
    return walk(merge(image, limits=limits), warn, order=order)
