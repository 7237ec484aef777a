"""Checks on the binary blobs that go into an EIF, before they are used.

* the ``init`` must be a *static* ELF executable for the enclave's architecture (a dynamic
  one would die at once: the bootstrap ramdisk has no loader and no libc);
* a kernel module's ``vermagic`` must match the kernel it is loaded into (otherwise
  ``finit_module`` fails inside the enclave, long after the build);
* a kernel image must carry the boot magic of its architecture, and an arm64 ``Image`` a
  non-zero ``text_offset`` (the Nitro loader refuses 0).

Inputs are hostile: every failure is a :class:`BlobsError` with one line naming the file.
"""

from __future__ import annotations

import lzma
import os
import struct
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from eifbuild.errors import BlobsError
from eifbuild.limits import DEFAULT_LIMITS

# EIF architectures -> ELF e_machine names as pyelftools reports them.
ELF_MACHINES: dict[str, str] = {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64"}

_KERNEL_PROBE_BYTES = 0x10000
_ARM64_HEADER_BYTES = 64
# text_offset the Nitro loader needs in an arm64 Image header (docs/spec/eif.md §11).
ARM64_TEXT_OFFSET = 0x200000
# What pyelftools raises on hostile input (found by fuzzing: huge offsets -> OSError from seek).
_PARSE_ERRORS = (
    ELFError, ValueError, KeyError, AttributeError, IndexError, TypeError, OSError,
    OverflowError, struct.error, UnicodeDecodeError,
)  # fmt: skip


def _machine_arch(machine: str) -> str:
    for arch, name in ELF_MACHINES.items():
        if name == machine:
            return arch
    return machine


def _open_elf(fh: BinaryIO, what: str) -> ELFFile:
    try:
        return ELFFile(fh)
    except _PARSE_ERRORS as exc:
        raise BlobsError(f"{what} is not an ELF file ({exc})") from None


def check_init(path: str | os.PathLike[str], arch: str = "x86_64") -> None:
    """Refuse an ``init`` that is not a static ELF executable for ``arch``."""
    if arch not in ELF_MACHINES:
        raise BlobsError(f"init check: unsupported architecture {arch!r}")
    p = Path(path)
    what = f"init {p}"
    try:
        fh = p.open("rb")
    except OSError as exc:
        raise BlobsError(f"{what}: cannot read ({exc.strerror})") from None
    with fh:
        elf = _open_elf(fh, what)
        try:
            _check_init_elf(elf, arch, what)
        except _PARSE_ERRORS as exc:
            raise BlobsError(f"{what} is a malformed ELF file ({exc})") from None


def _check_init_elf(elf: ELFFile, arch: str, what: str) -> None:
    machine = str(elf["e_machine"])
    if machine != ELF_MACHINES[arch]:
        raise BlobsError(f"{what} is built for {_machine_arch(machine)}, not {arch}")
    if elf.elfclass != 64:
        raise BlobsError(f"{what} is a {elf.elfclass}-bit ELF; the enclave needs 64-bit")
    etype = str(elf["e_type"])
    if etype not in ("ET_EXEC", "ET_DYN"):
        raise BlobsError(f"{what} is not an executable (ELF type {etype})")
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_INTERP":
            raise BlobsError(
                f"{what} is dynamically linked (needs an ELF interpreter); "
                "the init must be a static executable"
            )
    for section in elf.iter_sections():
        if isinstance(section, DynamicSection):
            for tag in section.iter_tags():
                if tag.entry.d_tag == "DT_NEEDED":
                    raise BlobsError(
                        f"{what} needs shared library {getattr(tag, 'needed', '?')}; "
                        "the init must be a static executable"
                    )
    if etype == "ET_DYN" and not any(s["p_type"] == "PT_DYNAMIC" for s in elf.iter_segments()):
        raise BlobsError(f"{what} is a shared object, not an executable")


def _read_module(p: Path) -> bytes:
    """The ELF bytes of a module, decompressing ``.ko.xz``; bounded in size."""
    try:
        with p.open("rb") as fh:
            if p.name.endswith(".xz"):
                dec = lzma.LZMADecompressor()
                out = bytearray()
                while chunk := fh.read(65536):
                    out += dec.decompress(chunk, DEFAULT_LIMITS.max_module_bytes + 1 - len(out))
                    if len(out) > DEFAULT_LIMITS.max_module_bytes:
                        break
                data = bytes(out)
            else:
                data = fh.read(DEFAULT_LIMITS.max_module_bytes + 1)
    except lzma.LZMAError as exc:
        raise BlobsError(f"module {p}: broken xz data ({exc})") from None
    except OSError as exc:
        raise BlobsError(f"module {p}: cannot read ({exc.strerror})") from None
    if len(data) > DEFAULT_LIMITS.max_module_bytes:
        raise BlobsError(f"module {p} is larger than {DEFAULT_LIMITS.max_module_bytes} bytes")
    return data


def module_vermagic(path: str | os.PathLike[str]) -> str:
    """The ``vermagic`` string from a kernel module's ``.modinfo`` section."""
    p = Path(path)
    what = f"module {p}"
    elf = _open_elf(BytesIO(_read_module(p)), what)
    try:
        if str(elf["e_type"]) != "ET_REL":
            raise BlobsError(f"{what} is not a kernel module (ELF type {elf['e_type']})")
        section = elf.get_section_by_name(".modinfo")
        if section is None:
            raise BlobsError(f"{what} has no .modinfo section: not a kernel module")
        data: bytes = section.data()
    except _PARSE_ERRORS as exc:
        raise BlobsError(f"{what} is a malformed ELF file ({exc})") from None
    for field in data.split(b"\0"):
        if field.startswith(b"vermagic="):
            return field[len(b"vermagic=") :].decode("utf-8", "replace").strip()
    raise BlobsError(f"{what} has no vermagic in .modinfo")


def check_module(path: str | os.PathLike[str], kernel_release: str, arch: str = "x86_64") -> None:
    """Refuse a module whose vermagic does not name ``kernel_release`` (``uname -r``)."""
    vermagic = module_vermagic(path)
    release = vermagic.split(" ", 1)[0]
    if release != kernel_release:
        raise BlobsError(
            f"module {Path(path)} was built for kernel {release!r} "
            f"(vermagic {vermagic!r}), not for this kernel {kernel_release!r}"
        )


def kernel_version_string(path: str | os.PathLike[str]) -> str:
    """The version string an x86 bzImage carries in its setup header (``uname -r``, ``-v``).

    Raises :class:`BlobsError` if the file is not a bzImage.
    """
    p = Path(path)
    head = _kernel_head(p, _KERNEL_PROBE_BYTES)
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS" or head[0x1FE:0x200] != b"\x55\xaa":
        raise BlobsError(f"kernel {p} is not an x86 bzImage (no boot sector / HdrS magic)")
    offset = int.from_bytes(head[0x20E:0x210], "little") + 0x200
    if offset >= len(head):
        raise BlobsError(f"kernel {p}: version string offset {offset:#x} is out of range")
    raw = head[offset:].split(b"\0", 1)[0]
    return raw.decode("ascii", "replace")


def _scan_linux_banner(p: Path) -> str:
    """``uname -r`` from the ``Linux version X`` banner of an uncompressed arm64 ``Image``."""
    marker = b"Linux version "
    tail = b""
    try:
        with p.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                buf = tail + chunk
                i = buf.find(marker)
                if i >= 0:
                    if len(buf) - i < len(marker) + 256:  # make sure the release is complete
                        buf += fh.read(4096)
                    rest = buf[i + len(marker) : i + len(marker) + 256]
                    return rest.split(b" ", 1)[0].decode("ascii", "replace")
                tail = buf[-len(marker) :]
    except OSError as exc:
        raise BlobsError(f"kernel {p}: cannot read ({exc.strerror})") from None
    raise BlobsError(f"kernel {p}: no 'Linux version' banner found")


def kernel_release(path: str | os.PathLike[str], arch: str = "x86_64") -> str:
    """``uname -r`` of a kernel image (x86 bzImage header, or arm64 Image banner)."""
    if arch == "aarch64":
        check_kernel(path, arch)
        return _scan_linux_banner(Path(path))
    return kernel_version_string(path).split(" ", 1)[0]


def check_kernel(path: str | os.PathLike[str], arch: str = "x86_64") -> None:
    """Refuse a kernel image that is not a bzImage (x86_64) or a bootable arm64 ``Image``."""
    p = Path(path)
    if arch == "x86_64":
        kernel_version_string(p)
        return
    if arch == "aarch64":
        offset = arm64_text_offset(p)
        if offset == 0:
            raise BlobsError(
                f"kernel {p}: arm64 Image header has text_offset 0, which the Nitro loader "
                f"refuses; set it to {ARM64_TEXT_OFFSET:#x} (2 MiB) as `eifbuild kernel build` does"
            )
        return
    raise BlobsError(f"kernel check: unsupported architecture {arch!r}")


def _kernel_head(p: Path, n: int) -> bytes:
    """The first ``n`` bytes of a kernel image (fewer if it is shorter)."""
    try:
        with p.open("rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise BlobsError(f"kernel {p}: cannot read ({exc.strerror})") from None


def _arm64_header(p: Path) -> bytes:
    head = _kernel_head(p, _ARM64_HEADER_BYTES)
    if len(head) >= 8 and head[:2] == b"MZ" and head[4:8] == b"zimg":
        raise BlobsError(
            f"kernel {p} is an EFI zboot image (compressed, wrapped in PE): "
            "unwrap it to a raw arm64 Image first"
        )
    if len(head) < _ARM64_HEADER_BYTES or head[0x38:0x3C] != b"ARM\x64":
        raise BlobsError(f"kernel {p} is not an arm64 Image (no ARM\\x64 magic)")
    return head


def arm64_text_offset(path: str | os.PathLike[str]) -> int:
    """``text_offset`` of an arm64 ``Image`` header (Documentation/arch/arm64/booting.rst)."""
    head = _arm64_header(Path(path))
    return int.from_bytes(head[8:16], "little")


def set_arm64_text_offset(path: str | os.PathLike[str], value: int = ARM64_TEXT_OFFSET) -> int:
    """Write ``text_offset`` = ``value`` into an arm64 ``Image`` header if it is 0.

    Linux >= 5.8 writes 0 (the kernel runs at any 2 MiB-aligned address); the Nitro loader
    refuses 0, so eifbuild, like AWS's kernel build, sets 2 MiB. Returns the old value.
    """
    p = Path(path)
    old = arm64_text_offset(p)
    if old == 0:
        with p.open("r+b") as fh:
            fh.seek(8)
            fh.write(value.to_bytes(8, "little"))
    return old
