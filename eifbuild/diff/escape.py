"""Re-exported from :mod:`eifbuild.textescape` (shared with the CLI and the rootfs warnings)."""

from __future__ import annotations

from eifbuild.textescape import safe_json, safe_str, safe_text

__all__ = ["safe_json", "safe_str", "safe_text"]
