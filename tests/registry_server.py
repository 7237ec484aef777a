"""Real registries for tests: Debian's ``docker-registry`` (CNCF distribution) on 127.0.0.1.

Each :class:`Registry` runs its own ``docker-registry serve CONFIG`` process on a free port with
a generated config and a private storage directory, so tests never share (or stop) another
test's registry. Three modes:

* ``plain``: HTTP, no auth;
* ``basic``: htpasswd basic auth behind TLS, with a CA made here (``cryptography``);
* ``token``: token auth against :class:`TokenServer`, a small token endpoint written here that
  checks basic credentials and issues ES256 JWTs with an ``x5c`` chain the registry trusts.

Images go in with ``skopeo copy``; :class:`FlakyProxy` answers 429 (with ``Retry-After``) a
given number of times before forwarding to a registry.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGISTRY_BIN = "/usr/bin/docker-registry"
HTPASSWD_BIN = "htpasswd"


def have_registry() -> bool:
    return os.access(REGISTRY_BIN, os.X_OK) and shutil.which(HTPASSWD_BIN) is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- certificates


@dataclass
class Pki:
    """A CA and a server certificate for 127.0.0.1, written as PEM files into ``root``."""

    root: Path
    ca_pem: Path = field(init=False)
    cert_pem: Path = field(init=False)
    key_pem: Path = field(init=False)

    def __post_init__(self) -> None:
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        self.root.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eifbuild test CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_pem = self.root / "ca.crt"
        self.cert_pem = self.root / "server.pem"
        self.key_pem = self.root / "server.key"
        self.ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key_pem.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def cert_dir(self) -> Path:
        """A skopeo/eifbuild ``--cert-dir``: the CA as ``*.crt``."""
        d = self.root / "certs.d"
        d.mkdir(exist_ok=True)
        shutil.copy(self.ca_pem, d / "ca.crt")
        return d


# ---------------------------------------------------------------- token server


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A token endpoint (distribution's token auth): basic credentials in, ES256 JWT out."""

    def __init__(self, root: Path, users: dict[str, str], service: str = "eifbuild-test") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.users = users
        self.service = service
        self.issuer = "eifbuild-test-issuer"
        self.requests: list[dict[str, Any]] = []
        self.refresh_tokens: dict[str, str] = {}  # identity token -> user
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token signer")])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = root / "token-ca.pem"
        root.mkdir(parents=True, exist_ok=True)
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self._der = self.cert.public_bytes(serialization.Encoding.DER)
        self.port = free_port()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                server.handle(self)

            def do_POST(self) -> None:  # the OAuth2 refresh-token grant
                server.handle_post(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        import urllib.parse

        q = urllib.parse.parse_qs(urllib.parse.urlsplit(h.path).query)
        auth = h.headers.get("Authorization", "")
        user = None
        if auth.startswith("Basic "):
            u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(u) != p:
                h.send_response(401)
                h.end_headers()
                return
            user = u
        scopes = q.get("scope", [])
        self.requests.append({"user": user, "scope": scopes, "service": q.get("service")})
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            allowed = actions.split(",") if user else []  # anonymous: no access at all
            access.append({"type": kind, "name": name, "actions": allowed})
        body = json.dumps({"token": self.token(user or "", access), "expires_in": 300}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def handle_post(self, h: http.server.BaseHTTPRequestHandler) -> None:
        """``grant_type=refresh_token``: an identity token (``refresh_tokens``) names a user."""
        import urllib.parse

        length = int(h.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(h.rfile.read(length).decode())
        user = self.refresh_tokens.get(form.get("refresh_token", [""])[0])
        if form.get("grant_type") != ["refresh_token"] or user is None:
            h.send_response(401)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        scopes = form.get("scope", [])
        self.requests.append({"user": user, "scope": scopes, "grant": "refresh_token"})
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        body = json.dumps({"access_token": self.token(user, access)}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def token(self, sub: str, access: list[dict[str, Any]]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(self._der).decode()]}
        claims = {
            "iss": self.issuer, "sub": sub, "aud": self.service, "exp": now + 300,
            "nbf": now - 60, "iat": now, "jti": hashlib.sha256(os.urandom(8)).hexdigest(),
            "access": access,
        }  # fmt: skip
        signing = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        der = self.key.sign(signing.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return signing + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------- the registry


class Registry:
    """One ``docker-registry`` process on 127.0.0.1:<free port>."""

    def __init__(
        self,
        root: Path,
        mode: str = "plain",
        users: dict[str, str] | None = None,
        token: TokenServer | None = None,
    ) -> None:
        self.root = root
        self.mode = mode
        self.users = users or {}
        self.port = free_port()
        self.pki: Pki | None = None
        root.mkdir(parents=True, exist_ok=True)
        http_cfg: dict[str, Any] = {"addr": f"127.0.0.1:{self.port}", "secret": "test-secret"}
        auth: dict[str, Any] | None = None
        if mode == "basic":
            self.pki = Pki(root / "pki")
            http_cfg["tls"] = {"certificate": str(self.pki.cert_pem), "key": str(self.pki.key_pem)}
            htpasswd = root / "htpasswd"
            for i, (user, password) in enumerate(self.users.items()):
                args = [HTPASSWD_BIN, "-B", "-b"] + (["-c"] if i == 0 else [])
                subprocess.run([*args, str(htpasswd), user, password], check=True,
                               capture_output=True)  # fmt: skip
            auth = {"htpasswd": {"realm": "eifbuild-test", "path": str(htpasswd)}}
        elif mode == "token":
            assert token is not None
            auth = {
                "token": {
                    "realm": token.realm,
                    "service": token.service,
                    "issuer": token.issuer,
                    "rootcertbundle": str(token.bundle),
                }
            }
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(root / "data")},
                "delete": {"enabled": True},
            },
            "http": http_cfg,
        }
        if auth is not None:
            config["auth"] = auth
        self.config = root / "config.yml"
        self.config.write_text(json.dumps(config))  # JSON is YAML
        self.log = open(root / "registry.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(self.config)], stdout=self.log, stderr=self.log
        )
        self._wait()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited: {(self.root / 'registry.log').read_text()[-2000:]}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("docker-registry did not start listening")

    def skopeo_args(self, creds: str | None = None, prefix: str = "dest") -> list[str]:
        args: list[str] = []
        if self.mode == "plain" or self.mode == "token":
            args.append(f"--{prefix}-tls-verify=false")
        elif self.pki is not None:
            args.append(f"--{prefix}-cert-dir={self.pki.cert_dir()}")
        if creds is not None:
            args.append(f"--{prefix}-creds={creds}")
        return args

    def push(self, source: str, name: str, creds: str | None = None) -> str:
        """``skopeo copy SOURCE docker://HOST/NAME``; returns the docker:// reference."""
        dest = f"docker://{self.host}/{name}"
        subprocess.run(
            ["skopeo", "copy", "-q", *self.skopeo_args(creds), source, dest],
            check=True,
            capture_output=True,
        )
        return dest

    def get(self, path: str, accept: str | None = None) -> tuple[int, bytes, dict[str, str]]:
        """A raw GET on a plain registry (test-side inspection)."""
        req = urllib.request.Request(f"http://{self.host}{path}")
        if accept:
            req.add_header("Accept", accept)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# ---------------------------------------------------------------- a flaky front


class FlakyProxy:
    """Forwards to ``upstream`` after answering ``failures`` requests with ``status``.

    ``tamper``: flip one bit of every 200 body whose path contains it (a corrupting proxy).
    """

    def __init__(
        self,
        upstream: str,
        failures: int = 1,
        status: int = 429,
        retry_after: str = "1",
        tamper: bytes | None = None,
        challenge: bool = False,
        redirect_blobs_to: str | None = None,
    ) -> None:
        self.upstream = upstream
        self.tamper = tamper
        self.challenge = challenge  # 401 + Basic challenge to requests without Authorization
        self.redirect_blobs_to = redirect_blobs_to  # 307 blob GETs to this host:port
        self.auth_seen: list[str | None] = []  # the Authorization header of every request
        self.failures = failures
        self.status = status
        self.retry_after = retry_after
        self.seen: list[tuple[str, str, float]] = []
        self.port = free_port()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def _forward(self) -> None:
                proxy.seen.append((self.command, self.path, time.monotonic()))
                proxy.auth_seen.append(self.headers.get("Authorization"))
                if proxy.challenge and not self.headers.get("Authorization"):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="test"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if proxy.redirect_blobs_to and "/blobs/sha256:" in self.path:
                    self.send_response(307)
                    self.send_header("Location", f"http://{proxy.redirect_blobs_to}{self.path}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if proxy.failures > 0:
                    proxy.failures -= 1
                    body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
                    self.send_response(proxy.status)
                    if proxy.retry_after:
                        self.send_header("Retry-After", proxy.retry_after)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else None
                req = urllib.request.Request(
                    f"http://{proxy.upstream}{self.path}", data=data, method=self.command
                )
                for k, v in self.headers.items():
                    if k.lower() not in ("host", "connection", "content-length"):
                        req.add_header(k, v)
                try:
                    resp = urllib.request.urlopen(req, timeout=30)
                    status, headers, body = resp.status, resp.headers, resp.read()
                except urllib.error.HTTPError as exc:
                    status, headers, body = exc.code, exc.headers, exc.read()
                if proxy.tamper and proxy.tamper in self.path.encode() and status == 200 and body:
                    body = body[:-1] + bytes([body[-1] ^ 1])  # one flipped bit in transit
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = _forward

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def tls_context(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca_pem))
