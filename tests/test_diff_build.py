"""`eifbuild diff` and `eifbuild policy` on EIFs made by `eifbuild build` from generated OCI layouts.

Two builds of images that differ in one file's content and one file's mode: only PCR0 and
PCR2 may change, the cause must be the application ramdisk, and the entry diff must name the
two files (as ``rootfs/<path>``, where nitro-cli's layout puts the image's files).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from test_build import expected_pcrs, sections
from test_build_blobs import make_blobs

from eifbuild.cli import main
from tests.imagegen import E, simple_oci


def build(tmp_path: Path, name: str, app: bytes, mode: int, blobs: Path) -> Path:
    layer = [
        E.dir("bin"),
        E.file("bin/app", app, 0o755),
        E.file("etc/conf", b"k=v\n", mode),
        E.symlink("bin/sh", "app"),
    ]
    ref = simple_oci(tmp_path / f"img-{name}", layer, ref="app:v1", config={"Cmd": ["/bin/app"]})
    out = tmp_path / f"{name}.eif"
    assert main(["build", ref, "--blobs", str(blobs), "-o", str(out), "--name", "app"]) == 0
    return out


def test_diff_of_two_builds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    blobs = make_blobs(tmp_path / "blobs")
    a = build(tmp_path, "a", b"#!/bin/sh\necho 1\n", 0o644, blobs)
    b = build(tmp_path, "b", b"#!/bin/sh\necho 2\n", 0o600, blobs)
    capsys.readouterr()
    assert main(["diff", str(a), str(b), "--json", "--exit-code"]) == 1
    doc = json.loads(capsys.readouterr().out)
    pa, pb = expected_pcrs(a.read_bytes()), expected_pcrs(b.read_bytes())
    assert {k: doc["pcrs"][k]["a"] for k in pa} == pa
    assert {k: doc["pcrs"][k]["b"] for k in pb} == pb
    assert doc["pcrs_differ"] == ["PCR0", "PCR2"]
    assert doc["explanation"][-1] == {"pcr": "PCR2", "because": ["ramdisk 1"]}
    app_b = [d for t, d in sections(b.read_bytes()) if t == 3][1]
    assert doc["inputs"][3]["b"] == {"sha384": hashlib.sha384(app_b).hexdigest(), "size": len(app_b)}
    [rd] = doc["ramdisks"]
    assert rd["added"] == rd["removed"] == [] and rd["inode_only"] == []
    changes = {c["path"]: c["changes"] for c in rd["changed"]}
    assert changes == {
        "rootfs/bin/app": {
            "sha256": {
                "a": hashlib.sha256(b"#!/bin/sh\necho 1\n").hexdigest(),
                "b": hashlib.sha256(b"#!/bin/sh\necho 2\n").hexdigest(),
            }
        },
        "rootfs/etc/conf": {"mode": {"a": "0644", "b": "0600"}},
    }
    # Metadata differs (image id), and is reported as not measured.
    fields = {r["field"] for r in doc["metadata"]["differences"]}
    assert "ImageVersion" in fields and doc["metadata"]["measured"] is False

    # The same build twice: nothing differs, exit 0 with --exit-code.
    again = build(tmp_path, "a2", b"#!/bin/sh\necho 1\n", 0o644, blobs)
    capsys.readouterr()
    assert main(["diff", str(a), str(again), "--exit-code"]) == 0
    assert "PCRs (differ: none)" in capsys.readouterr().out

    # And the policy for b pins b's measurements.
    out = tmp_path / "policy.json"
    args = ["policy", str(b), "--account-id", "123456789012"]
    assert main([*args, "--role-arn", "arn:aws:iam::123456789012:role/r", "-o", str(out)]) == 0
    cond = json.loads(out.read_text())["Statement"][1]["Condition"]["StringEqualsIgnoreCase"]
    assert cond == {f"kms:RecipientAttestation:{k}": v for k, v in pb.items()}
