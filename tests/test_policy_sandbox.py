"""User policy templates (``eifbuild policy --template``) run in jinja2's sandbox, bounded.

Each hostile template is generated here and rendered through the same function the CLI
uses; every failure is one PolicyError line, and nothing outside the template runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import eifbuild.policy.render as policy  # the render limits live in the render module
from eifbuild.policy import PolicyError, render_policy

CTX = {
    "account_id": "111122223333",
    "partition": "aws",
    "root_arn": "arn:aws:iam::111122223333:root",
    "role_arn": "arn:aws:iam::111122223333:role/r",
    "actions": ["kms:Decrypt"],
    "conditions": {},
    "pcrs": {},
}


def render(tmp_path: Path, text: str) -> str:
    tpl = tmp_path / "t.j2"
    tpl.write_text(text)
    return render_policy(CTX, tpl)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ 1/0 }}", "ZeroDivisionError"),
        ('{{ int("x") + [] }}', "template failed to render"),
        ('{% include "/etc/passwd" %}', "template failed to render"),
        ('{% import "x" as y %}', "template failed to render"),
        ('{% extends "x" %}', "template failed to render"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
        ("{{ '[' * 100000 }}{{ ']' * 100000 }}", "nested too deeply"),
        ('{% for i in range(100000) %}{{ "x" * 100 }}{% endfor %}', "output exceeds 1048576"),
        ("{{ range(10**9)|list }}", "template failed to render"),
        ("{% if 1 %}" * 3000 + "{% endif %}" * 3000, "nested too deeply"),
    ],
)
def test_hostile_templates_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=None) as info:
        render(tmp_path, text)
    assert message in info.value.message and "\n" not in info.value.message


def test_template_cannot_run_commands(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    attempts = [
        f"{{{{ cycler.__init__.__globals__.os.system('touch {canary}') }}}}",
        f"{{{{ self.__init__.__globals__.__builtins__.__import__('os').system('touch {canary}') }}}}",
        f"{{{{ lipsum.__globals__['os'].popen('touch {canary}').read() }}}}",
    ]
    for text in attempts:
        with pytest.raises(PolicyError):
            render(tmp_path, text)
    assert not canary.exists()


def test_render_time_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy, "MAX_RENDER_SECONDS", 1)
    spin = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{}"
    with pytest.raises(PolicyError, match="took more than 1 s"):
        render(tmp_path, spin)


def test_a_good_template_still_renders(tmp_path: Path) -> None:
    out = render(tmp_path, '{"Version": "2012-10-17", "Id": {{ account_id|tojson }}}')
    assert out == '{\n  "Version": "2012-10-17",\n  "Id": "111122223333"\n}\n'
