"""Where eifbuild's run-time data directories (``templates/``, ``kernels/``) live.

In a source checkout they are top-level directories next to the ``eifbuild`` package; a wheel
installs them as data files under ``<prefix>/share/eifbuild/<name>`` (see pyproject.toml).
``$EIFBUILD_<NAME>_DIR`` overrides both.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from pathlib import Path

from eifbuild.errors import EifbuildError

_CHECKOUT = Path(__file__).resolve().parent.parent


def env_var(name: str) -> str:
    """The override variable for resource ``name``: ``EIFBUILD_<NAME>_DIR``."""
    return f"EIFBUILD_{name.upper()}_DIR"


def candidates(name: str) -> list[Path]:
    """Where resource directory ``name`` is looked for, in order (without the override)."""
    found = [_CHECKOUT / name] if (_CHECKOUT / "pyproject.toml").is_file() else []
    for base in (sys.prefix, sysconfig.get_path("data"), site.getuserbase()):
        d = Path(base) / "share" / "eifbuild" / name
        if d not in found:
            found.append(d)
    return found


def resource_dir(name: str, marker: str, error: type[EifbuildError] = EifbuildError) -> Path:
    """The directory of resource ``name`` that holds the file ``marker`` (a relative path).

    ``$EIFBUILD_<NAME>_DIR`` wins when set; then the source checkout; then the installed data
    under ``sys.prefix`` (and the other install schemes). Raises ``error`` naming the override.
    """
    var = env_var(name)
    override = os.environ.get(var)
    looked = [Path(override)] if override else candidates(name)
    for d in looked:
        if (d / marker).is_file():
            return d
    where = ", ".join(str(d) for d in looked)
    raise error(
        f"eifbuild {name} not found (no {marker} in {where}): "
        f"set {var} to the {name}/ directory or reinstall eifbuild"
    )
