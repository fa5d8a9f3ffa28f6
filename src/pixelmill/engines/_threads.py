"""The ``threads`` engine: tiles of one image on a thread pool (NumPy releases the GIL).

This module also holds the small pieces the other tiled parallel engines (``processes``,
``joblib``) share: computing a list of tiles and an unordered, bounded ``map`` over an executor. The filter-bank
layout (one padded input shared by several operations) lives in :mod:`pixelmill.tiling`.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, as_completed, wait

import numpy as np

from .. import tiling
from ..ops import Operation
from ._base import Engine

__all__ = ["ThreadsEngine"]

#: At most this many tasks (per operation, per worker) are sent to a process pool: tiny tiles
#: (say 1 x 1) are grouped so that pickling and IPC do not dominate; auto-planned tiles are
#: already about one per task.
TASKS_PER_WORKER = 4


# -- pieces shared by the tiled parallel engines -----------------------------------------------


def compute_tiles(op: Operation, padded: np.ndarray, out: np.ndarray, tiles, flavour: str) -> None:
    """Compute ``tiles`` (:class:`~pixelmill.tiling.Tile` or ``(r0, r1, c0, c1)``) of ``out``.

    Each tile reads its own block of the padded input (tile plus halo) and writes its own part
    of ``out``; tiles never overlap, so they can run in any order and on any worker.
    """
    halo = op.halo
    for tile in tiles:
        if not isinstance(tile, tiling.Tile):
            tile = tiling.Tile(*tile)
        op.compute(padded[tile.source(halo)], out[tile.out], flavour)


def chunked(items: list, parts: int) -> list[list]:
    """``items`` split into at most ``parts`` contiguous, nearly equal, non-empty lists."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    chunks, start = [], 0
    for k in range(parts):
        stop = start + size + (k < extra)
        chunks.append(items[start:stop])
        start = stop
    return chunks


def gather(futures: list[Future]) -> None:
    """Wait for every future; on the first error cancel what has not started and re-raise."""
    try:
        for future in as_completed(futures):
            future.result()
    except BaseException:
        for future in futures:
            future.cancel()
        raise


def unordered_map(executor: Executor, fn, items, in_flight: int):
    """Yield ``fn(item)`` for each item as each finishes, with at most ``in_flight`` submitted.

    Bounding the in-flight tasks keeps a huge library (a generator of paths) from being
    materialised as futures all at once. Closing the generator cancels what has not started.
    """
    pending: set[Future] = set()
    try:
        for item in items:
            pending.add(executor.submit(fn, item))
            if len(pending) >= in_flight:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:
        for future in pending:
            future.cancel()


# -- the engine -------------------------------------------------------------------------------


class ThreadsEngine(Engine):
    """Output tiles of one image computed on a pool of threads.

    NumPy releases the GIL inside its array loops, so the per-tap multiply-adds of several
    tiles run at the same time. Every tile runs the same per-pixel arithmetic as the untiled
    computation, so the result is bit-identical to the ``numpy`` engine.

    Parameters
    ----------
    workers : int, optional
        Threads; defaults to the usable cores. ``workers=1`` computes the tiles one after
        the other in the calling thread (no pool).
    tile_shape : (int, int), optional
        Output tile size; by default full-width row strips, several per worker
        (:func:`pixelmill.tiling.auto_tile_shape`).

    Notes
    -----
    The pool is created on first use and kept for the engine's life; :meth:`close` (or
    leaving the ``with`` block) shuts it down. :meth:`run_many` pads the image once and
    runs the tiles of all operations in the same pool. :meth:`map` runs whole images on the
    threads, which helps when decoding and encoding release the GIL too.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmill.ops import Invert
    >>> with ThreadsEngine(workers=2, tile_shape=(1, 2)) as eng:
    ...     eng.run(Invert(), np.array([[0, 1, 2], [3, 4, 5]], dtype=np.uint8))
    array([[255, 254, 253],
           [252, 251, 250]], dtype=uint8)
    """

    name = "threads"
    flavour = "numpy"
    parallel = True
    tiled = True

    def __init__(self, workers: int | None = None, tile_shape: tuple[int, int] | None = None):
        super().__init__(workers=workers, tile_shape=tile_shape)
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="pixelmill")
            return self._pool

    def close(self) -> None:
        """Shut the thread pool down (waits for running tiles). Safe to call twice."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def execute(self, op: Operation, padded: np.ndarray, out: np.ndarray) -> None:
        """Fill ``out`` tile by tile from ``padded`` on the thread pool."""
        self._run_jobs([(op, padded, out)])

    def run_many(
        self, ops: list[Operation], image: np.ndarray, *, border: str = "nearest", cval: float = 0.0
    ) -> list[np.ndarray]:
        """A filter bank: the image is padded once and all operations' tiles share one pool."""
        inputs, placements = tiling.bank_layout(ops, image, border, cval, self.flavour)
        outs = [np.empty(image.shape, dtype=op.out_dtype(image.dtype)) for op in ops]
        jobs = [
            (op, tiling.window(inputs[i], dr, dc, op.halo, image.shape), out)
            for op, (i, dr, dc), out in zip(ops, placements, outs)
        ]
        self._run_jobs(jobs)
        return outs

    def _run_jobs(self, jobs) -> None:
        tasks = [
            (op, padded, out, tile)
            for op, padded, out in jobs
            if out.size
            for tile in self.tiles_for(out.shape, out.dtype.itemsize)
        ]
        if self.workers == 1:
            for op, padded, out, tile in tasks:
                compute_tiles(op, padded, out, (tile,), self.flavour)
            return
        pool = self._executor()
        gather([
            pool.submit(compute_tiles, op, padded, out, (tile,), self.flavour)
            for op, padded, out, tile in tasks
        ])

    def map(self, fn, items):
        """Yield ``fn(item)`` for each item as each finishes, ``workers`` images at a time."""
        if self.workers == 1:
            yield from super().map(fn, items)
            return
        yield from unordered_map(self._executor(), fn, items, in_flight=2 * self.workers)
