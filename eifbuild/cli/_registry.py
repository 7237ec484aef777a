"""Options shared by every command that reads or writes ``docker://`` references."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import sys
from collections.abc import Iterator
from typing import Any

from eifbuild.registry import DEFAULT_OPTIONS, RegistryOptions


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _mib(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of MiB, not {text!r}")
    return int(text)


def add_registry_arguments(p: argparse.ArgumentParser, *, require_digest: bool = True) -> None:
    g = p.add_argument_group(
        "registries (docker://REGISTRY/REPO[:TAG][@sha256:…])",
        "Credentials: --creds, else the auth file (--authfile, $REGISTRY_AUTH_FILE, "
        "~/.docker/config.json: credHelpers, auths, credsStore via docker-credential-NAME).",
    )
    g.add_argument("--authfile", metavar="FILE", help="auth file (Docker config.json format)")
    g.add_argument(
        "--creds",
        metavar="USER[:PASS]",
        help="credentials for the registry (without :PASS, asked on the terminal)",
    )
    g.add_argument(
        "--tls-verify",
        type=_bool,
        default=True,
        metavar="BOOL",
        help="require HTTPS and verify certificates (default true; false also allows HTTP)",
    )
    g.add_argument(
        "--cert-dir",
        metavar="DIR",
        help="CA certificates (*.crt) and client certificate/key pairs (*.cert, *.key)",
    )
    g.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="blob cache (default ~/.cache/eifbuild/registry; shared by concurrent builds)",
    )
    g.add_argument(
        "--cache-max-mib",
        type=_mib,
        metavar="MIB",
        help="evict least recently used blobs above this size "
        f"(default {DEFAULT_OPTIONS.cache_max_bytes >> 20})",
    )
    if require_digest:
        g.add_argument(
            "--require-digest",
            action="store_true",
            help="refuse a docker:// reference without @sha256: (reproducible pipelines pin digests)",
        )


def registry_options(args: argparse.Namespace) -> RegistryOptions:
    creds = args.creds
    if creds is not None and ":" not in creds and creds and sys.stdin.isatty():
        creds = f"{creds}:{getpass.getpass(f'Password for {creds}: ')}"
    kw: dict[str, Any] = {}
    if args.cache_max_mib is not None:
        kw["cache_max_bytes"] = args.cache_max_mib << 20
    return RegistryOptions(
        authfile=args.authfile,
        creds=creds,
        tls_verify=args.tls_verify,
        cert_dir=args.cert_dir,
        cache_dir=args.cache_dir,
        require_digest=bool(getattr(args, "require_digest", False)),
        **kw,
    )


@contextlib.contextmanager
def local_eif(source: str, args: argparse.Namespace) -> Iterator[str]:
    """A path for an EIF argument: the file itself, or a docker:// EIF artifact fetched into
    the blob cache and verified (digests, PCRs against its annotations) first."""
    from eifbuild.registry import fetch_eif, is_docker_reference

    if not is_docker_reference(source):
        yield source
        return
    with fetch_eif(source, options=registry_options(args)) as (_, path):
        yield str(path)
