"""Tiny stand-in boot blobs for build tests, written from the ELF and Linux boot formats.

Each file is just real enough for :mod:`eifbuild.elfcheck` to judge it (and for nothing else):

* :func:`static_exe` — an ELF64 executable with one PT_LOAD (optionally a PT_INTERP, i.e. a
  dynamically linked program);
* :func:`kernel_module` — an ELF64 relocatable object with a ``.modinfo`` section carrying
  ``vermagic=``, like a ``.ko``;
* :func:`bzimage` — an x86 boot sector + setup header whose ``kernel_version`` field points at
  the version string (Documentation/arch/x86/boot.rst);
* :func:`arm64_image` — an arm64 ``Image`` header (``ARM\\x64`` magic at 0x38) with a
  ``Linux version`` banner.
"""

from __future__ import annotations

import struct

EM_X86_64 = 62
EM_AARCH64 = 183
MACHINES = {"x86_64": EM_X86_64, "aarch64": EM_AARCH64}
ET_REL, ET_EXEC = 1, 2
PT_LOAD, PT_INTERP = 1, 3
SHT_PROGBITS, SHT_STRTAB = 1, 3

_EHDR = "<16sHHIQQQIHHHHHH"  # 64 bytes
_PHDR = "<IIQQQQQQ"  # 56 bytes
_SHDR = "<IIQQQQIIQQ"  # 64 bytes
_IDENT = b"\x7fELF\x02\x01\x01" + bytes(9)  # ELFCLASS64, little-endian, version 1


def _ehdr(etype: int, machine: int, phnum: int, shoff: int, shnum: int, shstrndx: int) -> bytes:
    phoff = 64 if phnum else 0
    return struct.pack(
        _EHDR, _IDENT, etype, machine, 1, 0x400000 if phnum else 0, phoff, shoff, 0,
        64, 56 if phnum else 0, phnum, 64 if shnum else 0, shnum, shstrndx,
    )  # fmt: skip


def static_exe(arch: str = "x86_64", *, interp: bytes | None = None) -> bytes:
    """An ELF executable for ``arch``; with ``interp`` it asks for that ELF interpreter."""
    phnum = 2 if interp else 1
    body_off = 64 + 56 * phnum
    interp_data = interp + b"\0" if interp else b""
    code = b"\xf4" * 16
    total = body_off + len(interp_data) + len(code)
    phdrs = b""
    if interp:
        n = len(interp_data)
        phdrs += struct.pack(_PHDR, PT_INTERP, 4, body_off, 0x400000 + body_off, 0, n, n, 1)
    phdrs += struct.pack(_PHDR, PT_LOAD, 5, 0, 0x400000, 0, total, total, 0x1000)
    return _ehdr(ET_EXEC, MACHINES[arch], phnum, 0, 0, 0) + phdrs + interp_data + code


def kernel_module(vermagic: str, arch: str = "x86_64") -> bytes:
    """A relocatable ELF with ``.modinfo`` = ``license=GPL``, ``vermagic=...``."""
    modinfo = b"license=GPL\0vermagic=" + vermagic.encode() + b"\0"
    shstrtab = b"\0.modinfo\0.shstrtab\0"
    modinfo_off = 64
    shstr_off = modinfo_off + len(modinfo)
    shoff = (shstr_off + len(shstrtab) + 7) & ~7
    pad = bytes(shoff - shstr_off - len(shstrtab))
    shdrs = bytes(64)  # SHN_UNDEF
    shdrs += struct.pack(_SHDR, 1, SHT_PROGBITS, 2, 0, modinfo_off, len(modinfo), 0, 0, 1, 0)
    shdrs += struct.pack(_SHDR, 10, SHT_STRTAB, 0, 0, shstr_off, len(shstrtab), 0, 0, 1, 0)
    head = _ehdr(ET_REL, MACHINES[arch], 0, shoff, 3, 2)
    return head + modinfo + shstrtab + pad + shdrs


def bzimage(version: str) -> bytes:
    """A boot sector + setup header whose kernel_version string is ``version``."""
    img = bytearray(0x1000)
    img[0x1FE:0x200] = b"\x55\xaa"
    img[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", img, 0x20E, 0x600)  # string at 0x600 + 0x200
    raw = version.encode()
    img[0x800 : 0x800 + len(raw) + 1] = raw + b"\0"
    return bytes(img)


def arm64_image(release: str) -> bytes:
    """An arm64 Image header plus a ``Linux version RELEASE ...`` banner."""
    img = bytearray(64)
    img[0x38:0x3C] = b"ARM\x64"
    img[8:16] = (0x200000).to_bytes(8, "little")  # text_offset 2 MiB: Nitro refuses 0
    return bytes(img) + b"\0" * 64 + f"Linux version {release} (test@test) #1 SMP\0".encode()
