"""Metadata JSON: serde_json's exact bytes (docs/spec/eif.md §5), parsing and limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eifbuild.eif.metadata import (
    encode_metadata,
    kernel_config_info,
    load_custom_metadata,
    loads_json,
    parse_metadata,
    to_json,
)
from eifbuild.errors import EifFormatError, MetadataError

BASE = ("n", "v", "t", "tool", "1", "OS", "kernel")


def _tail(meta: bytes) -> str:
    text = meta.decode()
    return text[text.index('"DockerInfo"') :]


def test_top_level_and_build_order_fixed_nested_sorted() -> None:
    meta = encode_metadata(*BASE, docker_info={"b": 1, "a": {"z": 0, "y": [{"d": 1, "c": 2}]}},
                           custom={"Zeta": True, "alpha": None})  # fmt: skip
    assert meta == (
        b'{"ImageName":"n","ImageVersion":"v","BuildMetadata":{"BuildTime":"t","BuildTool":"tool",'
        b'"BuildToolVersion":"1","OperatingSystem":"OS","KernelVersion":"kernel"},'
        b'"DockerInfo":{"a":{"y":[{"c":2,"d":1}],"z":0},"b":1},"CustomMetadata":{"Zeta":true,"alpha":null}}'
    )


def test_string_escaping_like_serde_json() -> None:
    s = 'q"b\\s/\x7f\b\f\n\r\t\x00\x1f é 😀'
    meta = encode_metadata(s, *BASE[1:])
    expected = '"q\\"b\\\\s/\x7f\\b\\f\\n\\r\\t\\u0000\\u001f é 😀"'
    assert meta.startswith(b'{"ImageName":' + expected.encode() + b",")


def test_byte_order_of_keys_is_code_point_order() -> None:
    assert (
        to_json({"é": 1, "z": 2, "Z": 3, "😀": 4, "\uffff": 5})
        == '{"Z":3,"z":2,"é":1,"\uffff":5,"😀":4}'
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1.0"),
        (0.1, "0.1"),
        (-2.5, "-2.5"),
        (1e21, "1e21"),
        (1e16, "1e16"),
        (1e15, "1000000000000000.0"),
        (123456789.125, "123456789.125"),
        (0.0001, "0.0001"),
        (0.00001, "0.00001"),
        (1e-6, "1e-6"),
        (1.5e-7, "1.5e-7"),
        (1.234e33, "1.234e33"),
        (5e-324, "5e-324"),
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (2**64, "1.8446744073709552e19"),
        (2**64 - 1, "18446744073709551615"),
        (-(2**63), "-9223372036854775808"),
        (-(2**63) - 1, "-9.223372036854776e18"),
    ],
)
def test_numbers_like_serde_json(value: Any, text: str) -> None:
    assert to_json(value) == text


def test_parse_numbers_like_serde_json() -> None:
    assert to_json(loads_json(b"[-0, 2, 3]", "x")) == "[-0.0,2,3]"
    assert (
        to_json(loads_json(b"[18446744073709551616, 1E2, 10.50]", "x"))
        == "[1.8446744073709552e19,100.0,10.5]"
    )
    for bad in (b"[NaN]", b"[Infinity]", b"[1e400]", b"\xef\xbb\xbf{}", b'{"a":"\xff"}', b"{"):
        with pytest.raises(MetadataError):
            loads_json(bad, "x")
    with pytest.raises(MetadataError, match="nested"):
        loads_json(b"[" * 200 + b"]" * 200, "x")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids, max_size=4),
    max_leaves=12,
)  # fmt: skip


@given(json_values)
def test_to_json_round_trips_and_is_canonical(value: Any) -> None:
    text = to_json(value)
    again = loads_json(text.encode(), "x")
    assert to_json(again) == text
    assert json.loads(text) == json.loads(
        json.dumps(value, sort_keys=True)
    ) or _has_float_int_drift(value)
    if isinstance(value, (list, dict)) and value:
        assert text == _compact_reference(again)


def _compact_reference(value: Any) -> str:
    """Python's json with compact separators and sorted keys, for values without floats."""
    if _has_float(value):
        return to_json(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    return False


def _has_float_int_drift(value: Any) -> bool:
    """Out-of-range integers become floats, as in serde_json."""
    if isinstance(value, int) and not isinstance(value, bool):
        return not -(2**63) <= value <= 2**64 - 1
    if isinstance(value, list):
        return any(_has_float_int_drift(v) for v in value)
    if isinstance(value, dict):
        return any(_has_float_int_drift(v) for v in value.values())
    return False


def test_custom_metadata_file_limits(tmp_path: Path) -> None:
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"k": "v" * 4000}))
    assert load_custom_metadata(ok) == {"k": "v" * 4000}
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"k": "v" * 4100}))
    with pytest.raises(MetadataError, match="larger than 4096 bytes"):
        load_custom_metadata(big)
    arr = tmp_path / "arr.json"
    arr.write_text("[1]")
    with pytest.raises(MetadataError, match="must be a JSON object"):
        load_custom_metadata(arr)
    with pytest.raises(MetadataError, match="cannot read"):
        load_custom_metadata(tmp_path / "missing.json")


def test_parse_metadata_checks_shape() -> None:
    good = encode_metadata(*BASE, custom={"x": 1})
    assert parse_metadata(good)["CustomMetadata"] == {"x": 1}
    for bad in (b"[]", b"{}", b'{"ImageName":1,"ImageVersion":"v","BuildMetadata":{}}', b"\xff"):
        with pytest.raises(EifFormatError):
            parse_metadata(bad)


def test_kernel_config_line_three(tmp_path: Path) -> None:
    cfg = tmp_path / "bzImage.config"
    cfg.write_text(
        "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86_64 4.14.256-209.484.amzn2.x86_64 Kernel Configuration\n"
    )
    assert kernel_config_info(cfg) == ("Linux", "4.14.256")
    cfg.write_text(
        "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.6.38 Kernel Configuration\n"
    )
    assert kernel_config_info(cfg) == ("Linux", "6.6.38")
    cfg.write_text("garbage\n")
    with pytest.raises(MetadataError, match="line 3"):
        kernel_config_info(cfg)
