"""Blobs directory discovery, overrides and nitro-cli's cmdline trim."""

from __future__ import annotations

from pathlib import Path

import pytest

from eifbuild.blobs import resolve_blobs, trim_cmdline
from eifbuild.errors import BlobsError

X86_CMDLINE = (
    "reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux "
    "i8042.nopnp i8042.dumbkbd random.trust_cpu=on"
)


def make_blobs(d: Path, kernel: str = "bzImage", nsm: bool = True) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / kernel).write_bytes(b"KERNEL")
    (d / f"{kernel}.config").write_text(
        "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86_64 4.14.256-209.484.amzn2.x86_64 Kernel Configuration\n"
    )
    (d / "cmdline").write_bytes(X86_CMDLINE.encode() + b"\n")
    (d / "init").write_bytes(b"INIT")
    if nsm:
        (d / "nsm.ko").write_bytes(b"NSM.KO")
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
    k.write_bytes(b"K2")
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
        (tmp_path / n).write_bytes(n.encode())
    (tmp_path / "modules_load_order").write_text("virtio_mmio.ko\n\nnsm.ko\n")
    b = resolve_blobs("amd64", blobs_dir=tmp_path)
    assert [m.name for m in b.modules] == ["virtio_mmio.ko", "nsm.ko"]
    (tmp_path / "modules_load_order").write_text("../evil.ko\n")
    with pytest.raises(BlobsError, match=r"not a \.ko file name"):
        resolve_blobs("amd64", blobs_dir=tmp_path)
    (tmp_path / "modules_load_order").write_text("missing.ko\n")
    with pytest.raises(BlobsError, match=r"missing\.ko"):
        resolve_blobs("amd64", blobs_dir=tmp_path)
