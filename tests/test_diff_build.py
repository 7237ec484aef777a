"""`eifbuild diff` and `policy` on EIFs made by `eifbuild build` from generated OCI layouts.

Two builds of images that differ in one file's content and one file's mode: only PCR0 and
PCR2 may change, the cause must be the application ramdisk, and the entry diff must name the
two files (as ``rootfs/<path>``, where nitro-cli's layout puts the image's files).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from eifbuild.cli import main
from tests.helpers.imagegen import E, simple_oci
from tests.test_build import expected_pcrs, sections
from tests.test_build_blobs import make_blobs


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
    assert doc["inputs"][3]["b"] == {
        "sha384": hashlib.sha384(app_b).hexdigest(),
        "size": len(app_b),
    }
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


def _listing(tmp_path: Path, name: str, layer: list[E], capsys: pytest.CaptureFixture[str]) -> Path:
    ref = simple_oci(tmp_path / f"img-{name}", layer, ref="app:v1", config={"Cmd": ["/bin/app"]})
    capsys.readouterr()
    assert main(["rootfs", ref]) == 0
    out = tmp_path / f"{name}.jsonl"
    out.write_text(capsys.readouterr().out)
    return out


def test_diff_of_rootfs_listings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = [E.dir("bin"), E.file("bin/app", b"1", 0o755), E.symlink("bin/sh", "app")]
    a = _listing(
        tmp_path, "a", [*base, E.file(b"etc/\xff<x>", b"x"), E.char("dev/null", 1, 3)], capsys
    )
    b = _listing(
        tmp_path, "b",
        [E.dir("bin"), E.file("bin/app", b"2", 0o700), E.symlink("bin/sh", "busybox"),
         E.char("dev/null", 1, 5), E.file("new", b"n")],
        capsys,
    )  # fmt: skip
    assert main(["diff", str(a), str(b), "--json", "--exit-code"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "eifbuild-rootfs-diff/1"
    assert [r["path"] for r in doc["added"]] == ["new"]
    assert doc["added"][0]["sha256"] == hashlib.sha256(b"n").hexdigest()
    assert [r["path"] for r in doc["removed"]] == ["etc", "etc/\\xff<x>"]  # implied parent too
    changes = {c["path"]: c["changes"] for c in doc["changed"]}
    assert changes["bin/app"] == {
        "mode": {"a": "0755", "b": "0700"},
        "sha256": {"a": hashlib.sha256(b"1").hexdigest(), "b": hashlib.sha256(b"2").hexdigest()},
    }
    assert changes["bin/sh"] == {"target": {"a": "app", "b": "busybox"}}
    assert changes["dev/null"] == {"rdev": {"a": "1:3", "b": "1:5"}}
    assert main(["diff", str(a), str(a), "--exit-code"]) == 0
    assert "rootfs: 0 added, 0 removed, 0 changed (entries" in capsys.readouterr().out
    assert main(["diff", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    assert "  + new: file 0644" in text and "  - etc/\\xff<x>: file" in text

    # hostile or mismatched inputs: one-line errors
    eif_path = tmp_path / "x.eif"
    eif_path.write_bytes(b".eif")
    bad = tmp_path / "bad.jsonl"
    for content, message in [
        ('{"path": "a"}\n{"path": "a"}\n', "listed twice"),
        ('{"path": "a"}\n[1]\n', "line 2: not a rootfs record"),
        ('{"path": 5}\n', "line 1: not a rootfs record"),
        ('{"path": "a", "mode": {}}\n', "line 1: not a rootfs record"),
        ("{" * 100_000 + "\n", "longer than"),
    ]:
        bad.write_text(content)
        assert main(["diff", str(bad), str(a)]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (content[:40], err)
    assert main(["diff", str(a), str(eif_path)]) == 1
    assert "not one of each" in capsys.readouterr().err
    assert main(["diff", str(a), str(a), "--html", str(tmp_path / "r.html")]) == 1
    assert "--html needs two EIFs" in capsys.readouterr().err
