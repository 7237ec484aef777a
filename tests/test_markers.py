"""Markers follow require(): ``-m "not kernel"`` deselects every test that asks for the kernel.

tests/conftest.py derives markers at collection time from the require(...) calls in a test, its
fixture closure and the tests/ helpers they call; at run time require() fails a test that reaches
it without the markers (so a derivation gap shows up as a failure in the full suite, not as a
test silently selected by ``-m "not kernel"``).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, _module_requirements, markers_for
from tests.helpers.cli import CliResult

KERNEL_TESTS = (
    "tests/test_boottest.py::test_assembled_eif_boots_via_cli",
    "tests/test_kernel.py::test_blobs_directory_layout",
    "tests/test_kernel_aarch64.py::test_image_header_has_text_offset_2mib",
    "tests/test_packaging.py::test_demo_with_the_default_blobs",
)


def _collect(*args: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.strip() for line in out.splitlines() if "::" in line}


def test_not_kernel_deselects_the_kernel_tests() -> None:
    files = sorted({t.split("::")[0] for t in KERNEL_TESTS})
    everything = _collect(*files)
    kernel = _collect("-m", "kernel", *files)
    rest = _collect("-m", "not kernel", *files)
    assert set(KERNEL_TESTS) <= kernel
    assert not kernel & rest
    assert kernel | rest == everything
    assert rest  # the files also hold tests that need no kernel


def test_markers_for_components() -> None:
    assert markers_for("kernel") == {"kernel"}
    assert markers_for("kernel-aarch64") == {"kernel_aarch64", "kernel"}
    assert markers_for("cross-aarch64") == {"cross_aarch64"}


def test_helpers_calling_require_are_followed(tmp_path: Path) -> None:
    src = textwrap.dedent(
        """
        from tests.conftest import require

        def _kernel():
            require("kernel", True)

        def _boot():
            _kernel()
            require("qemu", True)

        def unrelated():
            return 1
        """
    )
    path = tmp_path / "sample_mod.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("sample_mod", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = _module_requirements(module)
    assert table == {"_kernel": {"kernel"}, "_boot": {"kernel", "qemu"}}


def test_require_refuses_unknown_components() -> None:
    from tests.conftest import require

    with pytest.raises(pytest.fail.Exception, match="COMPONENTS"):
        require("no-such-component", True)


def test_require_fails_a_test_missing_its_marker() -> None:
    from tests.conftest import require

    component = "kernel"  # through a variable, so the collection-time scan cannot see it
    with pytest.raises(pytest.fail.Exception, match="is not marked"):
        require(component, True)


@pytest.mark.kernel
def test_require_passes_a_marked_test() -> None:
    from tests.conftest import require

    component = "kernel"
    require(component, True)


def test_cli_fixture_returns_this_call_s_output(cli: Callable[..., CliResult]) -> None:
    print("noise before the call")
    result = cli("--version")
    assert result.rc == 0
    assert "noise" not in result.out
    assert result.out.strip()
    assert cli("no-such-command").rc == 2
