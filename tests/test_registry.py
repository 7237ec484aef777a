"""docker:// transport, push/pull of EIF artifacts, blob cache: against a REAL registry.

Every registry here is Debian's ``docker-registry`` (the CNCF distribution server) started on
127.0.0.1 by :mod:`tests.registry_server`; images go in with ``skopeo copy``. Expected PCRs
come from the same image built through ``docker-archive:`` and ``oci:`` (other transports) and
from the independent section reader of ``tests/test_build.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eifbuild.cli import main
from eifbuild.errors import RegistryError, UsageError
from eifbuild.registry import BlobCache, RegistryOptions, fetch_image, parse_docker_reference
from tests.conftest import require
from tests.helpers.cli import run_main
from tests.helpers.imagegen import (
    E,
    layer_bytes,
    oci_image,
    oci_layout,
    skopeo_oci,
    write_docker_archive,
)
from tests.registry_server import FlakyProxy, Registry, TokenServer, have_registry
from tests.test_build import expected_pcrs
from tests.test_build_blobs import make_blobs

SECRET = "s3cr3t-Pa55word-xyzzy"
USER = "builder"


def _need() -> None:
    require("docker-registry", have_registry(), "apt-get install docker-registry apache2-utils")
    require("skopeo", shutil.which("skopeo") is not None, "apt-get install skopeo")


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return run_main(capsys, *args)


APP_LAYER = [E.dir("bin"), E.file("bin/app", b"#!/bin/sh\necho hi\n", 0o755), E.file("etc/x", b"1")]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A plain registry holding app:v1 (pushed from a docker-archive), plus fake boot blobs."""
    _need()
    root = tmp_path_factory.mktemp("regworld")
    reg = Registry(root / "reg")
    try:
        archive = write_docker_archive(
            root / "app.tar", [layer_bytes(APP_LAYER)], "app:v1", config={"Cmd": ["/bin/app"]}
        )
        ref = reg.push(f"docker-archive:{archive}", "team/app:v1")
        status, _, headers = reg.get(
            "/v2/team/app/manifests/v1",
            accept="application/vnd.docker.distribution.manifest.v2+json",
        )
        assert status == 200
        yield {
            "reg": reg,
            "root": root,
            "archive": archive,
            "ref": ref,
            "digest": headers["Docker-Content-Digest"],
            "blobs": make_blobs(root / "blobs"),
        }
    finally:
        reg.stop()


def build(
    world: dict[str, Any], ref: str, out: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, Any], str]:
    rc, stdout, err = run(
        ["build", ref, "--blobs", str(world["blobs"]), "-o", str(out), "--json", *extra], capsys
    )
    return rc, (json.loads(stdout) if rc == 0 else {}), err


# ---------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("text", "registry", "repo", "tag", "digest"),
    [
        ("docker://alpine", "docker.io", "library/alpine", None, None),
        ("docker://alpine:3.19", "docker.io", "library/alpine", "3.19", None),
        ("docker://user/app:v1", "docker.io", "user/app", "v1", None),
        ("docker://localhost/app", "localhost", "app", None, None),
        ("docker://127.0.0.1:5000/a/b:t", "127.0.0.1:5000", "a/b", "t", None),
        ("docker://ghcr.io/o/r@sha256:" + "a" * 64, "ghcr.io", "o/r", None, "sha256:" + "a" * 64),
        ("docker://h.io/r:t@sha256:" + "b" * 64, "h.io", "r", "t", "sha256:" + "b" * 64),
        ("docker://index.docker.io/library/x", "docker.io", "library/x", None, None),
    ],
)
def test_reference_grammar(
    text: str, registry: str, repo: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_docker_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repo, tag, digest)
    assert ref.api_host == ("registry-1.docker.io" if registry == "docker.io" else registry)


@pytest.mark.parametrize(
    "text",
    [
        "docker://",
        "docker://UPPER/case",
        "docker://h.io/r@sha256:abc",
        "docker://h.io/r@md5:" + "a" * 32,
        "docker://h.io/r:" + "t" * 200,
        "docker://h.io/a//b",
        "docker://h.io/r:t\nx",
    ],
)
def test_bad_references_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_docker_reference(text)
    assert "\n" not in str(exc.value)


def test_daemon_image_named_docker_is_not_a_registry() -> None:
    from eifbuild.sources import parse_reference

    assert parse_reference("docker:24-dind") == ("docker-daemon", "docker:24-dind", None)
    assert parse_reference("docker://h.io/r")[0] == "docker"


