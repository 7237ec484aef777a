"""Moved to tests/helpers/blobgen.py; this alias keeps in-flight imports working and goes away once
nothing imports ``tests.blobgen`` any more."""

import sys

from tests.helpers import blobgen as _moved

sys.modules[__name__] = _moved
