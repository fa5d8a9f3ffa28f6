"""The engine registry: one list of engines for the API, the CLI, the tests and the benchmarks.

Engines are imported lazily, so ``import pixelmill`` stays fast and an engine whose optional
dependency is missing fails only when asked for, naming the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util

from ..errors import InvalidParameterError, MissingDependencyError
from ._base import Engine, usable_cores

__all__ = ["Engine", "ENGINES", "available_engines", "get_engine_class", "make_engine", "usable_cores"]

#: name -> (module, class, modules it needs, extra that installs them)
ENGINES: dict[str, tuple[str, str, tuple[str, ...], str | None]] = {
    "loops": ("pixelmill.engines._serial", "LoopsEngine", (), None),
    "numpy": ("pixelmill.engines._serial", "NumpyEngine", (), None),
    "numba": ("pixelmill.engines._numba", "NumbaEngine", ("numba",), "numba"),
    "threads": ("pixelmill.engines._threads", "ThreadsEngine", (), None),
    "processes": ("pixelmill.engines._processes", "ProcessesEngine", (), None),
    "joblib": ("pixelmill.engines._joblib", "JoblibEngine", ("joblib",), "joblib"),
    "dask": ("pixelmill.engines._dask", "DaskEngine", ("dask", "distributed"), "dask"),
    # Picks one of the above per call, from timings made once on this machine.
    "auto": ("pixelmill.engines._auto", "AutoEngine", (), None),
}


def _installed(modules: tuple[str, ...]) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def available_engines() -> list[str]:
    """Names of the registered engines whose dependencies are installed, in registry order.

    Examples
    --------
    >>> "numpy" in available_engines()
    True
    """
    return [
        name
        for name, (module, _, needs, _) in ENGINES.items()
        if _installed(needs) and importlib.util.find_spec(module) is not None
    ]


def get_engine_class(name: str) -> type[Engine]:
    """The engine class registered as ``name``.

    Raises
    ------
    InvalidParameterError
        For an unknown name (the message lists the known ones).
    MissingDependencyError
        When the engine's optional dependency is missing (the message names the extra).
    """
    if name not in ENGINES:
        raise InvalidParameterError(
            f"engine {name!r} is not known; use one of {', '.join(ENGINES)}"
        )
    module, cls, needs, extra = ENGINES[name]
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependencyError(
            f"engine {name!r} needs {', '.join(missing)}: pip install 'pixelmill[{extra}]'"
        )
    return getattr(importlib.import_module(module), cls)


def make_engine(name: str, workers: int | None = None, **options) -> Engine:
    """An engine instance; use it as a context manager so pools are released."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidParameterError(f"workers must be a positive integer, got {workers!r}")
    return get_engine_class(name)(workers=workers, **options)
