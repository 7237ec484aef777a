"""EIFs as OCI artifacts: ``push``, ``pull`` and ``--attach`` (OCI image-spec 1.1 artifacts).

An EIF artifact is an OCI image manifest (``docs/registry.md`` describes it)::

    artifactType  application/vnd.eifbuild.enclave-image.v1
    config        application/vnd.oci.empty.v1+json  ({}; the OCI 1.1 empty descriptor)
    layers        application/vnd.eifbuild.eif.v1                      the EIF, as is
                  application/vnd.eifbuild.measurements.v1+json        {"Measurements": …}
                  application/vnd.eifbuild.signing-certificate.v1+pem  (signed EIFs only)
    annotations   dev.eifbuild.pcr0 / pcr1 / pcr2 [/ pcr8], dev.eifbuild.eif.version,
                  dev.eifbuild.arch, org.opencontainers.image.created (the EIF's BuildTime)

Every value comes from the EIF itself and its file name (no clock, no host), so pushing the
same EIF twice gives the same manifest digest. ``--attach IMAGE`` pushes a second manifest into the image's
repository whose ``subject`` is the image (artifactType
``application/vnd.eifbuild.measurements.v1+json``), naming the EIF artifact in the annotation
``dev.eifbuild.eif.reference``; registries without the referrers API get the OCI 1.1 fallback
tag ``sha256-<hex>`` (an index of referrers).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eifbuild.eif.reader import EifReader
from eifbuild.errors import EifbuildError, RegistryError, UsageError, VerificationError
from eifbuild.measure import Measurements, pcr8_from_pem
from eifbuild.registry.cache import BlobCache
from eifbuild.registry.client import RegistryClient, file_opener, sha256_text
from eifbuild.registry.image import fetch_blob
from eifbuild.registry.options import RegistryOptions
from eifbuild.registry.reference import parse_reference
from eifbuild.types import Progress

ARTIFACT_TYPE = "application/vnd.eifbuild.enclave-image.v1"
EIF_MEDIA_TYPE = "application/vnd.eifbuild.eif.v1"
MEASUREMENTS_MEDIA_TYPE = "application/vnd.eifbuild.measurements.v1+json"
CERTIFICATE_MEDIA_TYPE = "application/vnd.eifbuild.signing-certificate.v1+pem"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
ANNOTATION_PREFIX = "dev.eifbuild."
A_VERSION = "dev.eifbuild.eif.version"
A_ARCH = "dev.eifbuild.arch"
A_REFERENCE = "dev.eifbuild.eif.reference"
A_CREATED = "org.opencontainers.image.created"
A_TITLE = "org.opencontainers.image.title"
MAX_EIF_BYTES = 64 << 30
MAX_SMALL_BLOB = 1 << 20
PCRS = (0, 1, 2, 8)


def pcr_key(index: int) -> str:
    return f"{ANNOTATION_PREFIX}pcr{index}"


@dataclass(frozen=True)
class EifFacts:
    """What an artifact records about an EIF, read from the EIF alone."""

    digest: str
    size: int
    version: int
    arch: str
    measurements: Measurements
    build_time: str | None
    certificate: bytes | None = field(default=None, repr=False)

    def pcrs(self) -> dict[int, str]:
        m = self.measurements
        out = {0: m.pcr0, 1: m.pcr1, 2: m.pcr2}
        if m.pcr8 is not None:
            out[8] = m.pcr8
        return out


@dataclass(frozen=True)
class AttachResult:
    subject: str  # docker://REPO@sha256:… of the image
    referrer_digest: str
    fallback_tag: str | None  # the OCI 1.1 referrers tag updated (registries without the API)


@dataclass(frozen=True)
class PushResult:
    reference: str  # docker://REG/REPO@sha256:… of the pushed manifest
    digest: str
    tag: str | None
    eif_digest: str
    annotations: dict[str, str]
    uploaded_blobs: int
    attached: AttachResult | None = None
    warnings: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "reference": self.reference,
            "digest": self.digest,
            "tag": self.tag,
            "eif_digest": self.eif_digest,
            "annotations": self.annotations,
        }
        if self.attached is not None:
            doc["attached"] = {
                "subject": self.attached.subject,
                "referrer_digest": self.attached.referrer_digest,
                "fallback_tag": self.attached.fallback_tag,
            }
        return doc


@dataclass(frozen=True)
class PullResult:
    reference: str  # as asked
    resolved: str  # docker://REG/REPO@sha256:…
    digest: str
    eif_digest: str
    size: int
    measurements: Measurements
    annotations: dict[str, str]
    path: str | None  # the written file (pull -o), or None
    warnings: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "resolved": self.resolved,
            "digest": self.digest,
            "eif_digest": self.eif_digest,
            "size": self.size,
            "Measurements": self.measurements.as_nitro(),
            "annotations": self.annotations,
            "path": self.path,
        }


def _sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def eif_facts(path: str | os.PathLike[str], progress: Progress | None = None) -> EifFacts:
    """Measure an EIF (one pass) and read what its artifact annotations record."""
    with EifReader(path) as reader:
        scan = reader.scan(progress=progress)
        if not scan.crc_ok:
            raise VerificationError(f"{path}: CRC mismatch: refusing to publish a damaged EIF")
        entries = reader.signature_entries()
        cert = entries[0][0] if entries else None
        m = scan.measurements
        if cert is not None and m.pcr8 is None:
            m = Measurements(m.pcr0, m.pcr1, m.pcr2, pcr8_from_pem(cert, f"{path}: certificate"))
        meta = reader.metadata()
        build_time = None
        if isinstance(meta, dict) and isinstance(meta.get("BuildMetadata"), dict):
            bt = meta["BuildMetadata"].get("BuildTime")
            build_time = bt if isinstance(bt, str) else None
        version, arch = reader.version, reader.arch.value
    digest, size = _sha256_file(path)
    return EifFacts(digest, size, version, str(arch), m, build_time, cert)


def annotations_for(facts: EifFacts) -> dict[str, str]:
    out = {pcr_key(i): v for i, v in facts.pcrs().items()}
    out[A_VERSION] = str(facts.version)
    out[A_ARCH] = facts.arch
    if facts.build_time:
        out[A_CREATED] = facts.build_time
    return dict(sorted(out.items()))


def measurements_json(m: Measurements) -> bytes:
    return (json.dumps({"Measurements": m.as_nitro()}, indent=2) + "\n").encode()


def _descriptor(media_type: str, data_digest: str, size: int, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": data_digest, "size": size, **extra}


def _encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=2, sort_keys=False).encode() + b"\n"


def _push_small(client: RegistryClient, data: bytes, what: str) -> bool:
    digest = sha256_text(data)
    return client.upload_blob(digest, len(data), data, what)


def push_eif(
    eif: str | os.PathLike[str],
    target: str,
    *,
    options: RegistryOptions,
    attach: str | None = None,
    progress: Progress | None = None,
) -> PushResult:
    """Upload ``eif`` as an EIF artifact to ``target`` (``docker://REG/REPO[:TAG]``)."""
    ref = parse_reference(target)
    facts = eif_facts(eif, progress)
    annotations = annotations_for(facts)
    meas = measurements_json(facts.measurements)
    layers = [
        _descriptor(
            EIF_MEDIA_TYPE, facts.digest, facts.size,
            annotations={A_TITLE: Path(eif).name or "enclave.eif"},
        ),
        _descriptor(
            MEASUREMENTS_MEDIA_TYPE, sha256_text(meas), len(meas),
            annotations={A_TITLE: "measurements.json"},
        ),
    ]  # fmt: skip
    if facts.certificate is not None:
        layers.append(
            _descriptor(
                CERTIFICATE_MEDIA_TYPE, sha256_text(facts.certificate), len(facts.certificate),
                annotations={A_TITLE: "signing-certificate.pem"},
            )
        )  # fmt: skip
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": _descriptor(EMPTY_MEDIA_TYPE, sha256_text(EMPTY_BLOB), len(EMPTY_BLOB)),
        "layers": layers,
        "annotations": annotations,
    }
    data = _encode(manifest)
    digest = sha256_text(data)
    if ref.digest is not None and ref.digest != digest:
        raise UsageError(
            f"{target}: the artifact's manifest digest is {digest}; push to a tag, not a digest"
        )
    uploaded = 0
    with RegistryClient(ref, options, push=True) as client:
        what = f"{target}"
        uploaded += client.upload_blob(facts.digest, facts.size, file_opener(eif), f"{what}: EIF")
        uploaded += _push_small(client, meas, f"{what}: measurements")
        if facts.certificate is not None:
            uploaded += _push_small(client, facts.certificate, f"{what}: certificate")
        uploaded += _push_small(client, EMPTY_BLOB, f"{what}: config")
        client.put_manifest(ref.tag or digest, data, MANIFEST_MEDIA_TYPE, f"{what}: manifest")
    pushed = ref.with_digest(digest)
    attached = None
    if attach is not None:
        attached = attach_measurements(
            attach, facts, str(pushed), options=options, annotations=annotations
        )
    return PushResult(str(pushed), digest, ref.tag, facts.digest, annotations, uploaded, attached)


