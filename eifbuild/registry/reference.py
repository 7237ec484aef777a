"""``docker://REGISTRY/REPO[:TAG][@sha256:HEX]`` references, spelled as skopeo spells them.

The grammar is the Docker reference grammar (distribution's ``reference`` package): a first
path component containing ``.`` or ``:`` (or equal to ``localhost``) is the registry host;
otherwise the registry is Docker Hub and a one-component name gets the ``library/`` prefix.
Only ``sha256`` digests are accepted (the only algorithm the rest of eifbuild verifies).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from eifbuild.errors import UsageError

SCHEME = "docker://"
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")
MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    """A parsed ``docker://`` reference. ``tag`` and ``digest`` may both be set."""

    registry: str  # as written (docker.io for Docker Hub), host[:port]
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """The host[:port] that serves the distribution API (Docker Hub's differs)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """``REGISTRY/REPO`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def target(self) -> str:
        """What to ask ``/v2/<repo>/manifests/`` for: the digest if pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        """The same repository pinned to ``digest`` (the tag dropped: the digest is the truth)."""
        return Reference(self.registry, self.repository, None, digest)

    def with_tag(self, tag: str | None) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def __str__(self) -> str:
        text = SCHEME + self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def is_docker_reference(text: str) -> bool:
    return text.startswith(SCHEME)


def parse_reference(text: str) -> Reference:
    """Parse ``docker://…``; a malformed reference is a usage error naming it."""
    if not text.startswith(SCHEME):
        raise UsageError(f"{text[:200]!r}: not a docker:// reference")
    rest = text[len(SCHEME) :]
    shown = f"docker://{rest[:200]}"
    if not rest or len(rest) > 1024 or any(c.isspace() or ord(c) < 32 for c in rest):
        raise UsageError(f"{shown!r}: invalid docker:// reference")
    digest = None
    if "@" in rest:
        rest, digest = rest.rsplit("@", 1)
        if not _DIGEST_RE.match(digest):
            raise UsageError(f"{shown}: invalid digest (expected sha256: and 64 lowercase hex)")
    tag = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise UsageError(f"{shown}: invalid tag {tag[:130]!r}")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, remainder
        if not _HOST_RE.match(registry):
            raise UsageError(f"{shown}: invalid registry host {registry!r}")
    else:
        registry, repository = DOCKER_HUB, rest
        if "/" not in repository:
            repository = f"library/{repository}"
    if registry in ("index.docker.io", DOCKER_HUB_API):
        registry = DOCKER_HUB
    if not repository or len(repository) > MAX_NAME or not _REPO_RE.match(repository):
        raise UsageError(
            f"{shown}: invalid repository name {repository[:130]!r} (lowercase letters, digits, "
            "separators . _ __ -, components joined by /)"
        )
    return Reference(registry, repository, tag, digest)
