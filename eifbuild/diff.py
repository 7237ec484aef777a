"""Explain why two EIFs' measurements differ ("why did PCR2 change?").

Three streaming passes per EIF, none of which keeps section contents in memory:

1. :meth:`EifReader.scan` gives PCR0/1/2/8 (the same code ``describe`` uses);
2. every measured input (kernel, cmdline, each ramdisk, the signing certificate) is hashed on
   its own with SHA-384, so a PCR difference can be traced to the input(s) that changed;
3. for each pair of ramdisks whose bytes differ, both newc archives are read with the bounded
   :class:`~eifbuild.cpio.NewcReader` and compared entry by entry (content hashed with SHA-256
   while it streams past; only per-entry attributes are kept, for the first archive).

Metadata and file-level fields (size, version, arch, CRC) are compared too, and flagged as not
measured. Two ``eifbuild rootfs`` JSON-lines listings can be compared by path as well.
Everything here returns plain data (dicts/lists in sorted, deterministic order); rendering
lives in ``eifbuild.cli.diff``.
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import hashlib
import io
import json
import stat
import struct
import unicodedata
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from eifbuild.cpio import S_IFBLK, S_IFCHR, S_IFLNK, S_IFREG, Limits, NewcReader
from eifbuild.eif.format import Section, SectionType
from eifbuild.eif.reader import EifReader
from eifbuild.eif.reader import _open_regular as open_regular
from eifbuild.errors import EifbuildError
from eifbuild.measure import CHUNK, Measurements, certificate_der

# Entry records are kept for one archive of each changed pair: bound their number.
MAX_DIFF_ENTRIES = 2_000_000
DIFF_LIMITS = Limits(max_entries=MAX_DIFF_ENTRIES)

PCR_NAMES = ("PCR0", "PCR1", "PCR2", "PCR8")
_TYPE_NAMES = {
    stat.S_IFDIR: "dir",
    stat.S_IFREG: "file",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
    stat.S_IFIFO: "fifo",
}
# Attributes that change what the enclave sees, and those that only renumber the archive.
CONTENT_ATTRS = ("type", "mode", "uid", "gid", "mtime", "size", "sha256", "target", "rdev")
INODE_ATTRS = ("ino", "nlink", "dev", "check")

Progress = Callable[[int], object]


# ------------------------------------------------------------------------------ safe text


def safe_text(raw: bytes) -> str:
    """Printable, unambiguous text for hostile bytes (paths, cmdlines).

    UTF-8 is kept; invalid bytes become ``\\xNN``; control, format (bidi overrides), separator
    and private characters become ``\\xNN``/``\\uNNNN``; a backslash is doubled.
    """
    out: list[str] = []
    for ch in raw.decode("utf-8", "surrogateescape"):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


# ------------------------------------------------------------------------------ cpio entries


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """What a diff needs of one newc member; never its content (only a SHA-256)."""

    key: bytes  # name, plus b"\0<n>" for the n-th repeat of a name (names cannot hold NUL)
    name: bytes
    position: int
    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    size: int
    rdev: tuple[int, int]
    dev: tuple[int, int]
    check: int
    sha256: bytes | None = None
    target: bytes | None = None

    @property
    def occurrence(self) -> int:
        _, sep, n = self.key.partition(b"\0")
        return int(n) if sep else 0

    def attr(self, name: str) -> Any:
        """An attribute as shown in reports (JSON-compatible, deterministic)."""
        ftype = stat.S_IFMT(self.mode)
        if name == "type":
            return _TYPE_NAMES.get(ftype, f"0o{ftype:o}")
        if name == "mode":
            return f"{self.mode & 0o7777:04o}"
        if name == "sha256":
            return None if self.sha256 is None else self.sha256.hex()
        if name == "target":
            return None if self.target is None else safe_text(self.target)
        if name == "rdev":
            return f"{self.rdev[0]}:{self.rdev[1]}" if ftype in (S_IFCHR, S_IFBLK) else None
        if name == "dev":
            return f"{self.dev[0]}:{self.dev[1]}"
        return getattr(self, name)

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"path": safe_text(self.name), "position": self.position}
        if self.occurrence:
            rec["occurrence"] = self.occurrence
        for a in CONTENT_ATTRS:
            rec[a] = self.attr(a)
        return rec


def read_entries(fh: BinaryIO, limits: Limits = DIFF_LIMITS) -> Iterator[EntryInfo]:
    """Entries of a newc archive in archive order, file contents hashed while streaming.

    ``key`` is the bare name here; :func:`diff_entries` numbers repeated names.
    """
    reader = NewcReader(fh, limits)
    for pos, h in enumerate(reader):
        digest = target = None
        if h.ftype == S_IFREG:
            sha = hashlib.sha256()
            for chunk in reader.content():
                sha.update(chunk)
            digest = sha.digest()
        elif h.ftype == S_IFLNK:
            target = reader.read_small(limits.max_symlink)
        yield EntryInfo(
            key=h.name,
            name=h.name,
            position=pos,
            ino=h.ino,
            mode=h.mode,
            uid=h.uid,
            gid=h.gid,
            nlink=h.nlink,
            mtime=h.mtime,
            size=h.filesize,
            rdev=(h.rdevmajor, h.rdevminor),
            dev=(h.devmajor, h.devminor),
            check=h.check,
            sha256=digest,
            target=target,
        )


@dataclass
class EntryChange:
    """One entry present in both archives whose attributes (or relative order) differ."""

    path: str
    key: bytes
    attrs: dict[str, tuple[Any, Any]]

    def record(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "changes": {k: {"a": a, "b": b} for k, (a, b) in sorted(self.attrs.items())},
        }


@dataclass
class ArchiveDiff:
    """Per-entry differences between two newc archives (all lists sorted by entry key)."""

    entries_a: int = 0
    entries_b: int = 0
    added: list[EntryInfo] = field(default_factory=list)
    removed: list[EntryInfo] = field(default_factory=list)
    changed: list[EntryChange] = field(default_factory=list)
    inode_only: list[EntryChange] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.inode_only)

    def summary(self) -> dict[str, int]:
        return {
            "entries_a": self.entries_a,
            "entries_b": self.entries_b,
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
            "inode_only": len(self.inode_only),
        }


def _attr_changes(a: EntryInfo, b: EntryInfo, names: Iterable[str]) -> dict[str, tuple[Any, Any]]:
    out = {}
    for name in names:
        va, vb = a.attr(name), b.attr(name)
        if va != vb:
            out[name] = (va, vb)
    return out


def _moved(seq: array[int]) -> list[int]:
    """Indexes into ``seq`` outside one longest increasing subsequence (the moved entries)."""
    tails = array("q")  # tails[k]: smallest last value of an increasing run of length k+1
    tail_idx = array("q")
    prev = array("q", [-1]) * len(seq)
    for i, v in enumerate(seq):
        k = bisect.bisect_left(tails, v)
        if k == len(tails):
            tails.append(v)
            tail_idx.append(i)
        else:
            tails[k] = v
            tail_idx[k] = i
        prev[i] = tail_idx[k - 1] if k else -1
    keep = bytearray(len(seq))
    i = tail_idx[-1] if tail_idx else -1
    while i >= 0:
        keep[i] = 1
        i = prev[i]
    return [i for i, kept in enumerate(keep) if not kept]


# One kept entry of the first archive, packed: 13 header numbers, key length, payload kind,
# then the key and the SHA-256 (kind 1) or symlink target (kind 2). About 100 bytes + name.
_PACK = struct.Struct("<13IHB")


def _pack(e: EntryInfo) -> bytes:
    kind, payload = (1, e.sha256) if e.sha256 is not None else (0, b"")
    if e.target is not None:
        kind, payload = 2, e.target
    head = _PACK.pack(
        e.position, e.ino, e.mode, e.uid, e.gid, e.nlink, e.mtime, e.size,
        *e.rdev, *e.dev, e.check, len(e.key), kind,
    )  # fmt: skip
    return head + e.key + payload


def _unpack(raw: bytes) -> EntryInfo:
    v = _PACK.unpack_from(raw)
    key = raw[_PACK.size : _PACK.size + v[13]]
    payload = raw[_PACK.size + v[13] :]
    return EntryInfo(
        key=key,
        name=key.partition(b"\0")[0],
        position=v[0], ino=v[1], mode=v[2], uid=v[3], gid=v[4], nlink=v[5], mtime=v[6],
        size=v[7], rdev=(v[8], v[9]), dev=(v[10], v[11]), check=v[12],
        sha256=payload if v[14] == 1 else None,
        target=payload if v[14] == 2 else None,
    )  # fmt: skip


class _Keys:
    """Numbers repeated names: the n-th repeat of ``name`` gets key ``name\\0<n>``.

    ``seen(name)`` tells whether the name occurred before in this archive; only names that
    do repeat get a counter, so memory follows the number of repeats.
    """

    def __init__(self) -> None:
        self.repeats: dict[bytes, int] = {}

    def key(self, name: bytes, seen: bool) -> bytes:
        if not seen:
            return name
        n = self.repeats.get(name, 0) + 1
        self.repeats[name] = n
        return name + b"\0" + str(n).encode()


@dataclass
class _Matcher:
    """The first archive, packed and indexed by key, and which of its entries were matched."""

    packed: list[bytes] = field(default_factory=list)
    index: dict[bytes, int] = field(default_factory=dict)
    matched: bytearray = field(default_factory=bytearray)

    def load(self, entries: Iterable[EntryInfo]) -> None:
        keys = _Keys()
        for e in entries:
            key = keys.key(e.name, e.name in self.index)
            self.index[key] = len(self.packed)
            self.packed.append(_pack(dataclasses.replace(e, key=key)))
        self.matched = bytearray(len(self.packed))

    def entry(self, i: int) -> EntryInfo:
        return _unpack(self.packed[i])


def diff_entries(a: Iterable[EntryInfo], b: Iterable[EntryInfo]) -> ArchiveDiff:
    """Compare two entry streams; only ``a`` is kept (packed) while ``b`` streams past.

    Entries are matched by name (the n-th repeat of a name with the n-th repeat). A matched
    entry is *changed* when a content attribute differs or when it moved relative to the
    other matched entries (outside a longest common ordering); it is *inode-only* when only
    inode number, link count, device or checksum fields differ.
    """
    result = ArchiveDiff()
    m = _Matcher()
    m.load(a)
    result.entries_a = len(m.packed)
    keys_b, added_names = _Keys(), set()
    a_pos, b_pos = array("q"), array("q")  # packed index / b position of matches, b order
    pending: dict[int, dict[str, tuple[Any, Any]]] = {}  # packed index -> changes
    for eb in b:
        result.entries_b += 1
        first = m.index.get(eb.name)
        seen = eb.name in added_names if first is None else bool(m.matched[first])
        eb = dataclasses.replace(eb, key=keys_b.key(eb.name, seen))
        pa = m.index.get(eb.key)
        if pa is None or m.matched[pa]:
            added_names.add(eb.name)
            result.added.append(eb)
            continue
        m.matched[pa] = 1
        changes = _attr_changes(m.entry(pa), eb, CONTENT_ATTRS + INODE_ATTRS)
        if changes:
            pending[pa] = changes
        a_pos.append(pa)
        b_pos.append(eb.position)
    for i in _moved(a_pos):
        pa = a_pos[i]
        pending.setdefault(pa, {})["position"] = (m.entry(pa).position, b_pos[i])
    result.removed = [m.entry(i) for i, hit in enumerate(m.matched) if not hit]
    for pa, changes in pending.items():
        ea = m.entry(pa)
        change = EntryChange(safe_text(ea.name) + _occ_suffix(ea), ea.key, changes)
        if set(changes) <= set(INODE_ATTRS):
            result.inode_only.append(change)
        else:
            result.changed.append(change)
    result.added.sort(key=lambda e: e.key)
    result.removed.sort(key=lambda e: e.key)
    result.changed.sort(key=lambda c: c.key)
    result.inode_only.sort(key=lambda c: c.key)
    return result


def _occ_suffix(e: EntryInfo) -> str:
    return f" (#{e.occurrence + 1})" if e.occurrence else ""


# ------------------------------------------------------------------------------ EIF facts


class _ChunkIO(io.RawIOBase):
    """A read-only raw stream over an iterator of byte chunks (an EIF section)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self._off = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self._off >= len(self._buf):
            self._buf, self._off = next(self._chunks, b""), 0
            if not self._buf:
                return 0
        n = min(len(buf), len(self._buf) - self._off)
        buf[:n] = self._buf[self._off : self._off + n]
        self._off += n
        return n


