"""How to reach a registry: TLS, credentials, retries, the blob cache. Plain values only."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_CACHE_MAX_BYTES = 20 << 30
MAX_MANIFEST_BYTES = 4 << 20  # distribution's own ceiling for a manifest PUT


@dataclass(frozen=True)
class RegistryOptions:
    """Options of every ``docker://`` access (``build``, ``rootfs``, ``push``, ``pull``, …).

    ``creds`` (``USER:PASS``) overrides the auth file; its ``repr`` is hidden. ``tls_verify``
    False accepts any certificate and falls back to plain HTTP (skopeo's ``--tls-verify=false``).
    ``cert_dir`` holds ``*.crt`` CA files and ``*.cert``/``*.key`` client pairs (default:
    ``/etc/containers/certs.d/HOST`` or ``/etc/docker/certs.d/HOST`` when present).
    ``retries``/``retry_seconds`` bound the retries of connection errors, 5xx and 429.
    """

    authfile: str | None = None
    creds: str | None = field(default=None, repr=False)
    tls_verify: bool = True
    cert_dir: str | None = None
    cache_dir: str | None = None
    cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES
    require_digest: bool = False
    retries: int = 5
    retry_seconds: float = 120.0
    timeout: float = 60.0
    max_manifest_bytes: int = MAX_MANIFEST_BYTES


DEFAULT_OPTIONS = RegistryOptions()
