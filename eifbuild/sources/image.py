"""The Image and Layer types every transport produces, and config parsing."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

from eifbuild._atomic import make_temp_dir
from eifbuild.errors import EifbuildError, ImageSourceError
from eifbuild.limits import DEFAULT_LIMITS, Limits
from eifbuild.model import ImageConfig
from eifbuild.sources._blobs import Region, compression_of, materialize_layer
from eifbuild.sources._gzindex import GzipIndex, IndexBudget, identity
from eifbuild.sources._tar import Forward, Member, iter_members, iter_stream_members
from eifbuild.types import Arch


def normalize_arch(name: str) -> str:
    """OCI architecture name (``amd64``/``arm64``) for the spellings users type; any other
    name comes back lower-cased (an image for another platform is refused later)."""
    try:
        return Arch.parse(name).oci
    except ValueError:
        return name.lower()


class LayerContent(Protocol):
    """Random access to a verified layer's uncompressed tar, by offset."""

    def chunks(self, offset: int, size: int) -> Iterator[bytes]: ...


@dataclass(frozen=True)
class RegionContent:
    """An uncompressed tar on disk: the blob itself, or the temp file of a zstd layer.

    ``ident`` is the file's :func:`identity` from before its verification; every read
    compares it, so a file rewritten, replaced or touched since is refused.
    """

    region: Region
    what: str
    ident: tuple[int, ...]

    def check_unchanged(self) -> None:
        try:
            now = identity(os.stat(self.region.path))
        except OSError:
            now = ()
        if now != self.ident:
            raise ImageSourceError(
                f"{self.what}: {self.region.path} changed on disk after it was verified"
            )

    def chunks(self, offset: int, size: int) -> Iterator[bytes]:
        self.check_unchanged()
        return self.region.sub(offset, size).chunks()


@dataclass
class Layer:
    """One layer: its stored blob plus what the manifest/config say it must hash to.

    How its content is reached (see :meth:`members`): an uncompressed blob is read in place; a
    gzip blob through checkpoints of the inflate state (:mod:`eifbuild.sources._gzindex`, no
    temp file); a zstd blob is decompressed once into a temp file of the image (python-
    zstandard cannot copy a decompressor's state).
    """

    index: int
    blob: Region
    digest: str | None  # blob digest from the manifest (None: legacy docker-archive)
    diff_id: str | None  # uncompressed digest from the config
    media_type: str
    image: Image = field(repr=False)
    _content: LayerContent | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"layer {self.index} ({self.digest or self.diff_id or 'unknown digest'})"

    @property
    def what(self) -> str:
        return f"{self.image.reference}: {self.label}"

    def members(self, max_entries: int | None = None) -> Iterator[Member]:
        """Stream the verified tar members in stored order.

        The first call verifies the layer: the blob digest before anything is parsed; for a
        gzip layer the diff_id when the stream ends (after the last member, before the
        iterator finishes: a consumer must exhaust it before trusting the members), for other
        layers before the first member.
        """
        cap = self.image.limits.max_entries if max_entries is None else max_entries
        content = self._content
        if isinstance(content, GzipIndex):
            assert content.size is not None
            return iter_stream_members(Forward(content.chunks(0, content.size)), self.what, cap)
        if isinstance(content, RegionContent):
            return self._checked(content, cap)
        kind = compression_of(self.blob)
        if kind == "gzip":
            return self._first_gzip_pass(cap)
        try:
            before = identity(os.stat(self.blob.path))
        except OSError as exc:
            raise ImageSourceError(f"{self.what}: {self.blob.path}: {exc.strerror}") from None
        tar = materialize_layer(
            self.blob,
            blob_digest=self.digest,
            diff_id=self.diff_id,
            what=self.what,
            tmpdir=self.image.tmpdir() if kind == "zstd" else "",
            limits=self.image.limits,
            temp_left=self.image.limits.max_temp_bytes - self.image.temp_bytes,
        )
        if tar.path != self.blob.path:
            self.image.temp_bytes += tar.size
        self.image.add_expanded(tar.size, self.label)
        ident = before if tar.path == self.blob.path else identity(os.stat(tar.path))
        self._content = RegionContent(tar, self.what, ident)
        return self._checked(self._content, cap)

    def _checked(self, content: RegionContent, cap: int) -> Iterator[Member]:
        """The members of an on-disk tar, refusing it if it changed since verification."""
        content.check_unchanged()
        yield from iter_members(content.region, self.what, cap)
        content.check_unchanged()

    def _first_gzip_pass(self, cap: int) -> Iterator[Member]:
        """Verify and parse a gzip layer in one pass over it.

        Three streams overlap (hashlib and zlib release the GIL): the blob's sha256 on one
        helper thread, the sha256 of the inflated tar (diff_id) on another, inflate and tar
        parsing here. Both digests are checked before the iterator finishes; if parsing fails
        first, a wrong blob digest is what gets reported (it explains the corruption).
        """
        index = self.image.gzip_index(self.blob, self.what)
        blob_hash: Future[str] | None = None
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="eifbuild-verify")
        try:
            if self.digest is not None:
                blob_hash = pool.submit(index.sha256)
            yield from self._gzip_members(index, cap, pool, blob_hash)
        except EifbuildError:
            self._check_blob(blob_hash)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        self._check_blob(blob_hash)
        assert index.size is not None
        self.image.add_expanded(index.size, self.label)
        self._content = index

    def _check_blob(self, blob_hash: Future[str] | None) -> None:
        if blob_hash is None:
            return
        got = blob_hash.result()
        if got != self.digest:
            raise ImageSourceError(
                f"{self.what}: digest mismatch (expected {self.digest}, got {got})"
            ) from None

    def _gzip_members(
        self,
        index: GzipIndex,
        cap: int,
        pool: ThreadPoolExecutor,
        blob_hash: Future[str] | None,
    ) -> Iterator[Member]:
        h = hashlib.sha256()
        pending: list[Future[None]] = []

        def chunks() -> Iterator[bytes]:
            for data in index.build(lambda n: self.image.check_expanded(n, self.label)):
                if pending:
                    pending.pop().result()  # at most one chunk being hashed, in order
                pending.append(pool.submit(h.update, data))
                yield data
            if pending:
                pending.pop().result()

        stream = Forward(chunks())
        prev: list[bytes] = []
        for member in iter_stream_members(stream, self.what, cap):
            key = [p for p in member.name.split(b"/") if p not in (b"", b".")]
            if key < prev:  # not docker-export order: content reads will jump around
                if self.image.spool_layers:
                    index.spool(self.image.tmp_root)
                else:
                    index.unsorted()
            prev = key
            yield member
        stream.drain()
        self._check_blob(blob_hash)
        got = "sha256:" + h.hexdigest()
        if self.diff_id is not None and got != self.diff_id:
            raise ImageSourceError(
                f"{self.what}: uncompressed digest mismatch (diff_id {self.diff_id}, got {got})"
            )

    def content(self) -> LayerContent:
        """Random access to the uncompressed tar; :meth:`members` must have been read through."""
        if self._content is None:
            raise ImageSourceError(f"{self.what}: content read before the layer was verified")
        return self._content


