"""Boot an EIF under QEMU (TCG) and report what its init printed.

The EIF's kernel, cmdline and ramdisks are extracted (streamed to a private temp directory;
the ramdisks concatenated into one ``-initrd``, which is what the Nitro loader does) and
booted with the EIF's own measured cmdline under ``qemu-system-x86_64 -machine q35`` (x86_64
EIFs) or ``qemu-system-aarch64 -machine virt`` (aarch64 EIFs, header flag 1), both with
``-accel tcg -cpu max``. The serial console is captured. With ``-no-reboot``, the init's final
``reboot(RB_AUTOBOOT)`` ends QEMU.

QEMU's ``virt`` board has only a PL011 UART (``ttyAMA0``), while nitro-cli's aarch64 cmdline
names ``console=ttyS0`` (the 8250 UART Nitro provides), so boot-test appends
``console=ttyAMA0`` to the cmdline it passes to QEMU for aarch64; the EIF is not changed.

What this proves: the kernel boots, both ramdisks unpack, the init switches to ``/rootfs``,
and the command runs with its ``/env``. What it cannot prove: the vsock heartbeat, NSM
attestation, or that the kernel boots on real Nitro hardware (see kernels/README.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eifbuild._atomic import make_temp_dir
from eifbuild.eif.format import SectionType
from eifbuild.eif.reader import EifReader
from eifbuild.elfcheck import check_kernel
from eifbuild.errors import BootTestError, EifbuildError, UsageError
from eifbuild.limits import DEFAULT_LIMITS

# Per EIF architecture: QEMU binary, Debian package, machine options, console to add.
QEMU_BY_ARCH: dict[str, tuple[str, str]] = {
    "x86_64": ("qemu-system-x86_64", "qemu-system-x86"),
    "aarch64": ("qemu-system-aarch64", "qemu-system-arm"),
}
_MACHINE = {"x86_64": "q35", "aarch64": "virt"}
_EXTRA_CMDLINE = {"x86_64": "", "aarch64": " console=ttyAMA0"}
QEMU, QEMU_PACKAGE = QEMU_BY_ARCH["x86_64"]
DEFAULT_TIMEOUT = 120.0
DEFAULT_MEMORY_MIB = 512  # the floor of the default (nitro-cli's examples use 512)
# nitro-cli run-enclave refuses less than 4 x the EIF file size (rounded up to whole MiB):
# "At least N MB must be allocated (which is 4 times the EIF file size)"; see
# docs/spec/eif.md. boot-test uses the same rule for its default guest memory.
EIF_MEMORY_RATIO = 4
MIB = 1 << 20

# Lines eifbuild's init prints (kernels/init/init.c, report_status()).
_EXIT_RE = re.compile(rb"eifbuild-init: command exited with status (\d+)")
_SIGNAL_RE = re.compile(rb"eifbuild-init: command killed by signal (\d+)")
_INIT_MSG_RE = re.compile(r"eifbuild-init: [^\n]*")
_CANNOT_RUN_RE = re.compile(rb"eifbuild-init: cannot run ")  # exec failed: status 126/127
# The kernel could not unpack the whole initramfs (init/initramfs.c: out of memory gives
# "write error"), or QEMU's loader refused it: the image was cut, not broken.
_INITRAMFS_FAIL_RE = re.compile(
    rb"Initramfs unpacking failed: ([^\r\n]*)|(initrd is too large)|(not enough memory)"
)
# A kernel panic: with nitro-cli's panic=30 the VM would idle 30 s before rebooting.
_PANIC_RE = re.compile(rb"Kernel panic - not syncing: ([^\r\n]*)")
_PANIC_DONE = (b"Rebooting in ", b"---[ end Kernel panic")  # printed after the panic report


def _panic_finished(buf: bytearray, new: int) -> bool:
    """True once the kernel has printed its whole panic report (checks only the new bytes)."""
    tail = bytes(buf[-(new + 32) :])
    return any(m in tail for m in _PANIC_DONE) and _PANIC_RE.search(buf) is not None


OnOutput = Callable[[bytes], None]


def enclave_memory_mib(eif_size: int) -> int:
    """The least memory (MiB) nitro-cli run-enclave accepts for an EIF of ``eif_size`` bytes:
    4 x its size rounded up to whole MiB."""
    return EIF_MEMORY_RATIO * -(-eif_size // MIB)


def default_memory_mib(eif_size: int) -> int:
    """boot-test's default guest memory: nitro-cli's minimum, and at least 512 MiB."""
    return max(DEFAULT_MEMORY_MIB, enclave_memory_mib(eif_size))


@dataclass(frozen=True)
class BootOptions:
    """How to boot and what to expect: the options of ``eifbuild boot-test``."""

    timeout: float = DEFAULT_TIMEOUT
    expect: str | None = None
    expect_status: int | None = None
    memory_mib: int | None = None  # None: default_memory_mib(EIF size)
    qemu: str | None = None  # default: by the EIF's architecture (QEMU_BY_ARCH)
    on_output: OnOutput | None = None  # called with console bytes as they arrive

    def check(self) -> None:
        if self.timeout <= 0:
            raise UsageError(f"--timeout {self.timeout:g} must be positive")
        if self.memory_mib is not None and not 64 <= self.memory_mib <= 1 << 20:
            raise UsageError(f"--memory {self.memory_mib} MiB is outside 64..1048576")


@dataclass
class BootResult:
    """Outcome of one QEMU boot; ``passed`` is the verdict."""

    console: str
    exit_status: int | None
    signal: int | None
    expect: str | None
    expect_found: bool | None
    expect_status: int | None
    timed_out: bool
    kernel_panic: str | None
    qemu_returncode: int | None
    duration_s: float
    passed: bool
    cannot_run: bool = False  # the init could not execute the command
    memory_mib: int | None = None  # guest memory used
    initramfs_error: str | None = None  # the kernel (or QEMU) could not load all ramdisks
    memory_needed_mib: int | None = None  # set when the memory was too small for the EIF

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _check_arch(arch: str) -> None:
    if arch not in QEMU_BY_ARCH:
        raise BootTestError(f"boot-test: unsupported architecture {arch!r}")


def qemu_binary(qemu: str | None = None, arch: str = "x86_64") -> str:
    """Path of the QEMU binary for ``arch``, or a one-line error naming the Debian package."""
    _check_arch(arch)
    default, package = QEMU_BY_ARCH[arch]
    name = qemu or default
    found = shutil.which(name)
    if found is None:
        raise BootTestError(
            f"{name} not found: install the Debian package {package} "
            f"(apt-get install --no-install-recommends {package})"
        )
    return found


def qemu_command(
    qemu: str,
    kernel: Path,
    initrd: Path,
    cmdline: str,
    memory_mib: int = DEFAULT_MEMORY_MIB,
    arch: str = "x86_64",
) -> list[str]:
    """The QEMU command line that boots ``kernel`` + ``initrd`` for an ``arch`` EIF."""
    _check_arch(arch)
    return [
        qemu,
        "-machine", _MACHINE[arch], "-accel", "tcg", "-cpu", "max", "-smp", "1",
        "-m", str(memory_mib),
        "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline + _EXTRA_CMDLINE[arch],
        "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-monitor", "none",
    ]  # fmt: skip


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _capture(
    proc: subprocess.Popen[bytes], timeout: float, on_output: OnOutput | None
) -> tuple[bytes, bool]:
    """Read the console until QEMU exits, the kernel panics or ``timeout`` seconds pass.

    Returns (console, timed out); the console is bounded in memory (the tail is kept).
    """
    assert proc.stdout is not None
    buf = bytearray()
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return bytes(buf), True
            if not sel.select(timeout=min(left, 1.0)):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                return bytes(buf), False
            if on_output is not None:
                on_output(chunk)
            buf += chunk
            if _panic_finished(buf, len(chunk)):
                return bytes(buf), False  # the caller kills QEMU; no need to wait panic=N s
            if len(buf) > DEFAULT_LIMITS.max_console_bytes:
                del buf[: len(buf) - DEFAULT_LIMITS.max_console_bytes]


def _verdict(
    console: bytes, opts: BootOptions, *, timed_out: bool, returncode: int | None, duration: float
) -> BootResult:
    expect, expect_status = opts.expect, opts.expect_status
    m_exit = _EXIT_RE.findall(console)
    m_sig = _SIGNAL_RE.findall(console)
    status = int(m_exit[-1]) if m_exit else None
    sig = int(m_sig[-1]) if m_sig else None
    m_panic = _PANIC_RE.findall(console)
    panic = m_panic[-1].decode("utf-8", "replace").strip() if m_panic else None
    text = console.replace(b"\r\n", b"\n").decode("utf-8", "replace")
    # --expect looks at what the command printed, not at the init's own messages: the init
    # quotes the command ("eifbuild-init: cannot run echo MARK: ...") and would match it.
    found = None if expect is None else expect in _INIT_MSG_RE.sub("", text)
    # A command the init cannot execute fails unless --expect-status asks for its 126/127.
    cannot_run = _CANNOT_RUN_RE.search(console) is not None
    m_initrd = _INITRAMFS_FAIL_RE.search(console)
    initramfs_error = None
    if m_initrd is not None:
        initramfs_error = next(g for g in m_initrd.groups() if g).decode("utf-8", "replace")
    passed = (
        initramfs_error is None
        and not timed_out
        and panic is None
        and returncode == 0
        and (status is not None or sig is not None)
        and found is not False
        and (expect_status is None or status == expect_status)
        and (not cannot_run or expect_status is not None)
    )
    return BootResult(
        console=text,
        exit_status=status,
        signal=sig,
        expect=expect,
        expect_found=found,
        expect_status=expect_status,
        timed_out=timed_out,
        kernel_panic=panic,
        qemu_returncode=returncode,
        duration_s=round(duration, 3),
        passed=passed,
        cannot_run=cannot_run,
        memory_mib=opts.memory_mib,
        initramfs_error=initramfs_error,
    )


def run_qemu(
    kernel: Path,
    initrd: Path,
    cmdline: str,
    options: BootOptions | None = None,
    arch: str = "x86_64",
) -> BootResult:
    """Boot ``kernel`` + ``initrd`` with ``cmdline``; never waits longer than the timeout."""
    opts = options or BootOptions()
    opts.check()
    binary = qemu_binary(opts.qemu, arch)
    check_kernel(kernel, arch)
    if opts.memory_mib is None:
        size = kernel.stat().st_size + initrd.stat().st_size
        opts = dataclasses.replace(opts, memory_mib=default_memory_mib(size))
    assert opts.memory_mib is not None
    cmd = qemu_command(binary, kernel, initrd, cmdline, opts.memory_mib, arch)
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so a timeout kills all of it
    )
    try:
        console, timed_out = _capture(proc, opts.timeout, opts.on_output)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
        if proc.stdout is not None:
            proc.stdout.close()
    duration = time.monotonic() - start
    rc = None if timed_out else proc.returncode
    return _verdict(console, opts, timed_out=timed_out, returncode=rc, duration=duration)


def _write_stream(path: Path, chunks: Iterable[bytes]) -> int:
    n = 0
    with path.open("ab") as fh:
        for chunk in chunks:
            fh.write(chunk)
            n += len(chunk)
    return n


@dataclass(frozen=True)
class BootFiles:
    """What :func:`extract_boot_files` took out of an EIF."""

    kernel: Path
    initrd: Path
    cmdline: str
    arch: str


def eif_arch(eif: Path) -> str:
    """``x86_64`` or ``aarch64``, from the EIF header's flags (docs/spec/eif.md §11)."""
    with EifReader(eif) as reader:
        arch = str(reader.arch.value)
    if arch not in QEMU_BY_ARCH:
        raise BootTestError(f"{eif} is an {arch} EIF; boot-test runs x86_64 and aarch64")
    return arch


