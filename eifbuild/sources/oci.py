"""OCI image layouts: ``oci:DIR[:REF]`` and ``oci-archive:TAR[:REF]``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from eifbuild.errors import ImageSourceError
from eifbuild.limits import DEFAULT_LIMITS, Limits
from eifbuild.sources._blobs import Region, check_digest_text, load_json
from eifbuild.sources._store import DirStore, Store, TarStore
from eifbuild.sources.image import (
    Image,
    Layer,
    check_arch,
    check_layer_count,
    diff_ids,
    normalize_arch,
    parse_config,
)

REF_ANNOTATION = "org.opencontainers.image.ref.name"
INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
}
_MAX_INDEX_DEPTH = 4


def sized_blob(store: Store, desc: dict[str, Any], what: str) -> Region:
    """The blob a descriptor names; its recorded size must match the stored one."""
    digest = check_digest_text(desc.get("digest"), what)
    region = store.blob(digest)
    size = desc.get("size")
    if size is not None and size != region.size:
        raise ImageSourceError(
            f"{what}: blob {digest} is {region.size} bytes, descriptor says {size}"
        )
    return region


def _descriptors(doc: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
        raise ImageSourceError(f"{what}: not an image index (no manifests list)")
    out = []
    for d in doc["manifests"]:
        if not isinstance(d, dict):
            raise ImageSourceError(f"{what}: manifest descriptor is not an object")
        check_digest_text(d.get("digest"), f"{what}: manifest descriptor")
        out.append(d)
    return out


def _text(value: Any) -> str | None:
    """A JSON string field, or None for any other JSON value (hostile documents)."""
    return value if isinstance(value, str) else None


def _ref_name(d: dict[str, Any]) -> str | None:
    """The descriptor's ``org.opencontainers.image.ref.name`` annotation, if well-formed."""
    annotations = d.get("annotations")
    return _text(annotations.get(REF_ANNOTATION)) if isinstance(annotations, dict) else None


def _platform(d: dict[str, Any]) -> str:
    p = d.get("platform")
    if not isinstance(p, dict):
        return "unknown"
    text = f"{p.get('os', '?')}/{normalize_arch(str(p.get('architecture', '?')))}"
    return text + (f"/{p['variant']}" if p.get("variant") else "")


def _pick_platform(
    ds: list[dict[str, Any]], arch: str | None, what: str, top: bool
) -> dict[str, Any]:
    """One descriptor: by platform inside an image index; index.json's single entry as is."""
    if len(ds) == 1 and (arch is None or top or "platform" not in ds[0]):
        return ds[0]
    want = normalize_arch(arch) if arch else None
    hits = [
        d
        for d in ds
        if isinstance(d.get("platform"), dict)
        and d["platform"].get("os", "linux") == "linux"
        and (want is None or normalize_arch(str(d["platform"].get("architecture", ""))) == want)
    ]
    if want is None and len(hits) > 1:
        raise ImageSourceError(
            f"{what}: several platforms ({', '.join(sorted({_platform(d) for d in ds}))}); choose one with --arch"
        )
    if not hits:
        present = ", ".join(sorted({_platform(d) for d in ds})) or "none"
        raise ImageSourceError(f"{what}: no linux/{want} image; platforms present: {present}")
    return hits[0]


