"""Blobs directory discovery, overrides and nitro-cli's cmdline trim."""

from __future__ import annotations

from pathlib import Path

import pytest

from eifbuild.blobs import resolve_blobs, trim_cmdline
from eifbuild.errors import BlobsError
from tests.helpers import blobgen

X86_CMDLINE = (
    "reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux "
    "i8042.nopnp i8042.dumbkbd random.trust_cpu=on"
)


RELEASE = "4.14.256-209.484.amzn2.x86_64"


def make_blobs(d: Path, kernel: str = "bzImage", nsm: bool = True) -> Path:
    """A nitro-cli style blobs directory of stand-ins that pass eifbuild.elfcheck."""
    arch = "x86_64" if kernel == "bzImage" else "aarch64"
    d.mkdir(parents=True, exist_ok=True)
    if arch == "x86_64":
        (d / kernel).write_bytes(blobgen.bzimage(f"{RELEASE} (mockbuild@test) #1 SMP"))
    else:
        (d / kernel).write_bytes(blobgen.arm64_image(RELEASE))
    (d / f"{kernel}.config").write_text(
        f"#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86_64 {RELEASE} Kernel Configuration\n"
    )
    (d / "cmdline").write_bytes(X86_CMDLINE.encode() + b"\n")
    (d / "init").write_bytes(blobgen.static_exe(arch))
    if nsm:
        (d / "nsm.ko").write_bytes(blobgen.kernel_module(f"{RELEASE} SMP mod_unload ", arch))
    return d


def test_spec_cmdline_trim_120_to_119_bytes(tmp_path: Path) -> None:
    b = resolve_blobs("amd64", blobs_dir=make_blobs(tmp_path))
    assert len((tmp_path / "cmdline").read_bytes()) == 120
    assert b.cmdline == X86_CMDLINE and len(b.cmdline.encode()) == 119
    assert (b.kernel.name, b.kernel_config.name, b.init.name, b.source) == (
        "bzImage",
        "bzImage.config",
        "init",
        "--blobs",
    )
    assert b.nsm == tmp_path / "nsm.ko"


def test_trim_is_rust_str_trim() -> None:
    assert trim_cmdline("\u3000 a b\t\r\n\x0b\x0c\u00a0") == "a b"
    assert trim_cmdline("\x1ca\x1c") == "\x1ca\x1c"  # not White_Space in Rust


def test_arm64_uses_Image_and_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_blobs(tmp_path, kernel="Image", nsm=False)
    monkeypatch.setenv("NITRO_CLI_BLOBS", str(tmp_path))
    b = resolve_blobs("arm64")
    assert (b.kernel.name, b.nsm, b.source, b.arch) == ("Image", None, "NITRO_CLI_BLOBS", "aarch64")


def test_overrides_win(tmp_path: Path) -> None:
    d = make_blobs(tmp_path / "d")
    k = tmp_path / "other"
    k.write_bytes(blobgen.bzimage("6.12.95 (other) #2"))
    b = resolve_blobs(
        "x86_64",
        blobs_dir=d,
        kernel=k,
        kernel_config=d / "bzImage.config",
        cmdline=" console=ttyS0 \n",
        no_nsm=True,
    )
    assert (b.kernel, b.cmdline, b.nsm) == (k, "console=ttyS0", None)


