"""The measuring machinery: options, timing with warm-up, peak memory, isolated workers.

How a number is made
--------------------
* Every *group* (one method of one suite: say ``dask`` in ``invert-scaling``) runs in a fresh
  Python process (``python -m pixelmill.bench._worker``) unless ``isolate=False``. So one
  method's caches, JIT-compiled code, thread pools or imported libraries never help or hurt
  another, and each process's memory high-water mark belongs to one method.
* Each measurement runs ``warmup`` untimed runs first (numba compiles, pools start, caches
  fill), then ``repeats`` timed runs; wall time is ``time.perf_counter``. The warm-up duration
  is kept (``warmup_s``) so start-up costs stay visible.
* Peak memory (``peak_rss_mb``) covers the timed runs: the measuring process's exact peak
  (Linux ``VmHWM``, reset before each measurement through ``/proc/self/clear_refs``) or, where
  that is not available, a sample; plus the peak resident memory of its child processes
  (process pools), sampled every 5 ms (from ``/proc`` on Linux, with psutil elsewhere).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import InvalidParameterError
from ._records import Record

__all__ = [
    "BenchOptions",
    "Group",
    "Measurement",
    "MemoryProbe",
    "ProcessRun",
    "measure",
    "run_group",
    "run_job",
    "run_process",
    "worker_env",
    "MEMORY_METHOD",
    "TIMING_METHOD",
]

MEMORY_METHOD = (
    "peak resident set size during the timed runs, in MB (2**20 bytes): the measuring process's "
    "exact high-water mark (Linux VmHWM, reset before each measurement via /proc/self/clear_refs; "
    "elsewhere sampled), plus the peak RSS of its child processes (process pools), sampled every "
    "5 ms from /proc (with psutil elsewhere). The two peaks are added: exact without child "
    "processes, an upper bound with them. Each method runs in its own fresh Python process, so "
    "the numbers include that process's interpreter, imported libraries and decoded inputs "
    "(see rss_before_mb)."
)
TIMING_METHOD = (
    "wall-clock time.perf_counter per run; `warmup` untimed run(s) first (JIT compilation, pool "
    "start-up; its duration is kept as warmup_s), then `repeats` timed runs; median, min, max, "
    "inter-quartile range and standard deviation over the timed runs. A measurement whose first "
    "timed run is slow gets fewer repeats (at least one) so it fits the per-measurement budget; "
    "the record says how many ran."
)


# -- options -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchOptions:
    """What to run and how big. ``None`` fields take the quick or the default value.

    Parameters
    ----------
    quick : bool
        Small sizes and fewer engines (not processes, joblib, dask, nor numba before its kernels
        are compiled on this machine), all in this process: indicative figures in about a minute and a half.
    library : str or path, optional
        A folder of images; by default a sample library generated once into the cache
        (``$PIXELMILL_CACHE`` or ``~/.cache/pixelmill``).
    sizes : tuple of int, optional
        Sample sizes (numbers of images) for ``invert-scaling``.
    workers : tuple of int, optional
        Worker counts for ``convolve-speedup`` (default 1..usable cores), and the worker count
        of the other suites' parallel runs (the largest one).
    repeats : int, optional
        Timed runs per measurement (3 quick, 5 otherwise).
    warmup : int
        Untimed runs before the timed ones.
    gaussian_size, sigma : int, float
        The Gaussian of ``convolve-speedup``, ``filter-bank``, ``peers`` and ``batch``.
    image_mp : float, optional
        Megapixels of the large image of ``convolve-speedup`` and ``peers``.
    engines : tuple of str, optional
        Restrict the pixelmill engines (default: every available engine).
    isolate : bool, optional
        Run each method in a fresh process (the default of a full run). ``False`` runs in this
        process, which lets caches and imports carry over between methods: the default of a quick
        run, where a fresh interpreter importing NumPy, numba and the peers for every method would
        take most of its time.
    seed : int
        Seed for picking images.
    budget_s : float, optional
        Seconds per measurement after which fewer repeats are run.
    huge_gp : float, optional
        Gigapixels of the ``huge`` suite's RGB TIFF (its zarr image is ten times as large):
        1.0 by default, 0.05 quick; tests run it at a few megapixels.
    """

    quick: bool = False
    library: str | None = None
    sizes: tuple[int, ...] | None = None
    workers: tuple[int, ...] | None = None
    repeats: int | None = None
    warmup: int = 1
    gaussian_size: int = 5
    sigma: float = 1.0
    image_mp: float | None = None
    engines: tuple[str, ...] | None = None
    isolate: bool | None = None
    seed: int = 0
    budget_s: float | None = None
    library_count: int | None = None
    library_max_pixels: int | None = None
    batch_images: int | None = None
    bank_mp: float | None = None
    huge_gp: float | None = None
    group_timeout_s: float = 1800.0

    def resolved(self) -> dict:
        """Concrete values for every option (quick or default), validated."""
        from ..engines import available_engines, usable_cores

        q = self.quick
        cores = usable_cores()
        repeats = self.repeats if self.repeats is not None else (3 if q else 5)
        if repeats < 1:
            raise InvalidParameterError(f"repeats must be at least 1, got {repeats!r}")
        if self.warmup < 0:
            raise InvalidParameterError(f"warmup must be 0 or more, got {self.warmup!r}")
        workers = tuple(self.workers) if self.workers else tuple(range(1, cores + 1))
        if any((not isinstance(w, int)) or w < 1 for w in workers):
            raise InvalidParameterError(f"workers must be positive integers, got {workers!r}")
        workers = tuple(sorted(set(workers)))
        if workers[0] != 1:
            workers = (1,) + workers  # speedup is measured against the one-worker run
        sizes = tuple(self.sizes) if self.sizes else ((1, 4, 12) if q else (10, 50, 100, 200))
        if any((not isinstance(s, int)) or s < 1 for s in sizes):
            raise InvalidParameterError(f"sizes must be positive numbers of images, got {sizes!r}")
        sizes = tuple(sorted(set(sizes)))
        engines = available_engines()
        if self.engines:
            unknown = [e for e in self.engines if e not in engines]
            if unknown:
                raise InvalidParameterError(
                    f"engines {unknown!r} are not available; available: {', '.join(engines)}"
                )
            engines = [e for e in engines if e in self.engines]
        elif q:
            # A quick run leaves out the engines slowest to start (a process pool, a loky pool,
            # a dask scheduler: seconds per measurement in a fresh process) that lose on small work
            # anyway, and numba until its kernels are compiled on this machine (the first time,
            # compiling them took most of a quick run); --engine names them, and the full run
            # times them all.
            from .._cache import numba_kernels_cached

            left_out = QUICK_LEAVES_OUT + (() if numba_kernels_cached() else ("numba",))
            engines = [e for e in engines if e not in left_out]
        if self.gaussian_size < 1 or self.gaussian_size % 2 == 0:
            raise InvalidParameterError(f"gaussian size must be a positive odd integer, got {self.gaussian_size!r}")
        if not self.sigma > 0:
            raise InvalidParameterError(f"sigma must be positive, got {self.sigma!r}")
        image_mp = self.image_mp if self.image_mp is not None else (2.0 if q else 24.0)
        if not image_mp > 0:
            raise InvalidParameterError(f"image size must be a positive number of megapixels, got {image_mp!r}")
        huge_gp = self.huge_gp if self.huge_gp is not None else (0.05 if q else 1.0)
        if not (isinstance(huge_gp, (int, float)) and huge_gp > 0):
            raise InvalidParameterError(f"the huge image must be a positive number of gigapixels, got {huge_gp!r}")
        return {
            "quick": q,
            "library": str(self.library) if self.library else None,
            # Only for the default (generated) library.
            "library_count": None if self.library else (self.library_count or (12 if q else 200)),
            "library_max_pixels": None if self.library else (self.library_max_pixels or (1_000_000 if q else None)),
            "sizes": list(sizes),
            "workers": list(workers),
            "max_workers": max(workers),
            "repeats": repeats,
            "warmup": self.warmup,
            "gaussian_size": self.gaussian_size,
            "sigma": self.sigma,
            "image_mp": image_mp,
            "bank_mp": self.bank_mp if self.bank_mp is not None else (1.0 if q else 6.0),
            "huge_gp": float(huge_gp),
            "batch_images": self.batch_images or (12 if q else 200),
            "engines": engines,
            "isolate": self.isolate if self.isolate is not None else not q,
            "seed": self.seed,
            "budget_s": self.budget_s if self.budget_s is not None else (2.0 if q else 60.0),
            # A quick run's figures are indicative anyway: shorter timed spans and fewer rounds in
            # turn keep it within its minute and a half.
            "min_timed_s": QUICK_MIN_TIMED_S if q else MIN_TIMED_S,
            "min_pairs": QUICK_MIN_PAIRS if q else MIN_PAIRS,
            "usable_cores": cores,
        }


# -- memory -------------------------------------------------------------------------------------------


_HWM = re.compile(r"VmHWM:\s+(\d+)\s+kB")


def _read_hwm(pid="self") -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            m = _HWM.search(fh.read())
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")  # "5": reset the peak RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _proc_rss(pid) -> int | None:
    """RSS in bytes from /proc/PID/statm (Linux), or None."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _proc_children(pid: int) -> list[int] | None:
    """Descendants of ``pid`` from /proc/PID/task/*/children (Linux; cheap), or None."""
    if not os.path.exists(f"/proc/{pid}/task/{pid}/children"):
        return None
    found, stack = [], [pid]
    while stack:
        p = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{p}/task/{task}/children", encoding="ascii") as fh:
                    kids = [int(k) for k in fh.read().split()]
            except (OSError, ValueError):
                continue
            found += kids
            stack += kids
    return found


