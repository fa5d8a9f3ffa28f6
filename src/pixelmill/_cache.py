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


def ensure_numba_cache() -> str | None:
    """Give numba a writable cache folder when the one next to pixelmill's sources is not.

    pixelmill's numba kernels are cached on disk (``cache=True``), by default in ``__pycache__``
    next to ``pixelmill/ops/_numba.py``, else in the user's cache folder. With neither writable
    (a read-only install and no writable HOME: a container user) numba refuses to compile them
    at all ("cannot cache function"). So, unless ``NUMBA_CACHE_DIR`` is set already, this sets
    it -- before numba is imported -- to ``<pixelmill cache>/numba`` or, failing that, a private
    folder in the temporary directory. Returns the folder set, or None when nothing was needed.
    Cheap (a few ``stat`` calls): ``import pixelmill`` runs it.
    """
    if os.environ.get("NUMBA_CACHE_DIR") or "numba" in __import__("sys").modules:
        return None
    ops = Path(__file__).resolve().parent / "ops"
    pycache = ops / "__pycache__"
    if _writable(pycache if pycache.is_dir() else ops):
        return None
    for folder in _numba_cache_candidates():
        if folder is not None:
            os.environ["NUMBA_CACHE_DIR"] = str(folder)
            return str(folder)
    return None


def _numba_cache_candidates():
    try:
        folder = default_cache_dir() / "numba"
        folder.mkdir(parents=True, exist_ok=True)
        if _writable(folder):
            yield folder
    except (OSError, RuntimeError):  # RuntimeError: Path.home() without a home
        pass
    yield _private_temp_folder()


def _private_temp_folder() -> Path | None:
    """``$TMPDIR/pixelmill-numba-<uid>``, only if it is this user's alone (numba's cache files
    are loaded as code: a folder another user could write in would let them run theirs)."""
    import tempfile

    uid = os.getuid() if hasattr(os, "getuid") else None
    folder = Path(tempfile.gettempdir()) / f"pixelmill-numba-{uid if uid is not None else 'user'}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(folder)
        import stat

        if stat.S_ISDIR(st.st_mode) and (uid is None or st.st_uid == uid) and not st.st_mode & 0o022:
            return folder
    except OSError:
        pass
    try:
        return Path(tempfile.mkdtemp(prefix="pixelmill-numba-"))
    except OSError:
        return None


def _writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def numba_kernels_cached() -> bool:
    """Whether pixelmill's numba kernels have been compiled and cached on this machine (numba's
    index files for ``pixelmill/ops/_numba.py`` are in its cache folder), without importing
    numba: ``NUMBA_CACHE_DIR`` (any folder under it), else ``__pycache__`` beside the sources.
    A quick benchmark times numba only then: compiling its kernels the first time takes tens of
    seconds, more than the rest of a quick run."""
    custom = os.environ.get("NUMBA_CACHE_DIR")
    if custom:
        return any(Path(custom).glob("**/_numba.*.nbi"))
    pycache = Path(__file__).resolve().parent / "ops" / "__pycache__"
    return any(pycache.glob("_numba.*.nbi"))
