"""Re-signing and verifying a large EIF: wall time and peak memory (streaming check).

Usage: .venv/bin/python benchmarks/sign_bench.py [SIZE_MIB]   (default 256)

Each step runs in a fresh child process so that ``ru_maxrss`` is that step's own peak RSS.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CHUNK = 1 << 20


def make_inputs(d: Path, size_mib: int) -> None:
    from eifbuild.eif.metadata import encode_metadata
    from eifbuild.eif.writer import write_eif

    def ramdisk() -> Iterator[bytes]:
        block = os.urandom(CHUNK)
        return (block for _ in range(size_mib))

    meta = encode_metadata("bench", "1", "2024-01-01T00:00:00+00:00", "b", "1", "Linux", "6")
    write_eif(
        d / "in.eif",
        kernel=os.urandom(8 << 20),
        cmdline="console=ttyS0",
        metadata=meta,
        ramdisks=[b"rd0" * 1000, ramdisk],
    )
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA384())
    )
    (d / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (d / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def step(argv: list[str]) -> tuple[float, float]:
    """Run ``eifbuild argv`` in a child; return (seconds, peak RSS MiB of the child)."""
    code = "import sys; from eifbuild.cli import main; sys.exit(main(sys.argv[1:]))"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *argv], check=True, stdout=subprocess.DEVNULL)
    dt_s = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return dt_s, rss


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        make_inputs(d, size)
        mib = (d / "in.eif").stat().st_size / (1 << 20)
        sign = [
            "sign",
            str(d / "in.eif"),
            "-o",
            str(d / "out.eif"),
            "--signing-certificate",
            str(d / "c.pem"),
            "--private-key",
            str(d / "k.pem"),
        ]
        for label, argv in (
            ("sign (scan + rewrite)", sign),
            ("verify", ["verify", str(d / "out.eif"), "--certificate", str(d / "c.pem")]),
            ("measure --payload", ["measure", str(d / "out.eif"), "--payload", str(d / "p.cbor")]),
        ):
            secs, rss = step(argv)
            print(
                f"{label:24s} {mib:7.1f} MiB EIF  {secs:6.2f} s  {mib / secs:7.1f} MiB/s  "
                f"max child RSS {rss:6.1f} MiB"
            )


if __name__ == "__main__":
    main()
