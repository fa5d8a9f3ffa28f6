"""Benchmark records, the run header, and the files they are written to.

A :class:`Record` is one measurement: one (suite, method, case, size, workers) cell of an
experiment grid, with its timing statistics over the timed repeats, peak memory, and the
result of checking its output against the reference. A run is a header (machine, versions,
options) plus records; conclusions and targets are computed from the records afterwards, so
``results.json`` can always be re-reported.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

__all__ = [
    "Record",
    "RECORD_FIELDS",
    "timing_stats",
    "machine_info",
    "library_versions",
    "write_csv",
    "write_json",
    "load_results",
    "SCHEMA_VERSION",
]

SCHEMA_VERSION = 1

@dataclass
class Record:
    """One measurement.

    Attributes
    ----------
    suite, method, case : str
        The suite (``invert-scaling``...), the method (an engine name such as ``dask``, a peer
        such as ``cv2``, or a baseline such as ``memcpy``) and the case (``invert``,
        ``gaussian-5-1``, ``bank:at-once``, ``startup``...).
    kind : str
        ``engine`` (a pixelmill engine), ``peer`` (another library) or ``baseline`` (a floor
        such as memcpy or decode+encode).
    size, size_unit : float, str
        The x-axis of the suite: number of images (``images``) or megapixels (``MP``).
    workers : int or None
        Parallel workers (threads or processes) the method was allowed; None when it does not apply.
    repeats : int
        Timed runs (after ``warmup`` untimed ones). Statistics are over these.
    median_s, min_s, max_s, iqr_s, stdev_s : float
        Wall-clock seconds (``time.perf_counter``) per run.
    times_s : list of float
        Every timed run (JSON only).
    warmup_s : float
        Duration of the (first) untimed warm-up run: includes JIT compilation and pool start-up.
    megapixels, mp_per_s : float
        Megapixels processed per run and the throughput at the median time.
    peak_rss_mb, rss_before_mb : float
        Peak resident memory (this process plus its child processes) during the timed runs,
        and the resident memory just before them; see ``header["memory_method"]``.
    checked : bool
        True when the output was compared with the reference.
    max_abs_err, mean_abs_err, tolerance, match :
        The comparison: largest and mean absolute difference, the tolerance applied to
        ``tolerance_on`` (``max_abs_err`` unless stated) and whether it held.
    reference : str
        What the output was compared with.
    extrapolated : bool
        True when the time was measured on a subsample and scaled (``notes`` says how).
    status : str
        ``ok``, ``error``, ``not installed``, ``unsupported`` or ``skipped``.
    constant_rss_mb : float or None
        For batch engine runs: the peak RSS of the same run over tiny images, the part of
        the memory that does not grow with the images (see ``_batch.memory_budget``).
    auto_ran : str
        For ``auto``: the engine and workers its calls went to.
    auto_paired : float or None
        For ``auto``: the median over pairs of its time over that engine's, both timed
        alternately in the same process (:func:`._harness.pair_with_delegate`), so drift
        between runs cancels.
    speedup_paired : float or None
        For a run with more than one worker (``convolve-speedup``): the median over rounds of
        the one-worker run's time over this one's, the two timed in turn in one process.
    paired_best, auto_vs_paired_best : str, float or None
        For ``auto``: the fastest engine among that one and the suite's other engines timed
        in the same rounds, and the median over rounds of auto's time over its.
    notes : str
        Anything a reader needs to interpret the row (semantics that differ, subsamples...).
    figures : dict
        A suite's own measured values that have no column (the ``huge`` suite's cluster task
        and transfer counts, image sizes); JSON only.
    """

    suite: str
    method: str
    case: str
    kind: str = "engine"
    size: float | None = None
    size_unit: str = ""
    workers: int | None = None
    repeats: int = 0
    median_s: float | None = None
    min_s: float | None = None
    max_s: float | None = None
    iqr_s: float | None = None
    stdev_s: float | None = None
    warmup_s: float | None = None
    megapixels: float | None = None
    mp_per_s: float | None = None
    peak_rss_mb: float | None = None
    rss_before_mb: float | None = None
    checked: bool = False
    max_abs_err: float | None = None
    mean_abs_err: float | None = None
    tolerance: float | None = None
    tolerance_on: str = "max_abs_err"
    match: bool | None = None
    reference: str = ""
    extrapolated: bool = False
    status: str = "ok"
    constant_rss_mb: float | None = None
    auto_ran: str = ""
    auto_paired: float | None = None
    paired_best: str = ""
    auto_vs_paired_best: float | None = None
    speedup_paired: float | None = None
    notes: str = ""
    times_s: list[float] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    def set_times(self, times: list[float], *, megapixels: float | None = None) -> "Record":
        """Fill the timing statistics from the timed runs (and the throughput)."""
        self.times_s = [float(t) for t in times]
        self.repeats = len(times)
        self.__dict__.update(timing_stats(times))
        if megapixels is not None:
            self.megapixels = float(megapixels)
            if self.median_s and self.median_s > 0:
                self.mp_per_s = self.megapixels / self.median_s
        return self

    def set_check(self, errors: tuple[float, float] | None, *, tolerance: float, reference: str,
                  tolerance_on: str = "max_abs_err") -> "Record":
        """Record a comparison (``errors`` = (max abs, mean abs)) against ``reference``."""
        self.reference = reference
        self.tolerance = float(tolerance)
        self.tolerance_on = tolerance_on
        if errors is None:
            self.checked = False
            self.match = None
            return self
        self.checked = True
        self.max_abs_err, self.mean_abs_err = float(errors[0]), float(errors[1])
        value = self.max_abs_err if tolerance_on == "max_abs_err" else self.mean_abs_err
        self.match = bool(value <= self.tolerance)
        return self

    def to_dict(self) -> dict:
        return _clean(asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> "Record":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


#: Column order of results.csv (``times_s`` and ``figures`` are in results.json only).
RECORD_FIELDS = [f.name for f in fields(Record) if f.name not in ("times_s", "figures")]


def _clean(value):
    """JSON-safe: NaN/inf become None (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def timing_stats(times: list[float]) -> dict:
    """median, min, max, inter-quartile range and standard deviation of ``times`` (seconds).

    Examples
    --------
    >>> s = timing_stats([1.0, 2.0, 3.0, 4.0])
    >>> s["median_s"], s["min_s"], s["max_s"], s["iqr_s"]
    (2.5, 1.0, 4.0, 1.5)
    """
    if not times:
        return dict(median_s=None, min_s=None, max_s=None, iqr_s=None, stdev_s=None)
    ts = sorted(float(t) for t in times)
    if len(ts) >= 2:
        q = statistics.quantiles(ts, n=4, method="inclusive")
        iqr = q[2] - q[0]
        stdev = statistics.stdev(ts)
    else:
        iqr, stdev = 0.0, 0.0
    return dict(median_s=statistics.median(ts), min_s=ts[0], max_s=ts[-1], iqr_s=iqr, stdev_s=stdev)


# -- the header -----------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Cores (logical, physical, usable by this process), memory, CPU model and platform."""
    import psutil

    from ..engines import usable_cores

    mem = psutil.virtual_memory()
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": usable_cores(),
        "memory_total_gb": round(mem.total / 2**30, 2),
        "memory_available_gb": round(mem.available / 2**30, 2),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
    }


