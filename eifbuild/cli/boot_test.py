"""``eifbuild boot-test EIF``: boot an EIF under QEMU (TCG) and check its console."""

from __future__ import annotations

import argparse
import sys

from eifbuild.boottest import (
    DEFAULT_MEMORY_MIB,
    DEFAULT_TIMEOUT,
    EIF_MEMORY_RATIO,
    BootOptions,
    boot_test,
)
from eifbuild.cli._common import print_json

HELP = "boot an EIF under QEMU (TCG, x86_64 or aarch64) and report the command's exit status"
DESCRIPTION = (
    "Extract the kernel, cmdline and ramdisks of EIF and boot them under QEMU with the EIF's "
    "own cmdline: qemu-system-x86_64 -machine q35 for x86_64 EIFs, qemu-system-aarch64 "
    "-machine virt (console=ttyAMA0 appended: virt has no 8250 UART) for aarch64 EIFs. "
    "Prints the serial console, the exit status of the command as eifbuild's init reports it, "
    "and a verdict: exit 0 if the kernel booted, the init reported the command's exit status "
    "(any status unless --expect-status, but a command the init cannot execute fails; an EIF "
    "with another init, such as AWS's, reports none and fails) and --expect matched. Cannot test the vsock heartbeat or NSM (no Nitro "
    "hardware)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("eif", metavar="EIF", help="the enclave image file to boot")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds (default %(default)s)"
    )
    parser.add_argument(
        "--expect",
        metavar="TEXT",
        help="fail unless the console shows TEXT (outside eifbuild-init's own messages)",
    )
    parser.add_argument(
        "--expect-status", type=int, metavar="N", help="fail unless the command exits with N"
    )
    parser.add_argument(
        "--memory",
        type=int,
        default=None,
        metavar="MIB",
        help=f"guest memory in MiB (default: what nitro-cli run-enclave requires for the EIF, "
        f"{EIF_MEMORY_RATIO} x its size rounded up to MiB, at least {DEFAULT_MEMORY_MIB})",
    )
    parser.add_argument(
        "--qemu",
        default=None,
        help="QEMU binary (default: qemu-system-x86_64 or qemu-system-aarch64, by the EIF's arch)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON verdict (with the log)")


def _live(chunk: bytes) -> None:
    sys.stdout.buffer.write(chunk.replace(b"\r\n", b"\n"))
    sys.stdout.buffer.flush()


def run(args: argparse.Namespace) -> int:
    options = BootOptions(
        timeout=args.timeout,
        expect=args.expect,
        expect_status=args.expect_status,
        memory_mib=args.memory,
        qemu=args.qemu,
        on_output=None if args.json else _live,
    )
    result = boot_test(args.eif, options)
    if args.json:
        print_json({"eif": args.eif, **result.to_json()})
        return 0 if result.passed else 1
    if result.memory_needed_mib is not None:
        status = (
            f"memory too small for this EIF ({result.memory_needed_mib} MiB needed, "
            f"{result.memory_mib} MiB given: {result.initramfs_error})"
        )
    elif result.initramfs_error is not None:
        status = f"the ramdisks could not be loaded ({result.initramfs_error})"
    elif result.kernel_panic is not None:
        status = f"kernel panic: {result.kernel_panic}"
    elif result.timed_out:
        status = f"timed out after {args.timeout:g} s"
    elif result.exit_status is not None:
        status = f"command exited with status {result.exit_status}"
    elif result.signal is not None:
        status = f"command killed by signal {result.signal}"
    else:
        status = "no exit status reported by the init"
    print(
        f"boot-test: {status}; {'PASSED' if result.passed else 'FAILED'}"
        f" ({result.duration_s:.1f} s)",
        file=sys.stderr,
    )
    if result.expect is not None and not result.expect_found:
        print(f"boot-test: expected text {result.expect!r} not found", file=sys.stderr)
    if result.cannot_run and result.expect_status is None:
        print(
            "boot-test: the init could not run the command (see 'cannot run' above); "
            "--expect-status 126 or 127 if that is what you test",
            file=sys.stderr,
        )
    return 0 if result.passed else 1
