"""Generate real container images for tests: layer tarballs built in Python, then real tools.

Small API shared by the sources, build and kernel tests::

    from tests.helpers.imagegen import E, base_layer, write_layer, docker_import, docker_build,
                              docker_save, skopeo_oci, tar_dir

    layer = tmp / "base.tar"
    write_layer(layer, base_layer(E.file("etc/passwd", b"root:x:0:0::/:/bin/sh\\n")))
    docker_import(layer, "t/base:1", changes=['CMD ["/bin/sh"]'])
    docker_build(tmp / "ctx", "t/app:1", "FROM t/base:1\\nRUN rm /etc/passwd\\n")
    docker_save("t/app:1", tmp / "app.tar")           # docker-archive
    skopeo_oci(tmp / "app.tar", tmp / "oci", "app")    # OCI layout (a third-party producer)

Everything runs against ``$DOCKER_HOST`` (the private test daemon). ``base_layer`` adds a static
busybox as ``bin/busybox`` with ``bin/sh`` a symlink to it, so ``RUN`` steps work in
``docker build``. Names are raw ``bytes`` or ``str``; non-UTF-8 names are allowed.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
DEFAULT_MTIME = 1_600_000_000


@dataclass(frozen=True)
class E:
    """One tar entry of a generated layer."""

    name: bytes
    kind: str = "file"  # file dir symlink hardlink char block fifo
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = DEFAULT_MTIME
    linkname: bytes = b""
    devmajor: int = 0
    devminor: int = 0
    pax: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def _b(name: str | bytes) -> bytes:
        return name.encode() if isinstance(name, str) else name

    @classmethod
    def file(cls, name: str | bytes, data: bytes = b"", mode: int = 0o644, **kw: object) -> E:
        return cls(cls._b(name), "file", data, mode, **kw)  # type: ignore[arg-type]

    @classmethod
    def dir(cls, name: str | bytes, mode: int = 0o755, **kw: object) -> E:
        return cls(cls._b(name), "dir", b"", mode, **kw)  # type: ignore[arg-type]

    @classmethod
    def symlink(cls, name: str | bytes, target: str | bytes, **kw: object) -> E:
        return cls(cls._b(name), "symlink", b"", 0o777, linkname=cls._b(target), **kw)  # type: ignore[arg-type]

    @classmethod
    def hardlink(cls, name: str | bytes, target: str | bytes, mode: int = 0o644, **kw: object) -> E:
        return cls(cls._b(name), "hardlink", b"", mode, linkname=cls._b(target), **kw)  # type: ignore[arg-type]

    @classmethod
    def char(cls, name: str | bytes, major: int, minor: int, mode: int = 0o666) -> E:
        return cls(cls._b(name), "char", b"", mode, devmajor=major, devminor=minor)

    @classmethod
    def block(cls, name: str | bytes, major: int, minor: int, mode: int = 0o660) -> E:
        return cls(cls._b(name), "block", b"", mode, devmajor=major, devminor=minor)

    @classmethod
    def fifo(cls, name: str | bytes, mode: int = 0o644) -> E:
        return cls(cls._b(name), "fifo", b"", mode)


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def _s(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def tarinfo(e: E) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(_s(e.name))
    ti.type = _TYPES[e.kind]
    ti.mode = e.mode
    ti.uid, ti.gid, ti.mtime = e.uid, e.gid, e.mtime
    ti.uname = ti.gname = ""
    ti.linkname = _s(e.linkname)
    ti.devmajor, ti.devminor = e.devmajor, e.devminor
    ti.size = len(e.data) if e.kind == "file" else 0
    if e.pax:
        ti.pax_headers = dict(e.pax)
    return ti


def write_layer(path: Path, entries: Iterable[E], fmt: int = tarfile.PAX_FORMAT) -> Path:
    """Write ``entries`` in the given order as an uncompressed tar at ``path``."""
    with tarfile.open(path, "w", format=fmt, encoding="utf-8", errors="surrogateescape") as tf:
        for e in entries:
            ti = tarinfo(e)
            tf.addfile(ti, io.BytesIO(e.data) if e.kind == "file" else None)
    return path


def layer_bytes(entries: Iterable[E], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape"
    ) as tf:
        for e in entries:
            tf.addfile(tarinfo(e), io.BytesIO(e.data) if e.kind == "file" else None)
    return buf.getvalue()


def base_layer(*extra: E, busybox: bool = True) -> list[E]:
    """A minimal root: ``bin/`` with a static busybox and ``bin/sh`` -> busybox, plus ``extra``."""
    out: list[E] = [E.dir("bin"), E.dir("etc"), E.dir("tmp", 0o1777)]
    if busybox:
        out.append(E.file("bin/busybox", BUSYBOX.read_bytes(), 0o755))
        out.append(E.symlink("bin/sh", "busybox"))
    out.extend(extra)
    return out


def _run(args: Sequence[str], input: bytes | None = None, cwd: Path | None = None) -> bytes:
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    proc = subprocess.run(list(args), input=input, capture_output=True, cwd=cwd, env=env)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"{' '.join(args[:3])} failed: {msg}")
    return proc.stdout


def docker_import(
    layer: Path,
    tag: str,
    changes: Sequence[str] = ('CMD ["/bin/sh"]',),
    platform: str | None = None,
) -> str:
    """``docker import`` a layer tarball as ``tag``; return the image id."""
    args = ["docker", "import"]
    for c in changes:
        args += ["--change", c]
    if platform:
        args += ["--platform", platform]
    _run([*args, str(layer), tag])
    return image_id(tag)


def docker_build(
    context: Path, tag: str, dockerfile: str, files: dict[str, bytes] | None = None
) -> str:
    """Classic-builder ``docker build`` of ``dockerfile`` (with extra context ``files``)."""
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile)
    for name, data in (files or {}).items():
        p = context / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    _run(["docker", "build", "-q", "--network", "none", "-t", tag, str(context)])
    return image_id(tag)


def image_id(tag: str) -> str:
    return _run(["docker", "image", "inspect", "-f", "{{.Id}}", tag]).decode().strip()


def docker_save(tag: str, dest: Path) -> Path:
    _run(["docker", "save", "-o", str(dest), tag])
    return dest


def docker_export(tag: str, dest: Path) -> Path:
    """``docker create`` (never started) + ``docker export`` + ``docker rm``, like linuxkit."""
    cid = _run(["docker", "create", "--network", "none", tag, "/dev/null"]).decode().strip()
    try:
        _run(["docker", "export", "-o", str(dest), cid])
    finally:
        _run(["docker", "rm", "-v", cid])
    return dest


def docker_rmi(*tags: str) -> None:
    subprocess.run(["docker", "rmi", "-f", *tags], capture_output=True, check=False)


def skopeo_oci(archive: Path, oci_dir: Path, ref: str) -> Path:
    """Convert a ``docker save`` archive into an OCI layout with skopeo (a real third party)."""
    _run(["skopeo", "copy", "-q", f"docker-archive:{archive}", f"oci:{oci_dir}:{ref}"])
    return oci_dir


def tar_dir(src: Path, dest: Path) -> Path:
    """Pack a directory (e.g. an OCI layout) into a tar, sorted names (an oci-archive)."""
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
        for p in sorted(src.rglob("*")):
            tf.add(p, arcname=str(p.relative_to(src)), recursive=False)
    return dest


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


# --- OCI layouts written directly (no daemon): exact control over blobs, indexes, platforms ---


def _blob(root: Path, data: bytes) -> dict[str, object]:
    import hashlib

    hexd = hashlib.sha256(data).hexdigest()
    p = root / "blobs" / "sha256" / hexd
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return {"digest": f"sha256:{hexd}", "size": len(data)}


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        import gzip

        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return data


_LAYER_MT = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


def oci_image(
    root: Path,
    layers: Sequence[bytes],
    *,
    config: Mapping[str, object] | None = None,
    arch: str = "amd64",
    compression: str = "none",
    created: str | None = None,
) -> dict[str, object]:
    """Write layer blobs, config and manifest into an OCI layout; return the manifest descriptor."""
    import hashlib
    import json

    cfg: dict[str, object] = {
        "architecture": arch,
        "os": "linux",
        "config": config if config is not None else {"Cmd": ["/bin/sh"]},
        "rootfs": {
            "type": "layers",
            "diff_ids": ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers],
        },
    }
    if created is not None:
        cfg["created"] = created
    cfg_desc = _blob(root, json.dumps(cfg).encode())
    layer_descs = []
    for data in layers:
        d = _blob(root, compress(data, compression))
        layer_descs.append({"mediaType": _LAYER_MT[compression], **d})
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg_desc},
        "layers": layer_descs,
    }
    desc = _blob(root, json.dumps(manifest).encode())
    return {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **desc,
        "platform": {"architecture": arch, "os": "linux"},
    }


def oci_layout(
    root: Path,
    manifests: Sequence[dict[str, object]],
    refs: Sequence[str | None] = (),
    as_index: bool = False,
) -> Path:
    """Write ``oci-layout`` and ``index.json`` listing ``manifests`` (optionally via a nested index)."""
    import json

    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    descs = [dict(m) for m in manifests]
    if as_index:
        idx = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": descs,
        }
        d = _blob(root, json.dumps(idx).encode())
        descs = [{"mediaType": "application/vnd.oci.image.index.v1+json", **d}]
    for d, ref in zip(descs, refs, strict=False):
        if ref is not None:
            d["annotations"] = {"org.opencontainers.image.ref.name": ref}
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": descs}))
    return root


def simple_oci(
    root: Path,
    *layers: Sequence[E],
    ref: str | None = "t",
    compression: str = "none",
    config: Mapping[str, object] | None = None,
    arch: str = "amd64",
) -> str:
    """An OCI layout holding one image made of ``layers``; returns the ``oci:`` reference."""
    desc = oci_image(
        root, [layer_bytes(x) for x in layers], config=config, arch=arch, compression=compression
    )
    oci_layout(root, [desc], [ref])
    return f"oci:{root}" + (f":{ref}" if ref else "")


def write_docker_archive(
    dest: Path,
    layers: Sequence[bytes],
    tag: str,
    *,
    config: Mapping[str, object] | None = None,
    arch: str = "amd64",
) -> Path:
    """A legacy ``docker save`` archive holding ``layers`` (for ``docker load`` or reading)."""
    import hashlib
    import json

    cfg = {
        "architecture": arch,
        "os": "linux",
        "config": config if config is not None else {"Cmd": ["/bin/sh"]},
        "rootfs": {
            "type": "layers",
            "diff_ids": ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers],
        },
    }
    cfg_bytes = json.dumps(cfg).encode()
    cfg_name = hashlib.sha256(cfg_bytes).hexdigest() + ".json"
    files: list[tuple[str, bytes]] = [(cfg_name, cfg_bytes)]
    names = []
    for i, data in enumerate(layers):
        name = f"{hashlib.sha256(b'%d' % i + data).hexdigest()}/layer.tar"
        names.append(name)
        files.append((name, data))
    manifest = [{"Config": cfg_name, "RepoTags": [tag], "Layers": names}]
    files.append(("manifest.json", json.dumps(manifest).encode()))
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return dest


def docker_load(archive: Path) -> None:
    _run(["docker", "load", "-q", "-i", str(archive)])
