"""``assemble`` against an independent model of AWS ``eif_build`` 0.3.1, option by option.

The model is written here from docs/spec/eif.md §1-§5 and §10.2 (metadata as eif_build
fills it, including its ``--version`` bug) with struct/zlib/json/hashlib only; docs/spec/eif.md §14.4, §16
confirm the model's unsigned default case against the real eif_build. Each case runs the
eifbuild CLI with the flags that reproduce eif_build's file and compares the bytes.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from eifbuild.cli import main

KERNEL = bytes(range(256)) * 40 + b"bzImage-tail"
CMDLINE = "reboot=k panic=30 pci=off nomodules console=ttyS0 random.trust_cpu=on"
RAMDISKS = [b"\x07070701" + b"a" * 999, b"customer" * 321, b"third\n" * 77]
TIME = "2024-05-06T07:08:09.123+00:00"


def _js(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def model_metadata(opts: dict[str, Any], kernel_name: str) -> bytes:
    """eif_build 0.3.1's metadata (docs/spec/eif.md §5.1, §10.2): ImageVersion is the --name value."""
    name = opts.get("name")
    build = [
        ("BuildTime", opts["build_time"]),
        ("BuildTool", opts.get("build_tool", "eif_build")),
        ("BuildToolVersion", opts.get("build_tool_version", "0.3.1")),
        ("OperatingSystem", opts.get("img_os", "OS")),
        ("KernelVersion", opts.get("img_kernel", "kernel")),
    ]
    text = (
        '{"ImageName":' + _js(name or kernel_name)
        + ',"ImageVersion":' + _js(name or "1.0")
        + ',"BuildMetadata":{' + ",".join(f"{_js(k)}:{_js(v)}" for k, v in build) + "}"
        + ',"DockerInfo":null,"CustomMetadata":' + _js(opts.get("metadata")) + "}"
    )  # fmt: skip
    return text.encode("utf-8")


def model_eif(
    opts: dict[str, Any], ramdisks: list[bytes], kernel: bytes = KERNEL, cmdline: str = CMDLINE
) -> bytes:
    """The whole file eif_build writes (docs/spec/eif.md §1-§3): header, then type/flags/size + data."""
    sections = [(1, kernel), (2, cmdline.encode()), (5, model_metadata(opts, "bzImage"))]
    sections += [(3, rd) for rd in ramdisks]
    offsets, sizes, body, pos = [], [], b"", 548
    for stype, data in sections:
        offsets.append(pos)
        sizes.append(len(data))
        body += struct.pack(">HHQ", stype, 0, len(data)) + data
        pos += 12 + len(data)
    flags = 1 if opts.get("arch") == "aarch64" else 0
    head = struct.pack(">4sHHQQHH", b".eif", 4, flags, 1 << 30, 2, 0, len(sections))
    head += struct.pack(">32Q", *offsets, *[0] * (32 - len(offsets)))
    head += struct.pack(">32Q", *sizes, *[0] * (32 - len(sizes)))
    head += struct.pack(">I", 0)
    return head + struct.pack(">I", zlib.crc32(head + body)) + body


def pcr(content: bytes) -> str:
    return hashlib.sha384(b"\0" * 48 + hashlib.sha384(content).digest()).hexdigest()


CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "name": {"name": "demo"},
    "arch-aarch64": {"arch": "aarch64"},
    "metadata": {"metadata": {"zeta": [1, {"b": None, "a": True}], "Ünïcode": 'é\u0001\x7f/"\\'}},
    "img-os-kernel": {"img_os": "Linux", "img_kernel": "6.6.38"},
    "build-tool": {"build_tool": "my-ci", "build_tool_version": "9.9.9-rc1"},
    "everything": {
        "name": "app:v1 \u00e9",
        "arch": "aarch64",
        "metadata": {"k": {"y": 2, "x": 1}},
        "img_os": "OS\ttab",
        "img_kernel": "k\n",
        "build_tool": "eif_build",
        "build_tool_version": "0.3.1",
    },
}


