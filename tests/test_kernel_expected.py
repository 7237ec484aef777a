"""The default kernels and inits (built by scripts/setup in the pinned toolchain root) are the
bytes recorded in ``kernels/<arch>/expected.json``, and its PCR1 is right.

PCR1 is recomputed here independently of eifbuild's cpio and PCR code: a newc writer written
from the spec (docs/spec/ramdisk-layout.md §6-§7: ``dev`` + ``init``, inodes from 721, mtime 1492533000,
dev 3/1, trailer, 512-byte padding) and hashlib (extend = SHA-384(zeros ‖ SHA-384(content))).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from eifbuild.cli import main
from eifbuild.errors import BlobsError
from eifbuild.kernel import cache_dir, default_blobs_dir, kernel_cache_key
from eifbuild.kernel.toolpin import toolchain_key
from tests.conftest import ROOT, require

MTIME = 1492533000


def _newc(entries: list[tuple[bytes, int, int, bytes]]) -> bytes:
    """(name, mode, nlink, data) entries + trailer, as linuxkit's gocpio writes them."""
    out = bytearray()
    for ino, (name, mode, nlink, data) in enumerate([*entries, (b"TRAILER!!!", 0, 1, b"")], 721):
        mtime = 0 if name == b"TRAILER!!!" else MTIME
        fields = (ino, mode, 0, 0, nlink, mtime, len(data), 3, 1, 0, 0, len(name) + 1, 0)
        out += b"070701" + b"".join(b"%08x" % f for f in fields) + name + b"\0"
        out += b"\0" * (-len(out) % 4)
        out += data + b"\0" * (-len(data) % 4)
    return bytes(out + b"\0" * (-len(out) % 512))


def test_newc_writer_matches_the_specs_worked_example() -> None:
    # docs/spec/ramdisk-layout.md §7.1: init = "INIT", nsm.ko = "NSM.KO" -> 512 bytes, this sha256.
    blob = _newc([(b"dev", 0o40755, 2, b""), (b"init", 0o100755, 1, b"INIT"),
                  (b"nsm.ko", 0o100755, 1, b"NSM.KO")])  # fmt: skip
    assert len(blob) == 512
    assert hashlib.sha256(blob).hexdigest() == (
        "0cb76136ca98bd530fb7405a7d5c961b3df42782ca0c144844dadeb09a33eb24"
    )


def _pcr1(kernel: bytes, cmdline: bytes, init: bytes) -> str:
    ramdisk = _newc([(b"dev", 0o40755, 2, b""), (b"init", 0o100755, 1, init)])
    content = hashlib.sha384(kernel + cmdline.strip() + ramdisk).digest()
    return hashlib.sha384(b"\0" * 48 + content).hexdigest()


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_default_blobs_are_the_expected_bytes_and_pcr1(arch: str) -> None:
    want = json.loads((ROOT / "kernels" / arch / "expected.json").read_text())
    try:
        blobs = default_blobs_dir(arch)
    except BlobsError as exc:
        require("kernel", False, str(exc))
        raise
    kernel = (blobs / want["image"]).read_bytes()
    init = (blobs / "init").read_bytes()
    assert hashlib.sha384(kernel).hexdigest() == want["image_sha384"]
    assert hashlib.sha384(init).hexdigest() == want["init_sha384"]
    cmdline = (ROOT / "kernels" / arch / "cmdline").read_bytes()
    assert _pcr1(kernel, cmdline, init) == want["pcr1"]
    info = cache_dir() / "kernel" / f"{arch}-{kernel_cache_key(arch)}" / "build-info.json"
    built = json.loads(info.read_text())
    assert built["toolchain"]["key"] == want["inputs"]["toolchain"] == toolchain_key()
    assert built["gcc"].startswith(  # the root's compiler, whatever the host has
        "aarch64-linux-gnu-gcc (Debian 12.2.0-14)"
        if arch == "aarch64"
        else "gcc (Debian 12.2.0-14+deb12u1)"
    )
    assert want["pcr1"] in (ROOT / "README.md").read_text()  # shown to release managers


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_cli_kernel_build_checks_expected(arch: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        default_blobs_dir(arch)
    except BlobsError as exc:
        require("kernel", False, str(exc))
    assert main(["kernel", "build", "--arch", arch, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    want = json.loads((ROOT / "kernels" / arch / "expected.json").read_text())
    assert doc["expected"] == "matches" and doc["pcr1"] == want["pcr1"]
    assert Path(doc["blobs"]) == default_blobs_dir(arch)
