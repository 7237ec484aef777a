"""The public Python API of eifbuild: what the CLI does, as functions.

Every function takes plain values (paths, strings, bytes, numbers) and returns a frozen
dataclass; problems the command line prints as ``eifbuild: warning: ...`` are in the result's
``warnings`` tuple instead. Failures raise :class:`eifbuild.errors.EifbuildError` (one-line
message; ``exit_code`` is what the CLI would exit with). Nothing here prints, reads argv or
shows progress bars: pass ``progress=callback`` (called with a byte count) to follow long work.

>>> import eifbuild
>>> result = eifbuild.build("oci:./layout:app", "app.eif")        # doctest: +SKIP
>>> result.measurements.pcr0                                      # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eifbuild.errors import UsageError
from eifbuild.limits import Limits
from eifbuild.measure import Measurements
from eifbuild.types import Arch, Progress, Signer

__all__ = [
    "AssembleResult",
    "BuildResult",
    "DescribeResult",
    "DiffResult",
    "ExtractResult",
    "MeasureResult",
    "SignResult",
    "VerifyResult",
    "assemble",
    "boot_test",
    "build",
    "describe",
    "diff",
    "extract",
    "measure",
    "policy",
    "sign",
    "signer",
    "verify",
]

if TYPE_CHECKING:
    from eifbuild.boottest import BootResult
    from eifbuild.policy import PolicyResult

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class BuildResult:
    """An EIF written by :func:`build`: where, its PCRs, and the ``build --json`` record."""

    path: Path
    measurements: Measurements
    size: int
    crc32: int
    arch: Arch
    record: Mapping[str, Any]  # the document `eifbuild build --json` prints
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class AssembleResult:
    """An EIF written by :func:`assemble` from a kernel, a cmdline and ramdisks."""

    path: Path
    measurements: Measurements
    size: int
    crc32: int
    arch: Arch
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class DescribeResult:
    """The ``nitro-cli describe-eif`` document (``eifbuild describe`` prints ``document``)."""

    document: Mapping[str, Any]
    warnings: tuple[str, ...] = ()

    @property
    def measurements(self) -> Mapping[str, str]:
        m: Mapping[str, str] = self.document["Measurements"]
        return m


@dataclass(frozen=True)
class MeasureResult:
    """PCRs recomputed from an EIF's sections, and the payload detached signing signs."""

    measurements: Measurements
    crc_ok: bool
    payload: bytes  # CBOR PcrInfo{0, PCR0}: what `eifbuild sign-payload` signs
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExtractResult:
    """One record per written file: ``{"Index", "Type", "File", "Size"}``."""

    directory: Path
    files: tuple[Mapping[str, Any], ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class VerifyResult:
    """Every check :func:`verify` ran; ``ok`` only when all of them hold."""

    ok: bool
    checks: tuple[Check, ...]
    measurements: Mapping[str, str]
    document: Mapping[str, Any]  # the document `eifbuild verify --json` prints
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class SignResult:
    """A signed EIF (PCR0/1/2 unchanged, PCR8 from the certificate)."""

    path: Path
    measurements: Measurements
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class DiffResult:
    """The ``eifbuild-diff/1`` document (or ``eifbuild-rootfs-diff/1`` for two listings)."""

    document: Mapping[str, Any]
    differs: bool  # a PCR differs (listings: an entry differs)
    warnings: tuple[str, ...] = ()


def signer(
    certificate: PathLike,
    private_key: str,
    *,
    allow_expired: bool = False,
    kms_region: str | None = None,
    kms_endpoint: str | None = None,
    kms_message_type: str = "digest",
) -> Signer:
    """A signer for :func:`build`, :func:`assemble` and :func:`sign`.

    ``private_key`` is a PEM EC key file or an AWS KMS key (ARN, alias ARN, ``alias/NAME``, key
    ID). The key, the certificate (same public key, inside its validity window unless
    ``allow_expired``) and KMS access are all checked now, before anything is written.
    """
    from eifbuild.sign import EifSigner, open_key
    from eifbuild.sign.keys import read_pem_file

    cert_pem = read_pem_file(certificate, "signing certificate")
    backend = open_key(
        private_key,
        kms_region=kms_region,
        kms_endpoint=kms_endpoint,
        kms_message_type=kms_message_type,
    )
    return EifSigner.create(
        cert_pem,
        backend,
        cert_name=f"signing certificate {os.fspath(certificate)}",
        allow_expired=allow_expired,
    )


def build(
    image: str,
    output: PathLike,
    *,
    arch: str | None = None,
    blobs: PathLike | None = None,
    kernel: PathLike | None = None,
    kernel_config: PathLike | None = None,
    cmdline: str | None = None,
    init: PathLike | None = None,
    nsm: PathLike | None = None,
    name: str | None = None,
    version: str | None = None,
    metadata: PathLike | None = None,
    clamp_mtime: int | None = None,
    entrypoint_mode: str = "nitro",
    docker_dir: PathLike | None = None,
    signer: Signer | None = None,
    limits: Limits | None = None,
) -> BuildResult:
    """Build an EIF from a container image, as ``eifbuild build`` (PCRs as nitro-cli's).

    ``image`` is a reference with a transport (``oci:DIR[:REF]``, ``oci-archive:``,
    ``docker-archive:``, ``docker-daemon:`` or a bare name, ``docker://``). Boot inputs come
    from ``blobs`` (a nitro-cli blobs directory), else ``$NITRO_CLI_BLOBS``, else eifbuild's own
    kernel and init; ``kernel``/``cmdline``/``init``/``nsm`` override single files.
    """
    from eifbuild.pipeline import BuildRequest
    from eifbuild.pipeline import build as run_build

    def opt(p: PathLike | None) -> str | None:
        return None if p is None else os.fspath(p)

    req = BuildRequest(
        image=image,
        output=Path(output),
        arch=Arch.parse(arch).oci if arch is not None else None,
        docker_dir=opt(docker_dir),
        blobs_dir=opt(blobs),
        kernel=opt(kernel),
        kernel_config=opt(kernel_config),
        cmdline=cmdline,
        init=opt(init),
        nsm=opt(nsm),
        name=name,
        version=version,
        metadata=opt(metadata),
        clamp_mtime=clamp_mtime,
        signer=signer,
        limits=limits,
        entrypoint_mode=entrypoint_mode,
    )
    report = run_build(req)
    r = report.result
    return BuildResult(
        r.path, r.measurements, r.size, r.crc32, r.arch, report.record, tuple(report.warnings)
    )


def assemble(
    output: PathLike,
    *,
    kernel: PathLike,
    cmdline: str,
    ramdisks: Sequence[PathLike],
    arch: str = "x86_64",
    name: str | None = None,
    version: str | None = None,
    metadata: PathLike | None = None,
    build_time: str | None = None,
    kernel_config: PathLike | None = None,
    signer: Signer | None = None,
    progress: Progress | None = None,
) -> AssembleResult:
    """Write an EIF v4 from a kernel, a cmdline (stored verbatim) and ramdisks, as
    ``eifbuild assemble`` (byte-compatible with AWS's ``eif_build``)."""
    from eifbuild.eif.writer import write_eif
    from eifbuild.pipeline import assemble_metadata

    meta = assemble_metadata(
        kernel,
        name=name,
        image_version=version,
        build_time=build_time,
        kernel_config=kernel_config,
        metadata=metadata,
    )
    try:
        the_arch = Arch.parse(arch)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    r = write_eif(
        output,
        kernel=os.fspath(kernel),
        cmdline=cmdline,
        metadata=meta,
        ramdisks=[os.fspath(p) for p in ramdisks],
        arch=the_arch,
        signer=signer,
        progress=progress,
    )
    return AssembleResult(r.path, r.measurements, r.size, r.crc32, r.arch)


def describe(
    eif: PathLike, *, sections: bool = False, progress: Progress | None = None
) -> DescribeResult:
    """What ``nitro-cli describe-eif`` prints (same keys and order), from one streaming pass."""
    from eifbuild.describe import describe_document
    from eifbuild.eif.reader import EifReader

    with EifReader(eif) as reader:
        doc, warnings = describe_document(reader, sections, progress=progress)
    return DescribeResult(doc, tuple(warnings))


def measure(eif: PathLike, *, progress: Progress | None = None) -> MeasureResult:
    """Recompute an EIF's PCRs (and PCR8 if signed) and the detached-signing payload."""
    from eifbuild.eif.reader import EifReader
    from eifbuild.sign.cose import pcr_info

    with EifReader(eif) as reader:
        warnings = tuple(reader.warnings)
        scan = reader.scan(progress=progress)
    return MeasureResult(scan.measurements, scan.crc_ok, pcr_info(scan.pcr0_raw, 0), warnings)


def extract(
    eif: PathLike, directory: PathLike, *, force: bool = False, progress: Progress | None = None
) -> ExtractResult:
    """Write each section of ``eif`` to its own file in ``directory`` (created if missing)."""
    from eifbuild.eif.reader import EifReader
    from eifbuild.extract import extract_sections

    outdir = Path(directory)
    with EifReader(eif) as reader:
        warnings = tuple(reader.warnings)
        records = extract_sections(reader, outdir, force, progress=progress)
    return ExtractResult(outdir, tuple(records), warnings)


def verify(
    eif: PathLike,
    *,
    certificate: PathLike | None = None,
    expect: Mapping[int, str] | None = None,
    require_signature: bool = False,
    allow_expired: bool = False,
    progress: Progress | None = None,
) -> VerifyResult:
    """Check structure, CRC, signature (over the recomputed PCR0), certificate and expected
    PCRs (``{index: 96 hex digits}``). A bad EIF is reported in the result, not raised."""
    from eifbuild.sign.keys import read_pem_file
    from eifbuild.verify import verify_eif

    pinned = read_pem_file(certificate, "certificate") if certificate is not None else None
    report = verify_eif(
        eif,
        certificate=pinned,
        expect={int(k): v.lower() for k, v in (expect or {}).items()},
        require_signature=require_signature,
        allow_expired=allow_expired,
        progress=progress,
    )
    return VerifyResult(
        ok=report.ok,
        checks=tuple(Check(c.name, c.ok, c.detail) for c in report.checks),
        measurements=dict(report.measurements),
        document=report.as_json(),
        warnings=tuple(report.warnings),
    )


def sign(
    eif: PathLike,
    signer: Signer,
    *,
    output: PathLike | None = None,
    progress: Progress | None = None,
) -> SignResult:
    """Sign ``eif`` (or replace its signature), atomically, into ``output`` or over itself.

    Make ``signer`` with :func:`signer`."""
    from eifbuild.eif.reader import EifReader
    from eifbuild.sign.rewrite import rewrite_signed

    with EifReader(eif) as reader:
        warnings = tuple(reader.warnings)
    out = Path(output if output is not None else eif)
    result, _ = rewrite_signed(eif, out, signer, progress=progress)
    return SignResult(out, result.measurements, warnings)


def diff(
    a: PathLike, b: PathLike, *, progress: Progress | None = None, max_entries: int | None = None
) -> DiffResult:
    """Why two EIFs' PCRs differ (``eifbuild-diff/1``), or two ``eifbuild rootfs`` listings."""
    from eifbuild.diff import diff_eifs, diff_listings, input_kind
    from eifbuild.limits import DEFAULT_LIMITS

    limit = DEFAULT_LIMITS.max_diff_entries if max_entries is None else max_entries
    pa, pb = os.fspath(a), os.fspath(b)
    kinds = {input_kind(p) for p in (pa, pb)}
    if "listing" in kinds:
        if "eif" in kinds:
            raise UsageError(f"{pa}, {pb}: compare two EIFs or two rootfs listings")
        d = diff_listings(pa, pb, limit)
        return DiffResult(d, bool(d["added"] or d["removed"] or d["changed"]))
    d = diff_eifs(pa, pb, progress=progress, max_entries=limit)
    return DiffResult(d, bool(d["pcrs_differ"]))


def policy(
    inputs: Iterable[PathLike],
    *,
    account_id: str,
    role_arn: str,
    pcrs: Iterable[int] | None = None,
    actions: Sequence[str] | None = None,
    template: PathLike | None = None,
    fmt: str = "json",
    progress: Progress | None = None,
) -> PolicyResult:
    """An AWS KMS key policy pinning the PCRs of EIFs or measurements JSON files.

    Returns :class:`eifbuild.policy.PolicyResult` (``text``, ``warnings``, ...)."""
    from eifbuild.policy import build_policy, load_measurements

    measured = [load_measurements(p, progress=progress) for p in inputs]
    return build_policy(
        measured,
        account_id=account_id,
        role_arn=role_arn,
        pcrs=pcrs,
        actions=actions,
        template=template,
        fmt=fmt,
    )


def boot_test(
    eif: PathLike,
    *,
    timeout: float | None = None,
    expect: str | None = None,
    expect_status: int | None = None,
    memory_mib: int | None = None,
    qemu: str | None = None,
    on_output: Callable[[bytes], None] | None = None,
) -> BootResult:
    """Boot ``eif`` under QEMU (TCG) and return :class:`eifbuild.boottest.BootResult`."""
    from eifbuild.boottest import BootOptions
    from eifbuild.boottest import boot_test as run_boot_test

    options = BootOptions(expect=expect, expect_status=expect_status, qemu=qemu)
    if timeout is not None:
        options = dataclasses.replace(options, timeout=timeout)
    if memory_mib is not None:
        options = dataclasses.replace(options, memory_mib=memory_mib)
    if on_output is not None:
        options = dataclasses.replace(options, on_output=on_output)
    return run_boot_test(eif, options)
