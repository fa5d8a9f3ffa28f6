"""The ``processes`` engine: tiles of one image on worker processes, through shared memory.

The padded input and the output live in :class:`multiprocessing.shared_memory.SharedMemory`
segments. Workers attach to them by name (the image is never pickled), compute their tiles and
write them straight into the shared output; the parent copies the result out and removes the
segments -- always, also when a worker dies or the run is interrupted.
"""

from __future__ import annotations

import mmap
import os
import secrets
import shutil
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context, shared_memory

import numpy as np

from ..errors import EngineError, InvalidParameterError
from ..ops import Operation
from ._base import Engine
from ..tiling import bank_layout, window
from ._threads import TASKS_PER_WORKER, chunked, compute_tiles, gather, unordered_map

__all__ = ["ProcessesEngine", "SHM_PREFIX"]

#: Every segment this engine creates is named ``pixelmill_<pid>_<random>`` (pid of the parent),
#: so leftovers can be traced to the process that made them.
SHM_PREFIX = "pixelmill_"

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


def _attach(name: str) -> shared_memory.SharedMemory:
    """Attach to a segment the parent owns, without making this process an owner.

    Before Python 3.13 attaching registers the segment with the resource tracker, which the
    workers share with the parent. Unregistering it afterwards would also drop the parent's
    registration (the tracker keeps a set of names, so the parent's own unlink would then make
    it print a KeyError); a worker with a tracker of its own would unlink the segment when it
    exits and warn about a "leak". So the registration is skipped while attaching: only the
    parent registers and unlinks. Workers run one task at a time, so the swap is not racy.
    """
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, track=False)
    from multiprocessing import resource_tracker

    register = resource_tracker.register

    def register_unless_shm(name, rtype):
        if rtype != "shared_memory":
            register(name, rtype)

    resource_tracker.register = register_unless_shm
    try:
        return shared_memory.SharedMemory(name=name)
    finally:
        resource_tracker.register = register


def _close(shm: shared_memory.SharedMemory) -> None:
    try:
        shm.close()
    except BufferError:
        # An array view is still alive (e.g. held by a traceback); the mapping goes when it does.
        pass


def _run_shared_tiles(op: Operation, source, offset, target, tiles, flavour: str) -> None:
    """Worker task: compute ``tiles`` of ``op`` from the shared input into the shared output.

    ``source``/``target`` are ``(segment name, shape, dtype string)``; ``offset`` places the
    operation's padded input inside a filter-bank input.
    """
    src_shm = _attach(source[0])
    try:
        dst_shm = _attach(target[0])
        try:
            padded = np.ndarray(source[1], dtype=source[2], buffer=src_shm.buf)
            padded.flags.writeable = False
            out = np.ndarray(target[1], dtype=target[2], buffer=dst_shm.buf)
            compute_tiles(op, window(padded, *offset, op.halo, out.shape), out, tiles, flavour)
            del padded, out
        finally:
            _close(dst_shm)
    finally:
        _close(src_shm)


# -- in the parent ---------------------------------------------------------------------------

#: POSIX shared memory segments are files in /dev/shm on Linux, so a result can be adopted.
_CAN_ADOPT = sys.platform.startswith("linux") and os.path.isdir("/dev/shm")


@dataclass(frozen=True)
class _Job:
    """One operation of a call: where its padded input sits and what it writes (``out``, or
    when None a shared segment that becomes the result)."""

    op: Operation
    placement: tuple[int, int, int]
    shape: tuple[int, ...]
    dtype: np.dtype
    out: np.ndarray | None = None


def _adopt(name: str, shape, dtype) -> np.ndarray:
    """The segment's pages as an ordinary array that outlives the segment.

    A second mapping of the segment's file keeps its pages after the segment is closed and
    unlinked (they are freed when the array is), so the workers' output is the caller's
    result without a copy of the whole image through the parent.
    """
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    fd = os.open(os.path.join("/dev/shm", name.lstrip("/")), os.O_RDWR)
    try:
        mapping = mmap.mmap(fd, count * dtype.itemsize)
    finally:
        os.close(fd)
    return np.frombuffer(mapping, dtype=dtype, count=count).reshape(shape)


