"""``pixelmill bench``: the benchmark harness.

The suites (:data:`SUITES`) time pixelmill's engines against each other and against other
libraries, check every result against a reference, and write ``results.csv``,
``results.json``, one PNG plot per suite and a ``report.md`` that states the conclusions.
A run with no suite named runs :data:`DEFAULT_SUITES`; ``huge`` (images larger than memory,
:data:`OPT_IN`) runs only when named. Names are loaded on first use, so ``pixelmill --help``
does not pay for the harness.

>>> from pixelmill.bench import SUITES, DEFAULT_SUITES, BenchOptions
>>> list(SUITES)
['invert-scaling', 'convolve-speedup', 'filter-bank', 'peers', 'batch', 'huge']
>>> list(DEFAULT_SUITES)
['invert-scaling', 'convolve-speedup', 'filter-bank', 'peers', 'batch']
>>> BenchOptions(quick=True).resolved()["sizes"]
[1, 4, 12]
"""

import importlib

_WHERE = {
    "SUITES": "_suites", "DEFAULT_SUITES": "_suites", "OPT_IN": "_suites", "BenchRun": "_runner", "run_bench": "_runner",
    "BenchOptions": "_harness", "MemoryProbe": "_harness", "measure": "_harness",
    "Record": "_records", "RECORD_FIELDS": "_records", "load_results": "_records",
    "rerender": "_report", "QUICK_CAVEAT": "_report",
    "TARGETS": "_suites", "compute_targets": "_suites",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
