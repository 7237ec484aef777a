"""Registry credentials the way Docker and skopeo users keep them.

Looked up in this order (the first that names the registry wins):

1. ``--creds USER[:PASS]`` (:attr:`RegistryOptions.creds`);
2. the auth file: ``--authfile`` (must exist), else ``$REGISTRY_AUTH_FILE``, else
   ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json`` (missing defaults are fine).
   In it, ``credHelpers[REGISTRY]`` names a helper, else ``auths[REGISTRY]`` holds
   ``auth`` (base64 ``user:pass``), ``username``/``password`` or ``identitytoken``, else
   ``credsStore`` names a helper for every registry.

A helper is the program ``docker-credential-<name>`` on ``PATH``, run as ``… get`` with the
registry host on stdin; it prints ``{"ServerURL", "Username", "Secret"}`` (Docker's
credential-helper protocol). A ``Username`` of ``<token>`` means ``Secret`` is an identity
(refresh) token.

Secrets are held only in :class:`Credentials`, whose ``repr`` hides them; nothing here puts a
secret (or a helper's output) into an error message.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eifbuild.errors import RegistryError, UsageError
from eifbuild.registry.reference import DOCKER_HUB

MAX_AUTHFILE_BYTES = 1 << 20
MAX_HELPER_OUTPUT = 64 << 10
HELPER_TIMEOUT = 60.0
_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    """A user name with a password, or an identity token. ``source`` says where they came from."""

    username: str
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    source: str = ""

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.identity_token) if s)

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def parse_creds(text: str) -> Credentials:
    """``USER:PASS`` as given to ``--creds`` (a password may contain ':')."""
    user, sep, password = text.partition(":")
    if not user:
        raise UsageError("--creds: empty user name (expected USER[:PASS])")
    if not sep:
        raise UsageError("--creds: no password (expected USER:PASS)")
    return Credentials(user, password, source="--creds")


def default_authfile() -> tuple[Path | None, bool]:
    """(path, explicit): ``$REGISTRY_AUTH_FILE`` (explicit), else Docker's config.json."""
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        return Path(env), True
    docker_config = os.environ.get("DOCKER_CONFIG")
    if docker_config:
        return Path(docker_config) / "config.json", False
    home = os.environ.get("HOME") or str(Path.home())
    return Path(home) / ".docker" / "config.json", False


def _load_authfile(path: Path, explicit: bool) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_AUTHFILE_BYTES + 1)
    except FileNotFoundError:
        if explicit:
            raise RegistryError(f"{path}: auth file does not exist") from None
        return {}
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read auth file ({exc.strerror})") from None
    if len(data) > MAX_AUTHFILE_BYTES:
        raise RegistryError(f"{path}: auth file larger than {MAX_AUTHFILE_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        # Never echo the parser's message: it quotes the (secret) text around the error.
        raise RegistryError(f"{path}: auth file is not valid JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{path}: auth file is not a JSON object")
    return doc


def _keys_for(registry: str) -> list[str]:
    if registry == DOCKER_HUB:
        return [DOCKER_HUB, *_HUB_KEYS, f"https://{DOCKER_HUB}"]
    return [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/"]


def _lookup(table: Any, registry: str) -> Any:
    if not isinstance(table, dict):
        return None
    for key in _keys_for(registry):
        if key in table:
            return table[key]
    # Keys with a path (https://host/v2/ ...): compare the host part only.
    for key, value in table.items():
        if isinstance(key, str):
            host = key.split("://", 1)[-1].split("/", 1)[0]
            if host == registry or (registry == DOCKER_HUB and host in _HUB_KEYS):
                return value
    return None


def _from_entry(entry: Any, where: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    token = entry.get("identitytoken")
    auth = entry.get("auth")
    user = entry.get("username")
    password = entry.get("password")
    if isinstance(auth, str) and auth:
        try:
            raw = base64.b64decode(auth, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise RegistryError(f"{where}: 'auth' is not base64 of USER:PASS") from None
        user, sep, password = raw.partition(":")
        if not sep:
            raise RegistryError(f"{where}: 'auth' is not base64 of USER:PASS")
    if isinstance(token, str) and token:
        return Credentials(
            user if isinstance(user, str) else "", identity_token=token, source=where
        )
    if isinstance(user, str) and user and isinstance(password, str):
        return Credentials(user, password, source=where)
    return None


def run_helper(name: str, registry: str) -> Credentials | None:
    """``docker-credential-NAME get`` for ``registry``; None when it has no credentials."""
    if not name or "/" in name or name.startswith("."):
        raise RegistryError(f"credential helper name {name[:80]!r} is invalid")
    program = f"docker-credential-{name}"
    path = shutil.which(program)
    if path is None:
        raise RegistryError(f"credential helper {program} is not on PATH (needed for {registry})")
    server = "https://index.docker.io/v1/" if registry == DOCKER_HUB else registry
    try:
        proc = subprocess.run(
            [path, "get"],
            input=server.encode(),
            capture_output=True,
            timeout=HELPER_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RegistryError(f"credential helper {program} timed out") from None
    except OSError as exc:
        raise RegistryError(f"credential helper {program}: cannot run ({exc.strerror})") from None
    if proc.returncode != 0:
        # Docker's helpers say "credentials not found in native keychain" on stdout.
        if b"credentials not found" in proc.stdout.lower():
            return None
        raise RegistryError(f"credential helper {program} failed (exit status {proc.returncode})")
    if len(proc.stdout) > MAX_HELPER_OUTPUT:
        raise RegistryError(f"credential helper {program}: output too large")
    try:
        doc = json.loads(proc.stdout)
    except (ValueError, UnicodeDecodeError):
        raise RegistryError(f"credential helper {program}: output is not JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"credential helper {program}: output is not a JSON object")
    user, secret = doc.get("Username"), doc.get("Secret")
    if not isinstance(user, str) or not isinstance(secret, str):
        raise RegistryError(f"credential helper {program}: Username/Secret missing")
    where = f"credential helper {program}"
    if user == "<token>":
        return Credentials("", identity_token=secret, source=where)
    return Credentials(user, secret, source=where)


def find_credentials(
    registry: str, *, creds: str | None = None, authfile: str | None = None
) -> Credentials | None:
    """The credentials for ``registry`` (host[:port], ``docker.io`` for Docker Hub), if any."""
    if creds is not None:
        return parse_creds(creds)
    if authfile is not None:
        path, explicit = Path(authfile), True
    else:
        found, explicit = default_authfile()
        if found is None:
            return None
        path = found
    doc = _load_authfile(path, explicit)
    helper = _lookup(doc.get("credHelpers"), registry)
    if isinstance(helper, str) and helper:
        return run_helper(helper, registry)
    entry = _lookup(doc.get("auths"), registry)
    found_creds = _from_entry(entry, f"{path}: auths[{registry}]")
    if found_creds is not None:
        return found_creds
    store = doc.get("credsStore")
    if isinstance(store, str) and store:
        return run_helper(store, registry)
    return None
