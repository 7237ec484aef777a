"""Small helpers shared by subcommands (output conventions)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any

from eifbuild._atomic import write_atomic
from eifbuild.errors import EifbuildError, UsageError
from eifbuild.limits import DEFAULT_LIMITS, Limits
from eifbuild.sources import ZSTD_FLOOR_BYTES
from eifbuild.textescape import safe_name


def output_path(text: str) -> str:
    """argparse type of an output file option: an empty path is a usage error (it meant '.')."""
    if not text:
        raise argparse.ArgumentTypeError("empty path")
    return text


def add_eif_output(p: argparse.ArgumentParser) -> None:
    """The required ``--output/-o OUT.eif`` of the commands that write a new EIF."""
    p.add_argument(
        "--output",
        "-o",
        required=True,
        type=output_path,
        metavar="OUT.eif",
        help="EIF file to write",
    )


def printable(obj: Any) -> Any:
    """``obj`` with every string that UTF-8 cannot carry (lone surrogates: non-UTF-8 file
    names from the command line or an image) escaped as ``\\xNN`` (see ``safe_name``)."""
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            return safe_name(obj)
        return obj
    if isinstance(obj, dict):
        return {printable(k): printable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [printable(v) for v in obj]
    return obj


def print_json(obj: Any) -> None:
    """Pretty JSON like serde_json's pretty printer (2-space indent), newline-terminated."""
    sys.stdout.write(json.dumps(printable(obj), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_text(text: str) -> None:
    """Human text on stdout; a line UTF-8 cannot carry is escaped (see :func:`printable`)."""
    sys.stdout.write("\n".join(printable(line) for line in text.split("\n")))
    sys.stdout.flush()


WARNING_PREFIX = "eifbuild: warning: "


def warn(message: str) -> None:
    """One tolerated problem, on stderr: ``eifbuild: warning: <message>``."""
    print(WARNING_PREFIX + message, file=sys.stderr)


def info(msg: str) -> None:
    """Human progress/status lines go to stderr, never stdout."""
    print(msg, file=sys.stderr)


def write_output(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a small output file atomically; an OS error becomes a one-line EifbuildError."""
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise EifbuildError(f"{os.fspath(path)}: cannot write ({exc.strerror or exc})") from None


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """``--max-expanded-mib``, ``--max-entries``, ``--max-layers``, ``--max-zstd-ratio``,
    ``--max-temp-mib``, ``--max-tree-mib`` (ceilings for hostile images),
    ``--gzip-checkpoint-mib``, ``--max-index-mib`` (gzip random access)."""
    d = DEFAULT_LIMITS
    g = parser.add_argument_group(
        "limits (against hostile images) and layer access",
        "Layers are never extracted. Uncompressed layers are read in place; gzip layers through "
        "checkpoints of the decompressor state taken while the layer is first read (no temp "
        "disk when the layer is in docker-export walk order, memory bounded by --max-index-mib; "
        "a gzip layer out of that order is inflated once into an unnamed temp file); zstd "
        "layers are decompressed once into a temp file (disk: their uncompressed size, at most --max-zstd-ratio times the compressed "
        f"size or {ZSTD_FLOOR_BYTES >> 20} MiB if more, and --max-temp-mib for all of them). "
        "A docker-daemon image is first saved to a temp archive (`docker save`). Temp files go "
        "to $TMPDIR (build: --tmp-dir) and are removed at exit.",
    )
    g.add_argument(
        "--max-expanded-mib",
        type=int,
        metavar="MIB",
        help="refuse layers whose uncompressed size adds up to more than MIB "
        f"(decompression bombs; default {d.max_total_bytes >> 20})",
    )
    g.add_argument(
        "--max-entries",
        type=int,
        metavar="N",
        help=f"refuse images with more than N tar entries over all layers (default {d.max_entries})",
    )
    g.add_argument(
        "--max-layers",
        type=int,
        metavar="N",
        help="refuse images with more than N layers (Docker runs at most 125; "
        f"default {d.max_layers})",
    )
    g.add_argument(
        "--max-zstd-ratio",
        type=int,
        metavar="N",
        help="a zstd layer may expand to N times its compressed size (at least "
        f"{ZSTD_FLOOR_BYTES >> 20} MiB; default {d.max_zstd_ratio}, deflate's own maximum)",
    )
    g.add_argument(
        "--max-temp-mib",
        type=int,
        metavar="MIB",
        help="disk for the decompressed zstd layers of one image in $TMPDIR "
        f"(default {d.max_temp_bytes >> 20})",
    )
    g.add_argument(
        "--max-tree-mib",
        type=int,
        metavar="MIB",
        help="memory ceiling for the merged file tree; the process needs about 40 MiB more "
        f"(default {d.max_tree_bytes >> 20})",
    )
    g.add_argument(
        "--gzip-checkpoint-mib",
        type=int,
        metavar="MIB",
        help="gzip layers: snapshot the decompressor every MIB of output (~41 KiB each); "
        f"smaller = faster out-of-order reads, more memory (default {d.gzip_spacing_bytes >> 20})",
    )
    g.add_argument(
        "--max-index-mib",
        type=int,
        metavar="MIB",
        help="memory for all gzip checkpoints of the image; beyond it a layer keeps every other "
        f"checkpoint (default {d.max_index_bytes >> 20})",
    )


def limits_from_args(args: argparse.Namespace) -> Limits:
    """The :class:`Limits` the options of :func:`add_limit_arguments` ask for."""
    changes: dict[str, int] = {}
    for opt, key, shift in (
        ("max_expanded_mib", "max_total_bytes", 20),
        ("max_entries", "max_entries", 0),
        ("max_tree_mib", "max_tree_bytes", 20),
        ("gzip_checkpoint_mib", "gzip_spacing_bytes", 20),
        ("max_index_mib", "max_index_bytes", 20),
        ("max_layers", "max_layers", 0),
        ("max_zstd_ratio", "max_zstd_ratio", 0),
        ("max_temp_mib", "max_temp_bytes", 20),
    ):
        value = getattr(args, opt)
        if value is None:
            continue
        if value <= 0:
            raise UsageError(f"--{opt.replace('_', '-')} {value}: must be a positive number")
        changes[key] = value << shift
    if "max_total_bytes" in changes:
        changes["max_layer_bytes"] = min(DEFAULT_LIMITS.max_layer_bytes, changes["max_total_bytes"])
    return dataclasses.replace(DEFAULT_LIMITS, **changes)
