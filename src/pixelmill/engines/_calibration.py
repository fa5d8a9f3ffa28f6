"""Calibration for ``engine="auto"``: which engine, worker count and tile size is fastest here.

Which strategy wins depends on the machine (cores, caches, memory bandwidth), the operation and
the image size: below some size a pool costs more than it saves. Rather than guess, pixelmill
times every candidate once on this machine -- each kind of work (:data:`WORK_CLASSES`) on
synthetic RGB photographs of a few sizes -- and keeps the table as JSON in the cache folder
(``$PIXELMILL_CACHE``, else ``$XDG_CACHE_HOME/pixelmill``, else ``~/.cache/pixelmill``), keyed by
the machine and the library versions, so it is measured again only when one of them changes.

The cost model reads that table: a candidate's time at any size is interpolated between the
measured sizes (log-log; linear in megapixels above the largest), and ``auto`` takes the
candidate with the smallest predicted time (:meth:`Calibration.best`). ``pixelmill calibrate``
measures and prints it.

Candidates are the engines that compute one image in this process or on threads: ``numpy``,
``numba`` with 1..N threads, ``threads`` with 2..N workers and two tile sizes. Process pools
(``processes``, ``joblib``, ``dask``) are not candidates for one image in memory: the image must
be copied to them and back, which costs more than it gains on this kind of work (the
``convolve-speedup`` benchmark shows it). For a library of images the batch layer runs whole
images on a thread pool instead (:func:`pixelmill.batch.plan_schedule`).
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._cache import default_cache_dir
from .._version import __version__

__all__ = ["Candidate", "Calibration", "WORK_CLASSES", "SIZES_MP", "QUICK_SIZES_MP", "work_class", "load",
           "calibrate", "cache_path", "calibration_seconds", "measure_fft"]

#: Kinds of work with different costs per pixel and per call.
WORK_CLASSES = ("invert", "separable", "general", "sobel")
#: Image sizes timed, in megapixels (RGB uint8, 3:2): from cache-sized to past any last-level
#: cache, where memory-bound work changes pace (24 MP, a large photo, is 72 MB).
SIZES_MP = (0.02, 0.25, 2.0, 8.0, 24.0)
#: The sizes of a quick first table (:func:`calibrate` with ``quick=True``): a few seconds in all.
QUICK_SIZES_MP = (0.02, 0.25, 2.0)
#: Engines a quick table leaves out: numba's kernels must be compiled before they can be timed
#: (tens of seconds on a fresh machine, the first time).
QUICK_SKIPS = ("numba",)
#: What :func:`calibrate` measures, in the cache file's key: a new version is measured again
#: (2: the 24 MP size; 3: the FFT path's cost, ``fft_s_per_mp``).
CALIBRATION_VERSION = 3
#: A candidate slower than this many times the fastest at one size is not timed at larger sizes
#: (its time is extrapolated): it cannot become the fastest, and timing it would be most of the wait.
PRUNE_FACTOR = 4.0
#: ... unless a run at the next size would take less than this anyway: on small images a fixed
#: cost per call (a thread pool's start) can make a candidate look slow that wins on large ones.
PRUNE_MIN_S = 0.02
#: Taps of the general work class's sample kernel (7x7).
GENERAL_TAPS = 49
#: The FFT path's cost is measured on this kernel side and image size (one thread).
FFT_PROBE_SIDE, FFT_PROBE_MP = 11, 0.1
#: The FFT path on a tiled engine (threads: one FFT per tile and channel) costs more than on
#: the numba engine's strips with the same workers: smaller blocks, more edges per sample.
FFT_TILED_COST = 1.2
#: Tile sizes tried for the ``threads`` engine, in bytes of output per tile.
TILE_BYTES = (1 << 20, 4 << 20)
#: Each candidate runs until this much time or :data:`MAX_RUNS` runs, in each of
#: :data:`ROUNDS` rounds; the fastest run counts.
RUN_BUDGET_S = 0.1
MIN_RUNS, MAX_RUNS = 3, 15
ROUNDS = 2


@dataclass(frozen=True)
class Candidate:
    """One way to run an operation: an engine, its workers and (threads) the tile size."""

    engine: str
    workers: int
    tile_bytes: int | None = None

    @property
    def label(self) -> str:
        tile = f", {self.tile_bytes >> 20} MiB tiles" if self.tile_bytes else ""
        return f"{self.engine} ({self.workers} worker{'s' if self.workers > 1 else ''}{tile})"

    @property
    def key(self) -> str:
        return f"{self.engine}:{self.workers}:{self.tile_bytes or 0}"

    @classmethod
    def from_key(cls, key: str) -> Candidate:
        engine, workers, tile = key.split(":")
        return cls(engine, int(workers), int(tile) or None)

    def tile_shape(self, shape: tuple[int, ...], itemsize: int = 1) -> tuple[int, int] | None:
        """The engine's ``tile_shape`` for an image of ``shape`` (None: the engine's default)."""
        if not self.tile_bytes:
            return None
        from ..tiling import auto_tile_shape

        return auto_tile_shape(shape, self.workers, itemsize, target_bytes=self.tile_bytes)


def work_class(op) -> str:
    """Which calibrated kind of work ``op`` is (:data:`WORK_CLASSES`)."""
    from ..ops import Filter, Invert, SobelMagnitude

    if isinstance(op, Invert):
        return "invert"
    if isinstance(op, SobelMagnitude):
        return "sobel"
    if isinstance(op, Filter) and op.kernel.factors is not None:
        return "separable"
    return "general"


def _machine() -> dict:
    """What the timings depend on; a change means calibrating again."""
    import importlib.metadata  # tens of milliseconds: not on `import pixelmill`

    from ._base import usable_cores
    from ._registry import available_engines

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {"pixelmill": __version__, "numpy": np.__version__}
    try:
        # Not `import numba`: that alone takes half a second, on every `pixelmill run`.
        versions["numba"] = importlib.metadata.version("numba")
    except importlib.metadata.PackageNotFoundError:
        pass
    return {"cpu": cpu, "cores": usable_cores(), "engines": available_engines(), "versions": versions,
            "python": platform.python_version(), "calibration": CALIBRATION_VERSION}


def cache_path(machine: dict | None = None) -> Path:
    """The calibration file for this machine and these versions."""
    machine = machine or _machine()
    digest = hashlib.sha1(json.dumps(machine, sort_keys=True).encode()).hexdigest()[:12]
    return default_cache_dir() / f"calibration-{digest}.json"


def candidates(cores: int, engines: list[str]) -> list[Candidate]:
    """Every candidate this machine can run, with at most ``cores`` workers."""
    found = [Candidate("numpy", 1)]
    if "numba" in engines:
        found += [Candidate("numba", w) for w in range(1, cores + 1)]
    if "threads" in engines:
        found += [Candidate("threads", w, tb) for w in range(2, cores + 1) for tb in TILE_BYTES]
    return found


def _sample_op(cls: str):
    from .. import kernels
    from ..ops import Filter, Invert, SobelMagnitude

    if cls == "invert":
        return Invert()
    if cls == "sobel":
        return SobelMagnitude(policy="clip")
    if cls == "separable":
        return Filter(kernels.gaussian(5, 1.0), policy="clip")
    # A 7x7 kernel with 49 different weights: no fast path applies, every tap is paid.
    weights = np.random.default_rng(7).random((7, 7))
    assert weights.size == GENERAL_TAPS
    return Filter(kernels.from_array(weights / weights.sum(), name="calibration-7x7"), policy="clip")


def _pruned_guess(previous: float, best: float, mp: float, previous_mp: float) -> float | None:
    """A candidate's time at ``mp`` extrapolated from its time at ``previous_mp`` (where the
    fastest took ``best``) when it is not worth timing there; None when it is (see
    :data:`PRUNE_FACTOR` and :data:`PRUNE_MIN_S`).

    >>> _pruned_guess(2.0, 0.1, 24.0, 8.0)  # 20x slower, and 6 s a run to time it
    6.0
    >>> _pruned_guess(5e-5, 1e-5, 0.25, 0.02) is None  # 5x slower, but timed in a blink
    True
    """
    guess = previous * mp / previous_mp
    return guess if previous > PRUNE_FACTOR * best and guess > PRUNE_MIN_S else None


def _sample_image(mp: float) -> np.ndarray:
    w = max(1, round(math.sqrt(mp * 1e6 * 1.5)))
    h = max(1, round(mp * 1e6 / w))
    return np.random.default_rng(0).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _fastest_run(fn, *, warm_up: bool = True) -> float:
    """The fastest of :data:`MIN_RUNS` to :data:`MAX_RUNS` runs of ``fn`` within
    :data:`RUN_BUDGET_S`, after a warm-up run (JIT loading, pool start-up, first touch of the
    output). A run slower than the whole budget is timed once: three more of them would be
    most of the calibration's time (a 24 MP general filter on NumPy takes seconds) and the
    fastest of the rounds (:data:`ROUNDS`) still counts."""
    if warm_up:
        t0 = time.perf_counter()
        fn()
        slow = time.perf_counter() - t0 > 2 * RUN_BUDGET_S
    else:
        slow = False
    best, spent, runs = math.inf, 0.0, 0
    while runs < MIN_RUNS or (spent < RUN_BUDGET_S and runs < MAX_RUNS):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent, runs = min(best, dt), spent + dt, runs + 1
        if slow or dt > RUN_BUDGET_S:
            break
    return best


@dataclass
class Calibration:
    """Measured times: ``times[work class][candidate key][i]`` for ``sizes_mp[i]``, and
    ``startup_s[engine]``: what a fresh process pays before that engine's first result
    (numba: importing it and loading its compiled kernels from the disk cache)."""

    sizes_mp: list[float]
    times: dict[str, dict[str, list[float]]]
    machine: dict
    seconds: float = 0.0
    created: str = ""
    startup_s: dict[str, float] = field(default_factory=dict)
    #: A quick first table (see :func:`calibrate`), replaced by the full one when measured.
    quick: bool = False
    #: The FFT path's seconds per megapixel (RGB) on one thread (:func:`measure_fft`); 0:
    #: not measured, the FFT costed by :data:`pixelmill.ops._fft.FFT_COST_TAPS`.
    fft_s_per_mp: float = 0.0

    def predict(self, cls: str, candidate: Candidate, mp: float) -> float:
        """Predicted seconds for ``candidate`` on an image of ``mp`` megapixels."""
        ts = self.times[cls][candidate.key]
        sizes = self.sizes_mp
        if mp <= sizes[0]:
            return ts[0]
        if mp >= sizes[-1]:
            # Past the largest size the cost grows with the pixels (per-call overhead is paid).
            return ts[-1] * mp / sizes[-1]
        k = next(i for i in range(1, len(sizes)) if mp <= sizes[i])
        f = (math.log(mp) - math.log(sizes[k - 1])) / (math.log(sizes[k]) - math.log(sizes[k - 1]))
        return math.exp(math.log(ts[k - 1]) + f * (math.log(ts[k]) - math.log(ts[k - 1])))

    def predict_op(self, op, cls: str, candidate: Candidate, mp: float) -> tuple[float, str | None]:
        """``(seconds, method)`` for ``op`` on ``candidate``: a general filter whose method is
        ``auto`` runs the cheapest of the direct, FFT and low-rank paths. Direct and low-rank:
        the calibrated general time scaled by the path's modelled cost in taps
        (:func:`pixelmill.ops._fft.method_costs`) over the calibration sample's 49. FFT: the
        same scipy code on every flavour, so the measured seconds per megapixel over the
        workers, times :data:`FFT_TILED_COST` on engines that cut tiles. Other operations as
        :meth:`predict`, method None."""
        t = self.predict(cls, candidate, mp)
        if cls != "general" or getattr(op, "method", None) != "auto":
            return t, None
        from ..ops._fft import method_costs

        flavour = "numba" if candidate.engine == "numba" else "numpy"
        costs = {m: t * c / GENERAL_TAPS for m, c in method_costs(op.effective_kernel, flavour).items()}
        if "fft" in costs and self.fft_s_per_mp > 0:
            tiled = FFT_TILED_COST if candidate.engine != "numba" else 1.0
            costs["fft"] = self.fft_s_per_mp * mp / max(1, candidate.workers) * tiled
        method = min(costs, key=costs.get)
        return costs[method], method

    def ranked(self, cls: str, mp: float, max_workers: int | None = None) -> list[tuple[float, Candidate]]:
        """``(predicted seconds, candidate)`` fastest first, at most ``max_workers`` workers."""
        rows = [(self.predict(cls, Candidate.from_key(key), mp), Candidate.from_key(key)) for key in self.times[cls]]
        rows = [r for r in rows if max_workers is None or r[1].workers <= max_workers]
        return sorted(rows, key=lambda r: r[0])

    def best(self, cls: str, mp: float, max_workers: int | None = None) -> Candidate:
        """The candidate with the smallest predicted time."""
        ranked = self.ranked(cls, mp, max_workers)
        return ranked[0][1] if ranked else Candidate("numpy", 1)

    def to_json(self) -> dict:
        return {"sizes_mp": self.sizes_mp, "times": self.times, "machine": self.machine, "seconds": self.seconds,
                "created": self.created, "startup_s": self.startup_s, "quick": self.quick,
                "fft_s_per_mp": self.fft_s_per_mp}

    @classmethod
    def from_json(cls, data: dict) -> Calibration:
        return cls(sizes_mp=list(data["sizes_mp"]), times=data["times"], machine=data["machine"],
                   seconds=float(data.get("seconds", 0.0)), created=data.get("created", ""),
                   startup_s={k: float(v) for k, v in data.get("startup_s", {}).items()},
                   quick=bool(data.get("quick", False)), fft_s_per_mp=float(data.get("fft_s_per_mp", 0.0)))

    def table(self) -> list[list[str]]:
        """Rows ``work class, size, fastest candidate, its time, numpy's time`` for people."""
        rows = []
        for cls in self.times:
            for mp in self.sizes_mp:
                best = self.best(cls, mp)
                t, tn = self.predict(cls, best, mp), self.predict(cls, Candidate("numpy", 1), mp)
                rows.append([cls, f"{mp:g}", best.label, f"{t * 1e3:.2f}", f"{tn * 1e3:.2f}"])
        return rows


