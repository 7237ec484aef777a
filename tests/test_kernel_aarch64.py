"""The aarch64 kernel recipe and, when built, its blobs directory (Image, Image.config, ...).

Tests never build the kernel: `eifbuild kernel build --arch aarch64` does that once; tests
that need its output ask for it with require("kernel-aarch64", ...).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import pytest

from eifbuild.cli import main
from eifbuild.elfcheck import kernel_release
from eifbuild.errors import BlobsError
from eifbuild.kernel import cache_dir, default_blobs_dir, kernel_cache_key, load_pin, parse_config
from tests.conftest import ROOT, require

KERNELS = ROOT / "kernels"
# nitro-cli blobs/aarch64/cmdline (docs/spec/ramdisk-layout.md §10): 85 bytes with "\n".
NITRO_AARCH64_CMDLINE = (
    b"reboot=k panic=30 pci=off nomodules console=ttyS0 random.trust_cpu=on root=/dev/ram0\n"
)


def test_cmdline_is_nitro_clis_aarch64_cmdline() -> None:
    data = (KERNELS / "aarch64" / "cmdline").read_bytes()
    assert data == NITRO_AARCH64_CMDLINE and len(data) == 85


def test_fragment_has_the_enclave_essentials() -> None:
    frag = parse_config((KERNELS / "aarch64" / "enclave.config").read_text().splitlines())
    for opt in (
        "NSM", "VIRTIO_MMIO", "VIRTIO_MMIO_CMDLINE_DEVICES", "VSOCKETS", "VIRTIO_VSOCKETS",
        "DEVTMPFS", "DEVTMPFS_MOUNT", "SERIAL_8250_CONSOLE", "SERIAL_OF_PLATFORM",
        "SERIAL_AMBA_PL011_CONSOLE", "BLK_DEV_INITRD",
    ):  # fmt: skip
        assert frag[f"CONFIG_{opt}"] == "y", opt
    for off in ("MODULES", "RANDOMIZE_BASE", "EFI", "PCI"):
        assert frag[f"CONFIG_{off}"] is None, off


def test_pin_is_the_x86_64_source_built_for_arm64() -> None:
    x86, arm = load_pin("x86_64"), load_pin("aarch64")
    assert (arm.package, arm.version, arm.deb_sha256, arm.tarball_sha256) == (
        x86.package, x86.version, x86.deb_sha256, x86.tarball_sha256,
    )  # fmt: skip
    assert (arm.kernel_arch, arm.image, arm.image_name) == (
        "arm64",
        "arch/arm64/boot/Image",
        "Image",
    )
    x86_patches = sorted(p.read_bytes() for p in (KERNELS / "x86_64" / "patches").iterdir())
    arm_patches = sorted(p.read_bytes() for p in (KERNELS / "aarch64" / "patches").iterdir())
    assert arm_patches == x86_patches  # the same vsock fix


def test_cache_keys_differ_per_arch() -> None:
    require("cross-aarch64", _has_cross(), "Debian gcc-aarch64-linux-gnu")
    assert kernel_cache_key("aarch64") != kernel_cache_key("x86_64")


def _has_cross() -> bool:
    return shutil.which("aarch64-linux-gnu-gcc") is not None


# ------------------------------------------------------------------ the built blobs (cached)


@pytest.fixture(scope="module")
def blobs() -> Path:
    try:
        return default_blobs_dir("aarch64")
    except BlobsError as exc:
        require("kernel-aarch64", False, str(exc))
        raise


@pytest.mark.kernel
def test_image_header_has_text_offset_2mib(blobs: Path) -> None:
    head = (blobs / "Image").read_bytes()[:64]
    # Documentation/arch/arm64/booting.rst: code0, code1, text_offset, image_size, flags, ...
    _c0, _c1, text_offset, image_size, flags = struct.unpack_from("<IIQQQ", head)
    assert head[0x38:0x3C] == b"ARM\x64"
    assert text_offset == 2 * 1024 * 1024  # the Nitro loader refuses 0
    assert image_size >= (blobs / "Image").stat().st_size
    assert flags & 1 == 0  # little-endian kernel


@pytest.mark.kernel
def test_every_fragment_option_survived(blobs: Path) -> None:
    frag = parse_config((KERNELS / "aarch64" / "enclave.config").read_text().splitlines())
    config = parse_config((blobs / "Image.config").read_text().splitlines())
    for opt, want in frag.items():
        assert config.get(opt) == want, opt
    assert config["CONFIG_ARM64"] == "y"


@pytest.mark.kernel
def test_blobs_dir_and_kernel_path_cli(blobs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sorted(p.name for p in blobs.iterdir()) == ["Image", "Image.config", "cmdline", "init"]
    assert (blobs / "cmdline").read_bytes() == NITRO_AARCH64_CMDLINE
    assert main(["kernel", "path", "--arch", "aarch64", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["blobs"] == str(blobs) and doc["arch"] == "aarch64"
    assert doc["sha384"]["Image"] == hashlib.sha384((blobs / "Image").read_bytes()).hexdigest()
    info = json.loads((blobs.parent.parent / "kernel" / f"aarch64-{kernel_cache_key('aarch64')}"
                       / "build-info.json").read_text())  # fmt: skip
    assert info["text_offset_was"] == 0  # Linux 6.12 writes 0; eifbuild set 2 MiB


@pytest.mark.kernel
def test_kernel_identity_is_reproducible(blobs: Path) -> None:
    """The banner carries the fixed build user/host/timestamp, not this machine's."""
    data = (blobs / "Image").read_bytes()
    assert kernel_release(blobs / "Image", "aarch64") == load_pin("aarch64").version.split("-")[0]
    start = data.index(b"Linux version ")
    banner = data[start : data.index(b"\n", start)].decode()
    assert "(eifbuild@eifbuild)" in banner and "#1 SMP" in banner and "1970" in banner
    assert str(cache_dir()).encode() not in data  # no build paths (the tree was under it)