def attach_measurements(
    image: str,
    facts: EifFacts,
    eif_reference: str | None,
    *,
    options: RegistryOptions,
    annotations: dict[str, str],
) -> AttachResult:
    """Push the measurements as a referrer (``subject``) of ``image`` in its repository."""
    ref = parse_reference(image)
    what = f"{image}"
    meas = measurements_json(facts.measurements)
    with RegistryClient(ref, options, push=True) as client:
        subject = client.get_manifest(ref.target, what)
        notes = dict(annotations)
        if eif_reference is not None:
            notes[A_REFERENCE] = eif_reference
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "artifactType": MEASUREMENTS_MEDIA_TYPE,
            "config": _descriptor(EMPTY_MEDIA_TYPE, sha256_text(EMPTY_BLOB), len(EMPTY_BLOB)),
            "layers": [
                _descriptor(
                    MEASUREMENTS_MEDIA_TYPE, sha256_text(meas), len(meas),
                    annotations={A_TITLE: "measurements.json"},
                )
            ],
            "subject": _descriptor(subject.media_type, subject.digest, len(subject.data)),
            "annotations": dict(sorted(notes.items())),
        }  # fmt: skip
        data = _encode(manifest)
        digest = sha256_text(data)
        _push_small(client, meas, f"{what}: measurements")
        _push_small(client, EMPTY_BLOB, f"{what}: config")
        resp = client.put_manifest(digest, data, MANIFEST_MEDIA_TYPE, f"{what}: referrer")
        fallback = None
        if not resp.header("OCI-Subject"):
            fallback = _update_fallback_tag(
                client, subject.digest, manifest, digest, len(data), what
            )
    return AttachResult(str(ref.with_digest(subject.digest)), digest, fallback)


