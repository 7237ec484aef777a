"""BuildTime: SOURCE_DATE_EPOCH, else the image's ``created`` in nitro-cli's form (docs/spec/eif.md §5.2).

Expected strings are written from the spec's description of chrono's ``to_rfc3339`` (UTC,
``.fff``/``.ffffff``/``.fffffffff`` only as needed, ``+00:00``), and in the property test
computed independently with ``calendar.timegm``.
"""

from __future__ import annotations

import calendar
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eifbuild._epoch import normalize_rfc3339
from eifbuild.errors import ImageSourceError
from eifbuild.model import ImageConfig
from eifbuild.pipeline import build_time
from tests.test_build import run_cli, sections
from tests.test_build_blobs import make_blobs


@pytest.mark.parametrize(
    ("created", "want"),
    [
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00+00:00"),
        ("2023-11-14T22:13:20.5Z", "2023-11-14T22:13:20.500+00:00"),
        ("2023-11-14T22:13:20.120Z", "2023-11-14T22:13:20.120+00:00"),
        ("2023-11-14T22:13:20.000001Z", "2023-11-14T22:13:20.000001+00:00"),
        ("2023-11-14T22:13:20.123456789Z", "2023-11-14T22:13:20.123456789+00:00"),
        ("2023-11-14T22:13:20.000000000Z", "2023-11-14T22:13:20+00:00"),
        ("2023-11-14T22:13:20.1234567891Z", "2023-11-14T22:13:20.123456789+00:00"),
        ("2024-01-01T01:30:00+02:00", "2023-12-31T23:30:00+00:00"),
        ("2023-12-31T20:00:00.25-05:30", "2024-01-01T01:30:00.250+00:00"),
        ("2023-11-14t22:13:20z", "2023-11-14T22:13:20+00:00"),
        ("2023-11-14 22:13:20+00:00", "2023-11-14T22:13:20+00:00"),
    ],
)
def test_created_is_normalised(created: str, want: str) -> None:
    assert normalize_rfc3339(created) == want


@pytest.mark.parametrize(
    "created",
    [
        "",
        "yesterday",
        "2023-11-14",
        "2023-11-14T22:13:20",  # no offset
        "2023-02-30T00:00:00Z",
        "2023-11-14T24:00:00Z",
        "2016-12-31T23:59:60Z",
        "2023-11-14T22:13:20+24:00",
        "0001-01-01T00:00:00+01:00",  # year 0 in UTC
        "2023-11-14T22:13:20.Z",
        "\uff12\uff10\uff12\uff13-11-14T22:13:20Z",  # non-ASCII digits
    ],
)
def test_unparsable_created_is_none(created: str) -> None:
    assert normalize_rfc3339(created) is None


@given(
    st.integers(min_value=86400, max_value=253402214400),  # 1970-01-02 .. 9999-12-31
    st.integers(min_value=0, max_value=999_999_999),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
)
def test_any_offset_gives_the_same_utc_instant(secs: int, nanos: int, off_min: int) -> None:
    import time

    local = time.gmtime(secs + off_min * 60)
    sign = "-" if off_min < 0 else "+"
    text = time.strftime("%Y-%m-%dT%H:%M:%S", local) + f".{nanos:09d}".rstrip("0").rstrip(".")
    text += f"{sign}{abs(off_min) // 60:02d}:{abs(off_min) % 60:02d}"
    got = normalize_rfc3339(text)
    assert got is not None and got.endswith("+00:00")
    stamp, frac = got[:19], got[19:-6]
    assert calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S")) == secs
    if nanos == 0:
        assert frac == ""
    else:
        assert len(frac) in (4, 7, 10) and int(frac[1:].ljust(9, "0")) == nanos
        assert len(frac) == 4 or int(frac[-3:]) != 0  # the shortest exact group


def test_build_time_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert build_time(ImageConfig("amd64", created=None)) == "1970-01-01T00:00:00+00:00"
    assert (
        build_time(ImageConfig("amd64", created="1970-01-01T00:00:00Z"))
        == "1970-01-01T00:00:00+00:00"
    )
    with pytest.raises(ImageSourceError, match=r"app:v1: image config 'created' 'soon'"):
        build_time(ImageConfig("amd64", created="soon"), "app:v1")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert build_time(ImageConfig("amd64", created="soon")) == "2023-11-14T22:13:20+00:00"


def test_build_writes_normalised_created_and_refuses_junk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers.imagegen import E, layer_bytes, oci_image, oci_layout

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    blobs = make_blobs(tmp_path / "blobs")
    for created, want in [
        ("2021-06-01T10:00:00.5+02:00", "2021-06-01T08:00:00.500+00:00"),
        ("not a time", None),
    ]:
        root = tmp_path / f"img{want is None}"
        desc = oci_image(
            root, [layer_bytes([E.file("x")])], config={"Cmd": ["/x"]}, created=created
        )
        oci_layout(root, [desc], ["t"])
        out = tmp_path / "o.eif"
        rc, _, err = run_cli(
            ["build", f"oci:{root}:t", "--blobs", str(blobs), "-o", str(out)], capsys
        )
        if want is None:
            assert rc == 1 and "'created'" in err and err.count("\n") == 1 and not out.exists()
        else:
            assert rc == 0, err
            meta = json.loads(next(d for t, d in sections(out.read_bytes()) if t == 5))
            assert meta["BuildMetadata"]["BuildTime"] == want
            out.unlink()
