"""``eifbuild build IMAGE --output OUT.eif``: the nitro-cli ``build-enclave`` equivalent."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

from eifbuild._epoch import source_date_epoch
from eifbuild.cli._bars import set_quiet
from eifbuild.cli._common import (
    add_eif_output,
    add_limit_arguments,
    info,
    limits_from_args,
    print_json,
    warn,
)
from eifbuild.cli._registry import add_registry_arguments, registry_options
from eifbuild.cli._signing import add_signing_arguments
from eifbuild.errors import UsageError
from eifbuild.sources import normalize_arch

HELP = "build an EIF from a container image (PCRs identical to nitro-cli build-enclave)"
DESCRIPTION = """Build an EIF v4 from a container image without Docker or linuxkit.

IMAGE is a reference with a transport: docker-daemon:NAME[:TAG], docker-archive:FILE.tar[:REF],
oci:DIR[:REF], oci-archive:FILE[:REF] (a bare NAME means docker-daemon:NAME), or
docker://REGISTRY/REPO[:TAG][@sha256:…] (a registry, no daemon; the tag is resolved once and
--json names the resolved digest).

Kernel, cmdline, init and nsm.ko come from a nitro-cli style blobs directory: --blobs DIR, else
$NITRO_CLI_BLOBS, else eifbuild's own kernel and init. The kernel file is chosen by the image's
architecture (bzImage for amd64, Image for arm64). They are checked before use: a bzImage or
arm64 Image, a static ELF init for that architecture, and modules whose vermagic names the
kernel's release.

The ramdisks are byte-identical to nitro-cli 1.5's, so PCR0/1/2 match `nitro-cli build-enclave`
for the same image and blobs. Exceptions: an image whose Config.WorkingDir does not exist (nitro-cli
gives it a wall-clock mtime; eifbuild a fixed one) and --clamp-mtime (changes PCR2 on purpose).

--clamp-mtime [EPOCH] clamps every mtime that comes from the image to EPOCH (or
SOURCE_DATE_EPOCH), so rebuilding the same Dockerfile gives the same PCR2. Off by default.

The metadata section is deterministic: BuildTime is SOURCE_DATE_EPOCH, else the image's
`created` converted to UTC in nitro-cli's form (YYYY-MM-DDTHH:MM:SS[.fff]+00:00; an
unparsable `created` is refused), else 1970-01-01; DockerInfo is a fixed subset of the image
config."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", help="image reference with transport")
    add_eif_output(p)
    p.add_argument(
        "--arch",
        choices=("amd64", "x86_64", "arm64", "aarch64"),
        help="platform to select from an index; the image must have it (amd64 = x86_64, arm64 = aarch64)",
    )
    p.add_argument("--docker-dir", metavar="DIR", help="build IMAGE from DIR/Dockerfile first")
    p.add_argument(
        "--entrypoint-mode",
        choices=("nitro", "docker"),
        default="nitro",
        help="the enclave command: nitro = Cmd, else Entrypoint, as nitro-cli (default); "
        "docker = Entrypoint + Cmd, as docker run (PCR2 then differs from nitro-cli's)",
    )
    g = p.add_argument_group("boot inputs")
    g.add_argument("--blobs", metavar="DIR", help="nitro-cli style blobs directory")
    g.add_argument("--kernel", metavar="FILE", help="kernel image (bzImage or Image)")
    g.add_argument("--kernel-config", metavar="FILE", help="kernel .config (metadata only)")
    g.add_argument("--cmdline", metavar="TEXT", help="kernel command line (trimmed)")
    g.add_argument("--init", metavar="FILE", help="init for the bootstrap ramdisk")
    g.add_argument("--nsm", metavar="FILE", help="nsm.ko for the bootstrap ramdisk")
    m = p.add_argument_group("metadata and reproducibility")
    m.add_argument("--name", help="ImageName (default: the reference before ':')")
    m.add_argument("--version", help="ImageVersion (default: the image ID)")
    m.add_argument("--metadata", metavar="FILE", help="custom metadata JSON (<= 4096 bytes)")
    m.add_argument(
        "--clamp-mtime",
        nargs="?",
        const="SOURCE_DATE_EPOCH",
        metavar="EPOCH",
        help="clamp image mtimes to EPOCH (default: SOURCE_DATE_EPOCH); changes PCR2",
    )
    p.add_argument("--json", action="store_true", help="print a full build record as JSON")
    p.add_argument(
        "--tmp-dir",
        metavar="DIR",
        help="directory for temp files (default: $TMPDIR): gzip layers out of export order are "
        "inflated once into an unnamed temp file there (at most their uncompressed size, "
        "bounded by --max-expanded-mib); also zstd layers and a docker-daemon image's archive",
    )
    add_limit_arguments(p)
    add_registry_arguments(p)
    add_signing_arguments(p)


def clamp_value(raw: str | None) -> int | None:
    """--clamp-mtime's value: an explicit epoch, or SOURCE_DATE_EPOCH (which must be set)."""
    if raw is None:
        return None
    if raw == "SOURCE_DATE_EPOCH":
        epoch = source_date_epoch()
        if epoch is None:
            raise UsageError("--clamp-mtime without a value needs SOURCE_DATE_EPOCH to be set")
        return epoch
    if not raw.isdigit():
        raise UsageError(f"--clamp-mtime {raw!r} is not a non-negative integer")
    return int(raw)


def tmp_dir_value(raw: str | None) -> str | None:
    if raw is not None and not os.path.isdir(raw):
        raise UsageError(f"--tmp-dir {raw}: not a directory")
    return raw


def run(args: argparse.Namespace) -> int:
    from eifbuild.cli._signing import make_signer
    from eifbuild.pipeline import BuildRequest, build

    if args.json:
        set_quiet(True)
    req = BuildRequest(
        file_digests=args.json,  # only the --json record shows them: no second read otherwise
        image=args.image,
        output=Path(args.output),
        arch=normalize_arch(args.arch) if args.arch else None,
        docker_dir=args.docker_dir,
        blobs_dir=args.blobs,
        kernel=args.kernel,
        kernel_config=args.kernel_config,
        cmdline=args.cmdline,
        init=args.init,
        nsm=args.nsm,
        name=args.name,
        version=args.version,
        metadata=args.metadata,
        clamp_mtime=clamp_value(args.clamp_mtime),
        signer=make_signer(args),
        limits=limits_from_args(args),
        entrypoint_mode=args.entrypoint_mode,
        registry=registry_options(args),
        tmp_dir=tmp_dir_value(args.tmp_dir),
    )
    report = build(req)
    try:
        for w in report.warnings:
            warn(w)
        if args.json:
            print_json(report.record)
        else:
            info("Enclave Image successfully created.")
            print_json({"Measurements": report.result.measurements.as_nitro()})
    except BaseException:
        # The measurements are the point of a build: if they cannot be printed (stdout full,
        # closed, interrupted), the command failed and leaves no EIF behind.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(req.output)
        raise
    return 0