def cli_args(opts: dict[str, Any], tmp: Path, ramdisks: list[Path], out: Path) -> list[str]:
    args = ["assemble", "--kernel", str(tmp / "bzImage"), "--cmdline", CMDLINE]
    for rd in ramdisks:
        args += ["--ramdisk", str(rd)]
    args += ["--output", str(out), "--build-time", opts["build_time"]]
    args += ["--build-tool", opts.get("build_tool", "eif_build")]
    args += ["--build-tool-version", opts.get("build_tool_version", "0.3.1")]
    if "name" in opts:  # eif_build's ImageVersion is its --name (bug 1): say so explicitly
        args += ["--name", opts["name"], "--version", opts["name"]]
    for key, flag in (("arch", "--arch"), ("img_os", "--img-os"), ("img_kernel", "--img-kernel")):
        if key in opts:
            args += [flag, opts[key]]
    if "metadata" in opts:
        (tmp / "meta.json").write_text(json.dumps(opts["metadata"], indent=3), "utf-8")
        args += ["--metadata", str(tmp / "meta.json")]
    return args


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("n_ramdisks", [1, 3])
def test_assemble_matches_eif_build_model(
    case: str, n_ramdisks: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    opts = {"build_time": TIME, **CASES[case]}
    (tmp_path / "bzImage").write_bytes(KERNEL)
    rds = RAMDISKS[:n_ramdisks]
    paths = []
    for i, rd in enumerate(rds):
        paths.append(tmp_path / f"rd{i}")
        paths[-1].write_bytes(rd)
    out = tmp_path / "out.eif"
    capsys.readouterr()
    assert main(cli_args(opts, tmp_path, paths, out)) == 0
    assert out.read_bytes() == model_eif(opts, rds)
    printed = json.loads(capsys.readouterr().out)["Measurements"]
    cmd = CMDLINE.encode()
    assert printed == {
        "HashAlgorithm": "Sha384 { ... }",
        "PCR0": pcr(KERNEL + cmd + b"".join(rds)),
        "PCR1": pcr(KERNEL + cmd + rds[0]),
        "PCR2": pcr(b"".join(rds[1:])),
    }


def test_model_reproduces_the_confirmed_vector() -> None:
    """The model gives the SHA-256 of docs/spec/eif.md §14.4, §16 (confirmed against eif_build)."""
    opts = {"build_time": "2024-01-01T00:00:00+00:00"}
    data = model_eif(opts, [b"RAMDISK0", b"RAMDISK1"], b"KERNEL", "console=ttyS0")
    assert hashlib.sha256(data).hexdigest() == (
        "9c58da72f9b80f8233d84d289883b0c4ffd668d524d330236c22adf1a3f62fba"
    )


def test_kernel_config_gives_os_and_version_from_line_three(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """eif_build's --kernel_config output is not reproducible (it stamps the clock); eifbuild
    takes OperatingSystem/KernelVersion from line 3 as nitro-cli does (docs/spec/eif.md §5.2) and keeps
    every other option."""
    (tmp_path / "bzImage").write_bytes(KERNEL)
    (tmp_path / "rd0").write_bytes(RAMDISKS[0])
    cfg = tmp_path / ".config"
    cfg.write_text("#\n# Automatically generated file; DO NOT EDIT.\n"
                   "# Linux/x86_64 6.6.38-1.amzn2 Kernel Configuration\n#\nCONFIG_X=y\n")  # fmt: skip
    line3 = cfg.read_text().splitlines()[2]
    parts = line3.replace("/", " ").replace("-", " ").split(" ")
    opts = {"build_time": TIME, "img_os": parts[1], "img_kernel": parts[3]}
    assert (parts[1], parts[3]) == ("Linux", "6.6.38")
    out = tmp_path / "out.eif"
    args = cli_args({"build_time": TIME}, tmp_path, [tmp_path / "rd0"], out)
    assert main([*args, "--kernel-config", str(cfg)]) == 0
    assert out.read_bytes() == model_eif(opts, RAMDISKS[:1])
    # explicit --img-os/--img-kernel still win over the config (unlike eif_build)
    assert main([*args, "--kernel-config", str(cfg), "--img-os", "X", "--img-kernel", "Y"]) == 0
    assert out.read_bytes() == model_eif({**opts, "img_os": "X", "img_kernel": "Y"}, RAMDISKS[:1])
