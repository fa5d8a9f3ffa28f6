"""The ``processes`` engine: tiles of one image on worker processes, through shared memory.

The padded input and the output live in :class:`multiprocessing.shared_memory.SharedMemory`
segments. Workers attach to them by name (the image is never pickled), compute their tiles and
write them straight into the shared output, and the caller gets the output segment itself as
its result (no copy): the segment goes back to the engine when that array is garbage-collected.
Segments are kept for the next call (see :class:`._shm.Segments`) and removed when the engine
closes; a call that fails -- a worker dies, an error, Ctrl-C -- removes its own at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from ..errors import EngineError, InvalidParameterError
from ..ops import Operation
from ..tiling import bank_layout, window
from ._base import TASKS_PER_WORKER, Engine, chunked, compute_tiles, gather, unordered_map
from ._shm import SHM_PREFIX, Segments, check_room, mapped

__all__ = ["ProcessesEngine", "SHM_PREFIX"]


#: Start methods accepted; ``fork`` is refused (see :class:`ProcessesEngine`).
START_METHODS = ("spawn", "forkserver")

#: Thread-pool sizes read by BLAS / OpenMP / Numba when they load: one thread per worker, since
#: the parallelism comes from the processes.
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


# -- in the worker processes -----------------------------------------------------------------


def _init_worker() -> None:
    """Initializer of every worker: single-threaded libraries, Ctrl-C left to the parent."""
    os.environ.update(SINGLE_THREAD_ENV)
    # Libraries already loaded (a user's __main__ imported them before this ran) read the
    # variables too late; lower their pools at run time where that is possible.
    if "numba" in sys.modules:
        try:
            sys.modules["numba"].set_num_threads(1)
        except Exception:  # numba's layer may refuse; the work here is NumPy anyway
            pass
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        threadpool_limits(1)
    # The parent handles Ctrl-C (it cancels, removes the segments and drops the pool); a
    # worker killed by SIGINT mid-task would only add a second traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()


def _exit_with_parent() -> None:
    """Exit this worker as soon as the parent process is gone.

    A ``ProcessPoolExecutor`` worker whose parent is killed (SIGKILL, SIGTERM) would wait on its
    task queue forever -- it holds that pipe's write end itself, so it never sees end-of-file --
    and would also keep the resource tracker alive, so the parent's segments would not be
    cleaned up. A daemon thread watches the parent's sentinel instead.
    """
    import multiprocessing
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch():
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="pixelmill-parent-watch", daemon=True).start()




def _run_shared_tiles(op: Operation, source, offset, target, tiles, flavour: str, live: tuple[str, ...]) -> None:
    """Worker task: compute ``tiles`` of ``op`` from the shared input into the shared output.

    ``source``/``target`` are ``(segment name, shape, dtype string)``; ``offset`` places the
    operation's padded input inside a filter-bank input; ``live`` names the parent's segments.
    """
    padded = np.ndarray(source[1], dtype=source[2], buffer=mapped(source[0], live).buf)
    padded.flags.writeable = False
    out = np.ndarray(target[1], dtype=target[2], buffer=mapped(target[0], live).buf)
    compute_tiles(op, window(padded, *offset, op.halo, out.shape), out, tiles, flavour)


# -- in the parent ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """One operation of a call: where its padded input sits, and the array it fills (None:
    a new result of ``shape`` and ``dtype``, lent from shared memory)."""

    op: Operation
    placement: tuple[int, int, int]
    out: np.ndarray | None
    shape: tuple[int, ...]
    dtype: np.dtype




def _describe_exit(processes) -> str:
    """Say how the worker that broke the pool ended (an exit code, or the killing signal)."""
    codes = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
    # The pool terminates the survivors with SIGTERM once it is broken: prefer other codes.
    codes.sort(key=lambda code: code == -signal.SIGTERM)
    if not codes:
        return "exit code unknown"
    code = codes[0]
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class ProcessesEngine(Engine):
    """Output tiles of one image computed by worker processes, through shared memory.

    The padded input and the output are :mod:`multiprocessing.shared_memory` segments named
    ``pixelmill_<pid>_<random>``. Workers attach by name, compute their tiles and write them
    into the shared output, so no copy of the image travels through pickles. A new result is
    that shared output itself, an ordinary writable NumPy array to the caller; its segment
    serves later calls once the array is garbage-collected (with ``out=``, the result is
    copied into ``out``). Idle segments are kept for the next call (faulting in fresh shared
    pages costs more than a copy) and unlinked by :meth:`close`, which also unlinks the names
    of results still held (their memory stays until they go); a call that fails (a worker
    dies, an error, Ctrl-C) unlinks its own at once.

    Parameters
    ----------
    workers : int, optional
        Worker processes; defaults to the usable cores. ``workers=1`` computes the tiles
        one after the other in this process (no pool, no shared memory).
    tile_shape : (int, int), optional
        Output tile size; by default full-width row strips, several per worker. Small
        tiles are grouped into at most ``4 * workers`` tasks per operation.
    start_method : {"spawn", "forkserver"}
        How workers start. ``spawn`` (default) starts each from a fresh interpreter: nothing
        is inherited from the parent, so a parent that runs threads (the ``threads`` engine's
        pool, numba's or OpenMP's thread pools, a GUI) cannot leave a child with a lock held
        by a thread that does not exist there, and it behaves the same on Linux, macOS and
        Windows. ``forkserver`` forks from a small single-threaded server (also safe, faster
        to start, POSIX only, but the server is shared by the whole process and keeps the
        imports and environment it had when it first started). ``fork`` is refused for the
        reason above. The pool is kept for the engine's life, so the start cost is paid once.

    Raises
    ------
    EngineError
        From :meth:`run`, :meth:`run_many` or :meth:`map` when a worker process dies; the
        message gives its exit code or signal. The pool is restarted on the next call.

    Notes
    -----
    Workers run single-threaded: their initializer sets ``OMP_NUM_THREADS``,
    ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, ``NUMBA_NUM_THREADS`` (and friends) to 1
    before pixelmill loads numba, and lowers already-loaded pools where it can. Workers attach
    to the segments without registering them with the resource tracker (``track=False`` on
    Python 3.13+), so only the parent owns, unlinks and -- if it is killed -- has the tracker
    clean them up.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmill.ops import Invert
    >>> with ProcessesEngine(workers=1) as eng:
    ...     eng.run(Invert(), np.array([[0, 1, 2]], dtype=np.uint8))
    array([[255, 254, 253]], dtype=uint8)
    """

    name = "processes"
    flavour = "numpy"
    parallel = True

    def __init__(
        self,
        workers: int | None = None,
        tile_shape: tuple[int, int] | None = None,
        *,
        start_method: str = "spawn",
    ):
        super().__init__(workers=workers, tile_shape=tile_shape)
        if start_method not in START_METHODS:
            raise InvalidParameterError(
                f"start_method must be one of {', '.join(START_METHODS)}, got {start_method!r}"
                + (" (fork is unsafe in a process that runs threads)" if start_method == "fork" else "")
            )
        self.start_method = start_method
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._segments = Segments()

    # -- the pool -----------------------------------------------------------------------------

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=get_context(self.start_method),
                    initializer=_init_worker,
                )
            return self._pool

    def _drop_pool(self, pool: ProcessPoolExecutor, *, wait: bool) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=wait, cancel_futures=True)

    def close(self) -> None:
        """Shut the worker processes down and remove the shared segments. Safe to call twice."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self._segments.release()

    def _broken(self, pool: ProcessPoolExecutor, exc: BrokenProcessPool) -> EngineError:
        # _processes is private but the only place the dead worker's exit code is kept. A
        # broken pool has already terminated its other workers: shutting it down only joins
        # them, after which every exit code is settled (reading them earlier races the pool's
        # own thread, which reaps the processes).
        processes = list((getattr(pool, "_processes", None) or {}).values())
        self._drop_pool(pool, wait=True)
        how = _describe_exit(processes)
        return EngineError(
            f"a processes worker died ({how}); the results of this call are lost "
            "(the next call starts new workers)"
        )

    # -- one image, a filter bank -----------------------------------------------------------------

    def run(self, op, image, *, border="nearest", cval=0.0, out=None):
        """As :meth:`Engine.run`; a new result is the shared output itself (see :class:`._shm.Segments`)."""
        if out is not None:
            return super().run(op, image, border=border, cval=cval, out=out)
        return self.run_many([op], image, border=border, cval=cval)[0]

    def execute(self, op: Operation, padded: np.ndarray, out: np.ndarray) -> None:
        """Fill ``out`` from ``padded`` with the worker processes, through shared memory."""
        self._run_jobs([padded], [_Job(op, (0, 0, 0), out, out.shape, out.dtype)])

    def run_many(
        self, ops: list[Operation], image: np.ndarray, *, border: str = "nearest", cval: float = 0.0
    ) -> list[np.ndarray]:
        """A filter bank: the padded image is put in shared memory once (once per work dtype,
        padded with the largest halo) and the tiles of every operation run in the pool at once,
        each operation writing its own shared output, which becomes its result."""
        inputs, placements = bank_layout(ops, image, border, cval, self.flavour)
        jobs = [_Job(op, at, None, image.shape, op.out_dtype(image.dtype)) for op, at in zip(ops, placements)]
        return self._run_jobs(inputs, jobs)

    def _run_jobs(self, inputs: list[np.ndarray], jobs: list[_Job]) -> list[np.ndarray]:
        """Compute every job into its ``out`` (or a lent shared array); return the results."""
        size = int(np.prod(jobs[0].shape)) if jobs else 0
        if self.workers == 1 or not size:
            results = [np.empty(job.shape, job.dtype) if job.out is None else job.out for job in jobs]
            if size:
                for job, out in zip(jobs, results):
                    i, dr, dc = job.placement
                    padded = window(inputs[i], dr, dc, job.op.halo, out.shape)
                    compute_tiles(job.op, padded, out, self.tiles_for(out.shape, out.dtype.itemsize), self.flavour)
            return results
        segments = self._segments
        out_bytes = sum(size * job.dtype.itemsize for job in jobs)
        check_room(sum(a.nbytes for a in inputs) + out_bytes - segments.idle_bytes())
        shared_outs: list[np.ndarray] = []
        taken: list = []
        try:
            sources = []
            for arr in inputs:
                view, spec = segments.new(arr.shape, arr.dtype, taken)
                np.copyto(view, arr)
                del view
                sources.append(spec)
            targets = []
            for job in jobs:
                view, target = segments.new(job.shape, job.dtype, taken)
                shared_outs.append(view)
                targets.append(target)
            live = segments.names()
            pool = self._executor()
            futures = []
            try:
                for job, target in zip(jobs, targets):
                    i, dr, dc = job.placement
                    tiles = [(t.r0, t.r1, t.c0, t.c1) for t in self.tiles_for(job.shape, job.dtype.itemsize)]
                    for chunk in chunked(tiles, TASKS_PER_WORKER * self.workers):
                        futures.append(pool.submit(
                            _run_shared_tiles, job.op, sources[i], (dr, dc), target, chunk, self.flavour, live
                        ))
                gather(futures)
            except BrokenProcessPool as exc:
                # Also raised by submit() when a worker died while the pool was idle.
                for future in futures:
                    future.cancel()
                raise self._broken(pool, exc) from exc
            except KeyboardInterrupt:
                # Workers may still be busy with tiles of this call; start afresh next time.
                self._drop_pool(pool, wait=False)
                raise
            results = []
            # The outputs' segments were taken after the inputs', one per job.
            for job, shared, shm in zip(jobs, shared_outs, taken[len(inputs):]):
                if job.out is None:
                    segments.lend(shm, shared)
                    results.append(shared)
                else:
                    np.copyto(job.out, shared)
                    results.append(job.out)
        except BaseException:
            shared_outs.clear()
            segments.drop(taken)
            raise
        shared_outs.clear()
        segments.done(taken)
        return results

    # -- a library of images -------------------------------------------------------------------------

    def map(self, fn, items):
        """Yield ``fn(item)`` for each item as each finishes, one image per worker process.

        Raises
        ------
        EngineError
            When a worker process dies (``fn`` crashed the interpreter, or it was killed).
        """
        if self.workers == 1:
            yield from super().map(fn, items)
            return
        pool = self._executor()
        try:
            yield from unordered_map(pool, fn, items, in_flight=2 * self.workers)
        except BrokenProcessPool as exc:
            raise self._broken(pool, exc) from exc
