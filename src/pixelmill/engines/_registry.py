"""The engine registry: one list of engines for the API, the CLI, the tests and the benchmarks.

Engines are imported lazily, so ``import pixelmill`` stays fast and an engine whose optional
dependency is missing fails only when asked for, naming the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from ..errors import InvalidParameterError, MissingDependencyError

__all__ = ["EngineSpec", "ENGINES", "available_engines", "get_engine_class", "make_engine", "check_engine"]


@dataclass(frozen=True)
class EngineSpec:
    """Where an engine's class lives and what it needs.

    Attributes
    ----------
    name : str
        The registry name (``--engine``).
    module, cls : str
        Module and class name, imported on first use.
    needs : tuple of str
        Modules that must be importable (optional dependencies).
    extra : str or None
        The ``pip install 'pixelmill[EXTRA]'`` that installs ``needs``.
    """

    name: str
    module: str
    cls: str
    needs: tuple[str, ...] = ()
    extra: str | None = None

    @property
    def installed(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.needs)

    def load(self):
        """The engine class; a :class:`MissingDependencyError` naming the extra if it cannot run here."""
        missing = [m for m in self.needs if importlib.util.find_spec(m) is None]
        if missing:
            raise MissingDependencyError(
                f"engine {self.name!r} needs {', '.join(missing)}: pip install 'pixelmill[{self.extra}]'"
            )
        return getattr(importlib.import_module(self.module), self.cls)


def _spec(name, module, cls, needs=(), extra=None) -> tuple[str, EngineSpec]:
    return name, EngineSpec(name, f"pixelmill.engines.{module}", cls, needs, extra)


#: name -> :class:`EngineSpec`, in the order the docs list the engines.
ENGINES: dict[str, EngineSpec] = dict([
    _spec("loops", "_serial", "LoopsEngine"),
    _spec("numpy", "_serial", "NumpyEngine"),
    _spec("numba", "_numba", "NumbaEngine", ("numba",), "numba"),
    _spec("threads", "_threads", "ThreadsEngine"),
    _spec("processes", "_processes", "ProcessesEngine"),
    _spec("joblib", "_joblib", "JoblibEngine"),
    _spec("dask", "_dask", "DaskEngine", ("dask", "distributed"), "dask"),
    # Picks one of the above per call, from timings made once on this machine.
    _spec("auto", "_auto", "AutoEngine"),
])


def available_engines() -> list[str]:
    """Names of the registered engines whose dependencies are installed, in registry order.

    Examples
    --------
    >>> "numpy" in available_engines()
    True
    """
    return [name for name, spec in ENGINES.items() if spec.installed]


def check_engine(name) -> str:
    """``name`` if it is a registered engine; else an :class:`InvalidParameterError` listing them."""
    if not isinstance(name, str) or name not in ENGINES:
        raise InvalidParameterError(f"engine {name!r} is not known; use one of {', '.join(ENGINES)}")
    return name


def get_engine_class(name: str):
    """The engine class registered as ``name``.

    Raises
    ------
    InvalidParameterError
        For an unknown name (the message lists the known ones).
    MissingDependencyError
        When the engine's optional dependency is missing (the message names the extra).
    """
    return ENGINES[check_engine(name)].load()


def make_engine(name: str, workers: int | None = None, **options):
    """An engine instance; use it as a context manager so pools are released."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidParameterError(f"workers must be a positive integer, got {workers!r}")
    return get_engine_class(name)(workers=workers, **options)