_VERSION_MODULES = (
    ("pixelmill", "pixelmill"), ("numpy", "numpy"), ("scipy", "scipy"), ("numba", "numba"),
    ("dask", "dask"), ("distributed", "distributed"), ("joblib", "joblib"), ("pillow", "PIL"),
    ("opencv", "cv2"), ("scikit-image", "skimage"), ("pyvips", "pyvips"), ("matplotlib", "matplotlib"),
    ("psutil", "psutil"), ("tifffile", "tifffile"),
)


def library_versions() -> dict:
    """Installed versions of pixelmill, its engines' libraries and the peers (None if absent).

    Uses package metadata, so nothing heavy is imported (libvips' own version is added by the
    peers suite, which loads it anyway).
    """
    from importlib import metadata

    dists = {"pillow": "pillow", "opencv": None, "scikit-image": "scikit-image"}
    out = {}
    for label, module in _VERSION_MODULES:
        version = None
        candidates = [dists.get(label, label)] if label != "opencv" else [
            "opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python"]
        for dist in candidates:
            if not dist:
                continue
            try:
                version = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
        out[label] = version
    return out


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# -- files ------------------------------------------------------------------------------------------


def _atomic_write(path: Path, text: str) -> None:
    from .._files import atomic_write

    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def write_csv(path, records: list[Record]) -> Path:
    """results.csv: one row per record, columns :data:`RECORD_FIELDS`."""
    import io

    path = Path(path)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=RECORD_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for rec in records:
        row = rec.to_dict()
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in RECORD_FIELDS})
    _atomic_write(path, buf.getvalue())
    return path


def write_json(path, document: dict) -> Path:
    """results.json (strict JSON: no NaN)."""
    path = Path(path)
    _atomic_write(path, json.dumps(_clean(document), indent=1, default=str) + "\n")
    return path


def load_results(path) -> tuple[dict, list[Record]]:
    """``(document, records)`` from a results.json written by :func:`write_json`."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    return document, [Record.from_dict(r) for r in document.get("records", [])]