def section_stream(reader: EifReader, section: Section) -> BinaryIO:
    """A buffered file object over one section's data (streamed, never loaded whole)."""
    return io.BufferedReader(_ChunkIO(reader.iter_data(section)), buffer_size=1 << 16)


@dataclass(frozen=True)
class InputDigest:
    """One measured input: its SHA-384 and size, and the PCRs it feeds."""

    name: str
    pcrs: tuple[str, ...]
    sha384: str
    size: int


@dataclass
class EifFacts:
    """Everything the diff compares, gathered from one EIF by streaming."""

    path: str
    version: int
    arch: str
    size: int
    crc_ok: bool
    measurements: Measurements
    inputs: dict[str, InputDigest]
    cmdline: bytes
    metadata: dict[str, Any] | None
    ramdisks: list[Section]


def input_pcrs(kind: SectionType, ramdisk_index: int = 0) -> tuple[str, ...]:
    """The PCRs an input feeds (spec eif-format §6.2)."""
    if kind is SectionType.RAMDISK and ramdisk_index > 0:
        return ("PCR0", "PCR2")
    return ("PCR0", "PCR1")


def _sha384(chunks: Iterable[bytes], progress: Progress | None) -> tuple[str, int]:
    h, size = hashlib.sha384(), 0
    for chunk in chunks:
        h.update(chunk)
        size += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return h.hexdigest(), size