@dataclass
class Image:
    reference: str
    image_id: str
    config: ImageConfig
    layers: list[Layer]
    input_digests: dict[str, Any]
    limits: Limits = DEFAULT_LIMITS
    _tmp: str | None = field(default=None, repr=False)
    _expanded: int = field(default=0, repr=False)
    temp_bytes: int = field(default=0, repr=False)  # decompressed zstd layers in tmpdir()
    _indexes: list[GzipIndex] = field(default_factory=list, repr=False)
    _budget: IndexBudget | None = field(default=None, repr=False)
    _cleanups: list[Callable[[], object]] = field(default_factory=list, repr=False)

    def add_cleanup(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` once at :meth:`close` (a transport's temp files, locks)."""
        self._cleanups.append(fn)

    # Where temp files go (None: $TMPDIR), and whether a gzip layer out of export order may
    # be inflated once into a temp file (else: dense checkpoints, no disk, much slower).
    tmp_root: str | None = field(default=None, repr=False)
    spool_layers: bool = field(default=True, repr=False)

    def tmpdir(self) -> str:
        if self._tmp is None:
            self._tmp = (
                make_temp_dir("image")
                if self.tmp_root is None
                else tempfile.mkdtemp(prefix="eifbuild-image-", dir=self.tmp_root)
            )
        return self._tmp

    def layer_access(self) -> list[dict[str, Any]]:
        """How each layer's content was reached (the ``layers`` list of ``build --json``)."""
        out: list[dict[str, Any]] = []
        for layer in self.layers:
            content = layer._content
            item: dict[str, Any] = {"index": layer.index, "digest": layer.digest}
            if isinstance(content, GzipIndex):
                item["compression"] = "gzip"
                item["access"] = content.access
                item["uncompressed_bytes"] = content.size
                if content.access == "temp-file":
                    item["temp_file_bytes"] = content.spool_bytes
                if content.spool_error is not None:
                    item["note"] = content.spool_error
            elif isinstance(content, RegionContent):
                temp = content.region.path != layer.blob.path
                item["compression"] = "zstd" if temp else "none"
                item["access"] = "temp-file" if temp else "in-place"
                item["uncompressed_bytes"] = content.region.size
                if temp:
                    item["temp_file_bytes"] = content.region.size
            out.append(item)
        return out

    def gzip_index(self, blob: Region, what: str) -> GzipIndex:
        """A new checkpoint index over a gzip blob, sharing this image's memory budget."""
        if self._budget is None:
            self._budget = IndexBudget(self.limits.max_index_bytes)
        index = GzipIndex(
            blob.path,
            blob.offset,
            blob.size,
            what,
            self.limits.gzip_spacing_bytes,
            self._budget,
            self.limits.max_layer_bytes,
        )
        self._indexes.append(index)
        return index

    def check_expanded(self, size: int, label: str) -> None:
        """Refuse a layer of ``size`` uncompressed bytes that takes the image over its limit."""
        if self._expanded + size > self.limits.max_total_bytes:
            raise ImageSourceError(
                f"{self.reference}: {label} takes the image beyond the"
                f" {self.limits.max_total_bytes}-byte total size limit (--max-expanded-mib)"
            )

    def add_expanded(self, size: int, label: str) -> None:
        self.check_expanded(size, label)
        self._expanded += size

    def close(self) -> None:
        for index in self._indexes:
            index.close()
        self._indexes = []
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        while self._cleanups:
            self._cleanups.pop()()

    def __enter__(self) -> Image:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _str_list(value: object, what: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ImageSourceError(f"{what} is not a list of strings")
    return list(value)


def _str(value: object, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ImageSourceError(f"{what} is not a string")
    return value


def parse_config(doc: object, what: str) -> ImageConfig:
    """ImageConfig from an OCI / Docker image configuration document."""
    if not isinstance(doc, dict):
        raise ImageSourceError(f"{what}: image config is not a JSON object")
    cfg = doc.get("config") or doc.get("Config") or {}
    if not isinstance(cfg, dict):
        raise ImageSourceError(f"{what}: image config 'config' is not an object")
    labels = cfg.get("Labels")
    if labels is not None and not (
        isinstance(labels, dict) and all(isinstance(v, str) for v in labels.values())
    ):
        raise ImageSourceError(f"{what}: config Labels is not a string map")
    created = doc.get("created")
    return ImageConfig(
        architecture=normalize_arch(_str(doc.get("architecture"), f"{what}: architecture")),
        os=_str(doc.get("os"), f"{what}: os") or "linux",
        cmd=_str_list(cfg.get("Cmd"), f"{what}: config Cmd"),
        entrypoint=_str_list(cfg.get("Entrypoint"), f"{what}: config Entrypoint"),
        env=_str_list(cfg.get("Env"), f"{what}: config Env"),
        working_dir=_str(cfg.get("WorkingDir"), f"{what}: config WorkingDir"),
        user=_str(cfg.get("User"), f"{what}: config User"),
        created=created if isinstance(created, str) else None,
        labels=dict(labels) if labels else None,
        raw=doc,
    )


def diff_ids(doc: dict[str, Any], what: str) -> list[str]:
    rootfs = doc.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
        raise ImageSourceError(f"{what}: image config has no rootfs.diff_ids list")
    from eifbuild.sources._blobs import check_digest_text

    return [check_digest_text(x, f"{what}: diff_id") for x in ids]


def check_layer_count(count: int, limits: Limits, what: str) -> None:
    """Refuse more layers than ``limits.max_layers`` before any layer is opened."""
    if count > limits.max_layers:
        raise ImageSourceError(
            f"{what}: {count} layers, more than the limit of {limits.max_layers} (--max-layers;"
            " Docker itself runs at most 125)"
        )


def check_arch(config: ImageConfig, arch: str | None, what: str) -> None:
    if arch is not None and normalize_arch(arch) != config.architecture:
        raise ImageSourceError(
            f"{what}: image is {config.os}/{config.architecture}, but --arch {arch} was asked"
        )


def select_cmd_env(
    config: ImageConfig, mode: str = "nitro", name: str = "image"
) -> tuple[list[str], list[str], list[str]]:
    """(cmd, env, warnings) as nitro-cli (``nitro``) or ``docker run`` (``docker``) picks them.

    nitro: ``Cmd`` if present (even empty), else ``Entrypoint``, else an error; WorkingDir and
    User are ignored by the enclave init, so a set value is a warning.
    docker: ``Entrypoint + Cmd``; an empty result is an error. ``name`` prefixes errors.
    """
    env = list(config.env or [])
    warnings: list[str] = []
    if mode == "nitro":
        if config.cmd is not None:
            cmd = list(config.cmd)
        elif config.entrypoint is not None:
            cmd = list(config.entrypoint)
        else:
            raise ImageSourceError(
                f"{name}: image has neither Cmd nor Entrypoint (nitro-cli refuses it too)"
            )
        if config.working_dir not in ("", "/"):
            warnings.append(
                f"image WorkingDir {config.working_dir!r} is ignored: the enclave init runs the command from /"
            )
        if config.user not in ("", "0", "root", "0:0", "root:root"):
            warnings.append(
                f"image User {config.user!r} is ignored: the enclave init runs the command as root"
            )
        return cmd, env, warnings
    if mode == "docker":
        cmd = list(config.entrypoint or []) + list(config.cmd or [])
        if not cmd:
            raise ImageSourceError(f"{name}: image has neither Cmd nor Entrypoint: nothing to run")
        return cmd, env, warnings
    raise ImageSourceError(f"{name}: unknown entrypoint mode {mode!r} (expected nitro or docker)")
