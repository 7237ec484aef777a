"""Image sources: transports, indexes/platforms, digest checks, compression, limits, cmd/env."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eifbuild.errors import ImageSourceError, UsageError
from eifbuild.model import ImageConfig
from eifbuild.rootfs import flatten
from eifbuild.sources import Limits, open_image, parse_reference, select_cmd_env
from tests.helpers.imagegen import (
    E,
    layer_bytes,
    oci_image,
    oci_layout,
    simple_oci,
    tar_dir,
    write_docker_archive,
)

L0 = [E.dir("etc"), E.file("etc/os", b"test\n"), E.dir("bin"), E.file("bin/x", b"\x7fELF", 0o755)]
L1 = [E.dir("etc"), E.file("etc/.wh.os"), E.file("etc/new", b"n")]


def listing_of(ref: str, **kw: object) -> list[tuple[bytes, str, int, bytes]]:
    with open_image(ref, **kw) as image:  # type: ignore[arg-type]
        return [(e.path, e.type.value, e.mode, b"".join(e.open())) for e in flatten(image)]


# --- references ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("alpine:3", ("docker-daemon", "alpine:3", None)),
        ("localhost:5000/x/y:tag", ("docker-daemon", "localhost:5000/x/y:tag", None)),
        ("docker-daemon:app:1", ("docker-daemon", "app:1", None)),
        (
            "docker-archive:/nonexistent/a.tar:app:1",
            ("docker-archive", "/nonexistent/a.tar", "app:1"),
        ),
        ("oci:/nonexistent/dir", ("oci", "/nonexistent/dir", None)),
        ("oci-archive:/nonexistent/x.tar:v1", ("oci-archive", "/nonexistent/x.tar", "v1")),
    ],
)
def test_parse_reference(ref: str, expected: tuple[str, str, str | None]) -> None:
    assert parse_reference(ref) == expected


def test_existing_path_with_colon_wins(tmp_path: Path) -> None:
    d = tmp_path / "a:b"
    d.mkdir()
    assert parse_reference(f"oci:{d}") == ("oci", str(d), None)


def test_bad_arch_and_missing_paths() -> None:
    with pytest.raises(UsageError, match="--arch s390x"):
        open_image("oci:/x", arch="s390x")
    with pytest.raises(ImageSourceError, match="does not exist"):
        open_image("oci:/nonexistent/layout")


# --- OCI layouts ---------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_layer_compressions_give_the_same_rootfs(tmp_path: Path, compression: str) -> None:
    ref = simple_oci(tmp_path / "oci", L0, L1, compression=compression)
    assert listing_of(ref) == [
        (b"bin", "dir", 0o755, b""),
        (b"bin/x", "file", 0o755, b"\x7fELF"),
        (b"etc", "dir", 0o755, b""),
        (b"etc/new", "file", 0o644, b"n"),
    ]


def test_oci_archive_equals_directory(tmp_path: Path) -> None:
    ref = simple_oci(tmp_path / "oci", L0, L1, compression="gzip")
    tar_dir(tmp_path / "oci", tmp_path / "img.tar")
    assert listing_of(f"oci-archive:{tmp_path / 'img.tar'}:t") == listing_of(ref)


def _multi(tmp_path: Path, as_index: bool = False) -> Path:
    root = tmp_path / "multi"
    amd = oci_image(root, [layer_bytes([E.file("arch", b"amd64")])], arch="amd64")
    arm = oci_image(root, [layer_bytes([E.file("arch", b"arm64")])], arch="arm64")
    oci_layout(root, [amd, arm], ["x", "x"] if not as_index else ["x"], as_index=as_index)
    return root


@pytest.mark.parametrize("as_index", [False, True])
def test_platform_selection(tmp_path: Path, as_index: bool) -> None:
    root = _multi(tmp_path, as_index)
    for arch, want in (("amd64", b"amd64"), ("x86_64", b"amd64"), ("aarch64", b"arm64")):
        with open_image(f"oci:{root}:x", arch=arch) as image:
            assert image.config.architecture == want.decode()
            assert [b"".join(e.open()) for e in flatten(image)] == [want]
    with pytest.raises(ImageSourceError, match=r"several platforms \(linux/amd64, linux/arm64\)"):
        open_image(f"oci:{root}:x")


def test_missing_platform_lists_present_ones(tmp_path: Path) -> None:
    root = tmp_path / "one"
    oci_layout(
        root, [oci_image(root, [layer_bytes([E.file("a")])], arch="arm64")], ["x"], as_index=True
    )
    with pytest.raises(
        ImageSourceError, match=r"no linux/amd64 image; platforms present: linux/arm64"
    ):
        open_image(f"oci:{root}:x", arch="amd64")


def test_arch_mismatch_of_single_image(tmp_path: Path) -> None:
    ref = simple_oci(tmp_path / "oci", L0, arch="arm64")
    with pytest.raises(ImageSourceError, match="image is linux/arm64, but --arch amd64 was asked"):
        open_image(ref, arch="amd64")
    with open_image(ref) as image:
        assert image.config.architecture == "arm64"


def test_unknown_ref_lists_names(tmp_path: Path) -> None:
    ref = simple_oci(tmp_path / "oci", L0, ref="v1")
    with pytest.raises(ImageSourceError, match="no image named 'v2'; names present: v1"):
        open_image(ref.replace(":v1", ":v2"))


def test_image_id_and_input_digests(tmp_path: Path) -> None:
    ref = simple_oci(tmp_path / "oci", L0, L1, compression="gzip")
    index = json.loads((tmp_path / "oci" / "index.json").read_text())
    mdigest = index["manifests"][0]["digest"]
    manifest = json.loads((tmp_path / "oci" / "blobs" / "sha256" / mdigest[7:]).read_bytes())
    cfg_hex = manifest["config"]["digest"][7:]
    cfg_bytes = (tmp_path / "oci" / "blobs" / "sha256" / cfg_hex).read_bytes()
    with open_image(ref) as image:
        assert image.image_id == "sha256:" + hashlib.sha256(cfg_bytes).hexdigest()
        assert image.input_digests["manifest"] == mdigest
        assert image.input_digests["layers"] == [d["digest"] for d in manifest["layers"]]
        assert image.input_digests["diff_ids"] == [
            "sha256:" + hashlib.sha256(layer_bytes(x)).hexdigest() for x in (L0, L1)
        ]
        assert image.reference == ref


# --- digests, corruption, limits -------------------------------------------------------------


def _layer_blob(root: Path, n: int = 0) -> Path:
    index = json.loads((root / "index.json").read_text())
    m = json.loads((root / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_bytes())
    digest: str = m["layers"][n]["digest"]
    return root / "blobs/sha256" / digest[7:]


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_tampered_layer_blob_is_named(tmp_path: Path, compression: str) -> None:
    ref = simple_oci(tmp_path / "oci", L0, compression=compression)
    blob = _layer_blob(tmp_path / "oci")
    data = bytearray(blob.read_bytes())
    data[-30] ^= 1
    blob.write_bytes(bytes(data))
    with (
        open_image(ref) as image,
        pytest.raises(ImageSourceError, match=rf"layer 0 .*sha256:{blob.name}.*mismatch"),
    ):
        list(flatten(image))


def test_wrong_diff_id_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "oci"
    desc = oci_image(root, [layer_bytes(L0)], compression="gzip")
    m_path = root / "blobs/sha256" / str(desc["digest"])[7:]
    manifest = json.loads(m_path.read_bytes())
    cfg_path = root / "blobs/sha256" / manifest["config"]["digest"][7:]
    cfg = json.loads(cfg_path.read_bytes())
    cfg["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
    new_cfg = json.dumps(cfg).encode()
    new_hex = hashlib.sha256(new_cfg).hexdigest()
    (root / "blobs/sha256" / new_hex).write_bytes(new_cfg)
    manifest["config"]["digest"] = "sha256:" + new_hex
    manifest["config"]["size"] = len(new_cfg)
    new_m = json.dumps(manifest).encode()
    m_hex = hashlib.sha256(new_m).hexdigest()
    (root / "blobs/sha256" / m_hex).write_bytes(new_m)
    oci_layout(root, [{**desc, "digest": "sha256:" + m_hex, "size": len(new_m)}], ["t"])
    with (
        open_image(f"oci:{root}:t") as image,
        pytest.raises(ImageSourceError, match="uncompressed digest mismatch"),
    ):
        list(flatten(image))


def test_tampered_config_and_manifest(tmp_path: Path) -> None:
    ref = simple_oci(tmp_path / "oci", L0)
    index = json.loads((tmp_path / "oci/index.json").read_text())
    m_path = tmp_path / "oci/blobs/sha256" / index["manifests"][0]["digest"][7:]
    raw = m_path.read_bytes()
    m_path.write_bytes(raw.replace(b'"schemaVersion": 2', b'"schemaVersion": 3'))
    with pytest.raises(ImageSourceError, match=r"manifest sha256:[0-9a-f]{64}: digest mismatch"):
        open_image(ref)


def test_blob_symlink_out_of_layout_is_refused(tmp_path: Path) -> None:
    ref = simple_oci(tmp_path / "oci", L0)
    blob = _layer_blob(tmp_path / "oci")
    secret = tmp_path / "secret"
    secret.write_bytes(blob.read_bytes())
    blob.unlink()
    blob.symlink_to(secret)
    with pytest.raises(ImageSourceError, match="is a symlink"), open_image(ref) as image:
        list(flatten(image))


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_decompression_bomb_ceiling(tmp_path: Path, compression: str) -> None:
    ref = simple_oci(tmp_path / "oci", [E.file("zeros", bytes(8 << 20))], compression=compression)
    assert _layer_blob(tmp_path / "oci").stat().st_size < 1 << 20
    with open_image(ref, limits=Limits(max_layer_bytes=2 << 20)) as image:
        with pytest.raises(
            ImageSourceError, match=r"layer 0 .*expands beyond the 2097152-byte layer limit"
        ):
            list(flatten(image))
        assert os.listdir(image.tmpdir()) == []  # the partial temp file is gone


def test_total_size_ceiling(tmp_path: Path) -> None:
    ref = simple_oci(tmp_path / "oci", [E.file("a", bytes(40000))], [E.file("b", bytes(40000))])
    with (
        open_image(ref, limits=Limits(max_total_bytes=60000)) as image,
        pytest.raises(ImageSourceError, match=r"layer 1 .*total size limit"),
    ):
        list(flatten(image))


def test_truncated_gzip_layer(tmp_path: Path) -> None:
    ref = simple_oci(tmp_path / "oci", L0, compression="gzip")
    blob = _layer_blob(tmp_path / "oci")
    data = gzip.compress(layer_bytes(L0), mtime=0)[:-40]
    # keep the digest right so that the decompression itself must notice
    new_hex = hashlib.sha256(data).hexdigest()
    (blob.parent / new_hex).write_bytes(data)
    root = tmp_path / "oci"
    index = json.loads((root / "index.json").read_text())
    m_path = root / "blobs/sha256" / index["manifests"][0]["digest"][7:]
    manifest = json.loads(m_path.read_bytes())
    manifest["layers"][0].update(digest="sha256:" + new_hex, size=len(data))
    m_path.write_bytes(json.dumps(manifest).encode())
    m_hex = hashlib.sha256(m_path.read_bytes()).hexdigest()
    index["manifests"][0]["digest"] = "sha256:" + m_hex
    index["manifests"][0]["size"] = m_path.stat().st_size
    (root / "blobs/sha256" / m_hex).write_bytes(m_path.read_bytes())
    (root / "index.json").write_text(json.dumps(index))
    with open_image(ref) as image, pytest.raises(ImageSourceError, match="corrupt gzip data"):
        list(flatten(image))


def test_hostile_index_documents(tmp_path: Path) -> None:
    root = tmp_path / "oci"
    root.mkdir()
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text('{"manifests":[{"digest":"sha256:../../etc/passwd"}]}')
    with pytest.raises(ImageSourceError, match="invalid or unsupported digest"):
        open_image(f"oci:{root}")
    (root / "index.json").write_text("[not json")
    with pytest.raises(ImageSourceError, match=r"index\.json: invalid JSON"):
        open_image(f"oci:{root}")
    (root / "index.json").write_bytes(b" " * ((16 << 20) + 1))
    with pytest.raises(ImageSourceError, match="exceeds"):
        open_image(f"oci:{root}")


# --- docker-archive ------------------------------------------------------------------------


def test_docker_archive_legacy_selects_by_tag(tmp_path: Path) -> None:
    arch = write_docker_archive(tmp_path / "a.tar", [layer_bytes(L0), layer_bytes(L1)], "app:1")
    assert listing_of(f"docker-archive:{arch}") == listing_of(f"docker-archive:{arch}:app:1")
    assert listing_of(f"docker-archive:{arch}:docker.io/library/app:1")[0][0] == b"bin"
    with pytest.raises(ImageSourceError, match="no image tagged 'app:2'; tags present: app:1"):
        open_image(f"docker-archive:{arch}:app:2")


def test_docker_archive_oci_based_layout(tmp_path: Path) -> None:
    """Docker >= 25 writes an OCI layout plus manifest.json naming blobs/sha256/<hex>."""
    root = tmp_path / "lay"
    ref = simple_oci(root, L0, L1)
    index = json.loads((root / "index.json").read_text())
    manifest = json.loads(
        (root / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_bytes()
    )
    (root / "manifest.json").write_text(
        json.dumps(
            [
                {
                    "Config": "blobs/sha256/" + manifest["config"]["digest"][7:],
                    "RepoTags": ["new:1"],
                    "Layers": ["blobs/sha256/" + d["digest"][7:] for d in manifest["layers"]],
                }
            ]
        )
    )
    tar_dir(root, tmp_path / "new.tar")
    assert listing_of(f"docker-archive:{tmp_path / 'new.tar'}:new:1") == listing_of(ref)


def test_docker_archive_tampered_layer_named(tmp_path: Path) -> None:
    good = layer_bytes(L0)
    arch = write_docker_archive(tmp_path / "a.tar", [good], "app:1")
    raw = arch.read_bytes()
    i = raw.index(b"test\n")
    arch.write_bytes(raw[:i] + b"TEST\n" + raw[i + 5 :])
    diff_id = "sha256:" + hashlib.sha256(good).hexdigest()
    with (
        open_image(f"docker-archive:{arch}") as image,
        pytest.raises(ImageSourceError, match=rf"layer 0 \({diff_id}\): digest mismatch"),
    ):
        list(flatten(image))


def test_docker_archive_member_escape_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tf:
        ti = tarfile.TarInfo("../manifest.json")
        tf.addfile(ti)
    with pytest.raises(ImageSourceError, match="invalid path"):
        open_image(f"docker-archive:{bad}")


def test_not_a_tar(tmp_path: Path) -> None:
    p = tmp_path / "x.tar"
    p.write_bytes(b"hello")
    with pytest.raises(ImageSourceError, match="not a readable tar archive"):
        open_image(f"docker-archive:{p}")


# --- cmd / env ------------------------------------------------------------------------------


def cfg(**kw: object) -> ImageConfig:
    return ImageConfig(architecture="amd64", **kw)  # type: ignore[arg-type]


def test_select_cmd_env_nitro_rules() -> None:
    assert select_cmd_env(cfg(cmd=["/c"], entrypoint=["/e"], env=["A=1"])) == (["/c"], ["A=1"], [])
    assert select_cmd_env(cfg(cmd=[], entrypoint=["/e"])) == ([], [], [])
    assert select_cmd_env(cfg(entrypoint=["/e", "x"])) == (["/e", "x"], [], [])
    with pytest.raises(ImageSourceError, match="neither Cmd nor Entrypoint"):
        select_cmd_env(cfg())
    _, _, warnings = select_cmd_env(cfg(cmd=["x"], working_dir="/app", user="1000"))
    assert (
        len(warnings) == 2 and "WorkingDir '/app'" in warnings[0] and "User '1000'" in warnings[1]
    )


def test_select_cmd_env_docker_mode() -> None:
    assert select_cmd_env(cfg(cmd=["a"], entrypoint=["/e"]), "docker")[0] == ["/e", "a"]
    assert select_cmd_env(cfg(cmd=["a"]), "docker")[0] == ["a"]
    with pytest.raises(ImageSourceError):
        select_cmd_env(cfg(cmd=[]), "docker")


def test_config_fields_parsed(tmp_path: Path) -> None:
    conf = {
        "Cmd": ["/a"],
        "Entrypoint": None,
        "Env": ["P=1"],
        "WorkingDir": "/w",
        "User": "u",
        "Labels": {"k": "v"},
    }
    ref = simple_oci(tmp_path / "oci", L0, config=conf)
    with open_image(ref) as image:
        c = image.config
        assert (c.cmd, c.entrypoint, c.env, c.working_dir, c.user, c.labels) == (
            ["/a"],
            None,
            ["P=1"],
            "/w",
            "u",
            {"k": "v"},
        )
    ref2 = simple_oci(tmp_path / "oci2", L0, config={"Cmd": "not a list"})
    with pytest.raises(ImageSourceError, match="config Cmd is not a list of strings"):
        open_image(ref2)


# --- CLI ------------------------------------------------------------------------------------


def test_cli_rootfs_lists_sorted_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from eifbuild.cli import main

    ref = simple_oci(
        tmp_path / "oci", [E.dir("a"), E.file("a/x", b"x"), E.file("a-b"), E.file(b"\xff", b"")]
    )
    assert main(["rootfs", ref]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["path"] for x in lines] == ["a", "a-b", "a/x", "\ufffd"]
    assert lines[3]["path_hex"] == "ff"
    assert lines[2]["sha256"] == hashlib.sha256(b"x").hexdigest() and lines[2]["mode"] == "0644"


def test_cli_bad_input_exit_1_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from eifbuild.cli import main

    assert main(["rootfs", f"oci:{tmp_path}"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("eifbuild: error: ") and "oci-layout" in err


def test_docker_archive_symlinked_duplicate_layer(tmp_path: Path) -> None:
    """docker save stores a repeated layer once and links the other path to it."""
    import io

    layer = layer_bytes([E.file("same", b"s")])
    src = write_docker_archive(tmp_path / "a.tar", [layer, layer], "dup:1")
    out = tmp_path / "b.tar"
    with tarfile.open(src) as tin, tarfile.open(out, "w") as tout:
        manifest = json.loads(tin.extractfile("manifest.json").read())  # type: ignore[union-attr]
        first, second = manifest[0]["Layers"]
        for ti in tin.getmembers():
            if ti.name == second:
                link = tarfile.TarInfo(second)
                link.type = tarfile.SYMTYPE
                link.linkname = "../" + first
                tout.addfile(link)
            else:
                tout.addfile(ti, io.BytesIO(tin.extractfile(ti).read()))  # type: ignore[union-attr]
    with open_image(f"docker-archive:{out}") as image:
        assert image.layers[0].blob == image.layers[1].blob
        assert [e.path for e in flatten(image)] == [b"same"]


def test_descriptor_size_must_match_blob(tmp_path: Path) -> None:
    ref = simple_oci(tmp_path / "oci", L0)
    blob = _layer_blob(tmp_path / "oci")
    blob.write_bytes(blob.read_bytes() + bytes(512))
    with pytest.raises(
        ImageSourceError,
        match=rf"layer 0: blob sha256:{blob.name} is \d+ bytes, descriptor says \d+",
    ):
        open_image(ref)


@pytest.mark.parametrize(
    ("option", "pattern"),
    [
        (
            ["--max-expanded-mib", "1"],
            r"layer 0 .*beyond the 1048576-byte layer limit \(--max-expanded-mib\)",
        ),
        (["--max-entries", "2"], r"more than 2 entries \(--max-entries\)"),
        (["--max-tree-mib", "1"], r"file tree needs more than 1 MiB of memory"),
    ],
)
def test_cli_limits_are_configurable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str], pattern: str
) -> None:
    """The ceilings against hostile images can be set from the command line (rootfs and build)."""
    from eifbuild.cli import main

    layer = [E.file("zeros", bytes(2 << 20))] + [E.file(f"f{i:05d}") for i in range(5000)]
    ref = simple_oci(tmp_path / "oci", layer, compression="gzip")
    assert main(["rootfs", ref, "--no-hash"]) == 0
    capsys.readouterr()
    from tests.test_build_blobs import make_blobs

    blobs = str(make_blobs(tmp_path / "blobs"))
    for argv in (["rootfs", ref], ["build", ref, "--blobs", blobs, "-o", str(tmp_path / "o.eif")]):
        assert main([*argv, *option]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and re.search(pattern, err), err
    assert not (tmp_path / "o.eif").exists()


def test_cli_limits_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    from eifbuild.cli import main

    assert main(["rootfs", "oci:/nonexistent", "--max-entries", "0"]) == 2
    assert "--max-entries 0: must be a positive number" in capsys.readouterr().err


# --- hostile JSON documents (found by fuzzing: TypeError/AttributeError escaped) -------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _write_layout(root: Path, index_patch: object, manifest_patch: object) -> None:
    """A one-image OCI layout whose index/manifest fields may be replaced by any JSON value."""
    from tests.helpers.imagegen import _blob

    layer = layer_bytes(L0)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    cfg = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["x"]},
           "rootfs": {"type": "layers", "diff_ids": [diff_id]}}  # fmt: skip
    cd = _blob(root, json.dumps(cfg).encode())
    man: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cd},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **_blob(root, layer)}],
    }
    if isinstance(manifest_patch, tuple):
        man[manifest_patch[0]] = manifest_patch[1]
    desc: dict[str, object] = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **_blob(root, json.dumps(man).encode()),
        "annotations": {"org.opencontainers.image.ref.name": "t"},
    }
    if isinstance(index_patch, tuple):
        desc[index_patch[0]] = index_patch[1]
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')


@pytest.mark.parametrize(
    ("index_patch", "manifest_patch"),
    [
        (("annotations", "t"), None),
        (("annotations", {"org.opencontainers.image.ref.name": ["t"]}), None),
        (None, ("mediaType", ["x"])),
        (None, ("mediaType", {"a": 1})),
        (("mediaType", []), None),
    ],
)
def test_oci_fields_of_the_wrong_json_type(
    tmp_path: Path, index_patch: object, manifest_patch: object
) -> None:
    _write_layout(tmp_path / "oci", index_patch, manifest_patch)
    for ref in (f"oci:{tmp_path / 'oci'}:t", f"oci:{tmp_path / 'oci'}"):
        try:
            with open_image(ref) as image:
                list(flatten(image))
        except ImageSourceError as exc:
            assert "\n" not in str(exc)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sampled_from(["mediaType", "annotations", "platform", "size", "digest", "urls"]),
    st.sampled_from(["mediaType", "config", "layers", "schemaVersion", "manifests"]),
    JSON_VALUES,
    st.booleans(),
)
def test_oci_any_json_in_descriptor_fields_is_a_clean_error(
    tmp_path: Path, index_key: str, manifest_key: str, value: object, in_index: bool
) -> None:
    root = tmp_path / f"oci{len(list(tmp_path.iterdir()))}"
    patch = (index_key if in_index else manifest_key, value)
    _write_layout(root, patch if in_index else None, None if in_index else patch)
    try:
        with open_image(f"oci:{root}:t") as image:
            list(flatten(image))
    except ImageSourceError as exc:
        assert "\n" not in str(exc)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(["RepoTags", "Config", "Layers"]), JSON_VALUES, st.booleans())
def test_docker_archive_any_json_in_manifest_fields_is_a_clean_error(
    tmp_path: Path, key: str, value: object, with_ref: bool
) -> None:
    import io

    layer = layer_bytes(L0)
    cfg = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["x"]},
           "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}  # fmt: skip
    cb = json.dumps(cfg).encode()
    cn = hashlib.sha256(cb).hexdigest() + ".json"
    entry: dict[str, object] = {"Config": cn, "RepoTags": ["app:v1"], "Layers": ["l/layer.tar"]}
    entry[key] = value
    arc = tmp_path / f"a{len(list(tmp_path.iterdir()))}.tar"
    with tarfile.open(arc, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in [
            (cn, cb),
            ("l/layer.tar", layer),
            ("manifest.json", json.dumps([entry]).encode()),
        ]:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    try:
        with open_image(f"docker-archive:{arc}" + (":app:v1" if with_ref else "")) as image:
            list(flatten(image))
    except ImageSourceError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize(
    ("doc", "why"),
    [(b"[" * 100_000 + b"]" * 100_000, "nested too deeply"), (b'{"a": NaN}', "ValueError")],
)
def test_json_documents_deeply_nested_or_with_nan_are_refused(
    tmp_path: Path, doc: bytes, why: str
) -> None:
    ref = simple_oci(tmp_path / "oci", L0)
    (tmp_path / "oci/index.json").write_bytes(doc)
    with pytest.raises(ImageSourceError, match=rf"index\.json: invalid JSON \({why}\)"):
        open_image(ref)
