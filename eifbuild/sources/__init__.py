"""Container image sources: skopeo-style transport names -> :class:`Image`.

=============================  ==============================================================
``docker-daemon:REF``          the Docker daemon (docker-py, ``DOCKER_HOST``); also a bare REF
``docker-archive:PATH[:REF]``  ``docker save`` output (legacy and OCI-based layouts)
``oci:DIR[:REF]``              an OCI image layout directory (REF: ref.name annotation)
``oci-archive:TAR[:REF]``      a tar of an OCI image layout
``docker://REG/REPO[:T][@D]``  a registry (OCI distribution API; blobs cached by digest)
=============================  ==============================================================

Images are never extracted: blobs are read in place and verified against their digests.
Use ``with open_image(...) as image:`` (or ``image.close()``) to remove temp files.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from eifbuild.errors import ImageSourceError, UsageError
from eifbuild.registry.options import RegistryOptions
from eifbuild.sources._blobs import DEFAULT_LIMITS, ZSTD_FLOOR_BYTES, Limits
from eifbuild.sources.image import Image, Layer, normalize_arch, select_cmd_env

__all__ = [
    "DEFAULT_LIMITS",
    "Image",
    "Layer",
    "Limits",
    "add_limit_arguments",
    "limits_from_args",
    "normalize_arch",
    "open_image",
    "parse_reference",
    "select_cmd_env",
]

TRANSPORTS = ("docker-daemon", "docker-archive", "oci", "oci-archive", "docker")


def parse_reference(ref: str) -> tuple[str, str, str | None]:
    """(transport, location, inner ref). A REF without a known transport means the daemon."""
    transport, sep, rest = ref.partition(":")
    if transport == "docker" and not rest.startswith("//"):
        transport = ""  # docker:TAG is the daemon image named "docker"; docker:// a registry
    if not sep or transport not in TRANSPORTS:
        if not ref:
            raise UsageError("empty image reference")
        return "docker-daemon", ref, None
    if not rest:
        raise UsageError(f"{ref}: missing location after '{transport}:'")
    if transport in ("docker-daemon", "docker"):
        return transport, rest, None
    # PATH[:REF]: an existing path wins (paths may contain ':'), else split at the first ':'.
    if Path(rest).exists() or ":" not in rest:
        return transport, rest, None
    location, _, inner = rest.partition(":")
    return transport, location, inner or None


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """``--max-expanded-mib``, ``--max-entries``, ``--max-layers``, ``--max-zstd-ratio``,
    ``--max-temp-mib``, ``--max-tree-mib`` (ceilings for hostile images),
    ``--gzip-checkpoint-mib``, ``--max-index-mib`` (gzip random access)."""
    d = DEFAULT_LIMITS
    g = parser.add_argument_group(
        "limits (against hostile images) and layer access",
        "Layers are never extracted. Uncompressed layers are read in place; gzip layers through "
        "checkpoints of the decompressor state taken while the layer is first read (no temp "
        "copy; memory bounded by --max-index-mib); zstd layers are decompressed once into a temp "
        "file (disk: their uncompressed size, at most --max-zstd-ratio times the compressed "
        f"size or {ZSTD_FLOOR_BYTES >> 20} MiB if more, and --max-temp-mib for all of them). "
        "A docker-daemon image is first saved to a temp archive (`docker save`). Temp files go "
        "to $TMPDIR and are removed at exit.",
    )
    g.add_argument(
        "--max-expanded-mib",
        type=int,
        metavar="MIB",
        help="refuse layers whose uncompressed size adds up to more than MIB "
        f"(decompression bombs; default {d.max_total_bytes >> 20})",
    )
    g.add_argument(
        "--max-entries",
        type=int,
        metavar="N",
        help=f"refuse images with more than N tar entries over all layers (default {d.max_entries})",
    )
    g.add_argument(
        "--max-layers",
        type=int,
        metavar="N",
        help="refuse images with more than N layers (Docker runs at most 125; "
        f"default {d.max_layers})",
    )
    g.add_argument(
        "--max-zstd-ratio",
        type=int,
        metavar="N",
        help="a zstd layer may expand to N times its compressed size (at least "
        f"{ZSTD_FLOOR_BYTES >> 20} MiB; default {d.max_zstd_ratio}, deflate's own maximum)",
    )
    g.add_argument(
        "--max-temp-mib",
        type=int,
        metavar="MIB",
        help="disk for the decompressed zstd layers of one image in $TMPDIR "
        f"(default {d.max_temp_bytes >> 20})",
    )
    g.add_argument(
        "--max-tree-mib",
        type=int,
        metavar="MIB",
        help="memory ceiling for the merged file tree; the process needs about 40 MiB more "
        f"(default {d.max_tree_bytes >> 20})",
    )
    g.add_argument(
        "--gzip-checkpoint-mib",
        type=int,
        metavar="MIB",
        help="gzip layers: snapshot the decompressor every MIB of output (~41 KiB each); "
        f"smaller = faster out-of-order reads, more memory (default {d.gzip_spacing_bytes >> 20})",
    )
    g.add_argument(
        "--max-index-mib",
        type=int,
        metavar="MIB",
        help="memory for all gzip checkpoints of the image; beyond it a layer keeps every other "
        f"checkpoint (default {d.max_index_bytes >> 20})",
    )


def limits_from_args(args: argparse.Namespace) -> Limits:
    """The :class:`Limits` the options of :func:`add_limit_arguments` ask for."""
    changes: dict[str, int] = {}
    for opt, key, shift in (
        ("max_expanded_mib", "max_total_bytes", 20),
        ("max_entries", "max_entries", 0),
        ("max_tree_mib", "max_tree_bytes", 20),
        ("gzip_checkpoint_mib", "gzip_spacing_bytes", 20),
        ("max_index_mib", "max_index_bytes", 20),
        ("max_layers", "max_layers", 0),
        ("max_zstd_ratio", "max_zstd_ratio", 0),
        ("max_temp_mib", "max_temp_bytes", 20),
    ):
        value = getattr(args, opt, None)
        if value is None:
            continue
        if value <= 0:
            raise UsageError(f"--{opt.replace('_', '-')} {value}: must be a positive number")
        changes[key] = value << shift
    if "max_total_bytes" in changes:
        changes["max_layer_bytes"] = min(DEFAULT_LIMITS.max_layer_bytes, changes["max_total_bytes"])
    return dataclasses.replace(DEFAULT_LIMITS, **changes)


def open_image(
    ref: str,
    *,
    arch: str | None = None,
    docker_dir: Path | None = None,
    limits: Limits | None = None,
    registry: RegistryOptions | None = None,
) -> Image:
    """Open ``ref``; with ``arch``, pick that platform from an index and insist on it.

    ``registry`` configures ``docker://`` references (TLS, credentials, cache, retries).
    """
    lim = limits or DEFAULT_LIMITS
    if arch is not None and normalize_arch(arch) not in ("amd64", "arm64"):
        raise UsageError(f"--arch {arch}: expected amd64 (x86_64) or arm64 (aarch64)")
    transport, location, inner = parse_reference(ref)
    if docker_dir is not None and transport != "docker-daemon":
        raise UsageError(f"--docker-dir builds into the Docker daemon; {ref} is not a daemon image")
    if transport == "docker-daemon":
        from eifbuild.sources.daemon import open_daemon

        return open_daemon(ref, location, arch, docker_dir, lim)
    if transport == "docker":
        from eifbuild.sources.remote import open_remote

        return open_remote(ref, arch, lim, registry or RegistryOptions())
    path = Path(location)
    if not path.exists():
        raise ImageSourceError(f"{ref}: {location} does not exist")
    if transport == "docker-archive":
        from eifbuild.sources.archive import open_docker_archive

        return open_docker_archive(ref, path, inner, arch, lim)
    from eifbuild.sources.oci import open_oci_archive, open_oci_dir

    if transport == "oci":
        return open_oci_dir(ref, path, inner, arch, lim)
    return open_oci_archive(ref, path, inner, arch, lim)