# ---------------------------------------------------------------- build from a registry


def test_same_pcrs_via_registry_archive_and_oci(
    world: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    oci = skopeo_oci(world["archive"], tmp_path / "oci", "app")
    results = {}
    for label, ref, extra in (
        ("docker", world["ref"], ["--tls-verify=false", "--cache-dir", str(tmp_path / "c")]),
        ("archive", f"docker-archive:{world['archive']}", []),
        ("oci", f"oci:{oci}:app", []),
    ):
        out = tmp_path / f"{label}.eif"
        rc, rec, err = build(world, ref, out, capsys, *extra)
        assert rc == 0, err
        assert {k: rec["Measurements"][k] for k in ("PCR0", "PCR1", "PCR2")} == expected_pcrs(
            out.read_bytes()
        )
        results[label] = rec
    pcrs = {k: v["Measurements"] for k, v in results.items()}
    assert pcrs["docker"] == pcrs["archive"] == pcrs["oci"]
    digests = results["docker"]["inputs"]["image_digests"]
    # the tag was resolved once: the record names the digest the registry serves for it
    assert (
        digests["resolved_reference"] == f"docker://{world['reg'].host}/team/app@{world['digest']}"
    )
    assert digests["manifest"] == world["digest"]
    assert digests["diff_ids"] == results["archive"]["inputs"]["image_digests"]["diff_ids"]


def test_require_digest(
    world: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--tls-verify=false", "--cache-dir", str(tmp_path / "c"), "--require-digest"]
    rc, _, err = build(world, world["ref"], tmp_path / "o.eif", capsys, *args)
    assert rc == 2 and "--require-digest" in err and err.count("\n") == 1
    assert not (tmp_path / "o.eif").exists()
    pinned = f"docker://{world['reg'].host}/team/app@{world['digest']}"
    rc, rec, err = build(world, pinned, tmp_path / "o.eif", capsys, *args)
    assert rc == 0, err
    assert rec["inputs"]["image_digests"]["resolved_reference"] == pinned


def test_tls_verify_is_the_default(
    world: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = build(
        world, world["ref"], tmp_path / "o.eif", capsys, "--cache-dir", str(tmp_path)
    )
    assert rc == 1 and "TLS" in err and err.count("\n") == 1


def test_not_found_is_one_line(
    world: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = f"docker://{world['reg'].host}/team/nope:v1"
    rc, _, err = build(world, ref, tmp_path / "o.eif", capsys, "--tls-verify=false")
    assert rc == 1 and "not found (404)" in err and err.count("\n") == 1, err


def test_multi_arch_index_selects_arch(
    world: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = tmp_path / "multi"
    descs = [
        oci_image(layout, [layer_bytes([E.file(f"only-{arch}", b"x")])], arch=arch)
        for arch in ("amd64", "arm64")
    ]
    oci_layout(layout, descs, ["multi"], as_index=True)
    reg = world["reg"]
    subprocess.run(
        ["skopeo", "copy", "-q", "--all", *reg.skopeo_args(), f"oci:{layout}:multi",
         f"docker://{reg.host}/multi:latest"],
        check=True, capture_output=True,
    )  # fmt: skip
    ref = f"docker://{reg.host}/multi"
    common = ["--tls-verify=false", "--cache-dir", str(tmp_path / "c")]
    for arch, other in (("arm64", "amd64"), ("amd64", "arm64")):
        rc, out, err = run(["rootfs", ref, "--arch", arch, *common], capsys)
        assert rc == 0, err
        paths = [json.loads(line)["path"] for line in out.splitlines()]
        assert f"only-{arch}" in paths and f"only-{other}" not in paths
    rc, _, err = run(["rootfs", ref, *common], capsys)
    assert rc == 1 and "choose one with --arch" in err


# ---------------------------------------------------------------- cache


def test_cache_reuses_verifies_and_prunes(
    world: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    args = ["--tls-verify=false", "--cache-dir", str(cache)]
    rc, first, err = build(world, world["ref"], tmp_path / "a.eif", capsys, *args)
    assert rc == 0, err
    blobs = sorted((cache / "blobs" / "sha256").iterdir())
    layer = first["inputs"]["image_digests"]["layers"][0].removeprefix("sha256:")
    config = first["inputs"]["image_digests"]["config"].removeprefix("sha256:")
    assert {p.name for p in blobs} == {layer, config}
    for p in blobs:  # content-addressed: every file hashes to its name
        assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name
    # a corrupted cache entry is detected on read and fetched again
    victim = cache / "blobs" / "sha256" / layer
    os.chmod(victim, 0o644)
    victim.write_bytes(b"corrupt" + victim.read_bytes()[7:])
    rc, second, err = build(world, world["ref"], tmp_path / "b.eif", capsys, *args)
    assert rc == 0, err
    assert second["Measurements"] == first["Measurements"]
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == layer
    assert not list((cache / "tmp").iterdir())  # no temp file left behind
    rc, out, err = run(["cache", "info", "--cache-dir", str(cache), "--json"], capsys)
    assert rc == 0 and json.loads(out)["blobs"] == 2
    rc, out, err = run(["cache", "prune", "--cache-dir", str(cache), "--json"], capsys)
    assert rc == 0 and json.loads(out)["removed_blobs"] == 2
    assert not list((cache / "blobs" / "sha256").iterdir())


def test_prune_waits_for_users_and_cap_evicts_lru(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    datas = [bytes([i]) * 1000 for i in range(3)]
    digests = ["sha256:" + hashlib.sha256(d).hexdigest() for d in datas]
    for i, (d, data) in enumerate(zip(digests, datas, strict=True)):
        cache.put_bytes(d, data)
        os.utime(cache.used / d[7:], (1000 + i, 1000 + i))
    fd = cache.acquire_shared()
    with pytest.raises(RegistryError, match="in use"):
        cache.prune(0, wait=0.3)
    cache.release(fd, max_bytes=1500)  # the cap: oldest used go first
    assert [cache.get(d) is not None for d in digests] == [False, False, True]


def test_concurrent_builds_share_the_cache(world: dict[str, Any], tmp_path: Path) -> None:
    cache = tmp_path / "shared"
    exe = Path(shutil.which("eifbuild") or "eifbuild")
    procs = [
        subprocess.Popen(
            [
                str(exe),
                "build",
                world["ref"],
                "--blobs",
                str(world["blobs"]),
                "-o",
                str(tmp_path / f"{i}.eif"),
                "--tls-verify=false",
                "--cache-dir",
                str(cache),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(4)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [o[1] for o in outs]
    assert len({json.loads(o[0])["Measurements"]["PCR2"] for o in outs}) == 1
    assert not list((cache / "tmp").iterdir())


# ---------------------------------------------------------------- hostile replies, retries


def test_retry_after_429(world: dict[str, Any], tmp_path: Path) -> None:
    proxy = FlakyProxy(world["reg"].host, failures=1, status=429, retry_after="1")
    try:
        ref = world["ref"].replace(world["reg"].host, proxy.host)
        started = time.monotonic()
        opts = RegistryOptions(tls_verify=False, cache_dir=str(tmp_path))
        cache = BlobCache(tmp_path)
        with cache.session():
            got = fetch_image(
                ref, arch=None, options=opts, cache=cache, max_json_bytes=1 << 20,
                max_blob_bytes=1 << 30,
            )  # fmt: skip
        assert got.manifest_digest == world["digest"]
        assert time.monotonic() - started >= 1.0  # Retry-After honoured
        first, second = proxy.seen[0], proxy.seen[1]
        assert first[:2] == second[:2] and second[2] - first[2] >= 1.0
    finally:
        proxy.stop()


def test_retries_are_bounded(world: dict[str, Any], tmp_path: Path) -> None:
    proxy = FlakyProxy(world["reg"].host, failures=1000, status=503, retry_after="0")
    try:
        ref = world["ref"].replace(world["reg"].host, proxy.host)
        opts = RegistryOptions(tls_verify=False, retries=3)
        cache = BlobCache(tmp_path)
        with pytest.raises(RegistryError) as exc, cache.session():
            fetch_image(ref, arch=None, options=opts, cache=cache, max_json_bytes=1 << 20,
                        max_blob_bytes=1 << 30)  # fmt: skip
        assert "HTTP 503" in str(exc.value) and "after 4 attempts" in str(exc.value)
        assert len(proxy.seen) == 4
        # a Retry-After beyond the time budget fails at once instead of sleeping
        slow = FlakyProxy(world["reg"].host, failures=5, status=429, retry_after="3600")
        try:
            ref = world["ref"].replace(world["reg"].host, slow.host)
            with pytest.raises(RegistryError, match="retry budget"), cache.session():
                fetch_image(ref, arch=None, options=opts, cache=cache, max_json_bytes=1 << 20,
                            max_blob_bytes=1 << 30)  # fmt: skip
        finally:
            slow.stop()
    finally:
        proxy.stop()


def test_redirected_blobs_get_no_credentials(world: dict[str, Any], tmp_path: Path) -> None:
    """A blob redirect to another host (S3-style) must not carry the registry's Authorization."""
    reg = world["reg"]
    storage = FlakyProxy(reg.host, failures=0)
    front = FlakyProxy(reg.host, failures=0, challenge=True, redirect_blobs_to=storage.host)
    try:
        ref = world["ref"].replace(reg.host, front.host)
        opts = RegistryOptions(tls_verify=False, creds=f"{USER}:{SECRET}")
        cache = BlobCache(tmp_path)
        with cache.session():
            got = fetch_image(ref, arch=None, options=opts, cache=cache, max_json_bytes=1 << 20,
                              max_blob_bytes=1 << 30)  # fmt: skip
        assert got.manifest_digest == world["digest"]
        assert any(a and a.startswith("Basic ") for a in front.auth_seen)  # challenge answered
        assert storage.seen and all("/blobs/" in path for _, path, _ in storage.seen)
        assert storage.auth_seen == [None] * len(storage.seen)
    finally:
        front.stop()
        storage.stop()


def test_403_is_one_line(
    world: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy = FlakyProxy(world["reg"].host, failures=1, status=403, retry_after="")
    try:
        ref = world["ref"].replace(world["reg"].host, proxy.host)
        rc, _, err = build(world, ref, tmp_path / "o.eif", capsys, "--tls-verify=false")
        assert rc == 1 and "403 denied" in err and err.count("\n") == 1
    finally:
        proxy.stop()


def test_wrong_digests_are_refused(world: dict[str, Any], tmp_path: Path) -> None:
    reg = world["reg"]
    opts = RegistryOptions(tls_verify=False)
    cache = BlobCache(tmp_path / "c")
    # a digest that is not the manifest's: the registry has no such manifest
    wrong = f"docker://{reg.host}/team/app@sha256:" + "0" * 64
    with pytest.raises(RegistryError, match="not found"), cache.session():
        fetch_image(wrong, arch=None, options=opts, cache=cache, max_json_bytes=1 << 20,
                    max_blob_bytes=1 << 30)  # fmt: skip
    # a tampering proxy: layer bytes changed in transit are refused by digest
    proxy = FlakyProxy(reg.host, failures=0, tamper=b"/blobs/")
    try:
        ref = world["ref"].replace(reg.host, proxy.host)
        with pytest.raises(RegistryError, match="digest mismatch"), cache.session():
            fetch_image(ref, arch=None, options=opts, cache=cache, max_json_bytes=1 << 20,
                        max_blob_bytes=1 << 30)  # fmt: skip
        assert not list(cache.blobs.iterdir()) or all(
            hashlib.sha256(p.read_bytes()).hexdigest() == p.name for p in cache.blobs.iterdir()
        )
    finally:
        proxy.stop()
    proxy = FlakyProxy(reg.host, failures=0, tamper=b"/manifests/")
    try:
        pinned = f"docker://{proxy.host}/team/app@{world['digest']}"
        with pytest.raises(RegistryError, match="manifest digest mismatch"), cache.session():
            fetch_image(pinned, arch=None, options=opts, cache=cache, max_json_bytes=1 << 20,
                        max_blob_bytes=1 << 30)  # fmt: skip
    finally:
        proxy.stop()


def test_manifest_too_large(world: dict[str, Any], tmp_path: Path) -> None:
    opts = RegistryOptions(tls_verify=False, max_manifest_bytes=64)
    cache = BlobCache(tmp_path)
    with pytest.raises(RegistryError, match="64-byte limit") as exc, cache.session():
        fetch_image(world["ref"], arch=None, options=opts, cache=cache, max_json_bytes=1 << 20,
                    max_blob_bytes=1 << 30)  # fmt: skip
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------- push / pull / attach


@pytest.fixture(scope="module")
def eif(world: dict[str, Any]) -> Path:
    """An EIF built from the registry image (fake boot blobs; real EIF and PCRs)."""
    out = world["root"] / "app.eif"
    rc = main(
        ["build", f"docker-archive:{world['archive']}", "--blobs", str(world["blobs"]), "-o",
         str(out)]
    )  # fmt: skip
    assert rc == 0
    return Path(out)


def _raw_manifest(reg: Registry, repo: str, ref: str) -> tuple[bytes, dict[str, str]]:
    status, data, headers = reg.get(
        f"/v2/{repo}/manifests/{ref}",
        accept="application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
    )
    assert status == 200, data
    return data, headers


def test_push_pull_roundtrip(
    world: dict[str, Any], eif: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = world["reg"]
    target = f"docker://{reg.host}/enclaves/app:v1"
    rc, out, err = run(["push", str(eif), target, "--tls-verify=false"], capsys)
    assert rc == 0, err
    digest = out.strip()
    data, headers = _raw_manifest(reg, "enclaves/app", "v1")
    assert (
        headers["Docker-Content-Digest"] == digest == "sha256:" + hashlib.sha256(data).hexdigest()
    )
    manifest = json.loads(data)
    pcrs = expected_pcrs(eif.read_bytes())
    assert manifest["artifactType"] == "application/vnd.eifbuild.enclave-image.v1"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    notes = manifest["annotations"]
    assert {k: notes[f"dev.eifbuild.pcr{k[3:]}"] for k in pcrs} == pcrs
    assert notes["dev.eifbuild.eif.version"] == "4" and notes["dev.eifbuild.arch"] == "x86_64"
    assert notes["org.opencontainers.image.created"] == "1970-01-01T00:00:00+00:00"
    eif_layer = manifest["layers"][0]
    assert eif_layer["mediaType"] == "application/vnd.eifbuild.eif.v1"
    assert eif_layer["digest"] == "sha256:" + hashlib.sha256(eif.read_bytes()).hexdigest()
    # the same EIF gives the same manifest digest (nothing from the clock or the host)
    rc, again, err = run(["push", str(eif), target, "--tls-verify=false"], capsys)
    assert rc == 0 and again.strip() == digest

    out_eif = tmp_path / "pulled.eif"
    pinned = f"docker://{reg.host}/enclaves/app@{digest}"
    rc, out, err = run(["pull", pinned, "-o", str(out_eif), "--tls-verify=false", "--json",
                        "--cache-dir", str(tmp_path / "c")], capsys)  # fmt: skip
    assert rc == 0, err
    assert out_eif.read_bytes() == eif.read_bytes()
    doc = json.loads(out)
    assert doc["resolved"] == pinned and doc["digest"] == digest
    assert {k: doc["Measurements"][k] for k in pcrs} == pcrs

    # describe / verify / policy take the artifact directly
    common = ["--tls-verify=false", "--cache-dir", str(tmp_path / "c")]
    rc, out, err = run(["describe", pinned, *common], capsys)
    assert rc == 0, err
    assert {k: json.loads(out)["Measurements"][k] for k in pcrs} == pcrs
    rc, out, err = run(["verify", pinned, "--pcr", f"2={pcrs['PCR2']}", "--json", *common], capsys)
    assert rc == 0, err
    assert json.loads(out)["File"] == pinned
    rc, _, err = run(["verify", pinned, "--pcr", "2=" + "0" * 96, *common], capsys)
    assert rc == 1
    rc, out, err = run(
        ["policy", pinned, "--account-id", "111122223333", "--role-arn",
         "arn:aws:iam::111122223333:role/parent", *common],
        capsys,
    )  # fmt: skip
    assert rc == 0, err
    assert pcrs["PCR0"] in out
    # an image is not an EIF artifact
    rc, _, err = run(["pull", world["ref"], "-o", str(tmp_path / "x.eif"), *common], capsys)
    assert rc == 1 and "not an EIF artifact" in err and not (tmp_path / "x.eif").exists()


def test_pull_refuses_pcrs_that_do_not_match(
    world: dict[str, Any], eif: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A manifest whose annotations lie about the EIF's PCRs: pull exits 1, writes nothing."""
    from eifbuild.registry import RegistryClient
    from eifbuild.registry.artifact import annotations_for, eif_facts

    reg = world["reg"]
    target = f"docker://{reg.host}/enclaves/liar:v1"
    rc, _out, err = run(["push", str(eif), target, "--tls-verify=false"], capsys)
    assert rc == 0, err
    manifest = json.loads(_raw_manifest(reg, "enclaves/liar", "v1")[0])
    facts = eif_facts(eif)
    notes = annotations_for(facts)
    notes["dev.eifbuild.pcr2"] = "ab" * 48
    manifest["annotations"] = notes
    data = json.dumps(manifest).encode()
    with RegistryClient(
        parse_docker_reference(target), RegistryOptions(tls_verify=False), push=True
    ) as client:
        client.put_manifest("v2", data, manifest["mediaType"], "test")
    out_eif = tmp_path / "liar.eif"
    liar = f"docker://{reg.host}/enclaves/liar:v2"
    rc, _, err = run(["pull", liar, "-o", str(out_eif), "--tls-verify=false"], capsys)
    assert rc == 1 and "PCR2" in err and err.count("\n") == 1, err
    assert not out_eif.exists() and not list(tmp_path.iterdir())


def test_attach_measurements_as_referrer(
    world: dict[str, Any], eif: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = world["reg"]
    target = f"docker://{reg.host}/enclaves/app:attached"
    image = f"docker://{reg.host}/team/app:v1"
    rc, out, err = run(
        ["push", str(eif), target, "--attach", image, "--tls-verify=false", "--json"], capsys
    )
    assert rc == 0, err
    doc = json.loads(out)
    subject_digest = world["digest"]
    assert doc["attached"]["subject"] == f"docker://{reg.host}/team/app@{subject_digest}"
    # distribution 2.8 has no referrers API: the OCI 1.1 fallback tag lists the referrer
    tag = subject_digest.replace(":", "-")
    assert doc["attached"]["fallback_tag"] == tag
    index = json.loads(_raw_manifest(reg, "team/app", tag)[0])
    [entry] = [d for d in index["manifests"] if d["digest"] == doc["attached"]["referrer_digest"]]
    assert entry["artifactType"] == "application/vnd.eifbuild.measurements.v1+json"
    referrer = json.loads(_raw_manifest(reg, "team/app", entry["digest"])[0])
    assert referrer["subject"]["digest"] == subject_digest
    assert referrer["annotations"]["dev.eifbuild.eif.reference"] == doc["reference"]
    pcrs = expected_pcrs(eif.read_bytes())
    assert referrer["annotations"]["dev.eifbuild.pcr0"] == pcrs["PCR0"]


def test_third_party_clients_read_the_artifact(
    world: dict[str, Any], eif: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = world["reg"]
    target = f"docker://{reg.host}/enclaves/third:v1"
    rc, out, err = run(["push", str(eif), target, "--tls-verify=false"], capsys)
    assert rc == 0, err
    digest = out.strip()
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", target],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    assert json.loads(raw)["artifactType"] == "application/vnd.eifbuild.enclave-image.v1"
    try:
        from oras.client import OrasClient
    except ImportError:  # pragma: no cover - the dev extra installs it
        require("oras", False, "pip install oras (the dev extra)")
    client = OrasClient(hostname=reg.host, insecure=True)
    files = client.pull(target=f"{reg.host}/enclaves/third:v1", outdir=str(tmp_path / "oras"))
    by_name = {Path(f).name: Path(f) for f in files}
    assert by_name["app.eif"].read_bytes() == eif.read_bytes()
    meas = json.loads(by_name["measurements.json"].read_text())
    pcrs = expected_pcrs(eif.read_bytes())
    assert {k: meas["Measurements"][k] for k in pcrs} == pcrs


# ---------------------------------------------------------------- auth: TLS + basic, token


def _helper(bindir: Path, name: str, user: str, secret: str, log: Path) -> None:
    """A docker-credential-NAME script (Docker's helper protocol) that logs what it was asked."""
    script = bindir / f"docker-credential-{name}"
    script.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = get ] || exit 3\n'
        f'read server; echo "$server" >> {log}\n'
        f'printf \'{{"ServerURL":"%s","Username":"{user}","Secret":"{secret}"}}\' "$server"\n'
    )
    script.chmod(0o755)


@pytest.fixture(scope="module")
def basic_registry(
    world: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("basicreg")
    reg = Registry(root / "reg", mode="basic", users={USER: SECRET})
    try:
        reg.push(f"docker-archive:{world['archive']}", "team/app:v1", creds=f"{USER}:{SECRET}")
        yield reg
    finally:
        reg.stop()


def test_basic_auth_over_tls(
    world: dict[str, Any],
    basic_registry: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.docker/config.json of the machine
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    reg = basic_registry
    assert reg.pki is not None
    ref = f"docker://{reg.host}/team/app:v1"
    certs = ["--cert-dir", str(reg.pki.cert_dir()), "--cache-dir", str(tmp_path / "c")]
    # the test CA is not trusted by default
    rc, _, err = build(world, ref, tmp_path / "o.eif", capsys, "--cache-dir", str(tmp_path))
    assert rc == 1 and "certificate verify failed" in err.lower()
    # no credentials
    rc, _, err = build(world, ref, tmp_path / "o.eif", capsys, *certs)
    assert rc == 1 and "401 unauthorized (no credentials found" in err and err.count("\n") == 1
    # wrong password: rejected, and the password is nowhere in the output
    rc, _, err = build(
        world, ref, tmp_path / "o.eif", capsys, *certs, "--creds", f"{USER}:wrong-{SECRET}"
    )
    assert rc == 1 and "rejected" in err and SECRET not in err
    # --creds
    rc, rec, err = build(
        world, ref, tmp_path / "a.eif", capsys, *certs, "--creds", f"{USER}:{SECRET}"
    )
    assert rc == 0, err
    assert SECRET not in json.dumps(rec) and SECRET not in err
    assert SECRET.encode() not in (tmp_path / "a.eif").read_bytes()
    assert SECRET not in caplog.text
    # an auth file with auths (base64 user:pass)
    authfile = tmp_path / "auth.json"
    token = __import__("base64").b64encode(f"{USER}:{SECRET}".encode()).decode()
    authfile.write_text(json.dumps({"auths": {reg.host: {"auth": token}}}))
    rc, rec2, err = build(
        world, ref, tmp_path / "b.eif", capsys, *certs, "--authfile", str(authfile)
    )
    assert rc == 0, err
    assert rec2["Measurements"] == rec["Measurements"]
    # $REGISTRY_AUTH_FILE with credHelpers: a docker-credential-NAME helper on PATH
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "helper.log"
    _helper(bindir, "testhelper", USER, SECRET, log)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    helper_cfg = tmp_path / "helper.json"
    helper_cfg.write_text(json.dumps({"credHelpers": {reg.host: "testhelper"}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(helper_cfg))
    rc, _, err = build(world, ref, tmp_path / "c.eif", capsys, *certs)
    assert rc == 0, err
    assert log.read_text().split() == [reg.host]
    # credsStore (the default ~/.docker/config.json) uses the same protocol
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text(json.dumps({"credsStore": "testhelper"}))
    rc, _, err = build(world, ref, tmp_path / "d.eif", capsys, *certs)
    assert rc == 0, err
    assert log.read_text().split() == [reg.host, reg.host]
    # push and pull with credentials, too
    target = f"docker://{reg.host}/enclaves/app:v1"
    rc, out, err = run(["push", str(tmp_path / "a.eif"), target, *certs, "--json"], capsys)
    assert rc == 0, err
    assert SECRET not in out
    rc, out, err = run(["pull", target, "-o", str(tmp_path / "p.eif"), *certs], capsys)
    assert rc == 0, err
    assert (tmp_path / "p.eif").read_bytes() == (tmp_path / "a.eif").read_bytes()


def test_token_auth(
    world: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    tokens = TokenServer(tmp_path / "tok", {USER: SECRET})
    reg = Registry(tmp_path / "reg", mode="token", token=tokens)
    try:
        reg.push(f"docker-archive:{world['archive']}", "team/app:v1", creds=f"{USER}:{SECRET}")
        ref = f"docker://{reg.host}/team/app:v1"
        common = ["--tls-verify=false", "--cache-dir", str(tmp_path / "c")]
        tokens.requests.clear()
        rc, _, err = build(world, ref, tmp_path / "o.eif", capsys, *common)
        assert rc == 1 and "401 unauthorized" in err and err.count("\n") == 1
        assert tokens.requests and tokens.requests[-1]["user"] is None  # asked anonymously
        rc, rec, err = build(world, ref, tmp_path / "a.eif", capsys, *common, "--creds",
                             f"{USER}:{SECRET}")  # fmt: skip
        assert rc == 0, err
        assert tokens.requests[-1] == {
            "user": USER, "scope": ["repository:team/app:pull"], "service": [tokens.service]
        }  # fmt: skip
        assert SECRET not in json.dumps(rec) and SECRET not in err
        target = f"docker://{reg.host}/enclaves/app:v1"
        rc, _out, err = run(["push", str(tmp_path / "a.eif"), target, *common, "--creds",
                            f"{USER}:{SECRET}"], capsys)  # fmt: skip
        assert rc == 0, err
        assert tokens.requests[-1]["scope"] == ["repository:enclaves/app:pull,push"]
        # an identity token (auths[HOST].identitytoken, or a helper's "<token>" user) is an
        # OAuth2 refresh token: POSTed to the realm, never sent as a password
        refresh = "identity-" + SECRET
        tokens.refresh_tokens[refresh] = USER
        authfile = tmp_path / "auth.json"
        authfile.write_text(json.dumps({"auths": {reg.host: {"identitytoken": refresh}}}))
        rc, rec2, err = build(world, ref, tmp_path / "b.eif", capsys, *common,
                              "--authfile", str(authfile))  # fmt: skip
        assert rc == 0, err
        assert rec2["Measurements"] == rec["Measurements"]
        assert tokens.requests[-1]["grant"] == "refresh_token"
        bindir = tmp_path / "bin"
        bindir.mkdir()
        _helper(bindir, "tok", "<token>", refresh, tmp_path / "helper.log")
        monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
        authfile.write_text(json.dumps({"credHelpers": {reg.host: "tok"}}))
        tokens.requests.clear()
        rc, _, err = build(world, ref, tmp_path / "c.eif", capsys, *common, "--authfile",
                           str(authfile))  # fmt: skip
        assert rc == 0, err
        assert [r.get("grant") for r in tokens.requests] == ["refresh_token"]
        assert refresh not in err
    finally:
        reg.stop()
        tokens.stop()


def test_signed_eif_carries_certificate_and_pcr8(
    world: dict[str, Any], eif: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from tests.helpers.certs import self_signed
    from tests.test_build import extend

    cert_pem, key = self_signed()
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    signed = tmp_path / "signed.eif"
    rc, _, err = run(["sign", str(eif), "--signing-certificate", str(tmp_path / "cert.pem"),
                      "--private-key", str(tmp_path / "key.pem"), "-o", str(signed)], capsys)  # fmt: skip
    assert rc == 0, err
    reg = world["reg"]
    target = f"docker://{reg.host}/enclaves/signed:v1"
    rc, out, err = run(["push", str(signed), target, "--tls-verify=false"], capsys)
    assert rc == 0, err
    manifest = json.loads(_raw_manifest(reg, "enclaves/signed", "v1")[0])
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    assert manifest["annotations"]["dev.eifbuild.pcr8"] == extend(der)
    [cert_layer] = [
        d for d in manifest["layers"]
        if d["mediaType"] == "application/vnd.eifbuild.signing-certificate.v1+pem"
    ]  # fmt: skip
    status, blob, _ = reg.get(f"/v2/enclaves/signed/blobs/{cert_layer['digest']}")
    assert status == 200
    assert x509.load_pem_x509_certificate(blob).public_bytes(serialization.Encoding.DER) == der
    rc, out, err = run(["pull", target, "-o", str(tmp_path / "p.eif"), "--tls-verify=false",
                        "--cache-dir", str(tmp_path / "c")], capsys)  # fmt: skip
    assert rc == 0, err
    assert json.loads(out)["Measurements"]["PCR8"] == extend(der)
    assert (tmp_path / "p.eif").read_bytes() == signed.read_bytes()


# ---------------------------------------------------------------- small pieces


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        (
            'Bearer realm="https://auth.example/token",service="registry.example",'
            'scope="repository:a/b:pull"',
            "bearer",
            {
                "realm": "https://auth.example/token",
                "service": "registry.example",
                "scope": "repository:a/b:pull",
            },
        ),
        ('Basic realm="x"', "basic", {"realm": "x"}),
        (
            'Bearer realm="a\\"b", error=insufficient_scope',
            "bearer",
            {"realm": 'a"b', "error": "insufficient_scope"},
        ),
        ("Negotiate", "negotiate", {}),
    ],
)
def test_parse_challenge(header: str, scheme: str, params: dict[str, str]) -> None:
    from eifbuild.registry.client import parse_challenge

    assert parse_challenge(header) == (scheme, params)


def test_retry_after_forms() -> None:
    from eifbuild.registry.client import retry_after

    assert retry_after("7") == 7.0
    assert retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert retry_after("soon") is None and retry_after(None) is None


def test_errors_are_scrubbed_of_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from eifbuild.registry import Credentials, RegistryClient

    creds = Credentials(USER, SECRET, source="--creds")
    client = RegistryClient(parse_docker_reference("docker://h.io/r"), credentials=creds)
    err = client.error(f"server said {SECRET} and {creds.basic()}")
    assert SECRET not in str(err)
    assert "***" in str(err)
    assert SECRET not in repr(creds) and SECRET not in repr(RegistryOptions(creds=f"u:{SECRET}"))
