"""``docker-daemon:REF`` (and bare ``name:tag``) through docker-py, honouring ``DOCKER_HOST``.

The image is fetched with the Engine API's ``GET /images/<ref>/get`` (``docker save``), streamed
to a temp file owned by the returned Image, and then read exactly like a ``docker-archive:``
input, so both give the same rootfs by construction. ``--docker-dir`` first builds the
Dockerfile in that directory (tagged REF) with the classic builder, as nitro-cli does.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from eifbuild._atomic import make_temp_dir
from eifbuild._progress import progress
from eifbuild.errors import ImageSourceError
from eifbuild.limits import DEFAULT_LIMITS, Limits
from eifbuild.sources.archive import open_docker_archive
from eifbuild.sources.image import Image


def _client() -> Any:
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:
        host = os.environ.get("DOCKER_HOST", "the default Docker socket")
        raise ImageSourceError(
            f"cannot reach the Docker daemon at {host} ({_root_cause(exc)}): start it or set "
            "DOCKER_HOST; docker-archive: and oci: references need no daemon"
        ) from None
    return client


def _transport_hint(reference: str, docker_dir: Path | None) -> str:
    """A hint when a reference meant for a file transport reached the daemon."""
    if docker_dir is not None:
        return ""
    prefix = reference.partition(":")[0]
    close = difflib.get_close_matches(prefix, _FILE_TRANSPORTS, n=1, cutoff=0.75)
    if close and prefix not in ("docker-daemon", close[0]):
        return f" (did you mean {close[0]}:?)"
    if Path(reference).exists():
        return (
            f" ({reference} is a local path: write docker-archive:{reference} for `docker save` "
            f"output, oci:{reference} or oci-archive:{reference} for OCI layouts)"
        )
    return ""


_FILE_TRANSPORTS = ("docker-archive", "oci-archive", "oci")


def _root_cause(exc: BaseException) -> str:
    """The innermost OS error of a docker-py failure ("Connection refused"), else a class name."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    for reason in ("Connection refused", "Permission denied", "No such file or directory"):
        if reason in text:
            return reason
    return exc.__class__.__name__


def build(client: Any, docker_dir: Path, tag: str) -> None:
    """``docker build -t tag docker_dir`` (Dockerfile in that directory)."""
    import docker.errors

    if not (docker_dir / "Dockerfile").is_file():
        raise ImageSourceError(f"{docker_dir}: no Dockerfile in the --docker-dir directory")
    try:
        with progress(desc="docker build", unit="step") as bar:
            for chunk in client.api.build(path=str(docker_dir), tag=tag, rm=True, decode=True):
                if isinstance(chunk, dict) and chunk.get("error"):
                    msg = str(chunk["error"]).strip().splitlines()[-1:] or ["failed"]
                    raise ImageSourceError(f"docker build of {docker_dir} failed: {msg[0]}")
                if isinstance(chunk, dict) and (step := build_step(chunk.get("stream"))):
                    bar.total = step[1]
                    bar.update(step[0] - bar.n)
    except docker.errors.APIError as exc:
        raise ImageSourceError(f"docker build of {docker_dir} failed: {exc.explanation}") from None


_STEP_RE = re.compile(r"Step (\d+)/(\d+) :")


def build_step(stream: object) -> tuple[int, int] | None:
    """(step, steps) from a classic builder's "Step 2/5 : RUN ..." line, else None."""
    m = _STEP_RE.match(stream) if isinstance(stream, str) else None
    return (int(m[1]), int(m[2])) if m else None


def open_daemon(
    reference: str,
    ref: str,
    arch: str | None,
    docker_dir: Path | None = None,
    limits: Limits = DEFAULT_LIMITS,
    tmp_dir: str | None = None,
) -> Image:
    import docker.errors

    try:
        client = _client()
    except ImageSourceError as exc:
        raise ImageSourceError(f"{exc}{_transport_hint(reference, docker_dir)}") from None
    if docker_dir is not None:
        build(client, docker_dir, ref)
    try:
        inspect = client.api.inspect_image(ref)
    except docker.errors.ImageNotFound:
        raise ImageSourceError(
            f"{reference}: no such image in the Docker daemon{_transport_hint(reference, docker_dir)}"
        ) from None
    except docker.errors.APIError as exc:
        raise ImageSourceError(f"{reference}: {exc.explanation}") from None
    image_id = str(inspect.get("Id", ""))
    tmp = (
        make_temp_dir("image")
        if tmp_dir is None
        else tempfile.mkdtemp(prefix="eifbuild-image-", dir=tmp_dir)
    )
    try:
        saved = Path(tmp) / "image.tar"
        with open(saved, "wb") as out, progress(desc="docker save") as bar:
            for chunk in client.api.get_image(image_id or ref):
                out.write(chunk)
                bar.update(len(chunk))
        image = open_docker_archive(reference, saved, None, arch, limits)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    image._tmp = tmp
    if image_id and image.image_id != image_id:
        image.close()
        raise ImageSourceError(
            f"{reference}: daemon sent config {image.image_id}, expected {image_id}"
        )
    image.input_digests["repo_digests"] = sorted(inspect.get("RepoDigests") or [])
    return image