def calibrate(*, sizes_mp=None, classes=WORK_CLASSES, notify=None, save: bool = True,
              quick: bool = False, merge: Calibration | None = None) -> Calibration:
    """Time every candidate on every work class and size; save the result as this machine's.

    Parameters
    ----------
    sizes_mp : sequence of float
        Image sizes in megapixels.
    classes : sequence of str
        Kinds of work to time (:data:`WORK_CLASSES`).
    notify : callable, optional
        Called with one line of text per kind of work, for progress.
    save : bool
        Write the cache file (atomically).
    quick : bool
        A first table in a few seconds (:data:`QUICK_SIZES_MP`, one round, no numba: its
        kernels would have to be compiled first, tens of seconds on a fresh machine); marked
        ``quick``, it serves until ``pixelmill calibrate`` measures the full one.
    merge : Calibration, optional
        A quick table measured earlier at the same sizes: its other work classes are kept.
    """
    from ._registry import make_engine

    global _MEASURING_S
    machine = _machine()
    if sizes_mp is None:
        sizes_mp = QUICK_SIZES_MP if quick else SIZES_MP
    rounds = 1 if quick else ROUNDS
    sizes = sorted(float(s) for s in sizes_mp)
    images = [_sample_image(mp) for mp in sizes]
    ops = {cls: _sample_op(cls) for cls in classes}
    times: dict[str, dict[str, list[float]]] = {cls: {} for cls in classes}
    started = time.perf_counter()
    engines = {}
    try:
        for cls, op in ops.items():
            if notify:
                notify(f"calibrating engine 'auto': {cls} work")
            engines_here = [e for e in machine["engines"] if not quick or e not in QUICK_SKIPS]
            rows = {c: [] for c in candidates(machine["cores"], engines_here)}
            for i, (mp, image) in enumerate(zip(sizes, images)):
                best = min((r[-1] for r in rows.values() if r), default=math.inf)
                timed = {}
                for cand, row in rows.items():
                    guess = _pruned_guess(row[-1], best, mp, sizes[i - 1]) if row else None
                    if guess is not None:
                        row.append(guess)
                    else:
                        timed[cand] = math.inf
                # Rounds over all candidates in turn, keeping each one's fastest: a disturbance
                # from elsewhere on the machine then spoils one round of one candidate, not the
                # ranking.
                for round_ in range(rounds):
                    for cand in timed:
                        if cand not in engines:
                            engines[cand] = make_engine(cand.engine, cand.workers)
                        engine = engines[cand]
                        engine.tile_shape = cand.tile_shape(image.shape, op.out_dtype(image.dtype).itemsize)
                        # A new output per run, as a caller gets: its page faults are part of the cost.
                        timed[cand] = min(timed[cand], _fastest_run(lambda: engine.run(op, image),
                                                                    warm_up=round_ == 0))
                for cand, t in timed.items():
                    rows[cand].append(t)
            times[cls] = {c.key: row for c, row in rows.items()}
    finally:
        for engine in engines.values():
            engine.close()
    fft_s_per_mp = measure_fft() if "general" in classes else 0.0
    startup = {"numba": numba_startup()} if "numba" in machine["engines"] and not quick else {}
    if merge is not None and merge.quick and merge.sizes_mp == sizes:
        times = {**merge.times, **times}
        fft_s_per_mp = fft_s_per_mp or merge.fft_s_per_mp
    result = Calibration(sizes_mp=sizes, times=times, machine=machine, seconds=time.perf_counter() - started,
                         created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), startup_s=startup, quick=quick,
                         fft_s_per_mp=fft_s_per_mp)
    _MEASURING_S += result.seconds
    if save:
        from .._files import atomic_write

        text = json.dumps(result.to_json(), indent=1).encode()
        path = cache_path(machine)
        try:
            atomic_write(path, lambda fh: fh.write(text))
        except OSError as exc:  # a read-only cache: the table still serves this process
            _not_cached(path, exc, notify)
    return result