class _Segments:
    """Shared-memory segments created by one run; :meth:`release` closes and unlinks them all."""

    def __init__(self):
        self._shms: list[shared_memory.SharedMemory] = []

    def new(self, shape, dtype) -> tuple[np.ndarray, tuple]:
        dtype = np.dtype(dtype)
        nbytes = max(1, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
        while True:
            name = f"{SHM_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
            try:
                shm = shared_memory.SharedMemory(name=name, create=True, size=nbytes)
            except FileExistsError:
                continue
            break
        self._shms.append(shm)
        return np.ndarray(shape, dtype=dtype, buffer=shm.buf), (shm.name, tuple(shape), dtype.str)

    def release(self) -> None:
        while self._shms:
            shm = self._shms.pop()
            try:
                _close(shm)
            finally:
                try:
                    shm.unlink()
                except FileNotFoundError:
                    pass


def _check_room(nbytes: int) -> None:
    """Refuse, with a clear error, segments larger than the free space of ``/dev/shm``.

    Creating a segment only reserves address space; writing past what the tmpfs can hold kills
    the process with SIGBUS. Containers often mount a small ``/dev/shm`` (64 MB in Docker).
    """
    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:  # not Linux, or no /dev/shm: nothing to check
        return
    if nbytes > free:
        raise EngineError(
            f"the processes engine needs {nbytes / 2**20:.0f} MiB of shared memory but /dev/shm "
            f"has {free / 2**20:.0f} MiB free; enlarge it (docker run --shm-size) or use "
            "engine='threads' or 'joblib'"
        )


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
    into the shared output, so no copy of the image travels through pickles. The parent copies
    the result into an ordinary array and closes and unlinks the segments in a ``finally``:
    after a worker dies, after an error and after Ctrl-C too.

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
    tiled = True

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
        """Shut the worker processes down. Safe to call twice."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

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
        if out is not None or self.workers == 1 or not _CAN_ADOPT:
            return super().run(op, image, border=border, cval=cval, out=out)
        # No ``out`` given: the result is the shared output itself, never copied (see _adopt).
        inputs, placements = bank_layout([op], image, border, cval, self.flavour)
        return self._run_jobs(inputs, [_Job(op, placements[0], image.shape, op.out_dtype(image.dtype))])[0]

    def execute(self, op: Operation, padded: np.ndarray, out: np.ndarray) -> None:
        """Fill ``out`` from ``padded`` with the worker processes, through shared memory."""
        self._run_jobs([padded], [_Job(op, (0, 0, 0), out.shape, out.dtype, out)])

    def run_many(
        self, ops: list[Operation], image: np.ndarray, *, border: str = "nearest", cval: float = 0.0
    ) -> list[np.ndarray]:
        """A filter bank: the padded image is put in shared memory once (once per work dtype,
        padded with the largest halo) and the tiles of every operation run in the pool at once,
        each operation writing its own shared output."""
        inputs, placements = bank_layout(ops, image, border, cval, self.flavour)
        adopt = self.workers > 1 and _CAN_ADOPT
        jobs = [_Job(op, at, image.shape, op.out_dtype(image.dtype),
                     None if adopt else np.empty(image.shape, dtype=op.out_dtype(image.dtype)))
                for op, at in zip(ops, placements)]
        return self._run_jobs(inputs, jobs)

    def _run_jobs(self, inputs: list[np.ndarray], jobs: list[_Job]) -> list[np.ndarray]:
        """Compute every job; returns their results in order (a job without ``out`` gets the
        shared output segment itself as its result)."""
        results = [job.out for job in jobs]
        pending = [k for k, job in enumerate(jobs) if np.prod(job.shape, dtype=np.int64)]
        for k, job in enumerate(jobs):
            # Shared outputs become results only on the pool's path, and only when not empty.
            if results[k] is None and (self.workers == 1 or k not in pending):
                results[k] = np.empty(job.shape, job.dtype)
        if not pending:
            return results
        if self.workers == 1:
            for k in pending:
                op, (i, dr, dc) = jobs[k].op, jobs[k].placement
                out = results[k]
                padded = window(inputs[i], dr, dc, op.halo, out.shape)
                compute_tiles(op, padded, out, self.tiles_for(out.shape, out.dtype.itemsize), self.flavour)
            return results
        nbytes = [int(np.prod(jobs[k].shape, dtype=np.int64)) * np.dtype(jobs[k].dtype).itemsize for k in pending]
        _check_room(sum(a.nbytes for a in inputs) + sum(nbytes))
        segments = _Segments()
        shared_outs: list[np.ndarray] = []
        try:
            sources = []
            for arr in inputs:
                view, spec = segments.new(arr.shape, arr.dtype)
                np.copyto(view, arr)
                del view
                sources.append(spec)
            pool = self._executor()
            futures = []
            targets = []
            try:
                for k in pending:
                    op, (i, dr, dc), shape, dtype = jobs[k].op, jobs[k].placement, jobs[k].shape, np.dtype(jobs[k].dtype)
                    view, target = segments.new(shape, dtype)
                    shared_outs.append(view)
                    targets.append(target)
                    tiles = [(t.r0, t.r1, t.c0, t.c1) for t in self.tiles_for(shape, dtype.itemsize)]
                    for chunk in chunked(tiles, TASKS_PER_WORKER * self.workers):
                        futures.append(
                            pool.submit(_run_shared_tiles, op, sources[i], (dr, dc), target, chunk, self.flavour)
                        )
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
            for k, shared, target in zip(pending, shared_outs, targets):
                if jobs[k].out is None:
                    results[k] = _adopt(*target)
                else:
                    np.copyto(results[k], shared)
        finally:
            shared_outs.clear()
            segments.release()
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
