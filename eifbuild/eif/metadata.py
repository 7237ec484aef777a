"""The metadata section (type 5): JSON written byte-for-byte as serde_json does (docs/spec/eif.md §5).

* compact, UTF-8 written raw, fixed top-level and ``BuildMetadata`` key order;
* ``DockerInfo`` / ``CustomMetadata`` are arbitrary JSON values whose object keys are sorted at
  every level (serde_json's default ``Map`` is a ``BTreeMap``); absent values are ``null``;
* numbers follow serde_json: integers in i64/u64 range print as integers, everything else is a
  float printed the way serde_json's ``ryu`` does (``1e21``, ``1.5e-7``, ``0.0001``, ``1.0``).

The metadata is never measured; it only changes the file bytes and the CRC.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from eifbuild.errors import EifFormatError, MetadataError
from eifbuild.limits import DEFAULT_LIMITS
from eifbuild.smallfile import open_regular, read_small_file

TOP_KEYS = ("ImageName", "ImageVersion", "BuildMetadata", "DockerInfo", "CustomMetadata")
BUILD_KEYS = ("BuildTime", "BuildTool", "BuildToolVersion", "OperatingSystem", "KernelVersion")

_I64_MIN = -(1 << 63)
_U64_MAX = (1 << 64) - 1


# ---------------------------------------------------------------- serialisation


def _format_float(value: float) -> str:
    """serde_json (ryu) text for a finite float: shortest round-trip digits, ryu's layout."""
    if not math.isfinite(value):
        return "null"  # serde_json writes NaN/inf as null
    if value == 0.0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    mantissa, _, exp_text = repr(abs(value)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    # value = 0.digits... position: decimal exponent of the first significant digit
    point = (
        len(int_part.lstrip("0"))
        if int_part.strip("0")
        else -(len(frac_part) - len(frac_part.lstrip("0")))
    )
    point += int(exp_text or 0)
    digits = digits.rstrip("0") or "0"
    length = len(digits)
    kk = point  # value = 0.d1d2... * 10**kk, i.e. 10**(kk-1) <= value < 10**kk
    k = kk - length  # value = digits * 10**k
    if k >= 0 and kk <= 16:
        text = digits + "0" * k + ".0"
    elif 0 < kk <= 16:
        text = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        text = "0." + "0" * (-kk) + digits
    elif length == 1:
        text = f"{digits}e{kk - 1}"
    else:
        text = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return sign + text


def to_json(value: Any, _depth: int = 0) -> str:
    """Compact serde_json text of a JSON value; object keys sorted byte-wise at every level."""
    if _depth > DEFAULT_LIMITS.max_json_depth:
        raise MetadataError(f"JSON nested deeper than {DEFAULT_LIMITS.max_json_depth} levels")
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if _I64_MIN <= value <= _U64_MAX:
            return str(value)
        return _format_float(float(value))
    if isinstance(value, float):
        return _format_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(to_json(v, _depth + 1) for v in value) + "]"
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise MetadataError(f"JSON object key {key!r} is not a string")
        items = sorted(value.items())
        body = ",".join(
            json.dumps(k, ensure_ascii=False) + ":" + to_json(v, _depth + 1) for k, v in items
        )
        return "{" + body + "}"
    raise MetadataError(f"value of type {type(value).__name__} cannot be written as JSON")


def encode_metadata(
    image_name: str,
    image_version: str,
    build_time: str,
    build_tool: str,
    build_tool_version: str,
    operating_system: str,
    kernel_version: str,
    docker_info: Any = None,
    custom: Any = None,
) -> bytes:
    """The metadata section bytes, exactly as ``serde_json::to_vec(&EifIdentityInfo)``."""
    build = zip(
        BUILD_KEYS,
        (build_time, build_tool, build_tool_version, operating_system, kernel_version),
        strict=True,
    )
    build_json = "{" + ",".join(f"{json.dumps(k)}:{_string(k, v)}" for k, v in build) + "}"
    text = (
        "{"
        f'"ImageName":{_string("ImageName", image_name)},'
        f'"ImageVersion":{_string("ImageVersion", image_version)},'
        f'"BuildMetadata":{build_json},'
        f'"DockerInfo":{to_json(docker_info)},'
        f'"CustomMetadata":{to_json(custom)}'
        "}"
    )
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise MetadataError(
            "metadata contains a lone surrogate, which is not valid UTF-8"
        ) from None
    ceiling = DEFAULT_LIMITS.max_metadata_section_bytes  # what EifReader accepts
    if len(raw) > ceiling:
        raise MetadataError(
            f"metadata would be {len(raw)} bytes; EIF readers (describe, diff, verify) accept "
            f"at most {ceiling} (the image config's Labels/Env/Cmd are too large)"
        )
    return raw


def _string(key: str, value: str) -> str:
    if not isinstance(value, str):
        raise MetadataError(f"metadata field {key} must be a string, not {type(value).__name__}")
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------- parsing


def _parse_int(text: str) -> int | float:
    value = int(text)
    if text.startswith("-") and value == 0:
        return -0.0  # serde_json parses "-0" as the float -0.0
    if _I64_MIN <= value <= _U64_MAX:
        return value
    return float(text)  # out-of-range integers become f64 in serde_json


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _reject_constant(text: str) -> Any:
    raise ValueError(f"{text} is not valid JSON")


def _depth(value: Any) -> int:
    """Nesting depth, iteratively (hostile input must not exhaust the Python stack)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def loads_json(data: bytes, name: str) -> Any:
    """Parse JSON bytes the way serde_json would accept them (strict UTF-8, no NaN)."""
    try:
        text = data.decode("utf-8")
        value = json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_reject_constant
        )
    except UnicodeDecodeError:
        raise MetadataError(f"{name}: not valid UTF-8") from None
    except RecursionError:
        raise MetadataError(f"{name}: JSON nested too deeply") from None
    except ValueError as exc:
        raise MetadataError(f"{name}: invalid JSON ({exc})") from None
    if _depth(value) > DEFAULT_LIMITS.max_json_depth:
        raise MetadataError(
            f"{name}: JSON nested deeper than {DEFAULT_LIMITS.max_json_depth} levels"
        )
    return value


def load_custom_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``--metadata`` file: at most 4096 bytes, a JSON object."""
    p = Path(path)
    data = read_small_file(
        p, "metadata file", DEFAULT_LIMITS.max_custom_metadata_bytes, MetadataError
    )
    value = loads_json(data, str(p))
    if not isinstance(value, dict):
        raise MetadataError(f"{p}: custom metadata must be a JSON object")
    return value


def parse_metadata(data: bytes, name: str = "metadata") -> dict[str, Any]:
    """Parse and check a metadata section: the five top-level keys and string build fields."""
    try:
        value = loads_json(data, name)
    except MetadataError as exc:
        raise EifFormatError(str(exc)) from None
    if not isinstance(value, dict):
        raise EifFormatError(f"{name}: metadata is not a JSON object")
    missing = [k for k in ("ImageName", "ImageVersion", "BuildMetadata") if k not in value]
    if missing:
        raise EifFormatError(f"{name}: metadata lacks {', '.join(missing)}")
    for key in ("ImageName", "ImageVersion"):
        if not isinstance(value[key], str):
            raise EifFormatError(f"{name}: metadata {key} is not a string")
    build = value["BuildMetadata"]
    if not isinstance(build, dict) or any(not isinstance(build.get(k), str) for k in BUILD_KEYS):
        raise EifFormatError(
            f"{name}: metadata BuildMetadata lacks string fields {', '.join(BUILD_KEYS)}"
        )
    value.setdefault("DockerInfo", None)
    value.setdefault("CustomMetadata", None)
    return value


# ---------------------------------------------------------------- kernel config


def kernel_config_info(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(OperatingSystem, KernelVersion) from line 3 of a kernel ``.config``, as nitro-cli does.

    Line 3 looks like ``# Linux/x86_64 4.14.256-209.484.amzn2.x86_64 Kernel Configuration``;
    split on space, ``/`` and ``-`` (empty items kept, like Rust's ``split``) and take items 1
    and 3: ``("Linux", "4.14.256")``.
    """
    p = Path(path)
    with open_regular(p, f"kernel config {p}", MetadataError) as fh:
        try:
            lines = [fh.readline(4096) for _ in range(3)]
        except OSError as exc:
            raise MetadataError(f"kernel config {p}: cannot read ({exc.strerror})") from None
    line = lines[2].decode("utf-8", errors="replace").rstrip("\r\n")
    items = line.replace("/", " ").replace("-", " ").split(" ")
    if len(items) < 4 or not items[1] or not items[3]:
        raise MetadataError(
            f"{p}: line 3 is not a kernel config header like '# Linux/x86 6.6.38 Kernel Configuration'"
        )
    return items[1], items[3]
