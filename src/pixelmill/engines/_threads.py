"""The ``threads`` engine: tiles of one image on a thread pool (NumPy releases the GIL)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import tiling
from ..ops import Operation
from ._base import Engine, compute_tiles, gather, unordered_map

__all__ = ["ThreadsEngine"]

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