def measure_fft() -> float:
    """The FFT path's seconds per megapixel (RGB uint8, ``clip``) on one thread: a random
    11x11 kernel on a 0.1 MP image (a fraction of a second; the FFT's cost per sample barely
    depends on the kernel's size, nor on the flavour, which calls the same scipy code)."""
    from .. import kernels
    from ..ops import Filter
    from ._registry import make_engine

    weights = np.random.default_rng(11).random((FFT_PROBE_SIDE, FFT_PROBE_SIDE))
    op = Filter(kernels.from_array(weights / weights.sum(), name="calibration-fft"), policy="clip", method="fft")
    image = _sample_image(FFT_PROBE_MP)
    with make_engine("numpy", 1) as engine:
        best = min(_fastest_run(lambda: engine.run(op, image)) for _ in range(ROUNDS))
    return best / (image.shape[0] * image.shape[1] / 1e6)


def _not_cached(path: Path, exc: OSError, notify) -> None:
    note = (f"engine 'auto': cannot write the calibration cache {str(path.parent)!r} "
            f"({exc.strerror or exc}); using it for this run only (set PIXELMILL_CACHE to a writable folder)")
    if notify:
        notify(note)


def numba_startup(runs: int = 2) -> float:
    """Seconds a fresh Python process spends before numba's first result, its kernels already
    compiled and cached (as after :func:`calibrate`): two processes, one that uses a kernel and
    one that only imports NumPy and pixelmill, the fastest of ``runs`` each, subtracted."""
    first_use = ("import numpy as np\nfrom pixelmill.ops._numba import invert_numba\n"
                 "invert_numba(np.zeros(1, np.uint8), np.empty(1, np.uint8))")
    import subprocess

    times = {}
    for name, code in (("numba", first_use), ("bare", "import numpy, pixelmill")):
        best = math.inf
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
            best = min(best, time.perf_counter() - t0)
        times[name] = best
    return max(0.0, times["numba"] - times["bare"])