#: Processes that multiprocessing and loky start beside the workers: in the memory peak, but
#: not counted as the run's processes.
HELPER_MARKERS = ("resource_tracker", "forkserver", "semaphore_tracker")
#: How often the memory probe looks for child processes (they are read every sample).
KIDS_REFRESH_S = 0.02


class MemoryProbe:
    """Peak resident memory of this process plus its children while the block runs, and the
    most processes of the run alive at once.

    See :data:`MEMORY_METHOD`. ``peak_mb``, ``before_mb`` and ``most_processes`` are set on
    exit. On Linux the samples read ``/proc`` directly (tens of microseconds), elsewhere psutil;
    either way the sampling thread wakes every ``interval`` seconds and finding child processes
    is refreshed at most every :data:`KIDS_REFRESH_S`, so its effect on the timings stays small.
    ``most_processes`` counts this process and its descendants less multiprocessing's and loky's
    helpers (:data:`HELPER_MARKERS`), as seen at those refreshes: a worker living for less than
    that may be missed; the pools timed here live for a whole run of the measured function.

    With ``pid`` the probe measures that process and its descendants instead of this one (a
    whole program started with :func:`run_process`): its own peak is the largest ``VmHWM`` read
    while it lived (a fresh process's high-water mark is its lifetime's), plus the children's
    sampled peak; an exited process counts as 0 from then on.
    """

    def __init__(self, interval: float = 0.005, *, pid: int | None = None):
        self.interval = interval
        self.peak_mb: float | None = None
        self.before_mb: float | None = None
        self.most_processes = 1
        self._root = pid

    def _refresh_kids(self):
        pids = _proc_children(self._pid) if self._linux else None
        if pids is None:
            try:
                pids = [p.pid for p in self._proc.children(recursive=True)]
            except Exception:  # noqa: BLE001 - a vanished process is not an error here
                pids = []
        self._kids = pids
        workers = sum(1 for pid in pids if self._is_helper(pid) is False)
        self.most_processes = max(self.most_processes, 1 + workers)

    def _is_helper(self, pid: int) -> bool | None:
        """True for a multiprocessing/loky helper, False for a worker, None while undecided."""
        if pid in self._kinds:
            return self._kinds[pid]
        try:
            import psutil

            cmd = " ".join(psutil.Process(pid).cmdline())
        except Exception:  # noqa: BLE001 - gone already
            return None
        if not cmd:
            return None
        if cmd == self._own_cmd and pid not in self._forked:
            # A fork that may not have exec'd yet (a helper about to start, say): undecided until a
            # later refresh; one still like this then is a forked worker (multiprocessing's "fork").
            self._forked.add(pid)
            return None
        self._kinds[pid] = any(m in cmd for m in HELPER_MARKERS)
        return self._kinds[pid]

    def _sample(self) -> tuple[int, int]:
        now = time.perf_counter()
        if now - self._kids_at > KIDS_REFRESH_S:
            self._refresh_kids()
            self._kids_at = now
        if self._root is not None:
            own = self._rss(self._pid)
            hwm = _read_hwm(self._pid) if self._linux else None
            if hwm is not None:
                self._root_hwm = max(self._root_hwm, hwm)
            return own, sum(self._rss(kid) for kid in self._kids)
        own = _proc_rss(self._pid) if self._linux else None
        if own is None:
            own = self._proc.memory_info().rss
        return own, sum(self._rss(kid) for kid in self._kids)

    def _rss(self, pid: int) -> int:
        if self._linux:
            return _proc_rss(pid) or 0
        try:
            import psutil

            return psutil.Process(pid).memory_info().rss
        except Exception:  # noqa: BLE001 - a vanished process is not an error here
            return 0

    def _loop(self):
        while not self._stop.wait(self.interval):
            own, kids = self._sample()
            self._peak_total = max(self._peak_total, own + kids)
            self._peak_kids = max(self._peak_kids, kids)

    def __enter__(self):
        import psutil

        self._pid = os.getpid() if self._root is None else self._root
        self._root_hwm = 0
        try:
            self._proc = psutil.Process(self._pid)
            self._own_cmd = " ".join(self._proc.cmdline())
        except Exception:  # noqa: BLE001 - a measured program may be gone already
            self._own_cmd = ""
        self._kinds: dict[int, bool] = {}
        self._forked: set[int] = set()
        self._linux = os.path.exists(f"/proc/{os.getpid()}/statm")
        self._kids, self._kids_at = [], -1.0
        self._exact = _reset_hwm() if self._root is None else False
        own, kids = self._sample()
        self.before_mb = (own + kids) / 2**20
        self._peak_total, self._peak_kids = own + kids, kids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pixelmill-bench-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        own, kids = self._sample()
        peak = max(self._peak_total, own + kids)
        hwm = _read_hwm() if self._exact else None
        if hwm is not None:
            # The exact own peak plus the children's sampled peak: exact without children,
            # an upper bound with them (the two peaks need not coincide).
            peak = max(peak, hwm + self._peak_kids)
        if self._root is not None:
            peak = max(peak, self._root_hwm + self._peak_kids)
        self.peak_mb = peak / 2**20
        return False


