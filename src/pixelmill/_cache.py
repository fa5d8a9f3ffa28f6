"""Where pixelmill keeps what it measures or generates once per machine."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$PIXELMILL_CACHE``, else ``$XDG_CACHE_HOME/pixelmill``, else ``~/.cache/pixelmill``."""
    if os.environ.get("PIXELMILL_CACHE"):
        return Path(os.environ["PIXELMILL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pixelmill"