def resolve_manifest(
    store: Store, index: Any, ref: str | None, arch: str | None, what: str, limits: Limits
) -> tuple[str, dict[str, Any]]:
    """Follow index.json (by ref annotation, then by platform) to one image manifest."""
    ds = _descriptors(index, what)
    if ref is not None:
        named = [d for d in ds if _ref_name(d) == ref]
        if not named:
            refs = sorted({str(_ref_name(d)) for d in ds})
            raise ImageSourceError(
                f"{what}: no image named {ref!r}; names present: {', '.join(refs)}"
            )
        ds = named
    elif len(ds) > 1 and all(
        _text(d.get("mediaType")) in MANIFEST_TYPES and "platform" not in d for d in ds
    ):
        refs = sorted({str(_ref_name(d)) for d in ds})
        raise ImageSourceError(f"{what}: several images; name one of: {', '.join(refs)}")
    top = True
    for _ in range(_MAX_INDEX_DEPTH):
        d = _pick_platform(ds, arch, what, top)
        top = False
        digest = d["digest"]
        doc = load_json(sized_blob(store, d, what), f"{what}: manifest {digest}", limits, digest)
        mt = _text(doc.get("mediaType")) if isinstance(doc, dict) else None
        if mt in INDEX_TYPES or (
            isinstance(doc, dict) and "manifests" in doc and "layers" not in doc
        ):
            ds = _descriptors(doc, f"{what}: index {digest}")
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("layers"), list):
            raise ImageSourceError(f"{what}: manifest {digest} has no layers list")
        check_layer_count(len(doc["layers"]), limits, f"{what}: manifest {digest}")
        return digest, doc
    raise ImageSourceError(f"{what}: image indexes nested too deeply")


def image_from_manifest(
    store: Store,
    reference: str,
    manifest_digest: str | None,
    manifest: dict[str, Any],
    arch: str | None,
    limits: Limits,
) -> Image:
    what = reference
    cfg_desc = manifest.get("config")
    if not isinstance(cfg_desc, dict):
        raise ImageSourceError(f"{what}: manifest has no config descriptor")
    cfg_digest = check_digest_text(cfg_desc.get("digest"), f"{what}: config descriptor")
    cfg_region = sized_blob(store, cfg_desc, f"{what}: config")
    cfg_doc = load_json(cfg_region, f"{what}: config {cfg_digest}", limits, cfg_digest)
    config = parse_config(cfg_doc, what)
    check_arch(config, arch, what)
    ids = diff_ids(cfg_doc, what)
    descs = manifest["layers"]
    if len(descs) != len(ids):
        raise ImageSourceError(
            f"{what}: manifest lists {len(descs)} layers but config has {len(ids)} diff_ids"
        )
    image = Image(reference, cfg_digest, config, [], {}, limits)
    for i, (desc, diff_id) in enumerate(zip(descs, ids, strict=True)):
        if not isinstance(desc, dict):
            raise ImageSourceError(f"{what}: layer descriptor {i} is not an object")
        digest = check_digest_text(desc.get("digest"), f"{what}: layer {i}")
        mt = str(desc.get("mediaType", ""))
        if mt and mt not in LAYER_TYPES:
            raise ImageSourceError(f"{what}: layer {i} ({digest}) has unsupported media type {mt}")
        blob = sized_blob(store, desc, f"{what}: layer {i}")
        image.layers.append(Layer(i, blob, digest, diff_id, mt, image))
    image.input_digests = {
        "manifest": manifest_digest,
        "config": cfg_digest,
        "layers": [layer.digest for layer in image.layers],
        "diff_ids": ids,
    }
    return image


def _check_layout(store: Store, what: str, limits: Limits) -> Any:
    layout = load_json(store.file("oci-layout"), f"{what}: oci-layout", limits)
    if not isinstance(layout, dict) or layout.get("imageLayoutVersion") != "1.0.0":
        raise ImageSourceError(
            f"{what}: unsupported oci-layout (imageLayoutVersion 1.0.0 expected)"
        )
    return load_json(store.file("index.json"), f"{what}: index.json", limits)


def open_layout(
    store: Store, reference: str, ref: str | None, arch: str | None, limits: Limits
) -> Image:
    index = _check_layout(store, reference, limits)
    digest, manifest = resolve_manifest(store, index, ref, arch, reference, limits)
    return image_from_manifest(store, reference, digest, manifest, arch, limits)


def open_oci_dir(
    reference: str, path: Path, ref: str | None, arch: str | None, limits: Limits = DEFAULT_LIMITS
) -> Image:
    return open_layout(DirStore(path), reference, ref, arch, limits)


def open_oci_archive(
    reference: str, path: Path, ref: str | None, arch: str | None, limits: Limits = DEFAULT_LIMITS
) -> Image:
    return open_layout(TarStore(path, limits), reference, ref, arch, limits)


def sha256_text(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
