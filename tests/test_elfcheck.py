"""eifbuild.elfcheck: init must be a static ELF for the arch; module vermagic must match."""

from __future__ import annotations

import lzma
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eifbuild.elfcheck import (
    arm64_text_offset,
    check_init,
    check_kernel,
    check_module,
    kernel_release,
    kernel_version_string,
    module_vermagic,
    set_arm64_text_offset,
)
from eifbuild.errors import BlobsError
from tests.conftest import require

BUSYBOX = Path("/bin/busybox")  # Debian busybox-static: a static x86_64 executable
EM_AARCH64 = 183


def _static_elf() -> Path:
    require("busybox", BUSYBOX.is_file(), "Debian busybox-static provides a static ELF")
    return BUSYBOX


def test_static_x86_64_executable_is_accepted() -> None:
    check_init(_static_elf(), "x86_64")


def test_dynamic_executable_is_refused() -> None:
    true = Path(shutil.which("true") or "/bin/true")
    with pytest.raises(BlobsError, match=r"dynamically linked.*static executable"):
        check_init(true, "x86_64")


def test_wrong_architecture_is_refused(tmp_path: Path) -> None:
    data = bytearray(_static_elf().read_bytes())
    struct.pack_into("<H", data, 18, EM_AARCH64)  # e_machine, independent of the code under test
    p = tmp_path / "init"
    p.write_bytes(bytes(data))
    with pytest.raises(BlobsError, match="built for aarch64, not x86_64"):
        check_init(p, "x86_64")


def test_static_x86_init_is_refused_for_aarch64() -> None:
    with pytest.raises(BlobsError, match="built for x86_64, not aarch64"):
        check_init(_static_elf(), "aarch64")


def test_32_bit_elf_is_refused(tmp_path: Path) -> None:
    # A minimal ELF32 header (e_ident class 1), x86_64 machine so only the class is wrong.
    hdr = b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)
    hdr += struct.pack("<HHIIIIIHHHHHH", 2, 62, 1, 0, 0, 0, 0, 52, 32, 0, 40, 0, 0)
    p = tmp_path / "init32"
    p.write_bytes(hdr)
    with pytest.raises(BlobsError, match="32-bit"):
        check_init(p, "x86_64")


@pytest.mark.parametrize(
    "content", [b"", b"#!/bin/sh\necho hi\n", b"\x7fELF", b"\x7fELF\x02\x01\x01" + bytes(40)]
)
def test_non_elf_and_truncated_files_are_refused(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "init"
    p.write_bytes(content)
    with pytest.raises(BlobsError, match=re.escape(str(p))):
        check_init(p, "x86_64")


def test_missing_file_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(BlobsError, match="cannot read"):
        check_init(tmp_path / "nope", "x86_64")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.integers(min_value=0, max_value=4095), st.binary(min_size=1, max_size=8))
def test_corrupted_static_elf_never_crashes(tmp_path: Path, offset: int, junk: bytes) -> None:
    data = bytearray(_static_elf().read_bytes()[:16384])
    data[offset : offset + len(junk)] = junk
    p = tmp_path / "fuzz"
    p.write_bytes(bytes(data))
    try:
        check_init(p, "x86_64")
    except BlobsError as exc:
        assert "\n" not in str(exc)


# ------------------------------------------------------------------------------- modules


def _fake_module(tmp_path: Path, vermagic: str, name: str = "nsm.ko") -> Path:
    """A real relocatable ELF with a .modinfo section, compiled by gcc (like a .ko)."""
    require("gcc", shutil.which("gcc") is not None, "gcc compiles the test module")
    src = tmp_path / "mod.c"
    src.write_text(
        'static const char a[] __attribute__((section(".modinfo"), used)) = "license=GPL";\n'
        f'static const char b[] __attribute__((section(".modinfo"), used)) = "vermagic={vermagic}";\n'
        "int nsm_probe(void) { return 0; }\n"
    )
    out = tmp_path / name
    subprocess.run(["gcc", "-c", "-o", str(out), str(src)], check=True)
    return out


def test_module_vermagic_is_read(tmp_path: Path) -> None:
    ko = _fake_module(tmp_path, "6.12.95 SMP mod_unload ")
    assert module_vermagic(ko) == "6.12.95 SMP mod_unload"
    check_module(ko, "6.12.95")


def test_module_for_another_kernel_is_refused(tmp_path: Path) -> None:
    ko = _fake_module(tmp_path, "6.1.0-56-cloud-amd64 SMP preempt mod_unload modversions ")
    with pytest.raises(BlobsError, match=r"built for kernel '6\.1\.0-56-cloud-amd64'.*'6\.12\.95'"):
        check_module(ko, "6.12.95")


def test_xz_compressed_module_is_read(tmp_path: Path) -> None:
    ko = _fake_module(tmp_path, "6.12.117+deb13-cloud-amd64 SMP preempt mod_unload ")
    kx = tmp_path / "nsm.ko.xz"
    kx.write_bytes(lzma.compress(ko.read_bytes(), format=lzma.FORMAT_XZ))
    assert module_vermagic(kx).startswith("6.12.117+deb13-cloud-amd64 ")


