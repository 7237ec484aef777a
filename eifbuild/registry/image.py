"""Resolve a ``docker://`` image once and fetch its blobs into the cache, verified.

The tag (if any) is resolved to a manifest digest exactly once; everything after that is
fetched by digest, so a tag moved during the build cannot mix two images. An image index /
manifest list is resolved to the ``linux/<arch>`` manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eifbuild.errors import RegistryError, UsageError
from eifbuild.registry.cache import BlobCache
from eifbuild.registry.client import Manifest, RegistryClient
from eifbuild.registry.options import RegistryOptions
from eifbuild.registry.reference import Reference, parse_reference
from eifbuild.sources.image import normalize_arch

INDEX_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
MAX_INDEX_DEPTH = 4


def _oci_arch(name: str) -> str:
    return normalize_arch(name)


def is_index(manifest: Manifest, doc: dict[str, Any]) -> bool:
    return manifest.media_type in INDEX_TYPES or ("manifests" in doc and "layers" not in doc)


def _platform_text(d: dict[str, Any]) -> str:
    p = d.get("platform")
    if not isinstance(p, dict):
        return "unknown"
    return f"{p.get('os', '?')}/{_oci_arch(str(p.get('architecture', '?')))}"


def select_platform(doc: dict[str, Any], arch: str | None, what: str) -> str:
    """The digest of the ``linux/<arch>`` entry of an index (``arch`` None: the only one)."""
    ds = doc.get("manifests")
    if not isinstance(ds, list) or not all(isinstance(d, dict) for d in ds):
        raise RegistryError(f"{what}: image index has no manifests list")
    want = _oci_arch(arch) if arch else None
    hits = [
        d
        for d in ds
        if isinstance(d.get("platform"), dict)
        and d["platform"].get("os") == "linux"
        and (want is None or _oci_arch(str(d["platform"].get("architecture", ""))) == want)
    ]
    present = ", ".join(sorted({_platform_text(d) for d in ds})) or "none"
    if not hits:
        raise RegistryError(f"{what}: no linux/{want or 'any'} image; platforms present: {present}")
    if want is None and len({_platform_text(d) for d in hits}) > 1:
        raise RegistryError(f"{what}: several platforms ({present}); choose one with --arch")
    digest = hits[0].get("digest")
    if not isinstance(digest, str):
        raise RegistryError(f"{what}: index entry without a digest")
    return digest


@dataclass(frozen=True)
class ResolvedManifest:
    """A reference resolved once: the digest it named and the image manifest chosen."""

    reference: Reference
    resolved: Reference  # pinned to the digest the tag (or digest) named at resolution time
    index_digest: str | None
    manifest: Manifest
    doc: dict[str, Any] = field(repr=False)


def resolve(
    client: RegistryClient, ref: Reference, arch: str | None, what: str
) -> ResolvedManifest:
    """Resolve ``ref`` (tag → digest once) and follow indexes to one image manifest."""
    top = client.get_manifest(ref.target, what)
    manifest, doc = top, top.json(what)
    index_digest = None
    for _ in range(MAX_INDEX_DEPTH):
        if not is_index(manifest, doc):
            return ResolvedManifest(ref, ref.with_digest(top.digest), index_digest, manifest, doc)
        index_digest = index_digest or manifest.digest
        digest = select_platform(doc, arch, f"{what}: index {manifest.digest}")
        manifest = client.get_manifest(digest, what)
        doc = manifest.json(what)
    raise RegistryError(f"{what}: image indexes nested too deeply")


def _descriptor(d: Any, what: str, max_bytes: int) -> tuple[str, int]:
    if not isinstance(d, dict):
        raise RegistryError(f"{what}: descriptor is not an object")
    digest, size = d.get("digest"), d.get("size")
    if not isinstance(digest, str) or not digest.startswith("sha256:") or len(digest) != 71:
        raise RegistryError(f"{what}: invalid or unsupported digest {str(digest)[:80]!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RegistryError(f"{what}: descriptor {digest} has no valid size")
    if size > max_bytes:
        raise RegistryError(
            f"{what}: blob {digest} is {size} bytes, over the {max_bytes}-byte limit"
        )
    return digest, size


def fetch_blob(
    client: RegistryClient,
    cache: BlobCache,
    digest: str,
    size: int,
    what: str,
    progress: Callable[[int], object] | None = None,
) -> Path:
    """The blob's cache path, downloading (and verifying) it first if needed."""
    hit = cache.get(digest, size)
    if hit is not None:
        if progress is not None:
            progress(size)
        return hit
    with cache.writer(digest, verified=True) as fh:
        client.fetch_blob(digest, size, fh, what, progress)  # size + sha256 checked while streaming
    return cache.path(digest)


@dataclass(frozen=True)
class FetchedImage:
    """A resolved image whose config and layers are in the cache (paths by digest)."""

    resolved: ResolvedManifest
    blobs: dict[str, Path] = field(repr=False)

    @property
    def manifest_digest(self) -> str:
        return self.resolved.manifest.digest


def fetch_image(
    text: str,
    *,
    arch: str | None,
    options: RegistryOptions,
    cache: BlobCache,
    max_json_bytes: int,
    max_blob_bytes: int,
    progress: Callable[[int], object] | None = None,
) -> FetchedImage:
    """Resolve ``docker://…`` and fetch config + layers; the caller holds a cache session."""
    ref = parse_reference(text)
    if options.require_digest and ref.digest is None:
        raise UsageError(f"{text}: --require-digest: the reference has no @sha256: digest")
    with RegistryClient(ref, options) as client:
        resolved = resolve(client, ref, arch, text)
        doc = resolved.doc
        if not isinstance(doc.get("layers"), list):
            raise RegistryError(f"{text}: manifest {resolved.manifest.digest} has no layers list")
        if doc.get("config") is None:
            raise RegistryError(f"{text}: manifest {resolved.manifest.digest} has no config")
        wanted = [(_descriptor(doc["config"], f"{text}: config", max_json_bytes), "config")]
        for i, layer in enumerate(doc["layers"]):
            wanted.append((_descriptor(layer, f"{text}: layer {i}", max_blob_bytes), f"layer {i}"))
        blobs: dict[str, Path] = {}
        for (digest, size), label in wanted:
            if digest not in blobs:
                blobs[digest] = fetch_blob(
                    client, cache, digest, size, f"{text}: {label}", progress
                )
        return FetchedImage(resolved, blobs)