def _update_fallback_tag(
    client: RegistryClient,
    subject_digest: str,
    manifest: dict[str, Any],
    digest: str,
    size: int,
    what: str,
) -> str:
    """OCI distribution-spec 1.1 referrers tag schema: ``sha256-<hex>`` names an index."""
    tag = subject_digest.replace(":", "-")
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
    if client.manifest_exists(tag, f"{what}: referrers tag {tag}"):
        existing = client.get_manifest(tag, f"{what}: referrers tag {tag}").json(what)
        if isinstance(existing.get("manifests"), list):
            index["manifests"] = [d for d in existing["manifests"] if isinstance(d, dict)]
    if any(d.get("digest") == digest for d in index["manifests"]):
        return tag
    index["manifests"].append(
        _descriptor(
            MANIFEST_MEDIA_TYPE, digest, size,
            artifactType=manifest["artifactType"], annotations=manifest["annotations"],
        )
    )  # fmt: skip
    client.put_manifest(tag, _encode(index), INDEX_MEDIA_TYPE, f"{what}: referrers tag {tag}")
    return tag


def _annotated_pcrs(doc: dict[str, Any], what: str) -> dict[int, str]:
    notes = doc.get("annotations")
    if not isinstance(notes, dict):
        raise VerificationError(f"{what}: artifact has no annotations (not pushed by eifbuild?)")
    out: dict[int, str] = {}
    for i in PCRS:
        value = notes.get(pcr_key(i))
        if value is None:
            continue
        if (
            not isinstance(value, str)
            or len(value) != 96
            or not all(c in "0123456789abcdef" for c in value)
        ):
            raise VerificationError(f"{what}: annotation {pcr_key(i)} is not 96 lowercase hex")
        out[i] = value
    if not all(i in out for i in (0, 1, 2)):
        raise VerificationError(f"{what}: artifact annotations lack PCR0/1/2")
    return out


