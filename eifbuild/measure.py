"""PCR measurements as AWS computes them (docs/spec/eif.md §6).

``PCR = SHA-384(48 zero bytes || SHA-384(content))``: a single TPM-style extend of an all-zero
register with the digest of the content. Everything here streams.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from eifbuild.crc import Crc32
from eifbuild.errors import EifbuildError, SigningError
from eifbuild.types import Progress

# What AWS's released tools print (cosmetic, docs/spec/eif.md §6.3).
HASH_ALGORITHM = "Sha384 { ... }"
DIGEST_SIZE = 48
CHUNK = 1 << 20
# Below this size, a second thread costs more than it saves.
PARALLEL_MIN = 64 * 1024


def extend(sha384_digest: bytes, register: bytes = b"\0" * DIGEST_SIZE) -> bytes:
    """One PCR extend: SHA-384(register || digest). The default register is all zeros."""
    if len(sha384_digest) != DIGEST_SIZE or len(register) != DIGEST_SIZE:
        raise ValueError("extend needs 48-byte SHA-384 values")
    return hashlib.sha384(register + sha384_digest).digest()


class PcrHasher:
    """Streaming PCR: feed content with ``update``; ``digest`` is the extended register."""

    def __init__(self, data: bytes = b"") -> None:
        self._h = hashlib.sha384()
        if data:
            self._h.update(data)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    def copy(self) -> PcrHasher:
        new = PcrHasher.__new__(PcrHasher)
        new._h = self._h.copy()
        return new

    def content_digest(self) -> bytes:
        """SHA-384 of the content fed so far (before the extend)."""
        return self._h.digest()

    def digest(self) -> bytes:
        return extend(self._h.digest())

    def hexdigest(self) -> str:
        return self.digest().hex()


@dataclass(frozen=True)
class Measurements:
    """PCR values as lowercase hex strings; ``pcr8`` only for signed images."""

    pcr0: str
    pcr1: str
    pcr2: str
    pcr8: str | None = None

    def as_nitro(self) -> dict[str, str]:
        """The measurement map nitro-cli prints (keys sorted, PCR8 only when signed)."""
        out = {
            "HashAlgorithm": HASH_ALGORITHM,
            "PCR0": self.pcr0,
            "PCR1": self.pcr1,
            "PCR2": self.pcr2,
        }
        if self.pcr8 is not None:
            out["PCR8"] = self.pcr8
        return out


class FanOut:
    """Feed each chunk to several hashers (and a CRC), sharing the work with a helper thread.

    hashlib and zlib release the GIL for large buffers, so the two SHA-384 streams over the
    same bytes (PCR0 and PCR2 both cover the application ramdisks) run on two cores. Use as
    a context manager; ``update`` returns when everything has consumed the chunk.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> FanOut:
        if (os.cpu_count() or 1) > 1:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eifbuild-hash")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def update(
        self,
        chunk: bytes,
        hashers: list[PcrHasher],
        extra: Callable[[bytes], object] | None = None,
        crc: Crc32 | None = None,
    ) -> None:
        """Feed ``chunk`` to ``hashers`` and ``crc`` and call ``extra(chunk)``; wait for all.

        With two or more hashers and a large chunk, the last hasher, ``extra`` and two thirds
        of the CRC run on the helper thread, the rest here: about equal halves of the work.
        """
        if self._pool is None or len(hashers) < 2 or len(chunk) < PARALLEL_MIN:
            for h in hashers:
                h.update(chunk)
            if crc is not None:
                crc.update(chunk)
            if extra is not None:
                extra(chunk)
            return
        last = hashers[-1]
        split = len(chunk) // 3

        def helper() -> int:
            last.update(chunk)
            if extra is not None:
                extra(chunk)
            return Crc32.tail(chunk, split) if crc is not None else 0

        fut: Future[int] = self._pool.submit(helper)
        try:
            for h in hashers[:-1]:
                h.update(chunk)
            head = crc.head(chunk, split) if crc is not None else 0
        finally:
            tail = fut.result()
        if crc is not None:
            crc.join(head, tail, len(chunk) - split)


def content_pcr(chunks: Iterable[bytes]) -> str:
    """PCR (hex) of the concatenation of ``chunks``."""
    h = PcrHasher()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def file_pcr(path: str | os.PathLike[str], progress: Progress | None = None) -> str:
    """``nitro-cli pcr --input FILE``: extend(SHA-384(file bytes)), streamed."""
    from eifbuild.smallfile import open_regular

    h = PcrHasher()
    with open_regular(path, str(path)) as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return h.hexdigest()


def certificate_der(pem: bytes, name: str = "certificate") -> bytes:
    """DER of the FIRST certificate in PEM bytes (what AWS's reader hashes for PCR8)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        cert = x509.load_pem_x509_certificate(pem)
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is no ValueError
        raise SigningError(f"{name}: not a PEM X.509 certificate ({exc})") from None
    return cert.public_bytes(Encoding.DER)


def pcr8_from_pem(pem_bytes: bytes, name: str = "certificate") -> str:
    """PCR8 (hex) = extend(SHA-384(DER of the first certificate in ``pem_bytes``))."""
    return extend(hashlib.sha384(certificate_der(pem_bytes, name)).digest()).hex()


_PCR_HEX = re.compile(r"[0-9a-fA-F]{96}")
_PCR_KEY = re.compile(r"PCR(\d{1,2})")


def is_pcr_hex(value: object) -> bool:
    """True for a SHA-384 PCR value written as 96 hex digits (either case)."""
    return isinstance(value, str) and _PCR_HEX.fullmatch(value) is not None


def measurements_from_json(
    doc: object, where: str, error: type[EifbuildError] = EifbuildError
) -> dict[int, str]:
    """``{N: lowercase hex}`` from a decoded measurements document.

    Accepts what build/assemble/describe/nitro-cli print (``{"Measurements": {"PCR0": ..}}``)
    and the bare map eif_build prints (``{"PCR0": .., ...}``). Other keys (HashAlgorithm) are
    ignored; every ``PCRn`` key must hold 96 hex digits (else ``error``). A document that is
    not an object, or has no PCR, gives an empty result: callers say what they needed.
    """
    if isinstance(doc, dict) and isinstance(doc.get("Measurements"), dict):
        doc = doc["Measurements"]
    out: dict[int, str] = {}
    if not isinstance(doc, dict):
        return out
    for key, value in doc.items():
        m = _PCR_KEY.fullmatch(str(key))
        if m is None:
            continue
        if not is_pcr_hex(value):
            raise error(f"{where}: {key} is not 96 hexadecimal characters")
        out[int(m[1])] = str(value).lower()
    return out
