"""aarch64 boot tests: eifbuild's arm64 kernel and init under qemu-system-aarch64 (virt, TCG).

The rootfs program is a static arm64 binary compiled here with Debian's cross gcc (the
host's busybox is x86_64). The EIF is written by ``eifbuild assemble --arch aarch64`` and
booted by ``eifbuild boot-test``, which picks QEMU from the EIF header's arch flag.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from eifbuild.boottest import BootOptions, qemu_command, run_qemu
from eifbuild.cli import main
from eifbuild.errors import BlobsError, BootTestError
from eifbuild.kernel import default_blobs_dir
from tests.conftest import require
from tests.test_boottest import TIMEOUT, _cpio, bootstrap_cpio

MARKER_C = r"""
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    const char *g = getenv("GREETING");
    printf("ARM64-MARK-%s argc=%d\n", g ? g : "unset", argc);
    fflush(stdout);
    return argc > 1 ? atoi(argv[1]) : 0;
}
"""


def test_qemu_command_for_aarch64_uses_virt_and_the_pl011_console() -> None:
    cmd = qemu_command("qemu", Path("k"), Path("i"), "a b", 256, "aarch64")
    assert cmd[cmd.index("-machine") + 1] == "virt"
    assert cmd[cmd.index("-append") + 1] == "a b console=ttyAMA0"
    assert "-no-reboot" in cmd and cmd[cmd.index("-accel") + 1] == "tcg"
    x86 = qemu_command("qemu", Path("k"), Path("i"), "a b", 256)
    assert x86[x86.index("-machine") + 1] == "q35" and x86[x86.index("-append") + 1] == "a b"


def test_missing_qemu_aarch64_names_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(BootTestError, match=r"not-here not found: install the Debian package "
                       r"qemu-system-arm \(apt-get"):  # fmt: skip
        run_qemu(tmp_path / "k", tmp_path / "i", "", BootOptions(qemu="qemu-not-here"), "aarch64")


def test_cli_missing_qemu_for_an_aarch64_eif_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The QEMU binary and its Debian package follow the EIF's arch flag, not the host."""
    from tests.helpers.blobgen import arm64_image

    kernel = tmp_path / "Image"
    kernel.write_bytes(arm64_image("6.12.95"))
    (tmp_path / "rd").write_bytes(b"070701")
    eif = tmp_path / "a.eif"
    assert main(["assemble", "--arch", "aarch64", "--kernel", str(kernel), "--cmdline", "x",
                 "--ramdisk", str(tmp_path / "rd"), "--output", str(eif)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["boot-test", str(eif), "--qemu", "qemu-not-here", "--json"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err == (
        "eifbuild: error: qemu-not-here not found: install the Debian package qemu-system-arm "
        "(apt-get install --no-install-recommends qemu-system-arm)\n"
    )


@pytest.fixture(scope="module")
def blobs() -> Path:
    require("qemu", shutil.which("qemu-system-aarch64") is not None, "Debian qemu-system-arm")
    require("cpio", shutil.which("cpio") is not None, "GNU cpio makes the test ramdisks")
    require("cross-aarch64", shutil.which("aarch64-linux-gnu-gcc") is not None,
            "Debian gcc-aarch64-linux-gnu compiles the test program")  # fmt: skip
    try:
        return default_blobs_dir("aarch64")
    except BlobsError as exc:
        require("kernel-aarch64", False, str(exc))
        raise


def _customer_cpio(tmp: Path) -> Path:
    root = tmp / "customer"
    (root / "rootfs" / "bin").mkdir(parents=True)
    src = tmp / "marker.c"
    src.write_text(MARKER_C)
    exe = root / "rootfs" / "bin" / "marker"
    subprocess.run(
        ["aarch64-linux-gnu-gcc", "-static", "-Os", "-o", str(exe), str(src)], check=True
    )
    for d in ("proc", "sys", "run", "tmp", "dev"):
        (root / "rootfs" / d).mkdir()
    (root / "cmd").write_text("/bin/marker\n7\n")
    (root / "env").write_text("GREETING=hello\nPATH=/bin\n")
    return _cpio(root, tmp / "customer.cpio")


@pytest.mark.qemu
@pytest.mark.kernel
def test_aarch64_eif_boots_via_cli(
    tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boot_rd = bootstrap_cpio(tmp_path, blobs / "init")
    cust_rd = _customer_cpio(tmp_path)
    eif = tmp_path / "arm.eif"
    cmdline = (blobs / "cmdline").read_text().strip()
    rc = main(["assemble", "--arch", "aarch64", "--kernel", str(blobs / "Image"),
               "--cmdline", cmdline, "--ramdisk", str(boot_rd), "--ramdisk", str(cust_rd),
               "--output", str(eif)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    args = ["boot-test", str(eif), "--expect", "ARM64-MARK-hello argc=2", "--expect-status", "7"]
    assert main([*args, "--json", "--timeout", str(TIMEOUT)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] and doc["exit_status"] == 7 and doc["expect_found"], doc["console"][-3000:]
    assert doc["qemu_returncode"] == 0 and not doc["timed_out"]  # the init's reboot ended QEMU
    assert "eifbuild-init: command exited with status 7" in doc["console"]
    assert "Machine model: linux,dummy-virt" in doc["console"]  # really the arm64 virt board


@pytest.mark.qemu
@pytest.mark.kernel
def test_eifbuild_build_of_an_arm64_image_boots(
    tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`eifbuild build` of a generated arm64 OCI image (default blobs = the aarch64 kernel)."""
    from tests.helpers.imagegen import E, simple_oci

    src = tmp_path / "marker.c"
    src.write_text(MARKER_C)
    exe = tmp_path / "marker"
    subprocess.run(
        ["aarch64-linux-gnu-gcc", "-static", "-Os", "-o", str(exe), str(src)], check=True
    )
    layer = [E.dir("bin"), E.file("bin/marker", exe.read_bytes(), 0o755), E.dir("tmp", 0o1777)]
    config: dict[str, object] = {"Env": ["GREETING=from-oci"], "Cmd": ["/bin/marker", "9"]}
    ref = simple_oci(tmp_path / "oci", layer, config=config, arch="arm64")
    eif = tmp_path / "img.eif"
    assert main(["build", ref, "--output", str(eif)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert eif.read_bytes()[6:8] == b"\x00\x01"  # header flags (u16 BE at 6): aarch64
    args = ["boot-test", str(eif), "--expect", "ARM64-MARK-from-oci argc=2", "--expect-status", "9"]
    assert main([*args, "--timeout", str(TIMEOUT)]) == 0, capsys.readouterr().err
    out = capsys.readouterr()
    assert "ARM64-MARK-from-oci" in out.out and "status 9; PASSED" in out.err
