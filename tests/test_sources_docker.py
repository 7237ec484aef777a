"""docker-daemon: transport errors against the real daemon."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eifbuild.errors import ImageSourceError
from eifbuild.sources import open_image
from tests.helpers.imagegen import (
    base_layer,
    docker_import,
    docker_load,
    docker_rmi,
    layer_bytes,
    write_docker_archive,
    write_layer,
)

pytestmark = pytest.mark.docker


def test_missing_image(docker_client: Any) -> None:
    with pytest.raises(
        ImageSourceError, match="eifbuild-test/absent:1: no such image in the Docker daemon"
    ):
        open_image("docker-daemon:eifbuild-test/absent:1")


def test_missing_image_hints_at_a_file_transport(
    docker_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImageSourceError, match=r"daemon \(did you mean docker-archive:\?\)$"):
        open_image("dockerarchive:app.tar")
    (tmp_path / "app.tar").write_bytes(b"")
    with pytest.raises(
        ImageSourceError, match=r"app.tar is a local path: write docker-archive:app.tar for"
    ):
        open_image("app.tar")
    with pytest.raises(ImageSourceError, match=r"no such image in the Docker daemon$"):
        open_image("eifbuild-test/absent:1")


def test_unreachable_daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(
        ImageSourceError,
        match=r"cannot reach the Docker daemon at unix://\S+ \(No such file or directory\): "
        "start it or set DOCKER_HOST; docker-archive: and oci: references need no daemon",
    ):
        open_image("some/image:1")
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{_closed_port()}")
    with pytest.raises(ImageSourceError, match=r"at tcp://\S+ \(Connection refused\)"):
        open_image("some/image:1")
    (tmp_path / "saved.tar").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImageSourceError, match=r"need no daemon \(saved.tar is a local path"):
        open_image("saved.tar")


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_failing_docker_dir_build(docker_client: Any, tmp_path: Path) -> None:
    docker_import(write_layer(tmp_path / "b.tar", base_layer()), "eifbuild-test/fail-base:1")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM eifbuild-test/fail-base:1\nRUN exit 3\n")
    try:
        with pytest.raises(
            ImageSourceError, match=r"docker build of .*ctx failed: .*returned a non-zero code: 3"
        ):
            open_image("eifbuild-test/fail:1", docker_dir=ctx)
        with pytest.raises(ImageSourceError, match="no Dockerfile"):
            open_image("eifbuild-test/fail:1", docker_dir=tmp_path / "b.tar.d")
    finally:
        docker_rmi("eifbuild-test/fail-base:1")


def test_daemon_image_arch_checked(docker_client: Any, tmp_path: Path) -> None:
    layer = layer_bytes(base_layer(busybox=False))
    docker_load(
        write_docker_archive(tmp_path / "arm.tar", [layer], "eifbuild-test/arm:1", arch="arm64")
    )
    try:
        with pytest.raises(
            ImageSourceError, match="image is linux/arm64, but --arch amd64 was asked"
        ):
            open_image("eifbuild-test/arm:1", arch="amd64")
        with open_image("eifbuild-test/arm:1") as image:
            assert image.config.architecture == "arm64"
            assert image.image_id.startswith("sha256:")
    finally:
        docker_rmi("eifbuild-test/arm:1")


def test_build_steps_are_read_from_the_builder_stream() -> None:
    from eifbuild.sources.daemon import build_step

    assert build_step("Step 2/5 : RUN echo hi") == (2, 5)
    assert build_step(" ---> Running in 1234") is None
    assert build_step(None) is None and build_step({"x": 1}) is None
