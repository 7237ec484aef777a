"""The two ramdisks of an EIF, laid out exactly as nitro-cli 1.5 / linuxkit 1.5.2 write them.

Every linuxkit rule lives in this module (docs/spec/ramdisk-layout.md §7-§8): the fixed
mtime, the ``rootfs/`` prefix, the exclude / replace / touch tables, hard links turned into
relative symlinks, the duplicate ``files:`` entries, ``cmd`` and ``env``. The ``docker export``
emulation itself is :mod:`eifbuild.rootfs` (layer merge, walk order) and
:mod:`eifbuild.dockerexport` (init layer, WorkingDir); this module takes its entries in export
order and rewrites them.

Decisions where the spec is not backed by an observation are collected in :data:`DECISIONS`
and in the constants right below it, so each can be changed with one edit.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from eifbuild._epoch import LINUXKIT_MTIME
from eifbuild.blobs import stat_regular
from eifbuild.cpio import (
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFREG,
    Member,
    newc_stream,
)
from eifbuild.errors import BlobsError, RamdiskError
from eifbuild.limits import DEFAULT_LIMITS
from eifbuild.model import ContentOpener, Entry, EntryType
from eifbuild.textescape import safe_text

# --- linuxkit constants ------------------------------------------------------------------------

PREFIX = b"rootfs/"
PREFIX_DIR = b"rootfs"
RESOLV_TARGET = b"/run/resolvconf/resolv.conf"
MTAB_TARGET = b"/proc/mounts"
HOSTS = (
    b"127.0.0.1       localhost\n"
    b"::1     localhost ip6-localhost ip6-loopback\n"
    b"fe00::0 ip6-localnet\n"
    b"ff00::0 ip6-mcastprefix\n"
    b"ff02::1 ip6-allnodes\n"
    b"ff02::2 ip6-allrouters\n"
)
assert len(HOSTS) == 160

# Matched on the *export* name (directories carry Docker's trailing "/"), unprefixed.
EXCLUDE = frozenset(
    {b".dockerenv", b"Dockerfile", b"dev/console", b"dev/pts", b"dev/shm", b"etc/hostname"}
)
REPLACE = frozenset({b"etc/hosts", b"etc/resolv.conf"})
TOUCH = (  # sorted, as linuxkit iterates its table keys in sorted order for missing ones
    b"dev/", b"dev/pts/", b"dev/shm/", b"etc/", b"etc/hosts", b"etc/mtab",
    b"etc/resolv.conf", b"proc/", b"sys/",
)  # fmt: skip
assert list(TOUCH) == sorted(TOUCH)

# The customer YAML's `files:` directories, in YAML order, after a second `rootfs` parent.
FILES_DIRS = (b"dev", b"run", b"sys", b"var", b"proc", b"tmp")

# --- decisions (docs/adr/0001-ramdisk-decisions-table.md) --------------------------------------

DECISIONS = {
    "export_dir_slash": "Directories from the export keep Docker's trailing '/' (observed, docs/spec/ramdisk-layout.md §14).",
    "workdir": (
        "A Config.WorkingDir missing from the image is created by the export emulation "
        "(eifbuild.dockerexport.add_init_layer, the one place for it) as 0755 root directories with "
        f"mtime {LINUXKIT_MTIME} instead of Docker's wall clock: nitro-cli's own PCR2 is not "
        "reproducible for such images, so no byte parity is possible; the tree shape matches."
    ),
    "clamp_mtime": (
        "--clamp-mtime clamps only mtimes that come from the image (export entries, incl. the "
        "entries Docker stamps with the wall clock) to min(mtime, epoch); linuxkit's fixed "
        f"{LINUXKIT_MTIME} entries (touch/replace rules, files:) stay."
    ),
    "modules": (
        "With extra kernel modules the bootstrap ramdisk is dev, init, each .ko in load order "
        "(0755), then modules_load_order (0644, one file name per line); no nsm.ko entry unless "
        "it is one of the modules."
    ),
}

_CHUNK = 1 << 20


def file_opener(path: Path) -> ContentOpener:
    """A content opener that streams ``path`` in 1 MiB chunks."""

    def _open() -> Iterator[bytes]:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                yield chunk

    return _open


def _blob_member(name: bytes, path: Path, perm: int) -> Member:
    st = stat_regular(path, name.decode("utf-8", "replace"))
    return Member(
        name, S_IFREG, perm, mtime=LINUXKIT_MTIME, size=st.st_size, opener=file_opener(path)
    )


def _dir(name: bytes, perm: int = 0o755, mtime: int = LINUXKIT_MTIME) -> Member:
    return Member(name, S_IFDIR, perm, mtime=mtime)


# --- bootstrap ---------------------------------------------------------------------------------


def bootstrap_members(init: Path, nsm: Path | None, modules: Sequence[Path] = ()) -> list[Member]:
    """docs/spec/ramdisk-layout.md §7: ``dev``, ``init``, ``nsm.ko`` (or the modules form, or nothing for built-in NSM)."""
    members = [_dir(b"dev"), _blob_member(b"init", init, 0o755)]
    if modules:
        names = [os.fsencode(p.name) for p in modules]
        if len(set(names)) != len(names) or any(not n.endswith(b".ko") for n in names):
            raise BlobsError("kernel modules must be distinct .ko files")
        members += [_blob_member(n, p, 0o755) for n, p in zip(names, modules, strict=True)]
        order = b"".join(n + b"\n" for n in names)
        members.append(
            Member(b"modules_load_order", S_IFREG, 0o644, mtime=LINUXKIT_MTIME, data=order)
        )
    elif nsm is not None:
        members.append(_blob_member(b"nsm.ko", nsm, 0o755))
    return members


def bootstrap_stream(init: Path, nsm: Path | None, modules: Sequence[Path] = ()) -> Iterator[bytes]:
    """The bootstrap ramdisk as newc chunks."""
    return newc_stream(bootstrap_members(init, nsm, modules))


# --- customer ----------------------------------------------------------------------------------


def list_file(items: Sequence[str] | None) -> bytes:
    """nitro-cli's cmd/env file: each element followed by a newline; empty list -> 0 bytes."""
    return b"".join(s.encode() + b"\n" for s in items or ())


