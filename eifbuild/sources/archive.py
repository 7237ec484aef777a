"""``docker save`` archives: ``docker-archive:PATH[:REF]``.

Both layouts are read through ``manifest.json``: the legacy one (``<id>/layer.tar``,
``<config-hex>.json``) and the OCI-based one newer Docker writes (``blobs/sha256/<hex>``, with an
``index.json`` too). Blob names of the form ``blobs/sha256/<hex>`` are checked against ``<hex>``;
every layer is checked against the config's ``diff_ids``; the config against its name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from eifbuild.errors import ImageSourceError
from eifbuild.limits import DEFAULT_LIMITS, Limits
from eifbuild.sources._blobs import load_json, sha256_region
from eifbuild.sources._store import TarStore
from eifbuild.sources.image import (
    Image,
    Layer,
    check_arch,
    check_layer_count,
    diff_ids,
    parse_config,
)

_BLOB_RE = re.compile(r"^blobs/sha256/([0-9a-f]{64})$")
_LEGACY_CFG_RE = re.compile(r"^([0-9a-f]{64})\.json$")


def normalize_tag(ref: str) -> str:
    """``docker.io/library/x`` -> ``x``; add ``:latest`` when there is no tag or digest."""
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
            break
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        ref += ":latest"
    return ref


def _expected_digest(name: str) -> str | None:
    m = _BLOB_RE.match(name) or _LEGACY_CFG_RE.match(name)
    return f"sha256:{m.group(1)}" if m else None


def _tags(entry: dict[str, Any]) -> list[str]:
    """An entry's RepoTags that are strings (hostile manifests may hold anything)."""
    tags = entry.get("RepoTags")
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _pick(entries: list[dict[str, Any]], ref: str | None, what: str) -> dict[str, Any]:
    if ref is not None and ref.startswith("@") and ref[1:].isdigit():
        n = int(ref[1:])
        if n >= len(entries):
            raise ImageSourceError(f"{what}: no image @{n}; the archive holds {len(entries)}")
        return entries[n]
    if ref is None:
        if len(entries) != 1:
            tags = sorted(t for e in entries for t in _tags(e))
            raise ImageSourceError(f"{what}: {len(entries)} images; name one of: {', '.join(tags)}")
        return entries[0]
    want = normalize_tag(ref)
    for e in entries:
        if any(normalize_tag(t) == want for t in _tags(e)):
            return e
    tags = sorted(t for e in entries for t in _tags(e))
    raise ImageSourceError(
        f"{what}: no image tagged {ref!r}; tags present: {', '.join(tags) or 'none'}"
    )


def open_docker_archive(
    reference: str, path: Path, ref: str | None, arch: str | None, limits: Limits = DEFAULT_LIMITS
) -> Image:
    what = reference
    store = TarStore(path, limits)
    doc = load_json(store.file("manifest.json"), f"{what}: manifest.json", limits)
    if not isinstance(doc, list) or not all(isinstance(e, dict) for e in doc) or not doc:
        raise ImageSourceError(f"{what}: manifest.json is not a non-empty list of objects")
    entry = _pick(doc, ref, what)
    cfg_name = entry.get("Config")
    layers = entry.get("Layers")
    if not isinstance(cfg_name, str) or not isinstance(layers, list):
        raise ImageSourceError(f"{what}: manifest.json entry lacks Config or Layers")
    check_layer_count(len(layers), limits, what)
    cfg_region = store.file(cfg_name)
    cfg_digest = sha256_region(cfg_region)
    expected = _expected_digest(cfg_name)
    if expected is not None and expected != cfg_digest:
        raise ImageSourceError(f"{what}: config {cfg_name}: digest mismatch (got {cfg_digest})")
    cfg_doc = load_json(cfg_region, f"{what}: config {cfg_name}", limits, cfg_digest)
    config = parse_config(cfg_doc, what)
    check_arch(config, arch, what)
    ids = diff_ids(cfg_doc, what)
    if len(layers) != len(ids):
        raise ImageSourceError(
            f"{what}: manifest.json lists {len(layers)} layers but config has {len(ids)} diff_ids"
        )
    image = Image(reference, cfg_digest, config, [], {}, limits)
    for i, (name, diff_id) in enumerate(zip(layers, ids, strict=True)):
        if not isinstance(name, str):
            raise ImageSourceError(f"{what}: layer {i} name is not a string")
        image.layers.append(Layer(i, store.file(name), _expected_digest(name), diff_id, "", image))
    image.input_digests = {
        "manifest": None,
        "config": cfg_digest,
        "layers": [layer.digest or layer.diff_id for layer in image.layers],
        "diff_ids": ids,
    }
    return image