@contextlib.contextmanager
def fetch_eif(
    source: str,
    *,
    options: RegistryOptions,
    progress: Progress | None = None,
) -> Iterator[tuple[PullResult, Path]]:
    """Fetch and verify an EIF artifact into the blob cache; yield (result, cached path).

    Verified: every digest and size (manifest, EIF, measurements), and that the EIF's
    recomputed PCRs equal the manifest's annotations and the measurements blob (a mismatch is
    a VerificationError, exit 1). The cached file is read-only and stays valid for the block.
    """
    ref = parse_reference(source)
    if options.require_digest and ref.digest is None:
        raise UsageError(f"{source}: --require-digest: the reference has no @sha256: digest")
    cache = BlobCache(options.cache_dir)
    with cache.session(options.cache_max_bytes), RegistryClient(ref, options) as client:
        manifest = client.get_manifest(ref.target, source)
        doc = manifest.json(source)
        kind = doc.get("artifactType")
        cfg = doc.get("config")
        if kind != ARTIFACT_TYPE and not (
            isinstance(cfg, dict) and cfg.get("mediaType") == ARTIFACT_TYPE
        ):
            shown = kind if isinstance(kind, str) else "none"
            raise RegistryError(
                f"{source}: not an EIF artifact (artifactType {shown[:100]!r}, "
                f"expected {ARTIFACT_TYPE})"
            )
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise RegistryError(f"{source}: artifact manifest has no layers list")
        eif_desc = _one(layers, EIF_MEDIA_TYPE, source, required=True)
        meas_desc = _one(layers, MEASUREMENTS_MEDIA_TYPE, source, required=False)
        want = _annotated_pcrs(doc, source)
        eif_digest, eif_size = _digest_size(eif_desc, source, MAX_EIF_BYTES)
        path = fetch_blob(client, cache, eif_digest, eif_size, f"{source}: EIF", progress)
        try:
            with EifReader(path) as reader:
                scan = reader.scan()
                got = scan.measurements
                if reader.is_signed and got.pcr8 is None:
                    got = Measurements(got.pcr0, got.pcr1, got.pcr2, reader.pcr8())
        except EifbuildError as exc:
            raise VerificationError(f"{source}: the EIF does not read: {exc.message}") from None
        have = {0: got.pcr0, 1: got.pcr1, 2: got.pcr2}
        if got.pcr8 is not None:
            have[8] = got.pcr8
        bad = [f"PCR{i}" for i in sorted(set(want) | set(have)) if want.get(i) != have.get(i)]
        if bad:
            raise VerificationError(
                f"{source}: the EIF's recomputed {', '.join(bad)} differ from the artifact's "
                "annotations"
            )
        if not scan.crc_ok:
            raise VerificationError(f"{source}: the EIF's CRC does not match")
        if meas_desc is not None:
            m_digest, m_size = _digest_size(meas_desc, source, MAX_SMALL_BLOB)
            m_path = fetch_blob(client, cache, m_digest, m_size, f"{source}: measurements")
            _check_measurements_blob(m_path, have, source)
        notes = {k: v for k, v in doc["annotations"].items() if isinstance(v, str)}
        result = PullResult(
            source, str(ref.with_digest(manifest.digest)), manifest.digest, eif_digest, eif_size,
            got, dict(sorted(notes.items())), None,
        )  # fmt: skip
        yield result, path


def _one(layers: list[Any], media_type: str, what: str, *, required: bool) -> Any:
    hits = [d for d in layers if isinstance(d, dict) and d.get("mediaType") == media_type]
    if len(hits) > 1:
        raise RegistryError(f"{what}: artifact has {len(hits)} layers of type {media_type}")
    if not hits and required:
        raise RegistryError(f"{what}: artifact has no {media_type} layer")
    return hits[0] if hits else None


def _digest_size(d: dict[str, Any], what: str, limit: int) -> tuple[str, int]:
    digest, size = d.get("digest"), d.get("size")
    if not isinstance(digest, str) or not digest.startswith("sha256:") or len(digest) != 71:
        raise RegistryError(f"{what}: invalid or unsupported digest {str(digest)[:80]!r}")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= limit:
        raise RegistryError(f"{what}: blob {digest}: size missing or over the {limit}-byte limit")
    return digest, size


def _check_measurements_blob(path: Path, want: dict[int, str], what: str) -> None:
    try:
        doc = json.loads(path.read_bytes())
        m = doc["Measurements"]
        got = {i: m[f"PCR{i}"] for i in PCRS if f"PCR{i}" in m}
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, RecursionError):
        raise VerificationError(f"{what}: measurements blob is not a measurements JSON") from None
    bad = [f"PCR{i}" for i in sorted(set(want) | set(got)) if want.get(i) != got.get(i)]
    if bad:
        raise VerificationError(
            f"{what}: the measurements blob's {', '.join(bad)} differ from the EIF's"
        )


def pull_eif(
    source: str,
    output: str | os.PathLike[str],
    *,
    options: RegistryOptions,
    progress: Progress | None = None,
) -> PullResult:
    """Fetch, verify (:func:`fetch_eif`) and write the EIF to ``output`` atomically."""
    from eifbuild._atomic import atomic_output

    with fetch_eif(source, options=options, progress=progress) as (result, path):
        try:
            with atomic_output(output) as out, open(path, "rb") as src:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
        except OSError as exc:
            raise EifbuildError(
                f"{os.fspath(output)}: cannot write ({exc.strerror or exc})"
            ) from None
    return PullResult(
        result.reference, result.resolved, result.digest, result.eif_digest, result.size,
        result.measurements, result.annotations, os.fspath(output),
    )  # fmt: skip
