"""Streaming SVR4 "newc" (``070701``) cpio writer and a bounded reader.

- :mod:`._header`: format constants, the fast header encoder/parser and their field checks;
- :mod:`.writer`: :class:`Member`, :class:`NewcWriter` and :func:`newc_stream`, which reproduce
  the bytes of gocpio (the writer linuxkit vendors) while streaming;
- :mod:`.reader`: :class:`NewcReader`, :class:`Header` and :class:`Limits`, a defensive reader
  for hostile archives.

Everything callers need is importable from ``eifbuild.cpio``.
"""

from eifbuild.cpio._header import (
    BLOCK,
    DEV_MAJOR,
    DEV_MINOR,
    FIRST_INO,
    HEADER_SIZE,
    MAGIC,
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFREG,
    TRAILER_NAME,
    encode_header,
    parse_header,
)
from eifbuild.cpio.reader import READ_AHEAD, Header, NewcReader
from eifbuild.cpio.writer import FLUSH, Member, NewcWriter, newc_stream
from eifbuild.limits import Limits

__all__ = [
    "BLOCK",
    "DEV_MAJOR",
    "DEV_MINOR",
    "FIRST_INO",
    "FLUSH",
    "HEADER_SIZE",
    "MAGIC",
    "READ_AHEAD",
    "S_IFBLK",
    "S_IFCHR",
    "S_IFDIR",
    "S_IFIFO",
    "S_IFLNK",
    "S_IFREG",
    "TRAILER_NAME",
    "Header",
    "Limits",
    "Member",
    "NewcReader",
    "NewcWriter",
    "encode_header",
    "newc_stream",
    "parse_header",
]
