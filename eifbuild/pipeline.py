"""Container image -> bootstrap + customer ramdisks -> EIF v4, streaming, deterministic.

Stages (each with a tqdm bar on a TTY, silent otherwise):

1. open the image (any transport of :mod:`eifbuild.sources`) and resolve the blobs;
2. stream the ``docker export`` emulation (:mod:`eifbuild.dockerexport`) through the linuxkit rules
   (:mod:`eifbuild.ramdisk`) straight into the EIF writer, which hashes while writing
   ("reading layers" / "customer ramdisk" bars);
3. hash the boot inputs for the ``--json`` record ("hashing" bar).

Nothing depends on the wall clock: ``BuildTime`` is SOURCE_DATE_EPOCH, else the image's
``created`` (normalised to nitro-cli's UTC form), else 1970-01-01.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eifbuild import __version__
from eifbuild._epoch import (
    DEFAULT_BUILD_TIME,
    LINUXKIT_MTIME,
    normalize_rfc3339,
    rfc3339,
    source_date_epoch,
)
from eifbuild._progress import progress
from eifbuild.blobs import Blobs, resolve_blobs
from eifbuild.boottest import enclave_memory_mib
from eifbuild.eif.metadata import encode_metadata, kernel_config_info, load_custom_metadata
from eifbuild.eif.writer import EifResult, write_eif
from eifbuild.errors import ImageSourceError, UsageError
from eifbuild.limits import Limits
from eifbuild.model import Entry, ImageConfig
from eifbuild.ramdisk import DECISIONS, bootstrap_stream, customer_stream, list_file
from eifbuild.registry.options import RegistryOptions
from eifbuild.sources.image import Image
from eifbuild.types import Progress, Signer

BUILD_TOOL = "eifbuild"

# DockerInfo: nitro-cli stores bollard's re-serialised `docker image inspect`, which cannot be
# reproduced and carries transport-specific fields (RepoTags, RepoDigests, GraphDriver, sizes).
# eifbuild stores this documented, transport-independent subset of the image config instead
# (keys sorted by the metadata encoder; absent fields omitted).
DOCKER_INFO_TOP = ("architecture", "os", "variant", "created")
DOCKER_INFO_CONFIG = (
    "Cmd", "Entrypoint", "Env", "WorkingDir", "User", "Labels",
    "ExposedPorts", "Volumes", "StopSignal",
)  # fmt: skip


@dataclass
class BuildRequest:
    """Everything ``eifbuild build`` needs; the CLI fills it from argparse."""

    image: str
    output: Path
    arch: str | None = None
    docker_dir: str | None = None
    blobs_dir: str | None = None
    kernel: str | None = None
    kernel_config: str | None = None
    cmdline: str | None = None
    init: str | None = None
    nsm: str | None = None
    name: str | None = None
    version: str | None = None
    metadata: str | None = None
    clamp_mtime: int | None = None
    signer: Signer | None = None
    limits: Limits | None = None  # ceilings for hostile images (default: DEFAULT_LIMITS)
    entrypoint_mode: str = "nitro"  # nitro: Cmd else Entrypoint; docker: Entrypoint + Cmd
    # Hash the kernel, init, nsm.ko and the written EIF for the record (`build --json`). Off,
    # the build reads nothing twice: those "*sha384" fields are then absent from the record.
    file_digests: bool = True
    registry: RegistryOptions | None = None  # docker:// references: TLS, credentials, cache
    tmp_dir: str | None = None  # temp files (default: $TMPDIR); see eifbuild.sources.open_image


@dataclass
class BuildReport:
    result: EifResult
    record: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def image_name(ref: str) -> str:
    """nitro-cli's ImageName (the Docker reference before its first ':'), for any transport.

    ``docker-daemon:app:v1``, ``docker-archive:x.tar:app:v1`` and ``oci:DIR:app:v1`` all give
    ``app``, so the metadata does not depend on the transport. Without an inner reference an
    archive or layout falls back to its file name (use ``--name`` to pin it).
    """
    from eifbuild.sources import parse_reference

    transport, location, inner = parse_reference(ref)
    if transport == "docker":  # docker://REG/REPO[:TAG][@DIGEST] -> REG/REPO
        from eifbuild.registry import parse_docker_reference

        return parse_docker_reference(ref).name
    name = location if transport == "docker-daemon" else inner or Path(location.rstrip("/")).name
    return name.split(":", 1)[0]


def build_time(config: ImageConfig, image: str = "image") -> str:
    """SOURCE_DATE_EPOCH, else the image's ``created``, else 1970-01-01 (never the clock).

    Always in nitro-cli's form (chrono ``to_rfc3339`` in UTC, see :func:`normalize_rfc3339`):
    ``created`` is converted, not copied. An unparsable ``created`` is refused (set
    SOURCE_DATE_EPOCH to build such an image); an absent or empty one gives 1970-01-01.
    """
    epoch = source_date_epoch()
    if epoch is not None:
        return rfc3339(epoch)
    if not config.created:
        return DEFAULT_BUILD_TIME
    normal = normalize_rfc3339(config.created)
    if normal is None:
        raise ImageSourceError(
            f"{image}: image config 'created' {config.created[:80]!r} is not an RFC 3339 time; "
            "set SOURCE_DATE_EPOCH to choose the BuildTime"
        )
    return normal


def _present(value: Any) -> bool:
    """A config value worth recording: not null and not empty ("", [], {}).

    ``docker save`` keeps ``"User": ""`` and ``"WorkingDir": ""`` where a converting copy
    (``skopeo copy … oci:``) drops them; recording neither keeps DockerInfo the same for the
    same image whatever the transport."""
    return value is not None and value != "" and value != [] and value != {}


def docker_info(config: ImageConfig, image_id: str) -> dict[str, Any]:
    """The deterministic DockerInfo subset (see DOCKER_INFO_*); empty values are dropped."""
    raw = config.raw or {}
    info: dict[str, Any] = {"Id": image_id}
    for key in DOCKER_INFO_TOP:
        if _present(raw.get(key)):
            info[key[0].upper() + key[1:]] = raw[key]
    inner = raw.get("config") or raw.get("Config") or {}
    if isinstance(inner, dict):
        cfg = {k: inner[k] for k in DOCKER_INFO_CONFIG if _present(inner.get(k))}
        if cfg:
            info["Config"] = cfg
    return info


def _sha384_file(path: Path, bar: Progress) -> str:
    h = hashlib.sha384()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            bar(len(chunk))
    return h.hexdigest()


def _counted(chunks: Iterator[bytes], bar: Progress) -> Iterator[bytes]:
    for c in chunks:
        bar(len(c))
        yield c


def _open(req: BuildRequest) -> Image:
    from eifbuild.sources import open_image

    return open_image(
        req.image,
        arch=req.arch,
        docker_dir=Path(req.docker_dir) if req.docker_dir else None,
        limits=req.limits,
        registry=req.registry,
        tmp_dir=req.tmp_dir,
    )


def _blobs(req: BuildRequest, arch: str) -> Blobs:
    return resolve_blobs(
        arch,
        blobs_dir=req.blobs_dir,
        kernel=req.kernel,
        kernel_config=req.kernel_config,
        cmdline=req.cmdline,
        init=req.init,
        nsm=req.nsm,
    )


def _metadata(req: BuildRequest, image: Image, blobs: Blobs) -> bytes:
    os_name, kver = kernel_config_info(blobs.kernel_config)
    image_id = str(image.image_id)
    custom = load_custom_metadata(req.metadata) if req.metadata else None
    return encode_metadata(
        image_name=req.name if req.name is not None else image_name(req.image),
        image_version=req.version if req.version is not None else image_id.removeprefix("sha256:"),
        build_time=build_time(image.config, req.image),
        build_tool=BUILD_TOOL,
        build_tool_version=__version__,
        operating_system=os_name,
        kernel_version=kver,
        docker_info=docker_info(image.config, image_id),
        custom=custom,
    )


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z")


def resolve_build_time(explicit: str | None) -> str:
    """An explicit RFC 3339 BuildTime, else SOURCE_DATE_EPOCH, else 1970-01-01 (never the clock)."""
    if explicit is not None:
        if not _RFC3339.match(explicit):
            raise UsageError(f"--build-time {explicit!r} is not an RFC 3339 date-time")
        return explicit
    epoch = source_date_epoch()
    return DEFAULT_BUILD_TIME if epoch is None else rfc3339(epoch)


def assemble_metadata(
    kernel: str | os.PathLike[str],
    *,
    name: str | None = None,
    image_version: str | None = None,
    build_time: str | None = None,
    build_tool: str = BUILD_TOOL,
    build_tool_version: str = __version__,
    operating_system: str | None = None,
    kernel_version: str | None = None,
    kernel_config: str | os.PathLike[str] | None = None,
    metadata: str | os.PathLike[str] | None = None,
) -> bytes:
    """The metadata section of ``assemble`` (eif_build's defaults where eifbuild has none).

    ImageName defaults to the kernel file's name, ImageVersion to 1.0; OperatingSystem and
    KernelVersion come from ``kernel_config`` (line 3), else OS / kernel.
    """
    os_name, kver = "OS", "kernel"
    if kernel_config:
        os_name, kver = kernel_config_info(kernel_config)
    custom = load_custom_metadata(metadata) if metadata else None
    return encode_metadata(
        image_name=name if name is not None else os.path.basename(os.fspath(kernel)),
        image_version=image_version if image_version is not None else "1.0",
        build_time=resolve_build_time(build_time),
        build_tool=build_tool,
        build_tool_version=build_tool_version,
        operating_system=operating_system if operating_system is not None else os_name,
        kernel_version=kernel_version if kernel_version is not None else kver,
        custom=custom,
    )


def _export(image: Image, warnings: list[str]) -> tuple[Iterator[Entry], bool]:
    """The docker export view (eifbuild.dockerexport); True when WorkingDir had to be created."""
    from eifbuild.dockerexport import docker_export

    view = docker_export(image, limits=image.limits, warn=warnings.append)
    return view.entries, view.created_workdir


def build(req: BuildRequest) -> BuildReport:
    """Run the whole pipeline and write ``req.output`` atomically."""
    from eifbuild.sources import select_cmd_env

    with _open(req) as image:
        config: ImageConfig = image.config
        blobs = _blobs(req, config.architecture)
        cmd, env, warnings = select_cmd_env(config, req.entrypoint_mode, req.image)
        cmd_bytes, env_bytes = list_file(cmd), list_file(env)
        metadata = _metadata(req, image, blobs)
        with progress(desc="reading layers", unit="layer", total=len(image.layers)) as bar:
            entries, missing_wd = _export(image, warnings)
            bar.update(len(image.layers))

        def customer() -> Iterator[bytes]:
            with progress(desc="customer ramdisk") as bar:
                stream = customer_stream(entries, cmd_bytes, env_bytes, clamp_mtime=req.clamp_mtime)
                yield from _counted(stream, bar.update)

        def bootstrap() -> Iterator[bytes]:
            return bootstrap_stream(blobs.init, blobs.nsm, blobs.modules)

        with progress(desc="writing EIF") as bar:
            result = write_eif(
                req.output,
                kernel=blobs.kernel,
                cmdline=blobs.cmdline,
                metadata=metadata,
                ramdisks=[bootstrap, customer],
                arch=blobs.arch,
                signer=req.signer,
                progress=bar.update,
            )
        record = _record(req, image, blobs, result, cmd, env)
        record["layers"] = image.layer_access()
    if missing_wd:
        warnings.append(
            f"WorkingDir {config.working_dir!r} is missing from the image: nitro-cli creates it "
            "with the wall-clock mtime, so its PCR2 changes on every build; eifbuild uses a "
            f"fixed mtime ({LINUXKIT_MTIME})"
        )
        record["parity_exceptions"] = [DECISIONS["workdir"]]
    record["warnings"] = warnings
    return BuildReport(result, record, warnings)


def _record(
    req: BuildRequest, image: Image, blobs: Blobs, result: EifResult, cmd: list[str], env: list[str]
) -> dict[str, Any]:
    """The ``--json`` record: measurements plus every input's digest."""
    paths = [("kernel", blobs.kernel), ("init", blobs.init)]
    if blobs.nsm is not None:
        paths.append(("nsm", blobs.nsm))
    digests: dict[str, str] = {}
    eif_digest: dict[str, str] = {}
    if req.file_digests:
        total = sum(p.stat().st_size for _, p in paths) + result.size
        with progress(total=total, desc="hashing") as bar:
            for label, p in paths:
                digests[f"{label}_sha384"] = _sha384_file(p, bar.update)
            eif_digest["sha384"] = _sha384_file(result.path, bar.update)
    inputs: dict[str, Any] = {
        "image": req.image,
        "image_reference": str(image.reference),
        "image_id": str(image.image_id),
        "image_digests": dict(image.input_digests),
        "blobs_source": blobs.source,
        "kernel": blobs.kernel.name,
        "cmdline": blobs.cmdline,
        **digests,
    }
    return {
        "Measurements": result.measurements.as_nitro(),
        "eif": {
            "path": os.fspath(req.output),
            "size": result.size,
            **eif_digest,
            "crc32": result.crc32,
            "arch": blobs.arch,
            # nitro-cli run-enclave's floor (4 x the EIF size); boot-test's default memory
            "min_memory_mib": enclave_memory_mib(result.size),
        },
        "inputs": inputs,
        "cmd": cmd,
        "env": env,
        "entrypoint_mode": req.entrypoint_mode,
        "working_dir": image.config.working_dir,
        "user": image.config.user,
        "clamp_mtime": req.clamp_mtime,
        "build_tool": {"name": BUILD_TOOL, "version": __version__},
    }