@pytest.mark.parametrize("missing", ["bzImage", "bzImage.config", "cmdline", "init"])
def test_missing_file_is_one_line_error(tmp_path: Path, missing: str) -> None:
    make_blobs(tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(BlobsError, match=missing.replace(".", r"\.")) as ei:
        resolve_blobs("amd64", blobs_dir=tmp_path)
    assert "\n" not in str(ei.value)


def test_kernel_without_its_config_names_the_option(tmp_path: Path) -> None:
    d = make_blobs(tmp_path / "d")
    k = tmp_path / "other"
    k.write_bytes(blobgen.bzimage("6.12.95 (other) #2"))
    with pytest.raises(BlobsError, match=r"other\.config: kernel config cannot be read .*; pass "
                       r"--kernel-config FILE with --kernel$"):  # fmt: skip
        resolve_blobs("x86_64", blobs_dir=d, kernel=k)


def test_bad_arch_and_dir(tmp_path: Path) -> None:
    with pytest.raises(BlobsError, match="s390x"):
        resolve_blobs("s390x", blobs_dir=tmp_path)
    with pytest.raises(BlobsError, match="does not exist"):
        resolve_blobs("amd64", blobs_dir=tmp_path / "nope")
    make_blobs(tmp_path)
    (tmp_path / "cmdline").write_bytes(b"\xff\xfe")
    with pytest.raises(BlobsError, match="not UTF-8"):
        resolve_blobs("amd64", blobs_dir=tmp_path)


def test_modules_load_order(tmp_path: Path) -> None:
    make_blobs(tmp_path, nsm=False)
    for n in ("virtio_mmio.ko", "nsm.ko"):
        (tmp_path / n).write_bytes(blobgen.kernel_module(f"{RELEASE} SMP mod_unload "))
    (tmp_path / "modules_load_order").write_text("virtio_mmio.ko\n\nnsm.ko\n")
    b = resolve_blobs("amd64", blobs_dir=tmp_path)
    assert [m.name for m in b.modules] == ["virtio_mmio.ko", "nsm.ko"]
    (tmp_path / "modules_load_order").write_text("../evil.ko\n")
    with pytest.raises(BlobsError, match=r"not a \.ko file name"):
        resolve_blobs("amd64", blobs_dir=tmp_path)
    (tmp_path / "modules_load_order").write_text("missing.ko\n")
    with pytest.raises(BlobsError, match=r"missing\.ko"):
        resolve_blobs("amd64", blobs_dir=tmp_path)


# --- ELF checks before use (eifbuild.elfcheck) -------------------------------------------------


def test_dynamic_init_is_refused(tmp_path: Path) -> None:
    make_blobs(tmp_path)
    (tmp_path / "init").write_bytes(blobgen.static_exe(interp=b"/lib64/ld-linux-x86-64.so.2"))
    with pytest.raises(BlobsError, match=r"init .*init is dynamically linked"):
        resolve_blobs("amd64", blobs_dir=tmp_path)


def test_wrong_arch_init_is_refused(tmp_path: Path) -> None:
    make_blobs(tmp_path)
    (tmp_path / "init").write_bytes(blobgen.static_exe("aarch64"))
    with pytest.raises(BlobsError, match="built for aarch64, not x86_64"):
        resolve_blobs("amd64", blobs_dir=tmp_path)
    # ... also when it comes from --init
    good = make_blobs(tmp_path / "good")
    with pytest.raises(BlobsError, match="built for aarch64"):
        resolve_blobs("amd64", blobs_dir=good, init=tmp_path / "init")


def test_non_elf_init_is_refused(tmp_path: Path) -> None:
    make_blobs(tmp_path)
    (tmp_path / "init").write_bytes(b"#!/bin/sh\nexec /bin/app\n")
    with pytest.raises(BlobsError, match="not an ELF file"):
        resolve_blobs("amd64", blobs_dir=tmp_path)


def test_nsm_for_another_kernel_is_refused(tmp_path: Path) -> None:
    make_blobs(tmp_path)
    (tmp_path / "nsm.ko").write_bytes(blobgen.kernel_module("6.1.0-56-cloud-amd64 SMP mod_unload "))
    with pytest.raises(
        BlobsError, match=rf"built for kernel '6\.1\.0-56-cloud-amd64'.*'{RELEASE}'"
    ):
        resolve_blobs("amd64", blobs_dir=tmp_path)
    # --no-nsm (kernel with NSM built in) skips the module and its check
    assert resolve_blobs("amd64", blobs_dir=tmp_path, no_nsm=True).nsm is None


def test_listed_module_for_another_kernel_is_refused(tmp_path: Path) -> None:
    make_blobs(tmp_path, nsm=False)
    (tmp_path / "virtio_mmio.ko").write_bytes(blobgen.kernel_module(f"{RELEASE} SMP "))
    (tmp_path / "nsm.ko").write_bytes(blobgen.kernel_module("6.12.95 SMP "))
    (tmp_path / "modules_load_order").write_text("virtio_mmio.ko\nnsm.ko\n")
    with pytest.raises(BlobsError, match=r"nsm\.ko was built for kernel '6\.12\.95'"):
        resolve_blobs("amd64", blobs_dir=tmp_path)


def test_arm64_module_vermagic_against_image_banner(tmp_path: Path) -> None:
    make_blobs(tmp_path, kernel="Image", nsm=False)
    ko = tmp_path / "nsm.ko"
    ko.write_bytes(blobgen.kernel_module(f"{RELEASE} SMP ", "aarch64"))
    assert resolve_blobs("arm64", blobs_dir=tmp_path).nsm == ko
    ko.write_bytes(blobgen.kernel_module("5.10.0 SMP ", "aarch64"))
    with pytest.raises(BlobsError, match=r"built for kernel '5\.10\.0'"):
        resolve_blobs("arm64", blobs_dir=tmp_path)


def test_non_kernel_is_refused(tmp_path: Path) -> None:
    make_blobs(tmp_path)
    (tmp_path / "bzImage").write_bytes(b"KERNEL")
    with pytest.raises(BlobsError, match="not an x86 bzImage"):
        resolve_blobs("amd64", blobs_dir=tmp_path)
