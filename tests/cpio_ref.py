"""A small, independent newc reader written from docs/spec/ramdisk-layout.md §6 for the tests.

It shares no code with ``eifbuild.cpio``: it parses the whole archive from bytes with plain
slicing and checks the layout invariants the spec states (magic, lowercase hex, 4-byte
alignment on the running offset, zero padding, trailer, 512-byte total).
"""

from __future__ import annotations

from dataclasses import dataclass

FIELDS = (
    "ino", "mode", "uid", "gid", "nlink", "mtime", "filesize",
    "devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check",
)  # fmt: skip


@dataclass
class RefEntry:
    name: bytes
    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    filesize: int
    devmajor: int
    devminor: int
    rdevmajor: int
    rdevminor: int
    namesize: int
    check: int
    data: bytes

    @property
    def ftype(self) -> int:
        return self.mode & 0o170000

    @property
    def is_dir(self) -> bool:
        return self.ftype == 0o040000


def parse(archive: bytes) -> list[RefEntry]:
    """All entries including the trailer; asserts every layout rule on the way."""
    assert len(archive) % 512 == 0, f"archive length {len(archive)} is not a multiple of 512"
    out: list[RefEntry] = []
    off = 0
    while True:
        head = archive[off : off + 110]
        assert head[:6] == b"070701", f"bad magic at {off}: {head[:6]!r}"
        text = head[6:].decode("ascii")
        assert text == text.lower(), f"header at {off} is not lowercase hex"
        vals = [int(text[i * 8 : i * 8 + 8], 16) for i in range(13)]
        f = dict(zip(FIELDS, vals, strict=True))
        off += 110
        name = archive[off : off + f["namesize"]]
        assert name.endswith(b"\0") and b"\0" not in name[:-1]
        off += f["namesize"]
        pad = (4 - off % 4) % 4
        assert archive[off : off + pad] == b"\0" * pad, "name padding not zero"
        off += pad
        data = archive[off : off + f["filesize"]]
        assert len(data) == f["filesize"], "truncated data"
        off += f["filesize"]
        pad = (4 - off % 4) % 4
        assert archive[off : off + pad] == b"\0" * pad, "data padding not zero"
        off += pad
        out.append(RefEntry(name=name[:-1], data=data, **f))
        if name[:-1] == b"TRAILER!!!":
            break
    assert archive[off:] == b"\0" * (len(archive) - off), "bytes after the trailer are not zero"
    assert len(archive) - off < 512, "more than one block of padding after the trailer"
    return out


def check_gocpio_invariants(entries: list[RefEntry]) -> None:
    """Rules every linuxkit/gocpio archive obeys (docs/spec/ramdisk-layout.md §6.1)."""
    for i, e in enumerate(entries):
        assert e.ino == 721 + i, (e.name, e.ino)
        assert (e.devmajor, e.devminor) == (3, 1), e.name
        assert e.check == 0
        assert e.nlink == (2 if e.is_dir else 1), (e.name, e.nlink)
        assert e.namesize == len(e.name) + 1
        if e.ftype == 0o120000:
            assert e.filesize == len(e.data) > 0
    t = entries[-1]
    assert (t.name, t.mode, t.uid, t.gid, t.mtime, t.filesize) == (b"TRAILER!!!", 0, 0, 0, 0, 0)
