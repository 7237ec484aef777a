"""Moved to tests/helpers/imagegen.py; this alias keeps in-flight imports working and goes away once
nothing imports ``tests.imagegen`` any more."""

import sys

from tests.helpers import imagegen as _moved

sys.modules[__name__] = _moved
