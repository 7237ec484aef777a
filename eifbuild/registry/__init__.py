"""Registries (OCI distribution API v2): the ``docker://`` transport's core and EIF artifacts.

Public API (plain values in, frozen dataclasses out; no printing):

* :func:`parse_docker_reference` → :class:`Reference`;
* :class:`RegistryOptions` (TLS, credentials, cache, retries) and :class:`BlobCache`
  (content-addressed, shared by concurrent builds; :meth:`BlobCache.prune`);
* :func:`fetch_image` (used by :mod:`eifbuild.sources.remote` for ``build``/``rootfs``);
* :func:`push_eif` → :class:`PushResult`, :func:`pull_eif` → :class:`PullResult`,
  :func:`fetch_eif` (verified EIF in the cache, for ``describe``/``verify``/``policy``).

The artifact format and media types are described in ``docs/registry.md``.
"""

from eifbuild.registry.artifact import (
    ARTIFACT_TYPE,
    CERTIFICATE_MEDIA_TYPE,
    EIF_MEDIA_TYPE,
    MEASUREMENTS_MEDIA_TYPE,
    AttachResult,
    PullResult,
    PushResult,
    fetch_eif,
    pull_eif,
    push_eif,
)
from eifbuild.registry.auth import Credentials, find_credentials
from eifbuild.registry.cache import BlobCache, CacheUsage, PruneResult, default_cache_dir
from eifbuild.registry.client import RegistryClient
from eifbuild.registry.image import FetchedImage, fetch_image
from eifbuild.registry.options import DEFAULT_OPTIONS, RegistryOptions
from eifbuild.registry.reference import Reference, is_docker_reference
from eifbuild.registry.reference import parse_reference as parse_docker_reference

__all__ = [
    "ARTIFACT_TYPE",
    "CERTIFICATE_MEDIA_TYPE",
    "DEFAULT_OPTIONS",
    "EIF_MEDIA_TYPE",
    "MEASUREMENTS_MEDIA_TYPE",
    "AttachResult",
    "BlobCache",
    "CacheUsage",
    "Credentials",
    "FetchedImage",
    "PruneResult",
    "PullResult",
    "PushResult",
    "Reference",
    "RegistryClient",
    "RegistryOptions",
    "default_cache_dir",
    "fetch_eif",
    "fetch_image",
    "find_credentials",
    "is_docker_reference",
    "parse_docker_reference",
    "pull_eif",
    "push_eif",
]