# -- timing ----------------------------------------------------------------------------------------------


@dataclass
class Measurement:
    times: list[float]
    warmup_s: float | None
    peak_mb: float | None
    before_mb: float | None
    result: object = None
    #: The most processes of the run alive at once (see :class:`MemoryProbe`).
    processes: int = 1


#: Engines a quick run (``quick=True``) does not time unless they are named.
QUICK_LEAVES_OUT = ("processes", "joblib", "dask")

#: Timed runs of a fast measurement continue until they add up to this many seconds...
MIN_TIMED_S = 0.5
#: ...but to at most this many times the requested repeats.
MAX_REPEAT_FACTOR = 10


def timing(spec: dict) -> dict:
    """The keyword arguments of :func:`measure` a suite's ``spec`` sets (repeats, warm-up, budget,
    shortest timed span), as :meth:`Context.spec_common` put them there."""
    return {key: spec[key] for key in ("repeats", "warmup", "budget_s", "min_timed_s") if key in spec}


def measure(fn: Callable[[], object], *, repeats: int, warmup: int = 1, budget_s: float | None = None,
            keep_result: bool = True, setup: Callable[[], None] | None = None,
            min_timed_s: float | None = None) -> Measurement:
    """Run ``fn`` ``warmup`` times untimed, then up to ``repeats`` times timed.

    After the first timed run, the number of further runs is cut so that the measurement
    stays within ``budget_s`` seconds (always at least one timed run); a fast run is instead
    repeated more, until the timed runs take ``min_timed_s`` (:data:`MIN_TIMED_S`) in all (at most
    :data:`MAX_REPEAT_FACTOR` times ``repeats``): five runs of a few milliseconds say more
    about the machine's noise than about the code. The last run's return
    value is kept in ``result`` (for checking); earlier results are dropped before the next run
    so they do not inflate the memory peak. ``setup`` runs, untimed, before every run.
    """
    if min_timed_s is None:
        min_timed_s = MIN_TIMED_S
    warmup_s = None
    result = None
    for k in range(warmup):
        result = None
        if setup:
            setup()
        t0 = time.perf_counter()
        result = fn()
        if k == 0:
            warmup_s = time.perf_counter() - t0
    result = None
    times: list[float] = []
    with MemoryProbe() as probe:
        n = repeats
        while len(times) < n:
            result = None
            if setup:
                setup()
            t0 = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t0)
            if len(times) == 1 and times[0] > 0:
                if times[0] * repeats < min_timed_s:
                    n = min(repeats * MAX_REPEAT_FACTOR, math.ceil(min_timed_s / times[0]))
                if budget_s is not None:
                    n = max(1, min(n, int(budget_s // times[0])))
    return Measurement(times, warmup_s, probe.peak_mb, probe.before_mb, result if keep_result else None,
                       processes=probe.most_processes)


#: Fewest rounds :func:`pair_with_delegate` times (unless its budget runs out): enough that
#: the median ratio stands when a few rounds are disturbed by other load or by the allocator.
MIN_PAIRS = 9

#: A quick run's :data:`MIN_PAIRS` and :data:`MIN_TIMED_S`.
QUICK_MIN_PAIRS = 5
QUICK_MIN_TIMED_S = 0.2

#: A rival that takes this many times auto's time in the first timed round is not timed on:
#: it cannot be the fastest member, and the rounds' budget is better spent on those that can.
RIVAL_OUT_OF_REACH = 1.5

#: A rival whose untimed first run (pool start, JIT load included) takes this many times
#: auto's time, and over a second, is not timed at all: even allowing for its start-up it is
#: out of reach, and each of its rounds would cost many of auto's.
WARMUP_OUT_OF_REACH = 10


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median over rounds of one member's time over another's, rounds matched by position
    (as :func:`time_in_turn` returns them).

    >>> median_ratio([2.0, 3.0, 9.0], [1.0, 1.0, 1.0])
    3.0
    """
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def time_in_turn(members: dict[str, Callable[[], object]], *, rounds: int, budget_s: float | None = None,
                 drop_after_first: Callable[[dict], list[str]] | None = None) -> dict[str, list[float]]:
    """Each member's wall times over ``rounds`` rounds (fewer once ``budget_s`` is spent), every
    member once a round: a shuffled order, then that order reversed, so each member follows
    different ones (a run after a pool's busy round is slower) and every two precede each
    other alike. ``drop_after_first(times)`` names members not to time after the first round.

    >>> times = time_in_turn({"a": lambda: None, "b": lambda: None}, rounds=4)
    >>> sorted((k, len(v)) for k, v in times.items())
    [('a', 4), ('b', 4)]
    """
    times: dict[str, list[float]] = {label: [] for label in members}
    members = dict(members)
    start = time.perf_counter()
    shuffle = random.Random(0).shuffle
    previous: list[str] = []
    for k in range(rounds):
        order = list(members)
        if k % 2 == 0:
            shuffle(order)
        else:
            order = [label for label in reversed(previous) if label in members]
        previous = order
        for label in order:
            t0 = time.perf_counter()
            members[label]()
            times[label].append(time.perf_counter() - t0)
        if k == 0 and drop_after_first is not None:
            for label in drop_after_first(times):
                del members[label], times[label]
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
    return times


def pair_with_delegate(rec: Record, engine, work: Callable[[object], object], *, runs: int,
                       min_pairs: int = MIN_PAIRS, budget_s: float | None = None, rivals: tuple[str, ...] | list[str] = (),
                       shape: tuple[int, ...] = (1, 1), itemsize: int = 1) -> Record:
    """For an ``auto`` record: time ``work(engine)``, ``work(the engine auto went to)`` and
    ``work(rival)`` for each engine named in ``rivals`` in turn, in this process
    (:func:`time_in_turn`), and keep the medians of the per-round ratios.

    ``rec.auto_paired`` is auto's time over the engine it went to: what choosing and
    dispatching cost. ``rec.auto_vs_paired_best`` is auto's time over the fastest member's
    (the largest of the per-member medians), named in ``rec.paired_best``: how good the
    choice was as well, judged where the machine's drift cannot enter: two methods timed in
    different processes minutes apart differ on a shared machine even when they run the same
    code, and in-memory runs also differ by whether the allocator hands out fresh pages. A rival runs once untimed first (its pool or JIT starts), and is left out if that
    took :data:`WARMUP_OUT_OF_REACH` times auto's time and over a second; one that takes more
    than :data:`RIVAL_OUT_OF_REACH` times auto's time in the first round is not timed on.
    At least ``min_pairs`` rounds (:data:`MIN_PAIRS`; within ``budget_s``), as single rounds of a run that
    allocates large outputs vary widely even against the very same pool. Parallel rivals
    get ``engine.workers``, the others one. Other engines, and calls ``auto`` split over
    several engines, leave ``rec`` as it is.

    The engine auto went to is built here from ``engine.last_choice``, with the tile shape auto
    gives it for an image of ``shape`` and an output of ``itemsize`` bytes a sample (the call's).
    It needs no untimed run: auto's candidates (numpy, numba, threads) share their compiled code
    with auto's own delegate in this process, and the one thread pool it starts in the first
    round is absorbed by the median over the rounds.
    """
    from contextlib import ExitStack

    from ..engines import Candidate, get_engine_class, make_engine

    choice = getattr(engine, "last_choice", None)
    if choice is None:
        return rec
    with ExitStack() as stack:
        delegate = stack.enter_context(make_engine(choice.engine, choice.workers))
        delegate.tile_shape = engine.tile_shape or choice.tile_shape(shape, itemsize)
        members = {"auto": engine, choice.label: delegate}
        t0 = time.perf_counter()
        work(engine)
        auto_s = time.perf_counter() - t0
        for name in rivals:
            workers = engine.workers if get_engine_class(name).parallel else 1
            label = Candidate(name, workers).label
            if name in ("auto", "loops") or (name, workers) == (choice.engine, choice.workers):
                continue  # the engine auto went to is timed as its delegate
            rival = make_engine(name, workers)
            t0 = time.perf_counter()
            work(rival)
            if time.perf_counter() - t0 > max(WARMUP_OUT_OF_REACH * auto_s, 1.0):
                rival.close()  # far out of reach even counting its start: not worth a round
                continue
            members[label] = stack.enter_context(rival)

        def out_of_reach(times):
            return [label for label in times if label not in ("auto", choice.label)
                    and times[label][0] > RIVAL_OUT_OF_REACH * times["auto"][0]]

        times = time_in_turn({label: (lambda e=e: work(e)) for label, e in members.items()},
                             rounds=max(min_pairs, runs), budget_s=budget_s, drop_after_first=out_of_reach)
    ratios = {label: median_ratio(times["auto"], ts) for label, ts in times.items() if label != "auto"}
    rec.auto_ran = choice.label
    rec.auto_paired = ratios[choice.label]
    rec.paired_best = max(ratios, key=ratios.get)
    rec.auto_vs_paired_best = ratios[rec.paired_best]
    return rec


def apply_measurement(rec: Record, m: Measurement, *, megapixels: float | None = None) -> Record:
    rec.set_times(m.times, megapixels=megapixels)
    rec.warmup_s = m.warmup_s
    rec.peak_rss_mb = m.peak_mb
    rec.rss_before_mb = m.before_mb
    return rec


# -- groups: one method of one suite, run in a fresh process ------------------------------------------------


@dataclass
class Group:
    """One method of one suite: ``target`` (``"module:function"``) is called with ``spec``.

    The function returns a list of :class:`Record` (or dicts). ``spec`` must be JSON-serialisable:
    it crosses a process boundary.
    """

    suite: str
    method: str
    kind: str
    target: str
    spec: dict = field(default_factory=dict)


def _call(target: str, spec: dict) -> list[dict]:
    module, _, func = target.partition(":")
    fn = getattr(importlib.import_module(module), func)
    out = []
    for rec in fn(spec):
        out.append(rec.to_dict() if isinstance(rec, Record) else dict(rec))
    return out


def _error_record(group: Group, message: str) -> Record:
    return Record(suite=group.suite, method=group.method, kind=group.kind, case="*", status="error",
                  notes=message[-2000:])


def run_group(group: Group, *, workdir: Path, isolate: bool = True, timeout: float = 1800.0) -> list[Record]:
    """Run ``group`` (in a fresh Python process when ``isolate``) and return its records.

    A failure never stops the benchmark: it becomes an ``error`` record naming the cause.
    """
    if not isolate:
        try:
            return [Record.from_dict(d) for d in _call(group.target, group.spec)]
        except Exception as exc:  # noqa: BLE001 - reported in the results instead
            return [_error_record(group, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")]
    run = run_job(group.target, group.spec, workdir=workdir, name=f"{group.suite}--{group.method}",
                  timeout=timeout, measure_memory=False)
    if run.timed_out:
        return [_error_record(group, f"timed out after {timeout:g} s")]
    if run.failed:
        return [_error_record(group, f"worker exited with code {run.returncode}: {run.stderr_tail}")]
    return [Record.from_dict(d) for d in run.result]


def worker_env() -> dict:
    """This process's environment with this very pixelmill first on ``PYTHONPATH``, installed or
    not: what every process the benchmark starts (workers, measured programs, cluster workers) runs with."""
    src = str(Path(__file__).resolve().parents[2])
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p))


@dataclass
class ProcessRun:
    """One program run by :func:`run_process`: its wall time (start to exit, interpreter start-up
    included, as its user pays it), the peak RSS of its process tree, and how it ended."""

    seconds: float
    peak_mb: float | None
    returncode: int | None
    processes: int = 1
    stdout: str = ""
    stderr_tail: str = ""
    timed_out: bool = False
    #: For :func:`run_job`: what the job function returned (a list of dicts), else None.
    result: list | None = None

    @property
    def failed(self) -> bool:
        return self.timed_out or self.returncode != 0


def run_process(argv: list[str], *, stderr_path: Path, env: dict | None = None, timeout: float = 1800.0,
                measure_memory: bool = True, capture_stdout: bool = False) -> ProcessRun:
    """Run ``argv`` as a whole program and measure it from outside: wall time, and (with
    ``measure_memory``) the peak RSS of its process tree (:class:`MemoryProbe` with ``pid``),
    which leaves out this process and anything else it started. stderr goes to
    ``stderr_path``; a program still running after ``timeout`` seconds is killed with its tree."""
    from contextlib import nullcontext

    with open(stderr_path, "w", encoding="utf-8") as errfh:
        t0 = time.perf_counter()
        # Its own session, so a timeout or Ctrl-C also ends the program's pool processes.
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
                                stderr=errfh, env=env if env is not None else worker_env(),
                                start_new_session=os.name == "posix", text=True)
        timed_out = False
        probe = MemoryProbe(pid=proc.pid) if measure_memory else None
        try:
            with probe if probe is not None else nullcontext():
                try:
                    stdout, _ = proc.communicate(timeout=timeout)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    stdout = ""
                    _kill_tree(proc)
        except BaseException:
            _kill_tree(proc)
            raise
        seconds = time.perf_counter() - t0
    tail = " | ".join(Path(stderr_path).read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:])
    return ProcessRun(seconds=seconds, peak_mb=probe.peak_mb if probe else None, returncode=proc.returncode,
                      processes=probe.most_processes if probe else 1, stdout=stdout or "", stderr_tail=tail,
                      timed_out=timed_out)


def run_job(target: str, spec: dict, *, workdir: Path, name: str, timeout: float = 1800.0,
            measure_memory: bool = True) -> ProcessRun:
    """``target(spec)`` (``"module:function"``) in a fresh Python process (``python -m
    pixelmill.bench._worker``), measured as a whole program by :func:`run_process`; what the
    function returned is in ``result``."""
    jobs = Path(workdir) / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    stem = f"{name}--{os.getpid()}-{time.monotonic_ns()}"
    job, out, err = jobs / f"{stem}.json", jobs / f"{stem}.out.json", jobs / f"{stem}.stderr.txt"
    job.write_text(json.dumps({"target": target, "spec": spec, "out": str(out)}), encoding="utf-8")
    run = run_process([sys.executable, "-m", "pixelmill.bench._worker", str(job)], stderr_path=err,
                      timeout=timeout, measure_memory=measure_memory)
    if not run.failed:
        if out.exists():
            run.result = json.loads(out.read_text(encoding="utf-8"))
        else:
            run.returncode = run.returncode or -1
    return run


def _kill_tree(proc: subprocess.Popen) -> None:
    try:
        if os.name == "posix":
            import signal

            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except OSError:
        pass
    proc.wait()


def worker_main(argv: list[str]) -> int:
    """Entry point of ``python -m pixelmill.bench._worker JOB.json``."""
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        records = _call(job["target"], job["spec"])
    except Exception as exc:  # noqa: BLE001
        spec = job["spec"]
        rec = Record(suite=spec.get("suite", "?"), method=spec.get("method", "?"), kind=spec.get("kind", "engine"),
                     case="*", status="error", notes=f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"[-2000:])
        records = [rec.to_dict()]
    tmp = Path(job["out"] + ".tmp")
    tmp.write_text(json.dumps(records), encoding="utf-8")
    os.replace(tmp, job["out"])
    return 0
