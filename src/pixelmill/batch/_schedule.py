"""How a batch's work is scheduled: one plan for every engine, ``auto`` included.

Two levels of parallel work: across images (whole images on the workers, decode, operations and
encode in each) and within an image (tiles). A parallel engine runs whole images in parallel when
there are enough images to keep every worker busy; with fewer (one huge scan) it tiles each image
and the images run one after the other.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

from ..engines import Candidate, get_engine_class, load_calibration, usable_cores
from ..engines._auto import AutoEngine

__all__ = ["Schedule", "plan_schedule", "plan_run", "cap_workers", "plan_batch", "start_pays_off"]


class Schedule(NamedTuple):
    """The across-images engine and its workers, the within-image engine and its workers."""

    across: str
    across_workers: int
    within: str
    within_workers: int

    def to_json(self) -> dict:
        return {"across_images": {"engine": self.across, "workers": self.across_workers},
                "within_image": {"engine": self.within, "workers": self.within_workers}}


def plan_run(settings, n_images: int, *, notify=None) -> tuple[Schedule, list[str]]:
    """:func:`plan_schedule` for a run, after lowering the workers to what the machine holds
    (:func:`cap_workers`), and the notes on what was decided for the user (also sent to
    ``notify``): a lowered worker count, ``auto`` on a cluster."""
    import dataclasses

    s = settings
    notes = []
    if s.scheduler:
        if s.engine == "auto":
            notes.append("--scheduler given: engine 'auto' runs the batch on the cluster with engine 'dask'")
    else:
        workers, note = cap_workers(s.workers, s.engine)
        if note:
            notes.append(note)
            s = dataclasses.replace(s, workers=workers)
    for note in notes:
        if notify:
            notify(note)
    return plan_schedule(s, n_images, notify=notify), notes


#: What one worker may need, as a floor, in bytes: a worker process (an interpreter, NumPy and
#: the codecs) and a photo or two in flight; a thread shares the interpreter but holds photos.
WORKER_BYTES = {"process": 256 << 20, "thread": 128 << 20}
#: Engines whose workers are processes (the others' are threads).
PROCESS_ENGINES = ("processes", "joblib")


def available_memory() -> int | None:
    """Bytes of memory available to new work (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cap_workers(requested: int | None, engine: str) -> tuple[int, str | None]:
    """``(workers, note)``: ``requested`` (default: the usable cores) lowered to what this
    machine can hold -- at most the usable cores, and no more than the available memory at
    :data:`WORKER_BYTES` a worker -- with a one-line note when it was lowered."""
    cores = usable_cores()
    if requested is None:
        return cores, None
    kind = "process" if engine in PROCESS_ENGINES else "thread"
    memory = available_memory()
    by_memory = max(1, memory // WORKER_BYTES[kind]) if memory else requested
    workers = max(1, min(requested, cores, by_memory))
    if workers == requested:
        return workers, None
    why = f"{cores} usable cores" if workers == cores else f"{memory / 2**30:.1f} GiB of memory available"
    return workers, f"workers lowered from {requested} to {workers}: this machine has {why}"


def plan_schedule(settings, n_images: int, *, notify=None) -> Schedule:
    """How a batch of ``n_images`` images runs ``settings.ops`` with ``settings.engine``.

    A parallel engine runs whole images in parallel (each worker single-threaded, with the
    engine's serial twin of the same flavour inside) when there are at least two images per
    worker, or on a cluster; otherwise the images run one after the other and the engine splits
    each one. ``auto`` is planned from the calibration (:func:`plan_batch`), except on a cluster,
    where only the dask engine can send work.
    """
    s = settings
    workers = s.workers or usable_cores()
    if s.scheduler:
        # On a cluster only dask can send the work (auto included), and the cluster has its
        # own workers.
        return Schedule("dask", workers, "numpy", 1)
    if s.engine == "auto":
        from .._opspec import steps_of

        return plan_batch([st for op in s.ops for st in steps_of(op)], n_images, workers, notify=notify)
    cls = get_engine_class(s.engine)
    if not cls.parallel or workers == 1 or not cls.maps_in_parallel():
        return Schedule("numpy", 1, s.engine, workers)
    if n_images >= 2 * workers:
        serial_twin = "numba" if cls.flavour == "numba" else "numpy"
        return Schedule(s.engine, workers, serial_twin, 1)
    return Schedule("numpy", 1, s.engine, workers)


def work_classes(ops) -> tuple[str, ...]:
    """The calibrated kinds of work ``ops`` (chains: their steps) need."""
    from .._opspec import steps_of
    from ..engines._calibration import work_class

    return tuple(sorted({work_class(step) for op in ops for step in steps_of(op)}))


def start_pays_off(cal, ops, engine: str, n_images: int, workers: int) -> bool:
    """True when ``engine``, one worker per image, saves more over NumPy on ``n_images``
    photographs of 6 MP than starting it costs this process (nothing once started: numba's
    kernels are imported only when first used)."""
    from ..engines._calibration import work_class

    started = engine != "numba" or "pixelmill.ops._numba" in sys.modules
    start = 0.0 if started else cal.startup_s.get(engine, 0.0)
    saved = 0.0
    numpy_1 = Candidate("numpy", 1)
    for cls in {work_class(op) for op in ops}:
        times = cal.times.get(cls, {})
        if Candidate(engine, 1).key in times and numpy_1.key in times:
            saved += cal.predict(cls, numpy_1, 6.0) - cal.predict(cls, Candidate(engine, 1), 6.0)
    return n_images * saved / workers > start


def plan_batch(ops, n_images: int, workers: int, *, notify=None) -> Schedule:
    """The :class:`Schedule` of a batch run with ``engine="auto"``.

    With at least two images per worker, whole images run in parallel on threads: decoding and
    encoding (most of a batch's time) then run on every core too, which no within-image split
    can do, and no process has to start (the JPEG codec, NumPy and pixelmill's numba kernels all
    release the GIL). The per-image work goes to the calibration's fastest single-worker
    candidate for these operations, unless that is numba and the library is too small to win
    back what starting it costs a fresh process (the calibration measures that cost; an
    inversion saves next to nothing with numba). With fewer images, the images run one after
    the other and ``auto`` splits each one.
    """
    if workers > 1 and n_images >= 2 * workers:
        cal = load_calibration(notify=notify, classes=work_classes(ops))
        probe = AutoEngine(workers=1, calibration=cal)
        # Photographs of a few megapixels: the size the per-image choice is made for.
        inner = probe.choose(list(ops), (2000, 3000)).engine
        if inner == "numba" and not start_pays_off(cal, ops, "numba", n_images, workers):
            inner = "numpy"
        if inner == "numba":
            from ..engines._numba import threadsafe

            if not threadsafe():
                return Schedule("joblib", workers, inner, 1)  # one numba runtime per worker process
        return Schedule("threads", workers, inner, 1)
    return Schedule("numpy", 1, "auto", workers)
