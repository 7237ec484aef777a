"""Shared test plumbing: real components, required or skipped.

Tests that need a real component (dockerd, QEMU, musl-gcc, the eifbuild kernel) ask for it
through ``require(name, available, why)``. Under ``scripts/test`` (and so in CI)
``EIFBUILD_REQUIRE=all`` turns a missing component into a failure instead of a skip, so a
green run cannot hide a missing install step.
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.helpers.cli import CliResult, run_main

ROOT = Path(__file__).resolve().parent.parent
TESTS = str(ROOT / "tests")

# Property tests: no per-example deadline (the machine may be busy building a kernel); in CI
# (CI=true) examples are derived from the test itself, so a run is reproducible.
settings.register_profile(
    "eifbuild", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("ci", parent=settings.get_profile("eifbuild"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "eifbuild")
REQUIRED = {x.strip() for x in os.environ.get("EIFBUILD_REQUIRE", "").split(",") if x.strip()}


# Component (the first argument of require) -> pytest markers it implies. Every component is
# also a marker of its own name ("-" -> "_"), so `-m "not kernel"` deselects every test whose
# code, fixtures or helper functions call require("kernel", ...) or require("kernel-aarch64", ...).
COMPONENT_MARKERS: dict[str, tuple[str, ...]] = {
    "kernel-aarch64": ("kernel",),
    "docker-registry": ("registry",),
}
COMPONENTS = (
    "apt", "busybox", "cpio", "cross-aarch64", "docker", "docker-registry", "dpkg-deb", "gcc",
    "kernel", "kernel-aarch64", "mmdebstrap", "musl", "oras", "qemu", "skopeo", "toolchain-root",
)  # fmt: skip
_REQUIRE_CALL = re.compile(r"""\brequire\(\s*["']([\w-]+)["']""")
_CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
# The running test, shared by every copy of this module (tests import it both as ``conftest``
# and as ``tests.conftest``, which Python treats as two modules).
_current: list[pytest.Item] = sys.__dict__.setdefault("_eifbuild_running_tests", [])


def markers_for(component: str) -> set[str]:
    return {component.replace("-", "_"), *COMPONENT_MARKERS.get(component, ())}


def _source(obj: object) -> str:
    try:
        return inspect.getsource(obj)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""


def _module_requirements(module: ModuleType) -> dict[str, set[str]]:
    """name -> components for every function/class of ``module`` that calls require,
    directly or through another function of the module (fixpoint over the call graph)."""
    cache: dict[str, set[str]] | None = getattr(module, "__eifbuild_requires__", None)
    if cache is not None:
        return cache
    sources = {
        name: _source(obj)
        for name, obj in vars(module).items()
        if (inspect.isfunction(obj) or inspect.isclass(obj))
        and getattr(obj, "__module__", None) == module.__name__
    }
    reqs = {name: set(_REQUIRE_CALL.findall(src)) for name, src in sources.items()}
    calls = {name: set(_CALL.findall(src)) & sources.keys() for name, src in sources.items()}
    changed = True
    while changed:
        changed = False
        for name, callees in calls.items():
            for callee in callees:
                if not reqs[callee] <= reqs[name]:
                    reqs[name] |= reqs[callee]
                    changed = True
    result = {name: comps for name, comps in reqs.items() if comps}
    module.__eifbuild_requires__ = result  # type: ignore[attr-defined]
    return result


def required_components(item: pytest.Item) -> set[str]:
    """The components ``item`` asks for: require(...) in the test, its fixtures (the whole
    fixture closure) and the module-level helpers any of them call."""
    found: set[str] = set()
    funcs: list[Any] = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    if info is not None:
        for defs in info.name2fixturedefs.values():
            funcs += [d.func for d in defs]
    for func in funcs:
        if func is None:
            continue
        func = getattr(getattr(func, "hypothesis", None), "inner_test", func)  # @given
        func = inspect.unwrap(func)
        src = _source(func)
        found |= set(_REQUIRE_CALL.findall(src))
        names = getattr(func, "__globals__", {})
        for called in set(_CALL.findall(src)) - {func.__name__}:
            obj = names.get(called)
            module = inspect.getmodule(obj) if obj is not None else None
            if module is not None and str(getattr(module, "__file__", "")).startswith(TESTS):
                found |= _module_requirements(module).get(getattr(obj, "__name__", ""), set())
    return found


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "registry: needs Debian's docker-registry")
    for component in COMPONENTS:
        for marker in markers_for(component) - {"docker", "qemu", "kernel", "musl", "registry"}:
            config.addinivalue_line("markers", f"{marker}: needs {component} (see require())")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for component in sorted(required_components(item) & set(COMPONENTS)):
            for marker in sorted(markers_for(component)):
                item.add_marker(marker)


@pytest.fixture(autouse=True)
def _require_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Remember the running test, so require() can check that it carries the markers."""
    _current.append(request.node)
    yield
    _current.pop()


def require(component: str, available: bool, why: str = "") -> None:
    """Skip (or fail, when required) a test whose real component is unavailable.

    It also fails a test that reaches require() without the markers the component implies:
    the collection-time derivation (required_components) missed a path, so ``-m "not X"``
    would not have deselected it."""
    if component not in COMPONENTS:
        pytest.fail(f"require({component!r}): add it to COMPONENTS in tests/conftest.py")
    if _current:
        missing = markers_for(component) - {m.name for m in _current[-1].iter_markers()}
        if missing:
            pytest.fail(
                f"{_current[-1].nodeid} calls require({component!r}) but is not marked "
                f"{sorted(missing)}: tests/conftest.py required_components missed the call"
            )
    if available:
        return
    msg = f"{component} unavailable{': ' + why if why else ''}"
    if "all" in REQUIRED or component in REQUIRED:
        pytest.fail(f"{msg} (EIFBUILD_REQUIRE={','.join(sorted(REQUIRED))})")
    pytest.skip(msg)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """``cli("build", ...)`` runs eifbuild in-process: (rc, out, err) of that call."""

    def _run(*argv: str) -> CliResult:
        return run_main(capsys, *argv)

    return _run


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
