"""``docker://REGISTRY/REPO[:TAG][@sha256:…]``: an image straight from a registry, no daemon.

The reference is resolved once (tag → digest; an index → the ``--arch`` manifest) and its
blobs are fetched into the content-addressed cache of :mod:`eifbuild.registry`, each checked
by size and digest while it streams. The image is then read exactly like an OCI layout
(:func:`eifbuild.sources.oci.image_from_manifest`): the same Image/Layer objects, the same
config digest and diff_id checks. The cache's shared lock is held until the image is closed,
so ``eifbuild cache prune`` cannot remove a blob under a running build.
"""

from __future__ import annotations

from pathlib import Path

from eifbuild.errors import ImageSourceError
from eifbuild.limits import Limits
from eifbuild.registry import BlobCache, RegistryOptions, fetch_image
from eifbuild.sources._blobs import Region
from eifbuild.sources._store import Store
from eifbuild.sources.image import Image
from eifbuild.sources.oci import image_from_manifest


class _CacheStore(Store):
    """The fetched blobs, by digest (nothing else is reachable)."""

    def __init__(self, label: str, blobs: dict[str, Path]) -> None:
        self.label = label
        self.blobs = blobs

    def file(self, name: str) -> Region:
        raise ImageSourceError(f"{self.label}: no file {name!r} in a registry image")

    def blob(self, digest: str) -> Region:
        path = self.blobs.get(digest)
        if path is None:
            raise ImageSourceError(f"{self.label}: blob {digest} was not fetched")
        return Region(str(path), 0, path.stat().st_size)


def open_remote(
    reference: str, arch: str | None, limits: Limits, options: RegistryOptions
) -> Image:
    cache = BlobCache(options.cache_dir)
    fd = cache.acquire_shared()
    try:
        fetched = fetch_image(
            reference,
            arch=arch,
            options=options,
            cache=cache,
            max_json_bytes=limits.max_json_bytes,
            max_blob_bytes=limits.max_layer_bytes,
        )
        resolved = fetched.resolved
        store = _CacheStore(reference, fetched.blobs)
        image = image_from_manifest(
            store, reference, resolved.manifest.digest, resolved.doc, arch, limits
        )
    except BaseException:
        cache.release(fd)
        raise
    image.input_digests["resolved_reference"] = str(resolved.resolved)
    image.input_digests["index"] = resolved.index_digest
    image.add_cleanup(lambda: cache.release(fd, options.cache_max_bytes))
    return image
