"""The public API (``from eifbuild import api``): the README example runs, and every
function returns the same values as the command it mirrors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from eifbuild import api
from eifbuild.cli import main
from eifbuild.errors import EifbuildError
from eifbuild.types import Arch
from tests.helpers.imagegen import E, simple_oci
from tests.test_build_blobs import make_blobs

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    """The Python block of README's "Use from Python" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use from Python", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m is not None, "README 'Use from Python' has no python block"
    return m.group(1)


def _image(tmp_path: Path) -> str:
    layer = [E.dir("bin"), E.file("bin/app", b"#!/bin/sh\n", 0o755)]
    return simple_oci(tmp_path / "img", layer, ref="app:v1", config={"Cmd": ["/bin/app"]})


def test_readme_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    blobs = make_blobs(tmp_path / "blobs")
    ref = _image(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    pcrs = namespace["release"](ref, out, blobs)
    record = json.loads((out / "app.json").read_text())
    assert pcrs["PCR0"] == record["Measurements"]["PCR0"]
    # The CLI builds the same bytes.
    cli_eif = tmp_path / "cli.eif"
    assert main(["build", ref, "--blobs", str(blobs), "-o", str(cli_eif)]) == 0
    assert cli_eif.read_bytes() == (out / "app.eif").read_bytes()
    # A wrong expectation is reported, not ignored.
    with pytest.raises(RuntimeError, match="PCR0"):
        namespace["release"](ref, out, blobs, "00" * 48)


def test_api_matches_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blobs = make_blobs(tmp_path / "blobs")
    eif = tmp_path / "a.eif"
    built = api.build(_image(tmp_path), eif, blobs=blobs, arch="x86-64")
    assert built.arch is Arch.X86_64 and built.size == eif.stat().st_size
    capsys.readouterr()
    assert main(["describe", str(eif)]) == 0
    assert api.describe(eif).document == json.loads(capsys.readouterr().out)
    measured = api.measure(eif)
    assert measured.measurements == built.measurements and measured.crc_ok
    assert api.verify(eif).ok
    files = api.extract(eif, tmp_path / "x")
    assert [f["File"] for f in files.files][:3] == ["kernel", "cmdline", "metadata.json"]
    d = api.diff(eif, eif)
    assert d.document["format"] == "eifbuild-diff/1" and not d.differs
    with pytest.raises(EifbuildError) as info:
        api.describe(tmp_path / "missing.eif")
    assert info.value.exit_code == 1


def test_plain_build_reads_nothing_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --json the EIF (and the boot files) are not read back to be hashed."""
    import eifbuild.pipeline

    def no_rehash(*_args: object) -> str:
        raise AssertionError("a file was read again to hash it")

    monkeypatch.setattr(eifbuild.pipeline, "_sha384_file", no_rehash)
    blobs = make_blobs(tmp_path / "blobs")
    ref = _image(tmp_path)
    assert main(["build", ref, "--blobs", str(blobs), "-o", str(tmp_path / "a.eif")]) == 0
    with pytest.raises(AssertionError, match="read again"):
        main(["build", ref, "--blobs", str(blobs), "-o", str(tmp_path / "b.eif"), "--json"])
