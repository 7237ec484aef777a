"""Small valid inputs generated at run time (no binary corpora in git).

EIFs come from the spec vector (``tests/vectors/eif_spec_vectors.json``, synthetic v4) and a
signed variant written by ``write_eif`` with a throwaway key; the newc archive, layer tar and
OCI documents are built here with the standard library.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import tempfile
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VECTORS: dict[str, Any] = json.loads(
    (ROOT / "tests" / "vectors" / "eif_spec_vectors.json").read_text()
)
S: dict[str, Any] = VECTORS["synthetic_v4"]


def spec_eif() -> bytes:
    """The spec's synthetic v4 file (docs/spec/eif.md §14.4), from its header table and hex."""
    header = bytes.fromhex(S["header_0x000_0x01b"])
    header += bytes.fromhex(S["header_offsets_0_4"]).ljust(256, b"\0")
    header += bytes.fromhex(S["header_sizes_0_4"]).ljust(256, b"\0")
    header += bytes.fromhex(S["header_0x21c_0x223"])
    return header + bytes.fromhex(S["sections_hex"])


def cert_pem_and_key() -> tuple[bytes, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz")])
    t0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(t0)
        .not_valid_after(t0 + datetime.timedelta(days=1))
        .sign(key, hashes.SHA384())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key


def sign1(pcr0_raw: bytes, key: Any) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    from eifbuild.sign.cose import alg_for_id, encode_sign1, pcr_info, sig_structure

    alg = alg_for_id(-35)
    assert alg is not None
    from eifbuild.sign.cose import protected_header

    payload = pcr_info(pcr0_raw)
    tbs = sig_structure(protected_header(alg), payload)
    r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA384())))
    sig = r.to_bytes(48, "big") + s.to_bytes(48, "big")
    return encode_sign1(alg, payload, sig)


def signature_section() -> bytes:
    from eifbuild.eif.signature import encode_signature_section

    pem, key = cert_pem_and_key()
    return encode_signature_section([(pem, sign1(b"\x11" * 48, key))])


def signed_eif() -> bytes:
    from eifbuild.eif.metadata import encode_metadata
    from eifbuild.eif.signature import encode_signature_section
    from eifbuild.eif.writer import write_eif

    pem, key = cert_pem_and_key()
    meta = encode_metadata("img", "1.0", S["build_time"], "eifbuild", "0", "OS", "kernel")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.eif"
        write_eif(
            out,
            kernel=b"KERNEL",
            cmdline="console=ttyS0",
            metadata=meta,
            ramdisks=[b"RD0", b"RD1"],
            signer=lambda pcr0: encode_signature_section([(pem, sign1(pcr0, key))]),
        )
        return out.read_bytes()


# ---------------------------------------------------------------- newc


def _newc(name: bytes, mode: int, data: bytes = b"", ino: int = 1, nlink: int = 1) -> bytes:
    fields = [ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
    hdr = b"070701" + b"".join(b"%08X" % f for f in fields) + name + b"\0"
    hdr += b"\0" * (-len(hdr) % 4)
    return hdr + data + b"\0" * (-len(data) % 4)


def newc_archive() -> bytes:
    """A demo-like ramdisk: dirs, an init binary stand-in, a symlink, a hardlink pair, a fifo."""
    out = _newc(b"dev", 0o40755, ino=1, nlink=2)
    out += _newc(b"dev/console", 0o20600, ino=2)
    out += _newc(b"bin", 0o40755, ino=3, nlink=2)
    out += _newc(b"init", 0o100755, b"\x7fELF" + b"\0" * 12, ino=4)
    out += _newc(b"bin/sh", 0o120777, b"/init", ino=5)
    out += _newc(b"etc", 0o40755, ino=6, nlink=2)
    out += _newc(b"etc/hosts", 0o100644, b"", ino=7, nlink=2)
    out += _newc(b"etc/hosts2", 0o100644, b"127.0.0.1 localhost\n", ino=7, nlink=2)
    out += _newc(b"run/fifo", 0o10644, ino=8)
    out += _newc(b"TRAILER!!!", 0, ino=0, nlink=1)
    return out + b"\0" * (-len(out) % 512)


# ---------------------------------------------------------------- tar / OCI


def tar_header(name: bytes, typeflag: bytes, size: int) -> bytes:
    """One ustar header block with a correct checksum (for hand-made hostile streams)."""
    blk = bytearray(512)
    blk[0 : len(name)] = name[:100]
    blk[100:108] = b"0000644\0"
    blk[108:124] = b"0000000\0" * 2
    blk[124:136] = b"%011o\0" % size
    blk[136:148] = b"%011o\0" % 1_600_000_000
    blk[148:156] = b" " * 8
    blk[156:157] = typeflag
    blk[257:265] = b"ustar\x0000"
    blk[148:156] = b"%06o\0 " % sum(blk)
    return bytes(blk)


def layer_tar(gnu: bool = False) -> bytes:
    """A small layer: dirs, files, symlink, hardlink, whiteout, opaque dir, device, xattr."""
    import tarfile  # imported late so that a harness can instrument it

    fmt = tarfile.GNU_FORMAT if gnu else tarfile.PAX_FORMAT
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:

        def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **kw: Any) -> None:
            ti = tarfile.TarInfo(name)
            ti.type = kind
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            ti.mtime = 1_600_000_000
            for k, v in kw.items():
                setattr(ti, k, v)
            tf.addfile(ti, io.BytesIO(data) if ti.size else None)

        add("etc/", tarfile.DIRTYPE)
        add("etc/passwd", data=b"root:x:0:0::/:/bin/sh\n")
        add("bin/", tarfile.DIRTYPE)
        add("bin/busybox", data=b"\x7fELF", mode=0o755)
        add("bin/sh", tarfile.SYMTYPE, linkname="busybox")
        add("bin/ash", tarfile.LNKTYPE, linkname="bin/busybox")
        add("etc/.wh.shadow")
        add("var/", tarfile.DIRTYPE)
        add("var/.wh..wh..opq")
        add("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3)
        if not gnu:
            add("bin/ping", data=b"x", pax_headers={"SCHILY.xattr.security.capability": "\x01"})
    return buf.getvalue()


# OCI documents: placeholders are replaced with the real digests/sizes by the harness, so
# mutated documents still resolve to each other.
INDEX = {
    "schemaVersion": 2,
    "manifests": [
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "@MANIFEST@",
            "size": "@MANIFEST_SIZE@",
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }
    ],
}
MANIFEST = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": "@CONFIG@",
        "size": "@CONFIG_SIZE@",
    },
    "layers": [
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": "@LAYER@",
            "size": "@LAYER_SIZE@",
        }
    ],
}
CONFIG = {
    "architecture": "amd64",
    "os": "linux",
    "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "Entrypoint": None, "WorkingDir": "/"},
    "rootfs": {"type": "layers", "diff_ids": ["@DIFF_ID@"]},
}
SEP = b"\n--\n"


