"""`eifbuild diff`: PCR causes, input digests, cmdline/metadata, per-entry ramdisk diffs.

EIFs are written with the real writer and real newc ramdisks; expected digests and PCRs are
computed here with hashlib from the section bytes (docs/spec/eif.md §6), and the expected entry
differences follow from how each test builds its archives.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eifbuild.cli import main
from eifbuild.cpio import Member, newc_stream
from eifbuild.diff import diff_eifs, safe_text
from eifbuild.diff.render import render_json
from eifbuild.eif.metadata import encode_metadata
from eifbuild.eif.signature import encode_signature_section
from eifbuild.eif.writer import write_eif
from eifbuild.errors import EifbuildError
from tests.helpers.certs import self_signed

CMD = "reboot=k panic=30 pci=off console=ttyS0"


def meta(version: str = "1.0") -> bytes:
    return encode_metadata("img", version, "1970-01-01T00:00:00+00:00", "eifbuild", "0", "OS", "k")


def reg(name: bytes, data: bytes, perm: int = 0o644, **kw: Any) -> Member:
    return Member(name, stat.S_IFREG, perm, data=data, **kw)


def d(name: bytes, perm: int = 0o755, **kw: Any) -> Member:
    return Member(name, stat.S_IFDIR, perm, **kw)


def link(name: bytes, target: bytes) -> Member:
    return Member(name, stat.S_IFLNK, 0o777, data=target)


def chr_dev(name: bytes, major: int, minor: int) -> Member:
    return Member(name, stat.S_IFCHR, 0o666, rdevmajor=major, rdevminor=minor)


def cpio(members: list[Member]) -> bytes:
    return b"".join(newc_stream(members))


BOOT = cpio([d(b"dev"), reg(b"init", b"INIT", 0o755), reg(b"nsm.ko", b"NSM")])
APP = [
    d(b"rootfs"),
    d(b"rootfs/bin"),
    reg(b"rootfs/bin/app", b"v1", 0o755),
    reg(b"rootfs/etc.conf", b"a=1"),
    link(b"rootfs/sh", b"bin/app"),
    chr_dev(b"rootfs/null", 1, 3),
    reg(b"rootfs/old", b"gone"),
    reg(b"cmd", b"/bin/app\n"),
]


def eif(path: Path, app: bytes, *, cmdline: str = CMD, kernel: bytes = b"KERNEL", **kw: Any) -> str:
    kw.setdefault("metadata", meta())
    write_eif(path, kernel=kernel, cmdline=cmdline, ramdisks=[BOOT, app], **kw)
    return str(path)


def extend(content: bytes) -> str:
    return hashlib.sha384(b"\0" * 48 + hashlib.sha384(content).digest()).hexdigest()


def sha384(b: bytes) -> str:
    return hashlib.sha384(b).hexdigest()


def test_identical_eifs_have_no_differences(tmp_path: Path) -> None:
    app = cpio(APP)
    a = eif(tmp_path / "a.eif", app)
    b = eif(tmp_path / "b.eif", app)
    doc = diff_eifs(a, b)
    assert doc["pcrs_differ"] == [] and doc["explanation"] == [] and doc["ramdisks"] == []
    assert doc["pcrs"]["PCR0"] == {
        "a": extend(b"KERNEL" + CMD.encode() + BOOT + app),
        "b": doc["pcrs"]["PCR0"]["a"],
        "differs": False,
    }
    assert "PCR8" not in doc["pcrs"]
    assert [r["name"] for r in doc["inputs"]] == ["kernel", "cmdline", "ramdisk 0", "ramdisk 1"]
    assert not any(r["changed"] for r in doc["inputs"])
    assert doc["inputs"][3]["a"] == {"sha384": sha384(app), "size": len(app)}
    assert doc["metadata"]["differences"] == [] and doc["file"]["differences"] == []


def test_pcr2_changed_because_ramdisk_1_changed(tmp_path: Path) -> None:
    app_a = cpio(APP)
    new = list(APP)
    new[2] = reg(b"rootfs/bin/app", b"v2!", 0o750)  # content, size, mode
    new[3] = reg(b"rootfs/etc.conf", b"a=1", mtime=7, uid=5)
    new[4] = link(b"rootfs/sh", b"bin/other")
    new[5] = chr_dev(b"rootfs/null", 1, 5)
    del new[6]  # rootfs/old removed
    new.append(reg(b"rootfs/new", b"hello"))
    app_b = cpio(new)
    doc = diff_eifs(eif(tmp_path / "a.eif", app_a), eif(tmp_path / "b.eif", app_b))
    head = b"KERNEL" + CMD.encode()
    assert doc["pcrs"]["PCR0"] == {
        "a": extend(head + BOOT + app_a), "b": extend(head + BOOT + app_b), "differs": True
    }  # fmt: skip
    assert doc["pcrs"]["PCR1"]["differs"] is False
    assert doc["pcrs"]["PCR2"] == {"a": extend(app_a), "b": extend(app_b), "differs": True}
    assert doc["pcrs_differ"] == ["PCR0", "PCR2"]
    assert doc["explanation"] == [
        {"pcr": "PCR0", "because": ["ramdisk 1"]},
        {"pcr": "PCR2", "because": ["ramdisk 1"]},
    ]
    row = doc["inputs"][3]
    assert row == {
        "name": "ramdisk 1",
        "pcrs": ["PCR0", "PCR2"],
        "a": {"sha384": sha384(app_a), "size": len(app_a)},
        "b": {"sha384": sha384(app_b), "size": len(app_b)},
        "changed": True,
    }
    [rd] = doc["ramdisks"]
    assert rd["index"] == 1 and rd["error"] is None
    assert rd["summary"] == {
        "entries_a": 8, "entries_b": 8, "added": 1, "removed": 1, "changed": 4, "inode_only": 1
    }  # fmt: skip
    assert [e["path"] for e in rd["added"]] == ["rootfs/new"]
    assert rd["added"][0]["sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert rd["added"][0]["position"] == 7
    assert [e["path"] for e in rd["removed"]] == ["rootfs/old"]
    changes = {c["path"]: c["changes"] for c in rd["changed"]}
    assert changes["rootfs/bin/app"] == {
        "mode": {"a": "0755", "b": "0750"},
        "size": {"a": 2, "b": 3},
        "sha256": {"a": hashlib.sha256(b"v1").hexdigest(), "b": hashlib.sha256(b"v2!").hexdigest()},
    }
    assert changes["rootfs/etc.conf"] == {"mtime": {"a": 0, "b": 7}, "uid": {"a": 0, "b": 5}}
    assert changes["rootfs/sh"] == {
        "size": {"a": 7, "b": 9}, "target": {"a": "bin/app", "b": "bin/other"}
    }  # fmt: skip
    assert changes["rootfs/null"] == {"rdev": {"a": "1:3", "b": "1:5"}}
    # "cmd" moved up one slot when rootfs/old was removed: a new inode number, nothing else.
    assert rd["inode_only"] == [{"path": "cmd", "changes": {"ino": {"a": 728, "b": 727}}}]
    # the text report shows mtimes as seconds and as a UTC time
    from eifbuild.diff.render import render_text

    assert (
        "~ rootfs/etc.conf: mtime 0 (1970-01-01 00:00:00 UTC) -> 7 (1970-01-01 00:00:07 UTC), "
        "uid 0 -> 5" in render_text(doc)
    )
    assert "only mtimes differ" not in render_text(doc)
    touched = [*APP[:3], reg(b"rootfs/etc.conf", b"a=1", mtime=9), *APP[4:]]
    doc = diff_eifs(str(tmp_path / "a.eif"), str(eif(tmp_path / "t.eif", cpio(touched))))
    assert "only mtimes differ (a rebuild stamps new times): `eifbuild build --clamp-mtime`" in (
        render_text(doc)
    )


def test_order_change_and_duplicate_names(tmp_path: Path) -> None:
    a_members = [d(b"x"), reg(b"x/1", b"1"), reg(b"x/2", b"2"), reg(b"x/3", b"3"), d(b"x")]
    b_members = [d(b"x"), reg(b"x/3", b"3"), reg(b"x/1", b"1"), reg(b"x/2", b"2"), d(b"x", 0o700)]
    doc = diff_eifs(
        eif(tmp_path / "a.eif", cpio(a_members)), eif(tmp_path / "b.eif", cpio(b_members))
    )
    [rd] = doc["ramdisks"]
    assert rd["added"] == [] and rd["removed"] == []
    changes = {c["path"]: c["changes"] for c in rd["changed"]}
    # x/3 moved before x/1 and x/2 (one move explains the new order); the second "x" changed
    assert changes == {
        "x/3": {"ino": {"a": 724, "b": 722}, "position": {"a": 3, "b": 1}},
        "x (#2)": {"mode": {"a": "0755", "b": "0700"}},
    }
    assert {c["path"] for c in rd["inode_only"]} == {"x/1", "x/2"}


def test_cmdline_and_kernel_changes(tmp_path: Path) -> None:
    app = cpio(APP)
    a = eif(tmp_path / "a.eif", app)
    b = eif(tmp_path / "b.eif", app, cmdline=CMD.replace("console=ttyS0", "console=hvc0 quiet"))
    doc = diff_eifs(a, b)
    assert doc["pcrs_differ"] == ["PCR0", "PCR1"]
    assert doc["explanation"] == [
        {"pcr": "PCR0", "because": ["cmdline"]},
        {"pcr": "PCR1", "because": ["cmdline"]},
    ]
    assert doc["cmdline"]["removed_tokens"] == ["console=ttyS0"]
    assert doc["cmdline"]["added_tokens"] == ["console=hvc0", "quiet"]
    assert doc["ramdisks"] == []
    c = eif(tmp_path / "c.eif", app, kernel=b"KERNEL2")
    doc = diff_eifs(a, c)
    assert [e["because"] for e in doc["explanation"]] == [["kernel"], ["kernel"]]
    assert doc["inputs"][0]["b"] == {"sha384": sha384(b"KERNEL2"), "size": 7}


def test_metadata_only_is_not_measured(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = cpio(APP)
    a = eif(tmp_path / "a.eif", app)
    b = eif(tmp_path / "b.eif", app, metadata=meta("2.0"), arch="aarch64")
    doc = diff_eifs(a, b)
    assert doc["pcrs_differ"] == []
    assert doc["metadata"] == {
        "measured": False,
        "differences": [{"field": "ImageVersion", "a": '"1.0"', "b": '"2.0"'}],
    }
    assert {"field": "arch", "a": "x86_64", "b": "aarch64"} in doc["file"]["differences"]
    assert main(["diff", a, b, "--exit-code"]) == 0
    out = capsys.readouterr().out
    assert "metadata differences (NOT measured)" in out and 'ImageVersion: "1.0" -> "2.0"' in out


def self_signed_pem(cn: str = "signer") -> bytes:
    """A fresh self-signed P-384 certificate (PEM), as a signing certificate stand-in."""
    return self_signed(cn=cn, not_before=dt.datetime(2024, 1, 1, tzinfo=dt.UTC), days=30)[0]


def test_signing_certificate_explains_pcr8(tmp_path: Path) -> None:
    app = cpio(APP)
    pem1, pem2 = self_signed_pem("one"), self_signed_pem("two")

    def signer(pem: bytes) -> Any:
        return lambda _pcr0: encode_signature_section([(pem, b"\x84cose")])

    a = eif(tmp_path / "a.eif", app, signer=signer(pem1))
    b = eif(tmp_path / "b.eif", app, signer=signer(pem2))
    u = eif(tmp_path / "u.eif", app)
    doc = diff_eifs(a, b)
    der2 = x509.load_pem_x509_certificate(pem2).public_bytes(serialization.Encoding.DER)
    assert doc["pcrs_differ"] == ["PCR8"]
    assert doc["pcrs"]["PCR8"]["b"] == extend(der2)
    assert doc["explanation"] == [{"pcr": "PCR8", "because": ["signing certificate"]}]
    cert_row = doc["inputs"][-1]
    assert cert_row["name"] == "signing certificate" and cert_row["pcrs"] == ["PCR8"]
    assert cert_row["b"] == {"sha384": sha384(der2), "size": len(der2)}
    doc = diff_eifs(u, a)
    assert doc["pcrs"]["PCR8"]["a"] is None and doc["pcrs_differ"] == ["PCR8"]
    assert doc["a"]["signed"] is False and doc["b"]["signed"] is True


HOSTILE = b"rootfs/<script>alert(1)</script>\x1b[31m\xff\n\\x41\xe2\x80\xae"


def test_hostile_paths_are_escaped_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = eif(tmp_path / "a.eif", cpio(APP))
    b = eif(tmp_path / "b.eif", cpio([*APP, reg(HOSTILE, b"x")]))
    shown = "rootfs/<script>alert(1)</script>\\x1b[31m\\xff\\x0a\\\\x41\\u202e"
    assert safe_text(HOSTILE) == shown
    html = tmp_path / "r.html"
    assert main(["diff", a, b, "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert f"  + {shown}: file 0644" in out
    assert "\x1b" not in out and "\u202e" not in out
    page = html.read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    app_b = cpio([*APP, reg(HOSTILE, b"x")])
    assert f'<td class="hex">{extend(app_b)}</td>' in page  # PCR2 of B
    assert "<li>PCR2 changed because ramdisk 1 changed</li>" in page
    assert "<p>1 added, 0 removed, 0 changed, 0 inode-only" in page
    assert main(["diff", a, b, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ramdisks"][0]["added"][0]["path"] == shown


def test_hostile_metadata_is_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # JSON escapes the EIF's metadata may carry: a lone surrogate in a key, a bidi override,
    # DEL and a C1 control in a value (json.dumps would print all of these raw).
    extra = b', "k\\ud800": "\\u202eevil\\u007f\\u0085", "Note": "\xc3\x9cml\\\\aut"}'
    a = eif(tmp_path / "a.eif", cpio(APP))
    b = eif(tmp_path / "b.eif", cpio(APP), metadata=meta()[:-1] + extra)
    html = tmp_path / "r.html"
    assert main(["diff", a, b, "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert 'Note: None -> "\u00dcml\\\\aut"' in out  # readable, valid JSON text
    assert 'k\\xed\\xa0\\x80: None -> "\\u202eevil\\u007f\\u0085"' in out
    for raw in ("\u202e", "\x7f", "\x85"):
        assert raw not in out and raw not in html.read_text()
    assert main(["diff", a, b, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["metadata"]["differences"]
    assert [json.loads(r["b"]) for r in rows] == ["\u00dcml\\aut", "\u202eevil\x7f\x85"]


def test_cli_text_json_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = [*APP[:2], reg(b"rootfs/bin/app", b"v2", 0o755), *APP[3:]]
    a = eif(tmp_path / "a.eif", cpio(APP))
    b = eif(tmp_path / "b.eif", cpio(new))
    assert main(["diff", a, b]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines.index("PCRs (differ: PCR0, PCR2)") < lines.index("Measured inputs")
    assert "  PCR2 changed because ramdisk 1 changed" in lines
    assert "ramdisk 1: 0 added, 0 removed, 1 changed, 0 inode-only (entries 8 -> 8)" in lines
    assert any(x.startswith("  ~ rootfs/bin/app: sha256 ") for x in lines)
    assert main(["diff", a, b, "--exit-code"]) == 1
    capsys.readouterr()
    assert main(["diff", a, a, "--exit-code"]) == 0
    capsys.readouterr()
    outs = []
    for _ in range(2):
        assert main(["diff", a, b, "--json"]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1]
    doc = json.loads(outs[0])
    assert json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n" == outs[0]
    assert doc["format"] == "eifbuild-diff/1"


def test_limit_truncates_text_not_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    many = [reg(b"f%03d" % i, b"x") for i in range(30)]
    a = eif(tmp_path / "a.eif", cpio(APP))
    b = eif(tmp_path / "b.eif", cpio(APP + many))
    assert main(["diff", a, b, "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "  + ... and 25 more (see --json)" in out and "f005" not in out
    assert main(["diff", a, b, "--json", "--limit", "5"]) == 0
    assert len(json.loads(capsys.readouterr().out)["ramdisks"][0]["added"]) == 30


def test_ramdisk_that_is_not_cpio(tmp_path: Path) -> None:
    a = str(tmp_path / "a.eif")
    b = str(tmp_path / "b.eif")
    write_eif(a, kernel=b"K", cmdline="c", metadata=meta(), ramdisks=[BOOT, b"raw" * 64])
    write_eif(b, kernel=b"K", cmdline="c", metadata=meta(), ramdisks=[BOOT, b"other"])
    [rd] = diff_eifs(a, b)["ramdisks"]
    assert rd["index"] == 1 and "summary" not in rd
    assert rd["error"].startswith(f"{a} ramdisk 1: cpio archive: bad magic")


def test_different_ramdisk_counts(tmp_path: Path) -> None:
    a = str(tmp_path / "a.eif")
    b = str(tmp_path / "b.eif")
    app = cpio(APP)
    write_eif(a, kernel=b"K", cmdline="c", metadata=meta(), ramdisks=[BOOT, app])
    write_eif(b, kernel=b"K", cmdline="c", metadata=meta(), ramdisks=[BOOT, app, app])
    doc = diff_eifs(a, b)
    assert doc["explanation"] == [
        {"pcr": "PCR0", "because": ["ramdisk 2"]},
        {"pcr": "PCR2", "because": ["ramdisk 2"]},
    ]
    row = doc["inputs"][-1]
    assert row["a"] is None and row["b"] == {"sha384": sha384(app), "size": len(app)}


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:600],  # truncated
        lambda data: b"XXXX" + data[4:],  # bad magic
        lambda data: data + b"\0",  # trailing bytes
    ],
)
def test_malformed_eif_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: Any
) -> None:
    good = eif(tmp_path / "a.eif", cpio(APP))
    bad = tmp_path / "bad.eif"
    bad.write_bytes(damage(Path(good).read_bytes()))
    html = tmp_path / "r.html"
    assert main(["diff", good, str(bad), "--html", str(html)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("eifbuild: error: ") and err.count("\n") == 1
    assert str(bad) in err
    assert not html.exists() and list(tmp_path.glob(".r.html*")) == []


def test_missing_file_and_bad_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = eif(tmp_path / "a.eif", cpio(APP))
    assert main(["diff", good, str(tmp_path / "nope.eif")]) == 1
    assert "nope.eif" in capsys.readouterr().err
    assert main(["diff", good, good, "--limit", "-1"]) == 2
    capsys.readouterr()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # must not block waiting for a writer
    assert main(["diff", good, str(fifo)]) == 1
    assert "fifo: not a regular file" in capsys.readouterr().err


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_mutated_eifs_give_one_line_errors_or_a_diff(tmp_path: Path, data: Any) -> None:
    """Hostile EIFs: random byte changes and cuts never crash diff or leak a traceback."""
    a = tmp_path / "a.eif"
    if not a.exists():
        eif(a, cpio(APP), signer=None)
    raw = bytearray(a.read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(0, len(raw)))] if data.draw(st.booleans()) else raw
    b = tmp_path / "b.eif"
    b.write_bytes(bytes(raw))
    try:
        doc = diff_eifs(str(a), str(b))
    except EifbuildError as exc:
        assert "\n" not in exc.message
    else:
        json.loads(render_json(doc))  # entry lists are disk-backed: rendered by render_json
        for rd in doc["ramdisks"]:
            assert rd["error"] is None or "\n" not in rd["error"]


def test_help_has_examples_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for command, example in [("diff", "eifbuild diff --exit-code"), ("policy", "put-key-policy")]:
        assert main([command, "--help"]) == 0
        out = capsys.readouterr().out
        assert "examples:" in out and example in out
        assert "exit codes:" in out and "2  usage error" in out
        assert "build failed" not in out  # the generic epilog is replaced


def test_listing_inputs_are_told_apart_from_eifs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listing = tmp_path / "a.jsonl"
    listing.write_text('{"path": "bin", "type": "dir", "mode": "0755"}\n')
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n")
    # A missing input is named as missing, not as "one EIF and one listing".
    assert main(["diff", str(listing), str(tmp_path / "nope.jsonl")]) == 1
    err = capsys.readouterr().err
    assert "nope.jsonl: cannot" in err and "No such file" in err and err.count("\n") == 1
    # A blank file next to a listing is an empty listing (everything removed).
    assert main(["diff", str(listing), str(blank), "--json", "--exit-code"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in doc["removed"]] == ["bin"] and doc["summary"]["entries_b"] == 0
    # Next to an EIF, the EIF reader judges it.
    a = eif(tmp_path / "a.eif", cpio(APP))
    assert main(["diff", a, str(blank)]) == 1
    err = capsys.readouterr().err
    assert "blank.jsonl" in err and "not one of each" not in err and err.count("\n") == 1
    assert main(["diff", a, str(listing)]) == 1
    assert "not one of each" in capsys.readouterr().err
