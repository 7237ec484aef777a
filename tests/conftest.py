"""Shared test plumbing: real components, required or skipped.

Tests that need a real component (dockerd, QEMU, musl-gcc, the eifbuild kernel) ask for it
through ``require(name, available, why)``. Under ``scripts/test`` (and so in CI)
``EIFBUILD_REQUIRE=all`` turns a missing component into a failure instead of a skip, so a
green run cannot hide a missing install step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent

# Property tests: no per-example deadline (the machine may be busy building a kernel); in CI
# (CI=true) examples are derived from the test itself, so a run is reproducible.
settings.register_profile(
    "eifbuild", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("ci", parent=settings.get_profile("eifbuild"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "eifbuild")
REQUIRED = {x.strip() for x in os.environ.get("EIFBUILD_REQUIRE", "").split(",") if x.strip()}


def require(component: str, available: bool, why: str = "") -> None:
    """Skip (or fail, when required) a test whose real component is unavailable."""
    if available:
        return
    msg = f"{component} unavailable{': ' + why if why else ''}"
    if "all" in REQUIRED or component in REQUIRED:
        pytest.fail(f"{msg} (EIFBUILD_REQUIRE={','.join(sorted(REQUIRED))})")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """DOCKER_HOST of a real daemon: the environment's, else a private dockerd we start."""
    host = os.environ.get("DOCKER_HOST")
    started = False
    if not host:
        ok = shutil.which("dockerd") is not None and os.geteuid() == 0
        require("docker", ok, "no DOCKER_HOST and cannot start dockerd (needs root + docker.io)")
        script = str(ROOT / "scripts" / "dockerd")
        # Stop the daemon at the end only if this session started it (another run may share it).
        started = subprocess.run([script, "running"], check=False).returncode != 0
        out = subprocess.run([script, "start"], capture_output=True, text=True)
        require("docker", out.returncode == 0, out.stderr.strip()[-500:])
        host = out.stdout.strip()
        os.environ["DOCKER_HOST"] = host
    yield host
    if started:
        subprocess.run([str(ROOT / "scripts" / "dockerd"), "stop"], check=False)


@pytest.fixture(scope="session")
def docker_client(docker_host: str) -> Any:
    import docker

    client = docker.DockerClient(base_url=docker_host)
    try:
        client.ping()
    except Exception as exc:  # pragma: no cover - environment problem
        require("docker", False, f"daemon at {docker_host} does not answer: {exc}")
    return client


def docker_cli(*args: str, input: bytes | None = None) -> bytes:
    """Run the docker CLI against the test daemon; raise with stderr on failure."""
    proc = subprocess.run(["docker", *args], input=input, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"docker {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}"
        )
    return proc.stdout
