"""What the benchmark needs beyond the core library: the ``bench`` extra."""

from __future__ import annotations

import importlib.util

from ..errors import MissingDependencyError

__all__ = ["INSTALL", "REQUIRED", "require"]

INSTALL = "pip install 'pixelmill[bench]'"

#: Modules every run needs: psutil for the memory probe and the machine's description,
#: matplotlib for the plots. A missing peer library is not an error: its records say
#: ``not installed``.
REQUIRED = ("psutil", "matplotlib")


def _missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):  # a broken or blocked package
        return True


def require(modules: tuple[str, ...] = REQUIRED) -> None:
    """Raise :class:`~pixelmill.errors.MissingDependencyError`, naming the extra, if any of
    ``modules`` is not installed.

    Examples
    --------
    >>> require(("os",))
    >>> require(("no_such_module_here",))
    Traceback (most recent call last):
    ...
    pixelmill.errors.MissingDependencyError: the benchmark needs no_such_module_here: pip install 'pixelmill[bench]'
    """
    missing = [m for m in modules if _missing(m)]
    if missing:
        raise MissingDependencyError(f"the benchmark needs {', '.join(missing)}: {INSTALL}")
