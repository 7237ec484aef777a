"""Moved to tests/helpers/certs.py; this alias keeps in-flight imports working and goes away once
nothing imports ``tests.certs`` any more."""

import sys

from tests.helpers import certs as _moved

sys.modules[__name__] = _moved
