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

from pathlib import Path

from eifbuild.errors import ImageSourceError, UsageError
from eifbuild.limits import DEFAULT_LIMITS, Limits
from eifbuild.registry.options import RegistryOptions
from eifbuild.sources._blobs import ZSTD_FLOOR_BYTES
from eifbuild.sources._tar import Member as TarMember
from eifbuild.sources.image import Image, Layer, normalize_arch, select_cmd_env

__all__ = [
    "DEFAULT_LIMITS",
    "ZSTD_FLOOR_BYTES",
    "Image",
    "Layer",
    "Limits",
    "TarMember",
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


def open_image(
    ref: str,
    *,
    arch: str | None = None,
    docker_dir: Path | None = None,
    limits: Limits | None = None,
    registry: RegistryOptions | None = None,
    tmp_dir: str | None = None,
) -> Image:
    """Open ``ref``; with ``arch``, pick that platform from an index and insist on it.

    ``registry`` configures ``docker://`` references (TLS, credentials, cache, retries).
    ``tmp_dir`` (default: $TMPDIR) receives the temp files: the ``docker save`` archive of a
    daemon image, zstd layers, gzip layers out of export order (see :class:`Image`).
    """
    image = _open_image(ref, arch, docker_dir, limits, registry, tmp_dir)
    image.tmp_root = tmp_dir
    return image


def _open_image(
    ref: str,
    arch: str | None,
    docker_dir: Path | None,
    limits: Limits | None,
    registry: RegistryOptions | None,
    tmp_dir: str | None,
) -> Image:
    lim = limits or DEFAULT_LIMITS
    if arch is not None and normalize_arch(arch) not in ("amd64", "arm64"):
        raise UsageError(f"--arch {arch}: expected amd64 (x86_64) or arm64 (aarch64)")
    transport, location, inner = parse_reference(ref)
    if docker_dir is not None and transport != "docker-daemon":
        raise UsageError(f"--docker-dir builds into the Docker daemon; {ref} is not a daemon image")
    if transport == "docker-daemon":
        from eifbuild.sources.daemon import open_daemon

        return open_daemon(ref, location, arch, docker_dir, lim, tmp_dir)
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