def export_name(e: Entry) -> bytes:
    """The tar name ``docker export`` gives an entry: directories end with '/'."""
    return e.path + b"/" if e.type is EntryType.DIR else e.path


def _clean(parts: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for p in parts:
        if p in (b"", b"."):
            continue
        if p == b"..":
            if not out or out[-1] == b"..":
                out.append(p)
            else:
                out.pop()
        else:
            out.append(p)
    return out


def go_rel(base: bytes, target: bytes) -> bytes | None:
    """Go ``filepath.Rel(base, target)`` for relative paths; None where Go returns an error."""
    b = _clean(base.split(b"/"))
    t = _clean(target.split(b"/"))
    i = 0
    while i < len(b) and i < len(t) and b[i] == t[i]:
        i += 1
    if any(p == b".." for p in b[i:]):
        return None  # Go: "can't make target relative to base"
    rel = [b".."] * (len(b) - i) + t[i:]
    return b"/".join(rel) or b"."


def hardlink_target(name: bytes, linkname: bytes) -> bytes:
    """The symlink target gocpio's converter writes for a tar hard link (docs/spec/ramdisk-layout.md §6.3)."""
    parent = name.rsplit(b"/", 1)[0] if b"/" in name else b""
    rel = go_rel(parent, linkname)
    return rel if rel is not None else b"/" + linkname


MAX_NAME_BYTES = DEFAULT_LIMITS.max_name_bytes
MAX_SYMLINK_BYTES = DEFAULT_LIMITS.max_symlink_bytes
MAX_DEV_MAJOR = DEFAULT_LIMITS.max_dev_major
MAX_DEV_MINOR = DEFAULT_LIMITS.max_dev_minor


def _entry_member(name: bytes, e: Entry, mtime: int) -> Member:
    """Convert one (prefixed) export entry, like linuxkit's tar -> cpio step, within the
    ceilings eifbuild's own readers apply (eifbuild.limits: the readers' defaults)."""
    m = _convert(name, e, mtime)
    if len(m.name) > MAX_NAME_BYTES:
        raise RamdiskError(
            f"image entry {safe_text(e.path[:100])}...: ramdisk name longer than "
            f"{MAX_NAME_BYTES} bytes (the kernel and eifbuild's readers refuse it)"
        )
    if m.ftype == S_IFLNK and len(m.data) > MAX_SYMLINK_BYTES:
        raise RamdiskError(
            f"image entry {safe_text(e.path)}: symlink target longer than {MAX_SYMLINK_BYTES} bytes"
        )
    if m.ftype in (S_IFCHR, S_IFBLK) and (
        m.rdevmajor > MAX_DEV_MAJOR or m.rdevminor > MAX_DEV_MINOR
    ):
        raise RamdiskError(
            f"image entry {safe_text(e.path)}: device number {m.rdevmajor}:{m.rdevminor} is "
            f"beyond Linux's {MAX_DEV_MAJOR}:{MAX_DEV_MINOR}"
        )
    return m


def _convert(name: bytes, e: Entry, mtime: int) -> Member:
    t = e.type
    perm = e.mode & 0o7777
    if t is EntryType.FILE:
        return Member(name, S_IFREG, perm, e.uid, e.gid, mtime, e.size, opener=e.open)
    if t is EntryType.DIR:
        return Member(name, S_IFDIR, perm, e.uid, e.gid, mtime)
    if t is EntryType.SYMLINK:
        if not e.linkname:
            raise RamdiskError(f"image entry {e.path!r}: symlink with an empty target")
        return Member(name, S_IFLNK, perm, e.uid, e.gid, mtime, data=e.linkname)
    if t is EntryType.HARDLINK:
        target = hardlink_target(name, PREFIX + e.linkname)
        return Member(name, S_IFLNK, perm, e.uid, e.gid, mtime, data=target)
    ftype = {EntryType.CHAR: S_IFCHR, EntryType.BLOCK: S_IFBLK, EntryType.FIFO: S_IFIFO}[t]
    return Member(
        name, ftype, perm, e.uid, e.gid, mtime, rdevmajor=e.devmajor, rdevminor=e.devminor
    )


def _rewrite(e: Entry, clamp: int | None, found: set[bytes]) -> Member | None:
    """linuxkit's exclude / replace / touch rules for one export entry (docs/spec/ramdisk-layout.md §8.3)."""
    name = export_name(e)
    if name in EXCLUDE:
        return None
    full = PREFIX + name
    if name in REPLACE:
        found.add(name)  # sdk-bootstrap patch 0003: replaced entries count as touched
        perm = e.mode & 0o7777
        if name == b"etc/resolv.conf":
            return Member(full, S_IFLNK, perm, e.uid, e.gid, LINUXKIT_MTIME, data=RESOLV_TARGET)
        return Member(full, S_IFREG, perm, e.uid, e.gid, LINUXKIT_MTIME, data=HOSTS)
    if name in TOUCH:
        found.add(name)
        return _entry_member(full, e, LINUXKIT_MTIME)
    mtime = e.mtime if clamp is None else min(e.mtime, clamp)
    return _entry_member(full, e, mtime)


def _missing_touch(name: bytes) -> Member:
    """docs/spec/ramdisk-layout.md §8.4: a touch entry the export lacked."""
    full = PREFIX + name.rstrip(b"/")
    if name == b"etc/hosts":
        return Member(full, S_IFREG, 0o644, mtime=LINUXKIT_MTIME, data=HOSTS)
    if name == b"etc/mtab":
        return Member(full, S_IFLNK, 0o755, mtime=LINUXKIT_MTIME, data=MTAB_TARGET)
    if name == b"etc/resolv.conf":
        return Member(full, S_IFLNK, 0o755, mtime=LINUXKIT_MTIME, data=RESOLV_TARGET)
    return _dir(full)


def customer_members(
    export: Iterable[Entry],
    cmd: bytes,
    env: bytes,
    *,
    clamp_mtime: int | None = None,
) -> Iterator[Member]:
    """The customer ramdisk's members (docs/spec/ramdisk-layout.md §8.1), from entries in docker-export order."""
    yield _dir(PREFIX_DIR)
    found: set[bytes] = set()
    for e in export:
        m = _rewrite(e, clamp_mtime, found)
        if m is not None:
            yield m
    for name in TOUCH:
        if name not in found:
            yield _missing_touch(name)
    yield _dir(PREFIX_DIR)
    for d in FILES_DIRS:
        yield _dir(PREFIX + d)
    yield Member(b"cmd", S_IFREG, 0o644, mtime=LINUXKIT_MTIME, data=cmd)
    yield Member(b"env", S_IFREG, 0o644, mtime=LINUXKIT_MTIME, data=env)


def customer_stream(
    export: Iterable[Entry], cmd: bytes, env: bytes, *, clamp_mtime: int | None = None
) -> Iterator[bytes]:
    """The customer ramdisk as newc chunks."""
    return newc_stream(customer_members(export, cmd, env, clamp_mtime=clamp_mtime))
