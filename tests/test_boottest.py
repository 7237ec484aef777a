"""Boot tests under real QEMU (TCG) with eifbuild's kernel and init.

The ramdisks here are made with GNU cpio (an independent newc writer): a bootstrap archive
(``dev/``, ``init``) and a customer archive (``cmd``, ``env``, ``rootfs/`` with a static
busybox). The end-to-end tests build real EIFs (``eifbuild assemble`` and ``eifbuild build``
from a generated image) and boot them with ``eifbuild boot-test``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from eifbuild.boottest import BootOptions, BootResult, boot_test, run_qemu
from eifbuild.cli import main
from eifbuild.errors import BlobsError, BootTestError, UsageError
from eifbuild.kernel import default_blobs_dir
from tests.conftest import require

pytestmark = [pytest.mark.qemu, pytest.mark.kernel]

BUSYBOX = Path("/bin/busybox")
TIMEOUT = 90.0  # TCG on a loaded 2-core machine; a boot takes ~1.5 s when idle


@pytest.fixture(scope="module")
def blobs() -> Path:
    require("qemu", shutil.which("qemu-system-x86_64") is not None, "Debian qemu-system-x86")
    require("cpio", shutil.which("cpio") is not None, "GNU cpio makes the test ramdisks")
    require("busybox", BUSYBOX.is_file(), "Debian busybox-static is the test rootfs")
    try:
        return default_blobs_dir("x86_64")
    except BlobsError as exc:
        require("kernel", False, str(exc))
        raise


def _cpio(src: Path, dest: Path) -> Path:
    """Deterministic newc archive of ``src`` with GNU cpio (sorted, 0:0, mtime 0)."""
    for p in [src, *src.rglob("*")]:
        os.utime(p, (0, 0), follow_symlinks=False)
    names = sorted(str(p.relative_to(src)) for p in src.rglob("*"))
    subprocess.run(
        ["cpio", "-o", "-H", "newc", "--reproducible", "-R", "0:0", "--quiet", "-O", str(dest)],
        input="\n".join(names).encode() + b"\n", cwd=src, check=True,
    )  # fmt: skip
    return dest


def bootstrap_cpio(tmp: Path, init: Path, extra: dict[str, bytes] | None = None) -> Path:
    root = tmp / "bootstrap"
    (root / "dev").mkdir(parents=True)
    shutil.copyfile(init, root / "init")
    (root / "init").chmod(0o755)
    for name, data in (extra or {}).items():
        (root / name).write_bytes(data)
    return _cpio(root, tmp / "bootstrap.cpio")


def customer_cpio(
    tmp: Path, cmd: Sequence[str] | None, env: Sequence[str] | None, *, rootfs: bool = True
) -> Path:
    root = tmp / "customer"
    root.mkdir()
    if rootfs:
        (root / "rootfs" / "bin").mkdir(parents=True)
        shutil.copyfile(BUSYBOX, root / "rootfs" / "bin" / "busybox")
        (root / "rootfs" / "bin" / "busybox").chmod(0o755)
        (root / "rootfs" / "bin" / "sh").symlink_to("busybox")
        for d in ("proc", "sys", "run", "tmp", "dev"):
            (root / "rootfs" / d).mkdir()
    if cmd is not None:
        (root / "cmd").write_text("".join(f"{x}\n" for x in cmd))
    if env is not None:
        (root / "env").write_text("".join(f"{x}\n" for x in env))
    return _cpio(root, tmp / "customer.cpio")


def boot(
    tmp: Path,
    blobs: Path,
    cmd: Sequence[str] | None,
    env: Sequence[str] | None = ("PATH=/bin",),
    bootstrap_extra: dict[str, bytes] | None = None,
    **kw: object,
) -> BootResult:
    initrd = tmp / "initrd"
    boot_rd = bootstrap_cpio(tmp, blobs / "init", bootstrap_extra)
    with initrd.open("wb") as out:
        for part in (boot_rd, customer_cpio(tmp, cmd, env)):
            out.write(part.read_bytes())
    cmdline = (blobs / "cmdline").read_text().strip()
    kw.setdefault("timeout", TIMEOUT)
    return run_qemu(blobs / "bzImage", initrd, cmdline, BootOptions(**kw))  # type: ignore[arg-type]


def test_command_output_env_and_exit_status(tmp_path: Path, blobs: Path) -> None:
    script = 'echo "MARK-$FOO-$(cat /proc/1/comm)"; (sleep 30 &); exit 7'
    r = boot(tmp_path, blobs, ["/bin/sh", "-c", script], ["FOO=bar", "PATH=/bin"],
             expect="MARK-bar-init", expect_status=7)  # fmt: skip
    assert "MARK-bar-init" in r.console, r.console[-3000:]
    assert r.exit_status == 7 and r.signal is None
    assert "eifbuild-init: command exited with status 7" in r.console
    assert not r.timed_out and r.qemu_returncode == 0 and r.passed
    # Under QEMU there is no vsock peer: reported, and the boot went on.
    assert "heartbeat to parent (vsock cid 3 port 9000) failed" in r.console


def test_wrong_expectations_fail_the_verdict(tmp_path: Path, blobs: Path) -> None:
    r = boot(tmp_path, blobs, ["/bin/sh", "-c", "echo hello; exit 0"],
             expect="not-printed", expect_status=3)  # fmt: skip
    assert r.exit_status == 0 and r.expect_found is False and not r.passed


def test_mounts_and_symlinks_in_the_new_root(tmp_path: Path, blobs: Path) -> None:
    script = (
        "for m in /dev /proc /run /tmp /dev/shm /dev/pts /sys /sys/fs/cgroup/pids; do "
        'grep -q " $m " /proc/mounts && echo "MNT-OK $m" || echo "MNT-MISSING $m"; done; '
        "readlink /dev/fd; readlink /dev/stderr; "
        'echo "SID-$(cut -d" " -f6 /proc/$$/stat)-PID-$$"'
    )
    r = boot(tmp_path, blobs, ["sh", "-c", script])
    assert "MNT-MISSING" not in r.console, r.console[-3000:]
    assert r.console.count("MNT-OK") == 8
    assert "/proc/self/fd\n/proc/self/fd/2" in r.console
    assert re.search(r"SID-(\d+)-PID-\1\b", r.console)  # the command leads its own session
    assert r.exit_status == 0


def test_signal_death_is_reported(tmp_path: Path, blobs: Path) -> None:
    r = boot(tmp_path, blobs, ["/bin/sh", "-c", "kill -9 $$"])
    assert r.signal == 9 and r.exit_status is None
    assert "eifbuild-init: command killed by signal 9" in r.console


def test_missing_cmd_is_a_clear_message_and_a_clean_stop(tmp_path: Path, blobs: Path) -> None:
    r = boot(tmp_path, blobs, None)
    assert "eifbuild-init: fatal: /cmd is missing" in r.console, r.console[-3000:]
    assert "Kernel panic" not in r.console
    assert not r.timed_out and r.qemu_returncode == 0  # rebooted, i.e. the VM stopped
    assert not r.passed


def test_missing_env_warns_and_runs(tmp_path: Path, blobs: Path) -> None:
    r = boot(tmp_path, blobs, ["sh", "-c", 'echo "PATH-IS-$PATH"; exit 4'], None)
    assert "eifbuild-init: warning: /env is missing" in r.console
    assert "PATH-IS-/sbin:/usr/sbin:/bin:/usr/bin" in r.console
    assert r.exit_status == 4


def test_module_loading_failures_are_clear_fatal_stops(tmp_path: Path, blobs: Path) -> None:
    """The init's module step: a listed module that is absent, or one that cannot be loaded
    (this kernel has CONFIG_MODULES off: finit_module -> ENOSYS), stops the VM with one line."""
    missing = boot(tmp_path / "a", blobs, ["sh", "-c", "echo RAN"],
                   bootstrap_extra={"modules_load_order": b"# comment\n\nabsent.ko\n"})  # fmt: skip
    assert "eifbuild-init: fatal: module absent.ko listed in /modules_load_order is missing" in (
        missing.console
    ), missing.console[-3000:]
    broken = boot(tmp_path / "b", blobs, ["sh", "-c", "echo RAN"],
                  bootstrap_extra={"nsm.ko": b"not a module"})  # fmt: skip
    assert "eifbuild-init: fatal: load module /nsm.ko: Function not implemented" in (
        broken.console
    ), broken.console[-3000:]
    for r in (missing, broken):
        assert "RAN" not in r.console and "Kernel panic" not in r.console
        assert not r.timed_out and r.qemu_returncode == 0 and not r.passed


def test_kernel_panic_ends_the_boot_early(tmp_path: Path, blobs: Path) -> None:
    """No /init: the kernel panics; boot-test reports it without waiting for panic=30."""
    initrd = customer_cpio(tmp_path, ["sh"], None)
    cmdline = (blobs / "cmdline").read_text().strip()
    assert "panic=30" in cmdline
    r = run_qemu(blobs / "bzImage", initrd, cmdline, BootOptions(timeout=TIMEOUT))
    assert r.kernel_panic is not None and "No working init found" in r.kernel_panic
    assert not r.timed_out and not r.passed and r.exit_status is None
    assert r.duration_s < 29  # did not sit out the 30 s reboot delay


def test_unknown_program_exits_127(tmp_path: Path, blobs: Path) -> None:
    r = boot(tmp_path, blobs, ["/no/such/program"])
    assert "cannot run /no/such/program" in r.console
    assert r.exit_status == 127


def test_timeout_kills_qemu(tmp_path: Path, blobs: Path) -> None:
    r = boot(tmp_path, blobs, ["sh", "-c", "echo SLEEPING; sleep 600"], timeout=25)
    assert r.timed_out and not r.passed and r.qemu_returncode is None
    assert r.duration_s < 40


def test_missing_qemu_names_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(BootTestError, match="install the Debian package qemu-system-x86"):
        run_qemu(
            tmp_path / "k", tmp_path / "i", "", BootOptions(qemu="qemu-system-x86_64-not-here")
        )


def test_verdict_uses_the_init_s_last_status_line() -> None:
    from eifbuild.boottest import _verdict

    console = (
        b"eifbuild-init: command exited with status 0\r\n"  # printed by the command: forged
        b"MARK\r\neifbuild-init: command exited with status 9\r\n[ 1.0] reboot: Restarting\r\n"
    )
    opts = BootOptions(expect="MARK", expect_status=9)
    r = _verdict(console, opts, timed_out=False, returncode=0, duration=1.0)
    assert r.exit_status == 9 and r.passed and "\r" not in r.console
    r = _verdict(b"no status at all", BootOptions(), timed_out=False, returncode=0, duration=1.0)
    assert r.exit_status is None and not r.passed
    panic = b"[ 0.7] Kernel panic - not syncing: VFS: no root\r\n" + console
    r = _verdict(panic, opts, timed_out=False, returncode=0, duration=1.0)
    assert r.kernel_panic == "VFS: no root" and not r.passed


def test_expect_ignores_the_init_quoting_the_command() -> None:
    from eifbuild.boottest import _verdict

    console = (
        b"eifbuild-init: cannot run echo MARK: No such file or directory\r\n"
        b"eifbuild-init: command exited with status 127\r\n"
    )
    r = _verdict(console, BootOptions(expect="MARK"), timed_out=False, returncode=0, duration=1.0)
    assert r.expect_found is False and not r.passed and r.cannot_run
    ok = b"MARK\r\neifbuild-init: command exited with status 3\r\n"
    r = _verdict(ok, BootOptions(expect="MARK"), timed_out=False, returncode=0, duration=1.0)
    assert r.expect_found and r.passed and not r.cannot_run


def test_a_command_the_init_cannot_run_fails_unless_expected() -> None:
    from eifbuild.boottest import _verdict

    console = (
        b"eifbuild-init: cannot run /app: Permission denied\r\n"
        b"eifbuild-init: command exited with status 126\r\n"
    )
    r = _verdict(console, BootOptions(), timed_out=False, returncode=0, duration=1.0)
    assert r.exit_status == 126 and r.cannot_run and not r.passed
    r = _verdict(console, BootOptions(expect_status=126), timed_out=False, returncode=0, duration=1)
    assert r.passed


def test_bad_limits_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--timeout 0 must be positive"):
        run_qemu(tmp_path / "k", tmp_path / "i", "", BootOptions(timeout=0))
    with pytest.raises(UsageError, match="--memory 1 MiB"):
        run_qemu(tmp_path / "k", tmp_path / "i", "", BootOptions(memory_mib=1))


def test_boot_test_refuses_a_non_eif(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require("qemu", shutil.which("qemu-system-x86_64") is not None, "Debian qemu-system-x86")
    bad = tmp_path / "x.eif"
    bad.write_bytes(b"not an eif at all" * 10)
    assert main(["boot-test", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"eifbuild: error: cannot boot {bad}") and err.count("\n") == 1
    assert main(["boot-test", str(tmp_path / "missing.eif")]) == 1
    assert "no such EIF file" in capsys.readouterr().err


# ------------------------------------------------------------------------ whole EIFs


def test_assembled_eif_boots_via_cli(
    tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kernel + bootstrap cpio + customer cpio -> `eifbuild assemble` -> `eifbuild boot-test`."""
    boot_rd = bootstrap_cpio(tmp_path, blobs / "init")
    cust_rd = customer_cpio(tmp_path, ["/bin/sh", "-c", "echo ASSEMBLED-OK; exit 3"], ["A=1"])
    eif = tmp_path / "t.eif"
    cmdline = (blobs / "cmdline").read_text().strip()
    rc = main(["assemble", "--kernel", str(blobs / "bzImage"), "--cmdline", cmdline,
               "--ramdisk", str(boot_rd), "--ramdisk", str(cust_rd), "--output", str(eif)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    args = ["boot-test", str(eif), "--expect", "ASSEMBLED-OK", "--expect-status", "3", "--json"]
    assert main([*args, "--timeout", str(TIMEOUT)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] and doc["exit_status"] == 3 and doc["expect_found"]
    assert "ASSEMBLED-OK" in doc["console"]
    assert main(["boot-test", str(eif), "--expect-status", "4", "--timeout", str(TIMEOUT)]) == 1
    out = capsys.readouterr()
    assert "ASSEMBLED-OK" in out.out  # console on stdout
    assert "command exited with status 3; FAILED" in out.err


@pytest.mark.docker
def test_eif_built_from_a_generated_image_boots(
    tmp_path: Path, blobs: Path, docker_host: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CI boot test: `eifbuild build` (default blobs = this kernel) of a docker image."""
    from tests.helpers.imagegen import (
        base_layer,
        docker_import,
        docker_rmi,
        docker_save,
        write_layer,
    )

    layer = write_layer(tmp_path / "base.tar", base_layer())
    tag = "eifbuild-test/boot:1"
    changes = ["ENV GREETING=hello", 'CMD ["/bin/sh", "-c", "echo BOOT-MARK-$GREETING; exit 42"]']
    docker_import(layer, tag, changes=changes)
    try:
        archive = docker_save(tag, tmp_path / "img.tar")
    finally:
        docker_rmi(tag)
    eif = tmp_path / "img.eif"
    assert main(["build", f"docker-archive:{archive}", "--output", str(eif)]) == 0, (
        capsys.readouterr().err
    )
    capsys.readouterr()
    result = boot_test(
        eif, BootOptions(timeout=TIMEOUT, expect="BOOT-MARK-hello", expect_status=42)
    )
    assert result.expect_found, result.console[-3000:]
    assert result.exit_status == 42 and result.passed


def test_default_memory_follows_the_eif_size_and_too_little_is_named(
    tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An EIF too big for 512 MiB: boot-test sizes the guest as nitro-cli run-enclave
    requires (4 x the EIF); with less, the verdict says the memory is too small (not that
    the image is broken), and build --json reports the minimum."""
    from eifbuild.boottest import enclave_memory_mib
    from tests.helpers.imagegen import E, base_layer, simple_oci

    big = E.file("opt/big.bin", bytes(range(256)) * (150 << 12), mode=0o644)  # 150 MiB
    ref = simple_oci(
        tmp_path / "oci",
        [*base_layer(), big],
        config={"Cmd": ["/bin/sh", "-c", "echo BIG-$(wc -c < /opt/big.bin); exit 7"]},
    )
    eif = tmp_path / "big.eif"
    assert main(["build", ref, "--output", str(eif), "--json"]) == 0, capsys.readouterr().err
    record = json.loads(capsys.readouterr().out)
    needed = enclave_memory_mib(eif.stat().st_size)
    assert needed == 4 * -(-eif.stat().st_size // (1 << 20)) and needed > 512
    assert record["eif"]["min_memory_mib"] == needed

    slow = str(3 * TIMEOUT)  # 150 MiB of initramfs to unpack under TCG
    rc = main(["boot-test", str(eif), "--memory", "256", "--timeout", slow, "--json"])
    small = json.loads(capsys.readouterr().out)
    assert rc == 1 and not small["passed"], small["console"][-2000:]
    assert small["memory_needed_mib"] == needed and small["initramfs_error"]
    rc = main(["boot-test", str(eif), "--memory", "256", "--timeout", slow])
    err = capsys.readouterr().err
    assert rc == 1 and f"memory too small for this EIF ({needed} MiB needed" in err, err

    result = boot_test(eif, BootOptions(timeout=3 * TIMEOUT, expect=f"BIG-{150 << 20}"))
    assert result.memory_mib == needed and result.initramfs_error is None
    assert result.exit_status == 7 and result.expect_found, result.console[-3000:]


def test_real_debian_image_boots_with_default_memory(
    tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real Debian bookworm rootfs with python3 (mmdebstrap, ~200 MB, ~10k entries) boots
    with boot-test's defaults and runs Python: 512 MiB would have cut its initramfs."""
    from eifbuild.boottest import enclave_memory_mib
    from tests.debimage import debian_oci

    require("mmdebstrap", shutil.which("mmdebstrap") is not None, "Debian mmdebstrap")
    cmd = ["/usr/bin/python3", "-c", "import sys; print('PY-OK', 6 * 7, sys.version_info[0])"]
    ref = debian_oci(tmp_path / "oci", cmd)
    eif = tmp_path / "debian.eif"
    assert main(["build", ref, "--output", str(eif), "--json"]) == 0, capsys.readouterr().err
    record = json.loads(capsys.readouterr().out)
    needed = enclave_memory_mib(eif.stat().st_size)
    assert record["eif"]["min_memory_mib"] == needed and needed > 512
    result = boot_test(eif, BootOptions(timeout=4 * TIMEOUT, expect="PY-OK 42 3"))
    assert result.memory_mib == needed and result.initramfs_error is None
    assert result.exit_status == 0 and result.expect_found and result.passed, result.console[-3000:]
