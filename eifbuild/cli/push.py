"""``eifbuild push APP.eif docker://REGISTRY/REPO:TAG``: publish an EIF as an OCI artifact."""

from __future__ import annotations

import argparse

from eifbuild.cli._bars import progress, set_quiet
from eifbuild.cli._common import info, print_json
from eifbuild.cli._registry import add_registry_arguments, registry_options

HELP = "publish an EIF and its measurements to a registry as an OCI artifact"
DESCRIPTION = """Upload EIF as an OCI artifact (artifactType application/vnd.eifbuild.enclave-image.v1):
the EIF, its measurements JSON and (when signed) the signing certificate as blobs, annotated
with PCR0/1/2[/8], the EIF version, the architecture and the EIF's BuildTime. Prints the
manifest digest; the same EIF under the same file name always gives the same digest.

--attach docker://REGISTRY/IMAGE[:TAG|@sha256:…] also pushes the measurements as a referrer
(OCI 1.1 `subject`) of that container image, naming the EIF artifact, so that the image's digest
leads to the EIF built from it (registries without the referrers API get the OCI fallback tag
sha256-<hex>)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("eif", metavar="EIF", help="EIF file to publish")
    p.add_argument("target", metavar="docker://REGISTRY/REPO:TAG", help="where to push")
    p.add_argument(
        "--attach",
        metavar="docker://IMAGE",
        help="also attach the measurements to this image as an OCI 1.1 referrer",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_registry_arguments(p, require_digest=False)


def run(args: argparse.Namespace) -> int:
    from eifbuild.registry import push_eif

    if args.json:
        set_quiet(True)
    with progress(desc="measuring") as bar:
        result = push_eif(
            args.eif,
            args.target,
            options=registry_options(args),
            attach=args.attach,
            progress=bar.update,
        )
    for w in result.warnings:
        info(f"eifbuild: warning: {w}")
    if args.json:
        print_json(result.as_json())
        return 0
    info(f"pushed {result.reference}")
    if result.attached is not None:
        info(f"attached to {result.attached.subject} as {result.attached.referrer_digest}")
    print(result.digest)
    return 0
