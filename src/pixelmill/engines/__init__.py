"""Engines: how work is scheduled (never what is computed), and the registry of them.

The registry (:data:`ENGINES`, one :class:`EngineSpec` per engine) is the one list the API, the
CLI, the tests and the benchmarks take engine names from. ``auto``'s cost model (the
calibration) lives here too, since only engine choice uses it.
"""

from __future__ import annotations

from ._base import Engine, usable_cores
from ._calibration import Calibration, Candidate, calibrate
from ._calibration import cache_path as calibration_path
from ._calibration import load as load_calibration
from ._stream import default_memory_limit, is_array_like, is_complete, iter_bands, plan_stream, stream_apply
from ._registry import ENGINES, EngineSpec, available_engines, check_engine, get_engine_class, make_engine

__all__ = [
    "Engine",
    "EngineSpec",
    "ENGINES",
    "available_engines",
    "check_engine",
    "get_engine_class",
    "make_engine",
    "usable_cores",
    "Calibration",
    "Candidate",
    "calibrate",
    "calibration_path",
    "load_calibration",
    "stream_apply",
    "iter_bands",
    "plan_stream",
    "is_array_like",
    "default_memory_limit",
    "is_complete",
]
