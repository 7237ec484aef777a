"""newc (``070701``) header constants, the fast header encoder/parser and their field checks.

The 13 header fields are handled as big-endian 32-bit words: ``hexlify(pack(...))`` is the
``%08x`` text the writer emits and ``unpack(unhexlify(text))`` parses it. ``struct`` range-checks
every field and ``binascii`` every digit; only when one of them refuses does the slow path work
out which field is at fault, for the error message.
"""

from __future__ import annotations

import binascii
import stat
import struct

from eifbuild.errors import RamdiskError

MAGIC = b"070701"
HEADER_SIZE = 110
FIRST_INO = 721  # gocpio starts its inode counter here
DEV_MAJOR = 3  # gocpio writes a constant device number 3:1 for every entry
DEV_MINOR = 1
TRAILER_NAME = b"TRAILER!!!"
BLOCK = 512  # the whole archive is padded to this

# File type bits as they appear in c_mode.
S_IFDIR = stat.S_IFDIR
S_IFREG = stat.S_IFREG
S_IFLNK = stat.S_IFLNK
S_IFCHR = stat.S_IFCHR
S_IFBLK = stat.S_IFBLK
S_IFIFO = stat.S_IFIFO
TYPES = frozenset((S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO))  # supported types
S_IFMT = 0o170000

ZEROS = bytes(BLOCK)  # slices of this are every padding the writer emits

_MAX_FIELD = 0xFFFFFFFF
_FIELD_LABELS = (
    "ino", "mode", "uid", "gid", "nlink", "mtime", "size",
    "devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check",
)  # fmt: skip
_WORDS = struct.Struct(">13I")
_pack_words = _WORDS.pack
_unpack_words = _WORDS.unpack
_hexlify = binascii.hexlify
_unhexlify = binascii.unhexlify
_HEX_DIGITS = b"0123456789abcdefABCDEF"


def _field_error(name: bytes, values: tuple[int, ...], exc: Exception) -> Exception:
    """The error for header ``values`` that ``struct`` refused (the slow path of the writer)."""
    for label, value in zip(_FIELD_LABELS, values, strict=True):
        if isinstance(value, int) and not 0 <= value <= _MAX_FIELD:
            return RamdiskError(
                f"cpio entry {name!r}: {label} {value} does not fit a newc header field"
            )
    return exc  # not a range problem (e.g. a float): the original TypeError-like error


def hex_words(name: bytes, values: tuple[int, ...]) -> bytes:
    """The 104 hex digits of the 13 header fields (range-checked) of the entry ``name``."""
    try:
        return _hexlify(_pack_words(*values))
    except struct.error as exc:
        raise _field_error(name, values, exc) from None


def encode_header(
    *,
    ino: int,
    mode: int,
    uid: int,
    gid: int,
    nlink: int,
    mtime: int,
    filesize: int,
    rdevmajor: int,
    rdevminor: int,
    namesize: int,
    name: bytes = b"",
) -> bytes:
    """The 110-byte newc header (gocpio field values: dev 3/1, check 0)."""
    values = (
        ino, mode, uid, gid, nlink, mtime, filesize,
        DEV_MAJOR, DEV_MINOR, rdevmajor, rdevminor, namesize, 0,
    )  # fmt: skip
    return MAGIC + hex_words(name, values)


def _header_error(raw: bytes) -> RamdiskError:
    """Why the 110 bytes ``raw`` are not a newc header (slow path: names the first bad field)."""
    if raw[:6] != MAGIC:
        return RamdiskError(f"cpio archive: bad magic {raw[:6]!r} (only newc 070701 is supported)")
    if len(raw) != HEADER_SIZE:
        return RamdiskError(f"cpio archive: header of {len(raw)} bytes, expected {HEADER_SIZE}")
    for i in range(13):
        text = raw[6 + 8 * i : 14 + 8 * i]
        if text.strip(_HEX_DIGITS):
            return RamdiskError(f"cpio archive: header field {i} is not hexadecimal: {text!r}")
    raise AssertionError(f"newc header {raw!r} was refused but every field is hexadecimal")


def parse_header(raw: bytes, at: int = 0) -> tuple[int, ...]:
    """The 13 numeric fields of the header at ``raw[at:at + 110]``.

    Accepts exactly ``070701`` followed by 104 hexadecimal digits (either case); anything else
    raises :class:`~eifbuild.errors.RamdiskError` naming the first bad part.
    """
    if raw.startswith(MAGIC, at):
        try:
            return _unpack_words(_unhexlify(raw[at + 6 : at + HEADER_SIZE]))
        except (binascii.Error, struct.error):
            pass
    raise _header_error(raw[at : at + HEADER_SIZE])
