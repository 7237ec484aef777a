"""Explain why two EIFs' measurements differ ("why did PCR2 change?").

Three streaming passes per EIF, none of which keeps section contents in memory:

1. :meth:`EifReader.scan` gives PCR0/1/2/8 (the same code ``describe`` uses);
2. every measured input (kernel, cmdline, each ramdisk, the signing certificate) is hashed on
   its own with SHA-384, so a PCR difference can be traced to the input(s) that changed
   (:mod:`.facts`, compared in :mod:`.eif`);
3. for each pair of ramdisks whose bytes differ, both newc archives are read with the bounded
   :class:`~eifbuild.cpio.NewcReader` and compared entry by entry (:mod:`.entries`,
   :mod:`.archive`: content hashed with SHA-256 while it streams past; only per-entry
   attributes are kept, for the first archive).

Two ``eifbuild rootfs`` JSON-lines listings can be compared by path as well (:mod:`.listing`).
Comparisons return plain data (dicts/lists in sorted, deterministic order);
:mod:`eifbuild.diff.render` turns it into text, JSON or HTML (imported on its own: it needs
jinja2).
"""

from __future__ import annotations

from eifbuild.diff.archive import ArchiveDiff, EntryChange, diff_entries
from eifbuild.diff.eif import EIF_FORMAT, cmdline_diff, diff_eifs, metadata_diff
from eifbuild.diff.entries import DIFF_LIMITS, EntryInfo, read_entries
from eifbuild.diff.escape import safe_text
from eifbuild.diff.facts import EifFacts, InputDigest, gather, input_pcrs, section_stream
from eifbuild.diff.listing import (
    LISTING_FORMAT,
    diff_listings,
    input_kind,
    is_listing,
    read_listing,
)

__all__ = [
    "DIFF_LIMITS",
    "EIF_FORMAT",
    "LISTING_FORMAT",
    "ArchiveDiff",
    "EifFacts",
    "EntryChange",
    "EntryInfo",
    "InputDigest",
    "cmdline_diff",
    "diff_eifs",
    "diff_entries",
    "diff_listings",
    "gather",
    "input_kind",
    "input_pcrs",
    "is_listing",
    "metadata_diff",
    "read_entries",
    "read_listing",
    "safe_text",
    "section_stream",
]
