"""The engine base class: how work is scheduled, never what is computed."""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, Executor, Future, as_completed, wait
from typing import ClassVar

import numpy as np

from .. import tiling
from ..ops import Operation
from ..ops._scratch import scratch

#: Rows of this many bytes (padded) per worker at a time when a result is written over its
#: image: small enough that a band's float work arrays (4x its bytes for 8-bit images) stay in
#: cache and, freed, leave little in malloc's arenas. A parallel engine splits each band among
#: its workers, so its bands grow with them (each worker's share stays this size).
BAND_BYTES = 1 << 20


def usable_cores() -> int:
    """Cores this process may run on (affinity-aware), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class Engine:
    """Schedules an :class:`~pixelmill.ops.Operation` over an image.

    Subclasses set the capability attributes and, if they run work in parallel, override
    :meth:`execute`. Engines are context managers; :meth:`close` releases pools and clusters.

    Parameters
    ----------
    workers : int, optional
        Parallel workers; defaults to the number of usable cores. Ignored by serial engines.
    tile_shape : (int, int), optional
        Output tile size for tiled engines; automatic when omitted.
    """

    #: Registry name.
    name: ClassVar[str] = "base"
    #: Which implementation of each operation runs: "python", "numpy" or "numba".
    flavour: ClassVar[str] = "numpy"
    #: True when the engine runs work in parallel (workers matter).
    parallel: ClassVar[bool] = False
    #: True when a streamed image runs as one task per band through :meth:`map` (each task reads
    #: its own window and writes its band: a cluster's workers share the storage, not memory).
    streams_by_task: ClassVar[bool] = False

    def __init__(self, workers: int | None = None, tile_shape: tuple[int, int] | None = None):
        self.workers = usable_cores() if workers is None else int(workers)
        self.tile_shape = tile_shape

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Release pools, shared memory and clusters. Safe to call twice."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers})"

    # -- one image -------------------------------------------------------------------------

    def run(
        self, op: Operation, image: np.ndarray, *, border: str = "nearest", cval: float = 0.0,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Apply ``op`` to ``image`` with the border rule, into ``out`` (a new array if None).

        ``out`` must have the image's shape and ``op.out_dtype(image.dtype)``; it may be the
        image itself (then written band by band, see :meth:`_run_in_bands`, or read through a
        padded copy, or elementwise).
        """
        dtype = tiling.pad_dtype(image.dtype, op.work_dtype(image.dtype, self.flavour), border, cval)
        if out is image and image.size and self._run_in_bands(op, image, border, cval, dtype):
            return out
        padded = tiling.pad(image, op.halo, border, cval, dtype=dtype)
        if out is None:
            out = np.empty(image.shape, dtype=op.out_dtype(image.dtype))
        if out.size:
            self.execute(op, padded, out)
        return out

    def _run_in_bands(self, op: Operation, image: np.ndarray, border: str, cval: float, dtype) -> bool:
        """``op``'s result written over ``image`` without a padded copy of the whole image:
        band by band of :data:`BAND_BYTES` per worker (:func:`~pixelmill.tiling.bands_over_image`),
        each band's rows and halo padded (a small copy) and computed into a buffer, which is
        copied over the image one band later. False (nothing done) when it cannot go by bands."""
        rows = tiling.band_rows(image[0].size * dtype.itemsize, op.halo, BAND_BYTES * self.workers)
        _, _, left, right = op.halo
        pending = None
        for k, (first, n, taken) in enumerate(tiling.bands_over_image(image.shape[0], op.halo, border, rows)):
            band = image[np.maximum(taken, 0)].astype(dtype, copy=False)
            if border == "constant":
                band[taken < 0] = cval
            padded = tiling.pad(band, (0, 0, left, right), border, cval, dtype=dtype)
            # Two buffers in turn, kept per thread: a library of photos faults them in once.
            result = scratch(f"engine.band{k % 2}", (n,) + image.shape[1:], image.dtype)
            self.execute(op, padded, result)
            if pending is not None:
                image[pending[0] : pending[0] + len(pending[1])] = pending[1]
            pending = (first, result)
        if pending is None:
            return False
        image[pending[0] : pending[0] + len(pending[1])] = pending[1]
        return True

    def execute(self, op: Operation, padded: np.ndarray, out: np.ndarray) -> None:
        """Fill ``out`` from the padded input. The serial default computes it in one piece."""
        op.compute(padded, out, self.flavour)

    def run_many(
        self, ops: list[Operation], image: np.ndarray, *, border: str = "nearest", cval: float = 0.0
    ) -> list[np.ndarray]:
        """A filter bank: several operations on one image (decoded once, shared by all).

        The default runs them one after the other; parallel engines may run them at once.
        """
        return [self.run(op, image, border=border, cval=cval) for op in ops]

    # -- a library of images -----------------------------------------------------------------

    def map(self, fn, items):
        """Yield ``fn(item)`` for each item, as each finishes (any order for parallel engines).

        ``fn`` must be a picklable top-level function; it runs a whole image (decode ->
        operations -> encode) and must not raise (it records its own failure). Parallel
        engines run whole images in parallel, each worker single-threaded.
        """
        for item in items:
            yield fn(item)

    @classmethod
    def maps_in_parallel(cls) -> bool:
        """True when :meth:`map` runs images in parallel (the engine overrides it)."""
        return cls.map is not Engine.map

    def tiles_for(self, shape: tuple[int, ...], itemsize: int) -> list[tiling.Tile]:
        tile_shape = self.tile_shape or tiling.auto_tile_shape(shape, self.workers, itemsize)
        return tiling.plan_tiles(shape, tile_shape)


# -- pieces every pool-based engine shares ------------------------------------------------------

#: At most this many tasks (per operation, per worker) are sent to a process pool: tiny tiles
#: (say 1 x 1) are grouped so that pickling and IPC do not dominate; auto-planned tiles are
#: already about one per task.
TASKS_PER_WORKER = 4




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
