"""A small OCI distribution API v2 client on the standard library (``http.client``, ``ssl``).

One :class:`RegistryClient` talks to one repository of one registry. It handles:

* HTTPS with the system CAs plus ``cert_dir``; ``tls_verify=False`` accepts any certificate
  and falls back to plain HTTP when the server does not speak TLS (as containers/image does);
* the ``WWW-Authenticate`` challenges: ``Bearer`` (token endpoint, anonymous or with basic
  credentials, or an identity token as an OAuth2 refresh token) and ``Basic``;
* retries with exponential backoff of connection errors, 5xx and 429, honouring
  ``Retry-After``, bounded by :attr:`RegistryOptions.retries` and ``retry_seconds``;
* redirects of blob downloads (``Authorization`` is never sent to another host);
* every manifest and blob checked by size and sha256 while it streams.

Every registry reply is hostile: sizes are bounded before reading, error bodies are read to a
small limit and only a sanitised code and message are shown, and every message passes through
:meth:`RegistryClient.scrub` so that no password or token can reach an error.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import http.client
import json
import os
import re
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from eifbuild.errors import RegistryError
from eifbuild.registry.auth import Credentials, find_credentials
from eifbuild.registry.options import DEFAULT_OPTIONS, RegistryOptions
from eifbuild.registry.reference import Reference
from eifbuild.types import Progress

CHUNK = 1 << 20
MAX_ERROR_BODY = 64 << 10
MAX_TOKEN_BYTES = 1 << 20
MAX_REDIRECTS = 5
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_BASE = 0.5
BACKOFF_MAX = 8.0
USER_AGENT = "eifbuild"

MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)

_PARAM_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')
_CODE_RE = re.compile(r"^[A-Z_]{1,64}$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def sha256_text(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _printable(text: str, limit: int = 160) -> str:
    cleaned = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(cleaned.split())[:limit]


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """(scheme lower-cased, params) of the first challenge of a ``WWW-Authenticate`` value."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for key, value in _PARAM_RE.findall(rest):
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[key.lower()] = value
    return scheme.lower(), params


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry returned it: its bytes, media type and verified digest."""

    data: bytes
    media_type: str
    digest: str

    def json(self, what: str) -> dict[str, Any]:
        try:
            doc = json.loads(self.data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise RegistryError(f"{what}: manifest {self.digest} is not valid JSON") from None
        if not isinstance(doc, dict):
            raise RegistryError(f"{what}: manifest {self.digest} is not a JSON object")
        return doc


def ssl_context(options: RegistryOptions, host: str) -> ssl.SSLContext:
    """TLS settings for ``host``: system CAs + ``cert_dir`` (``*.crt``, ``*.cert``/``*.key``)."""
    if options.tls_verify:
        ctx = ssl.create_default_context()
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    cert_dir: Path | None = None
    if options.cert_dir is not None:
        cert_dir = Path(options.cert_dir)
        if not cert_dir.is_dir():
            raise RegistryError(f"--cert-dir {cert_dir}: not a directory")
    else:
        for base in ("/etc/containers/certs.d", "/etc/docker/certs.d"):
            candidate = Path(base) / host.replace(":", ":")
            if candidate.is_dir():
                cert_dir = candidate
                break
    if cert_dir is None:
        return ctx
    for path in sorted(cert_dir.iterdir()):
        try:
            if path.suffix == ".crt":
                ctx.load_verify_locations(cafile=str(path))
            elif path.suffix == ".cert":
                key = path.with_suffix(".key")
                if not key.exists():
                    raise RegistryError(f"{path}: client certificate without {key.name}")
                ctx.load_cert_chain(str(path), str(key))
        except (ssl.SSLError, OSError) as exc:
            raise RegistryError(f"{path}: cannot load ({_printable(str(exc), 100)})") from None
    return ctx


class _Response:
    """A response whose body is read to a bound, or streamed; always fully consumed or closed."""

    def __init__(self, resp: http.client.HTTPResponse, conn: _Connection) -> None:
        self.resp = resp
        self.status = resp.status
        self.conn = conn

    def header(self, name: str) -> str | None:
        return self.resp.getheader(name)

    def read_bounded(self, limit: int, what: str) -> bytes:
        length = self.header("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            self.close()
            raise RegistryError(f"{what}: {int(length)} bytes exceeds the {limit}-byte limit")
        data = self.resp.read(limit + 1)
        if len(data) > limit:
            self.close()
            raise RegistryError(f"{what}: larger than the {limit}-byte limit")
        self.finish()
        return data

    def chunks(self) -> Iterator[bytes]:
        while True:
            data = self.resp.read(CHUNK)
            if not data:
                return
            yield data

    def discard(self) -> None:
        """Drop a small body (error, retry); a large one closes the connection instead."""
        try:
            data = self.resp.read(MAX_ERROR_BODY + 1)
        except (OSError, http.client.HTTPException):
            self.close()
            return
        if len(data) > MAX_ERROR_BODY:
            self.close()
        else:
            self.finish()

    def finish(self) -> None:
        if not self.resp.isclosed():
            self.resp.close()

    def close(self) -> None:
        self.resp.close()
        self.conn.close()


class _Connection:
    """A keep-alive connection to one scheme://host, reopened after errors."""

    def __init__(self, scheme: str, netloc: str, ctx: ssl.SSLContext | None, timeout: float):
        self.scheme = scheme
        self.netloc = netloc
        self.ctx = ctx
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, target: str, headers: dict[str, str], body: bytes | BinaryIO | None
    ) -> _Response:
        if self.conn is None:
            if self.scheme == "https":
                self.conn = http.client.HTTPSConnection(
                    self.netloc, timeout=self.timeout, context=self.ctx
                )
            else:
                self.conn = http.client.HTTPConnection(self.netloc, timeout=self.timeout)
        try:
            self.conn.request(method, target, body=body, headers=headers)
            return _Response(self.conn.getresponse(), self)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class RegistryClient:
    """One repository of one registry, for ``pull`` or ``pull,push``."""

    def __init__(
        self,
        ref: Reference,
        options: RegistryOptions = DEFAULT_OPTIONS,
        *,
        push: bool = False,
        credentials: Credentials | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ref = ref
        self.options = options
        self.actions = "pull,push" if push else "pull"
        self.host = ref.api_host
        self.label = f"docker://{ref.registry}/{ref.repository}"
        self._creds = credentials
        self._creds_loaded = credentials is not None
        self._secrets: set[str] = set(credentials.secrets()) if credentials else set()
        self._auth: str | None = None  # the Authorization header value for this repository
        self._scheme = "https"
        self._conns: dict[tuple[str, str], _Connection] = {}
        self._ctx: dict[str, ssl.SSLContext] = {}
        self._sleep = sleep

    # ------------------------------------------------------------------ plumbing
    def credentials(self) -> Credentials | None:
        if not self._creds_loaded:
            self._creds = find_credentials(
                self.ref.registry, creds=self.options.creds, authfile=self.options.authfile
            )
            self._creds_loaded = True
            if self._creds is not None:
                self._secrets.update(self._creds.secrets())
        return self._creds

    def scrub(self, text: str) -> str:
        """``text`` with every secret this client knows replaced by ``***``."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret:
                text = text.replace(secret, "***")
        return text

    def error(self, message: str) -> RegistryError:
        return RegistryError(self.scrub(message))

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _conn(self, scheme: str, netloc: str) -> _Connection:
        key = (scheme, netloc)
        if key not in self._conns:
            ctx = None
            if scheme == "https":
                if netloc not in self._ctx:
                    self._ctx[netloc] = ssl_context(self.options, netloc)
                ctx = self._ctx[netloc]
            self._conns[key] = _Connection(scheme, netloc, ctx, self.options.timeout)
        return self._conns[key]

    def url(self, path: str) -> str:
        return f"{self._scheme}://{self.host}/v2/{self.ref.repository}/{path}"

    def _send_once(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | Callable[[], BinaryIO] | None,
    ) -> _Response:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise self.error(f"{self.label}: refusing URL with scheme {parts.scheme!r}")
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        hdrs = {"User-Agent": USER_AGENT, **headers}
        payload: bytes | BinaryIO | None = body() if callable(body) else body
        try:
            return self._conn(parts.scheme, parts.netloc).request(method, target, hdrs, payload)
        finally:
            if payload is not None and not isinstance(payload, bytes):
                payload.close()

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | Callable[[], BinaryIO] | None = None,
    ) -> _Response:
        """One request with retries (connection errors, 5xx, 429) and the TLS→HTTP fallback."""
        deadline = time.monotonic() + self.options.retry_seconds
        attempt = 0
        while True:
            try:
                resp = self._send_once(method, url, headers, body)
            except ssl.SSLError as exc:
                if not self.options.tls_verify and url.startswith("https://") and attempt == 0:
                    # --tls-verify=false: a registry that does not speak TLS is spoken to in HTTP.
                    url = "http://" + url[len("https://") :]
                    if urllib.parse.urlsplit(url).netloc == self.host:
                        self._scheme = "http"
                    continue
                netloc = urllib.parse.urlsplit(url).netloc
                if isinstance(exc, ssl.SSLCertVerificationError):
                    raise self.error(
                        f"{self.label}: certificate verify failed for {netloc} "
                        f"({_printable(exc.verify_message or str(exc), 100)}; trust its CA with "
                        "--cert-dir DIR, or --tls-verify=false)"
                    ) from None
                raise self.error(
                    f"{self.label}: TLS error talking to {netloc} "
                    f"({_printable(getattr(exc, 'reason', None) or str(exc), 120)})"
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                reason = _printable(str(exc) or exc.__class__.__name__, 120)
                wait = min(BACKOFF_BASE * 2**attempt, BACKOFF_MAX)
                if attempt >= self.options.retries or time.monotonic() + wait > deadline:
                    raise self.error(
                        f"{self.label}: cannot reach {urllib.parse.urlsplit(url).netloc} "
                        f"({reason}) after {attempt + 1} attempts"
                    ) from None
                self._sleep(wait)
                attempt += 1
                continue
            if resp.status not in RETRY_STATUSES:
                return resp
            hinted = retry_after(resp.header("Retry-After"))
            resp.discard()
            wait = hinted if hinted is not None else min(BACKOFF_BASE * 2**attempt, BACKOFF_MAX)
            if attempt >= self.options.retries:
                raise self.error(
                    f"{self.label}: HTTP {resp.status} from the registry after {attempt + 1} attempts"
                )
            if time.monotonic() + wait > deadline:
                raise self.error(
                    f"{self.label}: HTTP {resp.status}; waiting {wait:.0f} s more exceeds the "
                    f"{self.options.retry_seconds:.0f}-second retry budget"
                )
            self._sleep(wait)
            attempt += 1

    # ------------------------------------------------------------------ authentication
    def _authenticate(self, challenge: str | None) -> bool:
        """Answer a 401's challenge; False when there is nothing more to try."""
        if not challenge:
            return False
        scheme, params = parse_challenge(challenge)
        creds = self.credentials()
        if scheme == "basic":
            if creds is None or not creds.username:
                return False
            self._check_cleartext(f"{self._scheme}://{self.host}/")
            self._auth = creds.basic()
            self._secrets.add(self._auth.split(" ", 1)[1])
            return True
        if scheme != "bearer" or "realm" not in params:
            return False
        token = self._fetch_token(params, creds)
        self._auth = f"Bearer {token}"
        self._secrets.add(token)
        return True

    def _check_cleartext(self, url: str) -> None:
        if url.startswith("http://") and self.options.tls_verify:
            raise self.error(
                f"{self.label}: refusing to send credentials over plain HTTP to "
                f"{urllib.parse.urlsplit(url).netloc} (use --tls-verify=false to allow)"
            )

    def _fetch_token(self, params: dict[str, str], creds: Credentials | None) -> str:
        realm = params["realm"]
        parts = urllib.parse.urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise self.error(f"{self.label}: token realm is not an http(s) URL")
        scope = f"repository:{self.ref.repository}:{self.actions}"
        query: dict[str, str] = {}
        if params.get("service"):
            query["service"] = params["service"]
        headers = {"Accept": "application/json"}
        body: bytes | None = None
        method = "GET"
        if creds is not None:
            self._check_cleartext(realm)
        if creds is not None and creds.identity_token:
            method = "POST"
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "client_id": USER_AGENT,
                "scope": scope,
                **query,
            }
            body = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            url = realm
        else:
            query["scope"] = scope
            sep = "&" if parts.query else "?"
            url = realm + sep + urllib.parse.urlencode(query)
            if creds is not None:
                headers["Authorization"] = creds.basic()
        resp = self._send(method, url, headers, body)
        if resp.status in (401, 403):
            resp.discard()
            who = f"credentials from {creds.source}" if creds else "anonymous access"
            raise self.error(
                f"{self.label}: {resp.status} from the token service ({who} refused for {scope})"
            )
        if resp.status != 200:
            resp.discard()
            raise self.error(f"{self.label}: token service answered HTTP {resp.status}")
        data = resp.read_bounded(MAX_TOKEN_BYTES, f"{self.label}: token response")
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise self.error(f"{self.label}: token response is not JSON") from None
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token or not token.isprintable():
            raise self.error(f"{self.label}: token response has no token")
        return token

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | Callable[[], BinaryIO] | None = None,
        what: str = "",
        ok: tuple[int, ...] = (200,),
        redirects: bool = False,
    ) -> _Response:
        """An authenticated request; a status outside ``ok`` is a one-line RegistryError."""
        url = path_or_url if "://" in path_or_url else self.url(path_or_url)
        hdrs = dict(headers or {})
        authed_once = False
        for _ in range(MAX_REDIRECTS + 1):
            same_host = urllib.parse.urlsplit(url).netloc == self.host
            send = dict(hdrs)
            if self._auth and same_host:
                send["Authorization"] = self._auth
            resp = self._send(method, url, send, body)
            if resp.status == 401 and same_host and not authed_once:
                challenge = resp.header("WWW-Authenticate")
                resp.discard()
                authed_once = True
                if self._authenticate(challenge):
                    url = self.url(url.split(f"/v2/{self.ref.repository}/", 1)[1])
                    continue
                raise self._status_error(401, what, b"")
            if redirects and resp.status in (301, 302, 303, 307, 308):
                location = resp.header("Location")
                resp.discard()
                if not location:
                    raise self.error(f"{what}: redirect without a Location")
                url = urllib.parse.urljoin(url, location)
                continue
            if resp.status in ok:
                return resp
            body_text = b""
            with contextlib.suppress(RegistryError):
                body_text = resp.read_bounded(MAX_ERROR_BODY, what)
            raise self._status_error(resp.status, what, body_text)
        raise self.error(f"{what}: too many redirects")

    def _status_error(self, status: int, what: str, body: bytes) -> RegistryError:
        detail = ""
        try:
            doc = json.loads(body) if body else None
            errs = doc.get("errors") if isinstance(doc, dict) else None
            if isinstance(errs, list) and errs and isinstance(errs[0], dict):
                code = errs[0].get("code")
                msg = errs[0].get("message")
                if isinstance(code, str) and _CODE_RE.match(code):
                    detail = code
                if isinstance(msg, str) and msg:
                    detail += (": " if detail else "") + _printable(msg, 120)
        except (ValueError, UnicodeDecodeError, RecursionError):
            pass
        suffix = f" ({detail})" if detail else ""
        if status == 401:
            creds = self.credentials()
            who = (
                f"credentials from {creds.source} were rejected"
                if creds
                else f"no credentials found for {self.ref.registry}"
            )
            return self.error(f"{what}: 401 unauthorized ({who}){suffix}")
        if status == 403:
            return self.error(f"{what}: 403 denied (not allowed to {self.actions}){suffix}")
        if status == 404:
            return self.error(f"{what}: not found (404){suffix}")
        return self.error(f"{what}: registry answered HTTP {status}{suffix}")

    # ------------------------------------------------------------------ API
    def get_manifest(self, target: str, what: str) -> Manifest:
        """The manifest for a tag or digest, size-bounded and digest-verified."""
        resp = self.request(
            "GET", f"manifests/{target}", headers={"Accept": MANIFEST_ACCEPT}, what=what
        )
        data = resp.read_bounded(self.options.max_manifest_bytes, f"{what}: manifest")
        digest = sha256_text(data)
        if _DIGEST_RE.match(target) and digest != target:
            raise self.error(f"{what}: manifest digest mismatch (expected {target}, got {digest})")
        header = resp.header("Docker-Content-Digest")
        if header and header.startswith("sha256:") and header != digest:
            raise self.error(
                f"{what}: manifest digest mismatch (registry says {_printable(header, 80)}, "
                f"content is {digest})"
            )
        media_type = (resp.header("Content-Type") or "").split(";")[0].strip()
        try:
            doc = json.loads(data)
            if isinstance(doc, dict) and isinstance(doc.get("mediaType"), str):
                media_type = doc["mediaType"]
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise self.error(f"{what}: manifest {digest} is not valid JSON") from None
        return Manifest(data, media_type, digest)

    def manifest_exists(self, target: str, what: str) -> bool:
        resp = self.request(
            "HEAD", f"manifests/{target}", headers={"Accept": MANIFEST_ACCEPT}, what=what,
            ok=(200, 404),
        )  # fmt: skip
        resp.discard()
        return resp.status == 200

    def fetch_blob(
        self, digest: str, size: int, out: BinaryIO, what: str, progress: Progress | None = None
    ) -> None:
        """Stream blob ``digest`` into ``out``, refusing a wrong size or digest.

        Interrupted transfers restart from the beginning (``out`` is rewound), within the
        same retry budget as other requests.
        """
        start = out.tell()
        attempt = 0
        while True:
            out.seek(start)
            out.truncate()
            try:
                self._fetch_once(digest, size, out, what, progress)
                return
            except (OSError, http.client.HTTPException) as exc:
                if attempt >= self.options.retries:
                    raise self.error(
                        f"{what}: download interrupted ({_printable(str(exc), 80)}) "
                        f"after {attempt + 1} attempts"
                    ) from None
                self._sleep(min(BACKOFF_BASE * 2**attempt, BACKOFF_MAX))
                attempt += 1

    def _fetch_once(
        self, digest: str, size: int, out: BinaryIO, what: str, progress: Progress | None
    ) -> None:
        resp = self.request("GET", f"blobs/{digest}", what=what, redirects=True)
        length = resp.header("Content-Length")
        if length is not None and length.isdigit() and int(length) != size:
            resp.close()
            raise self.error(f"{what}: registry sends {int(length)} bytes, descriptor says {size}")
        h = hashlib.sha256()
        total = 0
        try:
            for chunk in resp.chunks():
                total += len(chunk)
                if total > size:
                    raise self.error(f"{what}: blob is longer than its descriptor's {size} bytes")
                h.update(chunk)
                out.write(chunk)
                if progress is not None:
                    progress(len(chunk))
        except RegistryError:
            resp.close()
            raise
        resp.finish()
        if total != size:
            raise http.client.IncompleteRead(b"", size - total)
        got = "sha256:" + h.hexdigest()
        if got != digest:
            raise self.error(f"{what}: digest mismatch (expected {digest}, got {got})")

    def blob_exists(self, digest: str, what: str) -> bool:
        resp = self.request("HEAD", f"blobs/{digest}", what=what, ok=(200, 404), redirects=True)
        resp.discard()
        return resp.status == 200

    def upload_blob(
        self,
        digest: str,
        size: int,
        opener: bytes | Callable[[], BinaryIO],
        what: str,
    ) -> bool:
        """Upload a blob (monolithic PUT) unless the registry has it; True if uploaded."""
        if self.blob_exists(digest, what):
            return False
        resp = self.request("POST", "blobs/uploads/", what=what, ok=(202,), body=b"")
        location = resp.header("Location")
        resp.discard()
        if not location:
            raise self.error(f"{what}: upload started without a Location")
        url = urllib.parse.urljoin(self.url("blobs/uploads/"), location)
        if urllib.parse.urlsplit(url).netloc != self.host:
            raise self.error(f"{what}: upload Location points to another host")
        sep = "&" if "?" in url else "?"
        url += sep + urllib.parse.urlencode({"digest": digest})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        resp = self.request("PUT", url, headers=headers, body=opener, what=what, ok=(201,))
        resp.discard()
        return True

    def put_manifest(self, target: str, data: bytes, media_type: str, what: str) -> _Response:
        """PUT a manifest under a tag or its digest; the registry's digest must be ours."""
        digest = sha256_text(data)
        headers = {"Content-Type": media_type, "Content-Length": str(len(data))}
        resp = self.request(
            "PUT", f"manifests/{target}", headers=headers, body=data, what=what, ok=(201,)
        )
        resp.discard()
        header = resp.header("Docker-Content-Digest")
        if header and header != digest:
            raise self.error(
                f"{what}: registry stored the manifest as {_printable(header, 80)}, not {digest}"
            )
        return resp


def file_opener(path: str | os.PathLike[str]) -> Callable[[], BinaryIO]:
    return lambda: open(path, "rb")
