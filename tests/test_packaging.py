"""A non-editable install works: build a wheel, install it into a fresh venv, run every command
that reads run-time data (templates, kernel recipes) from a directory outside the checkout."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from eifbuild.cpio import Member, newc_stream
from tests.conftest import require
from tests.helpers.blobgen import bzimage

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "kernels"
# Files the wheel must carry under <name>.data/data/share/eifbuild/.
SHIPPED = sorted(
    [f"templates/{p.name}" for p in (ROOT / "templates").glob("*.j2")]
    + [str(p.relative_to(ROOT)) for p in KERNELS.rglob("*") if p.is_file()]
)
OVERRIDES = ("EIFBUILD_KERNELS_DIR", "EIFBUILD_TEMPLATES_DIR")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    outside: Path  # a working directory that is not inside the checkout

    @property
    def eifbuild(self) -> str:
        return str(self.venv / "bin" / "eifbuild")

    def run(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if k not in OVERRIDES and k != "PYTHONPATH"}
        clean.update(env or {})
        return subprocess.run(
            [self.eifbuild, *args],
            cwd=self.outside,
            env=clean,
            capture_output=True,
            text=True,
            timeout=300,
        )


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd}: {proc.stderr[-2000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel of a copy of the tree, installed (no deps, no editable) into a fresh venv."""
    top = tmp_path_factory.mktemp("pkg")
    src = top / "src"  # a copy: the build writes build/ and *.egg-info next to the sources
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("eifbuild", "templates", "kernels"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(top / "w"), "."], src)
    [wheel] = (top / "w").glob("eifbuild-*.whl")
    venv = top / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], top)
    # The dependencies are those of the interpreter running the tests: a plain path entry
    # (not a site dir, so that environment's editable-install hook is not loaded).
    [site] = (venv / "lib").glob("python3*/site-packages")
    (site / "zz_eifbuild_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], top)
    shutil.rmtree(src)  # nothing may still point at the copy
    outside = top / "work"
    outside.mkdir()
    return Installed(wheel, venv, outside)


def test_wheel_carries_templates_and_kernel_recipes(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as zf:
        data = {
            n.split(".data/data/share/eifbuild/", 1)[1]: n
            for n in zf.namelist()
            if ".data/data/share/eifbuild/" in n
        }
        assert sorted(data) == SHIPPED
        for rel in SHIPPED:
            assert zf.read(data[rel]) == (ROOT / rel).read_bytes(), rel
    for rel in ("kernels/x86_64/source.json", "kernels/init/init.c", "kernels/init/Makefile"):
        assert rel in data
    assert any(r.startswith("kernels/x86_64/patches/") for r in data)
    assert any(r.startswith("kernels/aarch64/patches/") for r in data)


def test_installed_copy_imports_and_finds_its_data_under_the_prefix(installed: Installed) -> None:
    code = (
        "import eifbuild, sys; from eifbuild.kernel import kernels_dir; "
        "from eifbuild.policy import templates_dir; "
        "print(eifbuild.__file__); print(kernels_dir()); print(templates_dir()); print(sys.prefix)"
    )
    proc = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", code],
        cwd=installed.outside,
        env={k: v for k, v in os.environ.items() if k not in OVERRIDES and k != "PYTHONPATH"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    module, kernels, templates, prefix = proc.stdout.splitlines()
    assert Path(module).is_relative_to(installed.venv), module
    assert Path(kernels) == Path(prefix) / "share" / "eifbuild" / "kernels"
    assert Path(templates) == Path(prefix) / "share" / "eifbuild" / "templates"


def test_missing_data_names_the_override(installed: Installed, tmp_path: Path) -> None:
    proc = installed.run("init", "build", env={"EIFBUILD_KERNELS_DIR": str(tmp_path / "nope")})
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("eifbuild: error: ") and proc.stderr.count("\n") == 1
    assert "EIFBUILD_KERNELS_DIR" in proc.stderr and str(tmp_path / "nope") in proc.stderr


def test_init_build_from_installed_recipes(installed: Installed, tmp_path: Path) -> None:
    require("musl", shutil.which("musl-gcc") is not None, "musl-gcc builds the init")
    from eifbuild.kernel import init_cache_key

    cache = tmp_path / "cache"
    proc = installed.run("init", "build", "--json", env={"XDG_CACHE_HOME": str(cache)})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    path = Path(doc["path"])
    assert path.is_relative_to(cache) and path.is_file()
    assert hashlib.sha384(path.read_bytes()).hexdigest() == doc["sha384"]
    # Same recipe contents -> same cache key as the checkout's (keys hash contents, not paths).
    assert path.parent.name == f"x86_64-{init_cache_key('x86_64')}"


def _checkout_kernel_path() -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in OVERRIDES}
    return subprocess.run(
        [sys.executable, "-m", "eifbuild", "kernel", "path"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )


def test_kernel_path_matches_the_checkout(installed: Installed) -> None:
    """Against the real cache: the installed copy finds the checkout's kernel (or neither does)."""
    mine, theirs = installed.run("kernel", "path"), _checkout_kernel_path()
    assert (mine.returncode, mine.stdout) == (theirs.returncode, theirs.stdout), mine.stderr
    if mine.returncode != 0:
        assert "eifbuild kernel build" in mine.stderr and mine.stderr.count("\n") == 1


def test_policy_from_measurements_json(installed: Installed) -> None:
    pcrs = {f"PCR{i}": hashlib.sha384(bytes([i])).hexdigest() for i in (0, 1, 2)}
    (installed.outside / "m.json").write_text(json.dumps({"Measurements": pcrs}))
    proc = installed.run(
        "policy", "m.json", "--account-id", "123456789012",
        "--role-arn", "arn:aws:iam::123456789012:role/parent",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = json.dumps(json.loads(proc.stdout))
    for i, value in pcrs.items():
        assert f"kms:RecipientAttestation:{i}" in text and value in text


def _ramdisk(path: Path, content: bytes) -> None:
    members = [
        Member(b"etc", stat.S_IFDIR, 0o755),
        Member(b"etc/motd", stat.S_IFREG, 0o644, data=content),
    ]
    path.write_bytes(b"".join(newc_stream(members)))


def test_diff_html_of_two_assembled_eifs(installed: Installed) -> None:
    out = installed.outside
    (out / "bzImage").write_bytes(bzimage("6.1.0-test (eifbuild@test) #1"))
    for tag in ("a", "b"):
        _ramdisk(out / f"{tag}.cpio", f"version {tag}\n".encode())
        proc = installed.run(
            "assemble", "--kernel", "bzImage", "--cmdline", "console=ttyS0",
            "--ramdisk", f"{tag}.cpio", "-o", f"{tag}.eif",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    proc = installed.run("diff", "a.eif", "b.eif", "--html", "report.html")
    assert proc.returncode == 0, proc.stderr
    page = (out / "report.html").read_text()
    assert page.lstrip().lower().startswith("<!doctype html") and "etc/motd" in page


def test_demo_with_the_default_blobs(installed: Installed) -> None:
    require("musl", shutil.which("musl-gcc") is not None, "musl-gcc builds the demo program")
    blobs = _checkout_kernel_path()  # the real default blobs, found by the checkout
    require("kernel", blobs.returncode == 0, "run `eifbuild kernel build` first")
    blobs_dir = blobs.stdout.splitlines()[0]
    proc = installed.run("demo", "--blobs", blobs_dir, "-o", "demo.eif", "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert (installed.outside / "demo.eif").is_file()
    assert set(record["Measurements"]) >= {"PCR0", "PCR1", "PCR2"}, record