def gather(reader: EifReader, progress: Progress | None = None) -> EifFacts:
    """Measurements (one pass) and per-input digests (a second pass) of an open EIF."""
    scan = reader.scan(progress=progress)
    inputs: dict[str, InputDigest] = {}
    ramdisks = reader.of_type(SectionType.RAMDISK)
    for s in reader.sections:
        if s.type in (SectionType.KERNEL, SectionType.CMDLINE):
            name, pcrs = s.type.label, input_pcrs(s.type)
        elif s.type is SectionType.RAMDISK:
            i = ramdisks.index(s)
            name, pcrs = f"ramdisk {i}", input_pcrs(s.type, i)
        else:
            continue
        digest, size = _sha384(reader.iter_data(s, CHUNK), progress)
        inputs[name] = InputDigest(name, pcrs, digest, size)
    entries = reader.signature_entries()
    if entries:
        der = certificate_der(entries[0][0], f"{reader.name}: signing certificate")
        cert = InputDigest(
            "signing certificate", ("PCR8",), hashlib.sha384(der).hexdigest(), len(der)
        )
        inputs[cert.name] = cert
    return EifFacts(
        path=reader.name,
        version=reader.version,
        arch=reader.arch.value,
        size=reader.file_size,
        crc_ok=scan.crc_ok,
        measurements=scan.measurements,
        inputs=inputs,
        cmdline=reader.cmdline(),
        metadata=reader.metadata(),
        ramdisks=ramdisks,
    )