def load(*, notify=None, sizes_mp=None, classes=WORK_CLASSES, full: bool = False) -> Calibration:
    """This machine's calibration: from the cache, or measured now and cached.

    A cached table that covers ``classes`` serves (a full one, or a quick one unless ``full``).
    Otherwise what is missing is measured: by default a quick table (:func:`calibrate` with
    ``quick=True``, a few seconds: numpy and threads, up to 2 MP) of the missing work classes,
    added to the quick table already cached; with ``full`` (``pixelmill calibrate``), or when
    ``sizes_mp`` is given, every candidate at ``sizes_mp`` (default :data:`SIZES_MP`).

    Processes that start at once measure it once: the first one holds a lock beside the
    cache file while it measures, and the others wait for its table instead of timing the
    engines side by side (which would also spoil each other's measurements)."""
    classes = tuple(classes)
    quick = not full and sizes_mp is None
    path = cache_path()
    cal = _cached(path, classes, full) or _UNCACHED.get(path)
    if cal is not None:
        return cal
    from filelock import FileLock

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(f"{path}.lock")
        lock.acquire()
    except OSError as exc:
        # No writable cache (no writable HOME, a read-only install, a container user): measure
        # for this process only (once), never fail the run.
        _not_cached(path, exc, notify)
        # Every kind of work at once: this table serves the whole process.
        cal = _UNCACHED[path] = calibrate(notify=notify, sizes_mp=sizes_mp, save=False, quick=quick)
        return cal
    try:
        cal = _cached(path, classes, full)  # measured by another process while this one waited
        if cal is not None:
            return cal
        earlier = _cached(path, (), False)
        if quick and earlier is not None and earlier.quick:
            missing = tuple(c for c in classes if c not in earlier.times)
        else:
            earlier, missing = None, classes if quick else WORK_CLASSES
        if notify:
            what = (f"a quick table for {', '.join(missing)} work in a few seconds (`pixelmill calibrate` "
                    "measures every engine)" if quick else "every engine, once")
            notify(f"engine 'auto': timing this machine: {what}; cached in {path}")
        return calibrate(notify=notify, sizes_mp=sizes_mp, classes=missing, quick=quick, merge=earlier)
    finally:
        lock.release()


def calibration_seconds() -> float:
    """Seconds this process has spent measuring calibrations (one-time work, for reports)."""
    return _MEASURING_S


_MEASURING_S = 0.0


def _covers(cal: Calibration, classes, full: bool) -> bool:
    return set(cal.times) >= set(classes) and not (full and cal.quick)


#: Calibrations measured in this process where no cache could be written, by cache path.
_UNCACHED: dict[Path, Calibration] = {}


def _cached(path: Path, classes=WORK_CLASSES, full: bool = True) -> Calibration | None:
    """The calibration in ``path``, if it covers ``classes`` (and is a full one, with
    ``full``); else None (missing, unreadable, from an older pixelmill, or not enough)."""
    try:
        cal = Calibration.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    timed_numba = any(k.startswith("numba:") for rows in cal.times.values() for k in rows)
    started = "numba" in cal.startup_s or not timed_numba
    return cal if _covers(cal, classes, full) and started else None