def extract_boot_files(eif: Path, workdir: Path) -> BootFiles:
    """Stream the kernel and the concatenated ramdisks of ``eif`` into ``workdir``."""
    kernel, initrd = workdir / "kernel", workdir / "initrd"
    with EifReader(eif) as reader:
        arch = str(reader.arch.value)
        cmdline = reader.cmdline()
        ramdisks = 0
        for section in reader.sections:
            if section.type is SectionType.KERNEL:
                _write_stream(kernel, reader.iter_data(section))
            elif section.type is SectionType.RAMDISK:
                _write_stream(initrd, reader.iter_data(section))
                ramdisks += 1
    if not kernel.exists() or ramdisks == 0:
        raise BootTestError(f"{eif} has no kernel or no ramdisk section: nothing to boot")
    text = cmdline.rstrip(b"\0").decode("utf-8", "replace")
    return BootFiles(kernel, initrd, text, arch)


@dataclass
class _TempDir:
    path: Path

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _tempdir() -> _TempDir:
    return _TempDir(Path(make_temp_dir("boot")))


def boot_test(eif: str | os.PathLike[str], options: BootOptions | None = None) -> BootResult:
    """Boot ``eif`` under QEMU for its architecture and return the verdict."""
    path = Path(eif)
    if not path.is_file():
        raise BootTestError(f"{path}: no such EIF file")
    opts = options or BootOptions()
    needed = enclave_memory_mib(path.stat().st_size)
    if opts.memory_mib is None:  # as nitro-cli run-enclave requires for this EIF
        opts = dataclasses.replace(opts, memory_mib=default_memory_mib(path.stat().st_size))
    with _tempdir() as work:
        try:
            qemu_binary(opts.qemu, eif_arch(path))  # fail early, before extracting anything
            files = extract_boot_files(path, work)
        except BootTestError:
            raise
        except EifbuildError as exc:
            raise BootTestError(f"cannot boot {path}: {exc}") from None
        result = run_qemu(files.kernel, files.initrd, files.cmdline, opts, files.arch)
    if result.initramfs_error is not None and (opts.memory_mib or 0) < needed:
        result.memory_needed_mib = needed  # the ramdisks did not fit: not the image's fault
    return result