def test_broken_xz_module_is_refused(tmp_path: Path) -> None:
    kx = tmp_path / "nsm.ko.xz"
    kx.write_bytes(b"\xfd7zXZ\x00garbage")
    with pytest.raises(BlobsError, match="broken xz"):
        module_vermagic(kx)


def test_executable_is_not_a_module() -> None:
    with pytest.raises(BlobsError, match="not a kernel module"):
        module_vermagic(_static_elf())


def test_module_without_modinfo_is_refused(tmp_path: Path) -> None:
    require("gcc", shutil.which("gcc") is not None, "gcc compiles the test object")
    src = tmp_path / "x.c"
    src.write_text("int f(void) { return 1; }\n")
    out = tmp_path / "x.ko"
    subprocess.run(["gcc", "-c", "-o", str(out), str(src)], check=True)
    with pytest.raises(BlobsError, match=r"no \.modinfo"):
        module_vermagic(out)


# ------------------------------------------------------------------------------- kernels


def _fake_bzimage(version: bytes) -> bytes:
    """Boot sector + setup header fields per Documentation/arch/x86/boot.rst."""
    img = bytearray(0x1000)
    img[0x1FE:0x200] = b"\x55\xaa"
    img[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", img, 0x20E, 0x600)  # kernel_version: string at 0x600 + 0x200
    img[0x800 : 0x800 + len(version) + 1] = version + b"\0"
    return bytes(img)


def test_bzimage_version_string(tmp_path: Path) -> None:
    p = tmp_path / "bzImage"
    p.write_bytes(_fake_bzimage(b"6.12.95 (eifbuild@eifbuild) #1 SMP"))
    assert kernel_version_string(p) == "6.12.95 (eifbuild@eifbuild) #1 SMP"
    assert kernel_release(p) == "6.12.95"
    check_kernel(p, "x86_64")


def test_non_bzimage_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "vmlinux"
    p.write_bytes(_static_elf().read_bytes()[:8192])
    with pytest.raises(BlobsError, match="not an x86 bzImage"):
        check_kernel(p, "x86_64")


def _arm64_header(text_offset: int = 0x200000) -> bytearray:
    """An arm64 Image header per Documentation/arch/arm64/booting.rst (64 bytes, LE)."""
    img = bytearray(64)
    struct.pack_into("<QQQ", img, 8, text_offset, 1 << 20, 0b1010)  # offset, size, flags
    img[0x38:0x3C] = b"ARM\x64"
    return img


def test_arm64_image_magic(tmp_path: Path) -> None:
    p = _write(tmp_path / "Image", bytes(_arm64_header()))
    check_kernel(p, "aarch64")
    with pytest.raises(BlobsError, match="not an arm64 Image"):
        check_kernel(_write(tmp_path / "bad", b"\0" * 64), "aarch64")
    with pytest.raises(BlobsError, match="not an arm64 Image"):
        check_kernel(_write(tmp_path / "short", bytes(_arm64_header())[:60]), "aarch64")


def test_arm64_text_offset_zero_is_refused(tmp_path: Path) -> None:
    p = _write(tmp_path / "Image", bytes(_arm64_header(0)) + b"rest of the kernel")
    with pytest.raises(BlobsError, match=r"text_offset 0, which the Nitro loader refuses") as e:
        check_kernel(p, "aarch64")
    assert "\n" not in str(e.value)
    assert arm64_text_offset(p) == 0


def test_set_arm64_text_offset_patches_only_the_field(tmp_path: Path) -> None:
    before = bytes(_arm64_header(0)) + bytes(range(256)) * 4
    p = _write(tmp_path / "Image", before)
    assert set_arm64_text_offset(p) == 0
    after = p.read_bytes()
    assert after[8:16] == b"\x00\x00\x20\x00\x00\x00\x00\x00"  # 2 MiB, little-endian
    assert after[:8] == before[:8] and after[16:] == before[16:]
    check_kernel(p, "aarch64")
    assert set_arm64_text_offset(p) == 0x200000 and p.read_bytes() == after  # idempotent


def test_arm64_zboot_image_is_named(tmp_path: Path) -> None:
    pe = bytearray(64)
    pe[0:2], pe[4:8] = b"MZ", b"zimg"  # EFI zboot: PE wrapper around a compressed Image
    with pytest.raises(BlobsError, match="EFI zboot image"):
        check_kernel(_write(tmp_path / "vmlinuz", bytes(pe)), "aarch64")


def test_arm64_release_from_banner(tmp_path: Path) -> None:
    img = _arm64_header()
    pad = bytes((1 << 20) - 70)  # the banner straddles the 1 MiB read boundary
    body = bytes(img) + pad + b"xxLinux version 6.12.95-arm (eifbuild@eifbuild) #1 SMP\0"
    p = _write(tmp_path / "Image", body)
    assert kernel_release(p, "aarch64") == "6.12.95-arm"
    with pytest.raises(BlobsError, match="no 'Linux version' banner"):
        kernel_release(_write(tmp_path / "Image2", bytes(img) + bytes(1000)), "aarch64")


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p
