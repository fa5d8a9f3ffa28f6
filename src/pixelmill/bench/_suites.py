"""The suites: the one table of them, and the targets they declare.

Every suite module has ``NAME``, ``TITLE``, ``plan(ctx)``, ``analyse(records, opts)``,
``plot(records, analysis, path, opts)``, ``table(records, analysis, opts)`` and ``TARGETS``.
The runner and the report find them here; no suite imports this module.

A suite in :data:`OPT_IN` runs only when it is named (``pixelmill bench -o DIR huge``), never in
a full run, and its targets are listed only in the reports of runs that ran it. A suite module
with ``STANDALONE = True`` makes its own inputs: a run of such suites alone neither prepares
the image library nor measures ``auto``'s calibration.
"""

from __future__ import annotations

import importlib

from ..errors import InvalidParameterError
from ._targets import Target, evaluate

__all__ = ["SUITES", "OPT_IN", "DEFAULT_SUITES", "suite_module", "targets", "compute_targets", "TARGET_ORDER"]

#: Suite name -> module, in the order a run runs them.
SUITES = {
    "invert-scaling": "pixelmill.bench._invert_scaling",
    "convolve-speedup": "pixelmill.bench._convolve_speedup",
    "filter-bank": "pixelmill.bench._filter_bank",
    "peers": "pixelmill.bench._peers",
    "batch": "pixelmill.bench._batch",
    "huge": "pixelmill.bench._huge",
}

#: Suites that run only when named: ``huge`` writes tens of gigabytes and takes most of an hour.
OPT_IN = ("huge",)

#: What a run with no suite named runs.
DEFAULT_SUITES = tuple(name for name in SUITES if name not in OPT_IN)

#: Modules with targets that belong to no one suite.
CROSS_SUITE = ("pixelmill.bench._auto",)

#: The order report.md lists the targets in (targets not named here follow, in suite order).
TARGET_ORDER = (
    "invert-memcpy", "gaussian-vs-cv2", "disk15-vs-filter2D", "sobel-vs-cv2", "random15-vs-filter2D",
    "random31-vs-filter2D", "random63-vs-filter2D", "gaussian-sigma10-vs-cv2", "batch-vs-floor", "batch-vs-peers",
    "batch-gaussian-vs-peers", "efficiency-2", "auto-vs-best", "batch-memory",
    "huge-gaussian-rss", "huge-sobel-rss", "huge-gaussian-vs-pyvips", "huge-sobel-vs-pyvips", "huge-10x-rss",
    "huge-cluster-client-rss", "huge-cluster-identical",
)


def suite_module(name: str):
    if name not in SUITES:
        raise InvalidParameterError(f"suite {name!r} is not known; use one of {', '.join(SUITES)}")
    return importlib.import_module(SUITES[name])


def targets(ran=None) -> list[Target]:
    """Every suite's ``TARGETS`` in :data:`TARGET_ORDER`: the default suites' whichever suites a
    run ran, an :data:`OPT_IN` suite's only when it is in ``ran`` (all of them when ``ran`` is None)."""
    modules = [SUITES[name] for name in SUITES if ran is None or name not in OPT_IN or name in ran]
    found = [t for module in (*modules, *CROSS_SUITE) for t in importlib.import_module(module).TARGETS]
    rank = {tid: k for k, tid in enumerate(TARGET_ORDER)}
    return sorted(found, key=lambda t: rank.get(t.id, len(rank)))


def compute_targets(records, analyses: dict, opts: dict) -> list[dict]:
    """One row per target of :func:`targets` (an opt-in suite's when it ran: it has records or
    an analysis): measured ratio, threshold and ``pass``/``miss``/``not measured``."""
    ran = set(analyses) | {r.suite for r in records}
    return evaluate(targets(ran), records, analyses, opts)


def __getattr__(name):
    if name == "TARGETS":
        return targets()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