# ------------------------------------------------------------------------------ comparisons


def _pcr_table(a: Measurements, b: Measurements) -> dict[str, dict[str, Any]]:
    out = {}
    for name in PCR_NAMES:
        va, vb = getattr(a, name.lower()), getattr(b, name.lower())
        if va is None and vb is None:
            continue
        out[name] = {"a": va, "b": vb, "differs": va != vb}
    return out


def _input_order(name: str) -> tuple[int, int]:
    order = {"kernel": 0, "cmdline": 1, "signing certificate": 3}
    if name.startswith("ramdisk "):
        return (2, int(name.split()[1]))
    return (order.get(name, 4), 0)


def _inputs_table(a: EifFacts, b: EifFacts) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(set(a.inputs) | set(b.inputs), key=_input_order):
        ia, ib = a.inputs.get(name), b.inputs.get(name)
        pcrs = (ia or ib).pcrs  # type: ignore[union-attr]
        rows.append(
            {
                "name": name,
                "pcrs": list(pcrs),
                "a": None if ia is None else {"sha384": ia.sha384, "size": ia.size},
                "b": None if ib is None else {"sha384": ib.sha384, "size": ib.size},
                "changed": ia is None or ib is None or ia.sha384 != ib.sha384,
            }
        )
    return rows


def _explain(pcrs: dict[str, dict[str, Any]], inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for pcr, row in pcrs.items():
        if not row["differs"]:
            continue
        because = [i["name"] for i in inputs if i["changed"] and pcr in i["pcrs"]]
        if pcr == "PCR8" and (row["a"] is None or row["b"] is None):
            because = ["signing certificate (only one EIF is signed)"]
        out.append({"pcr": pcr, "because": because})
    return out


def cmdline_diff(a: bytes, b: bytes) -> dict[str, Any]:
    """Token-level difference of two kernel command lines (hostile text escaped)."""
    ta, tb = [safe_text(t) for t in a.split()], [safe_text(t) for t in b.split()]
    removed: list[str] = []
    added: list[str] = []
    ops = difflib.SequenceMatcher(a=ta, b=tb, autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in ops:
        if tag != "equal":
            removed += ta[i1:i2]
            added += tb[j1:j2]
    return {
        "changed": a != b,
        "a": safe_text(a),
        "b": safe_text(b),
        "removed_tokens": removed,
        "added_tokens": added,
    }


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, dict) and value:
        for k in value:
            _flatten(value[k], f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix or "(root)"] = json.dumps(value, sort_keys=True, ensure_ascii=False)


def metadata_diff(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Differing metadata fields (dotted paths, JSON-encoded values); never measured."""
    fa: dict[str, str] = {}
    fb: dict[str, str] = {}
    if a is not None:
        _flatten(a, "", fa)
    if b is not None:
        _flatten(b, "", fb)
    rows = []
    for key in sorted(set(fa) | set(fb)):
        if fa.get(key) != fb.get(key):
            rows.append({"field": safe_text(key.encode()), "a": fa.get(key), "b": fb.get(key)})
    return rows


def _file_diff(a: EifFacts, b: EifFacts) -> list[dict[str, Any]]:
    rows = []
    for name in ("version", "arch", "size", "crc_ok"):
        va, vb = getattr(a, name), getattr(b, name)
        if va != vb:
            rows.append({"field": name, "a": va, "b": vb})
    return rows


def _named(entries: Iterator[EntryInfo], label: str) -> Iterator[EntryInfo]:
    """Prefix read errors with the EIF and ramdisk they come from."""
    try:
        yield from entries
    except EifbuildError as exc:
        raise EifbuildError(f"{label}: {exc.message}") from None


def _ramdisk_diff(
    ra: EifReader, rb: EifReader, sa: Section, sb: Section, index: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"index": index, "error": None}
    try:
        with section_stream(ra, sa) as fa, section_stream(rb, sb) as fb:
            d = diff_entries(
                _named(read_entries(fa), f"{ra.name} ramdisk {index}"),
                _named(read_entries(fb), f"{rb.name} ramdisk {index}"),
            )
    except EifbuildError as exc:  # not a newc archive: the byte-level facts still stand
        out["error"] = safe_text(exc.message.encode())
        return out
    out["summary"] = d.summary()
    out["added"] = [e.record() for e in d.added]
    out["removed"] = [e.record() for e in d.removed]
    out["changed"] = [c.record() for c in d.changed]
    out["inode_only"] = [c.record() for c in d.inode_only]
    return out


def _side(f: EifFacts) -> dict[str, Any]:
    return {
        "path": f.path,
        "size": f.size,
        "eif_version": f.version,
        "arch": f.arch,
        "signed": f.measurements.pcr8 is not None,
        "crc_ok": f.crc_ok,
        "ramdisks": len(f.ramdisks),
    }


def diff_eifs(path_a: str, path_b: str, progress: Progress | None = None) -> dict[str, Any]:
    """The full diff document (deterministic; see ``eifbuild diff --help`` for its shape)."""
    with EifReader(path_a) as ra, EifReader(path_b) as rb:
        fa, fb = gather(ra, progress), gather(rb, progress)
        pcrs = _pcr_table(fa.measurements, fb.measurements)
        inputs = _inputs_table(fa, fb)
        ramdisks = []
        for i, (sa, sb) in enumerate(zip(fa.ramdisks, fb.ramdisks, strict=False)):
            if fa.inputs[f"ramdisk {i}"].sha384 != fb.inputs[f"ramdisk {i}"].sha384:
                ramdisks.append(_ramdisk_diff(ra, rb, sa, sb, i))
    return {
        "format": "eifbuild-diff/1",
        "a": _side(fa),
        "b": _side(fb),
        "pcrs": pcrs,
        "pcrs_differ": [k for k, v in pcrs.items() if v["differs"]],
        "inputs": inputs,
        "explanation": _explain(pcrs, inputs),
        "cmdline": cmdline_diff(fa.cmdline, fb.cmdline),
        "metadata": {"measured": False, "differences": metadata_diff(fa.metadata, fb.metadata)},
        "file": {"measured": False, "differences": _file_diff(fa, fb)},
        "ramdisks": ramdisks,
    }


# ------------------------------------------------------------------------------ rootfs listings

MAX_LISTING_LINE = 1 << 16
LISTING_ATTRS = ("type", "mode", "uid", "gid", "mtime", "size", "sha256", "target", "rdev")


def is_listing(path: str) -> bool:
    """True if ``path`` looks like ``eifbuild rootfs`` output (JSON lines), not an EIF."""
    try:
        with open_regular(Path(path), path) as fh:
            head = fh.read(64)
    except (OSError, EifbuildError):
        return False  # let the EIF reader report it
    return head.lstrip()[:1] == b"{"


def _listing_text(rec: dict[str, Any], key: str) -> bytes | None:
    hexed, value = rec.get(key + "_hex"), rec.get(key)
    if isinstance(hexed, str):
        return bytes.fromhex(hexed)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value.encode("utf-8")


def _listing_record(line: bytes) -> tuple[bytes, dict[str, Any]]:
    rec = json.loads(line)
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    name = _listing_text(rec, "path")
    if not name:
        raise ValueError("no path")
    target = _listing_text(rec, "linkname")
    rdev = rec.get("rdev")
    out: dict[str, Any] = {"path": safe_text(name)}
    for a in LISTING_ATTRS:
        value = rec.get(a)
        if a == "target":
            value = None if target is None else safe_text(target)
        elif a == "rdev" and isinstance(rdev, list) and len(rdev) == 2:
            value = f"{rdev[0]}:{rdev[1]}"
        elif isinstance(value, str):
            value = safe_text(value.encode("utf-8", "surrogatepass"))
        elif not isinstance(value, (int, type(None))):
            raise ValueError(f"{a} is not a string or integer")
        out[a] = value
    return name, out


def read_listing(path: str) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """(path bytes, normalised record) for each line of an ``eifbuild rootfs`` listing."""
    fh = open_regular(Path(path), path)
    try:
        for n, line in enumerate(iter(lambda: fh.readline(MAX_LISTING_LINE + 1), b""), 1):
            if n > MAX_DIFF_ENTRIES:
                raise EifbuildError(f"{path}: more than {MAX_DIFF_ENTRIES} entries")
            if len(line) > MAX_LISTING_LINE:
                raise EifbuildError(f"{path}: line {n} is longer than {MAX_LISTING_LINE} bytes")
            if not line.strip():
                continue
            try:
                yield _listing_record(line)
            except (ValueError, RecursionError) as exc:
                problem = safe_text(str(exc).encode()[:200])
                raise EifbuildError(f"{path}: line {n}: not a rootfs record ({problem})") from None
    finally:
        fh.close()


def diff_listings(path_a: str, path_b: str) -> dict[str, Any]:
    """Entry diff of two ``eifbuild rootfs`` listings (matched by path; ``a`` kept in memory)."""
    a: dict[bytes, dict[str, Any]] = {}
    for name, rec in read_listing(path_a):
        if name in a:
            raise EifbuildError(f"{path_a}: path {rec['path']} is listed twice")
        a[name] = rec
    entries_a = len(a)
    added, changed, seen = [], [], set()
    for name, rec in read_listing(path_b):
        if name in seen:
            raise EifbuildError(f"{path_b}: path {rec['path']} is listed twice")
        seen.add(name)
        old = a.pop(name, None)
        if old is None:
            added.append((name, rec))
            continue
        diffs = {k: {"a": old[k], "b": rec[k]} for k in LISTING_ATTRS if old[k] != rec[k]}
        if diffs:
            changed.append((name, {"path": rec["path"], "changes": diffs}))
    removed = sorted(a.items())
    added.sort(key=lambda p: p[0])
    changed.sort(key=lambda p: p[0])
    return {
        "format": "eifbuild-rootfs-diff/1",
        "a": {"path": path_a},
        "b": {"path": path_b},
        "summary": {
            "entries_a": entries_a,
            "entries_b": len(seen),
            "added": len(added),
            "removed": len(removed),
            "changed": len(changed),
        },
        "added": [r for _, r in added],
        "removed": [r for _, r in removed],
        "changed": [c for _, c in changed],
    }