def oci_docs() -> list[bytes]:
    """index, manifest and config joined by SEP; sizes are quoted placeholders in the seeds."""
    docs = [json.dumps(d, indent=1).encode() for d in (INDEX, MANIFEST, CONFIG)]
    docs = [d.replace(b'"@MANIFEST_SIZE@"', b"@MANIFEST_SIZE@") for d in docs]
    docs = [d.replace(b'"@CONFIG_SIZE@"', b"@CONFIG_SIZE@") for d in docs]
    docs = [d.replace(b'"@LAYER_SIZE@"', b"@LAYER_SIZE@") for d in docs]
    return [SEP.join(docs)]


def layer_seeds() -> list[bytes]:
    """The small layer as PAX and GNU tar, gzip (mtime 0) and zstd."""
    import gzip

    import zstandard

    pax = layer_tar()
    return [
        pax,
        layer_tar(gnu=True),
        gzip.compress(pax, mtime=0),
        zstandard.ZstdCompressor().compress(pax),
    ]


def _diff_id(layer: bytes) -> str:
    """sha256 of the uncompressed layer (bounded decompression; the blob itself on failure)."""
    limit = 64 << 20
    raw = layer
    try:
        if layer[:2] == b"\x1f\x8b":
            raw = zlib.decompressobj(wbits=31).decompress(layer, limit)
        elif layer[:4] == b"\x28\xb5\x2f\xfd":
            import zstandard

            raw = zstandard.ZstdDecompressor().decompressobj().decompress(layer)[:limit]
    except Exception:
        raw = layer
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def write_layout(root: Path, docs: bytes, layer: bytes) -> None:
    """An OCI image layout in ``root`` from SEP-joined index/manifest/config and one layer.

    ``@LAYER@``, ``@DIFF_ID@``, ``@CONFIG@`` and ``@MANIFEST@`` (and ``@..._SIZE@``) in the documents become
    the real digests and sizes, computed in dependency order.
    """
    parts = [*docs.split(SEP, 2), b"", b"", b""][:3]
    index, manifest, config = parts
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        hexd = hashlib.sha256(data).hexdigest()
        (blobs / hexd).write_bytes(data)
        return f"sha256:{hexd}"

    subs: dict[bytes, bytes] = {}

    def fill(doc: bytes) -> bytes:
        for k, v in subs.items():
            doc = doc.replace(k, v)
        return doc

    subs[b"@LAYER_SIZE@"] = str(len(layer)).encode()
    subs[b"@LAYER@"] = put(layer).encode()
    subs[b"@DIFF_ID@"] = _diff_id(layer).encode()
    config = fill(config)
    subs[b"@CONFIG_SIZE@"] = str(len(config)).encode()
    subs[b"@CONFIG@"] = put(config).encode()
    manifest = fill(manifest)
    subs[b"@MANIFEST_SIZE@"] = str(len(manifest)).encode()
    subs[b"@MANIFEST@"] = put(manifest).encode()
    (root / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_bytes(fill(index))
