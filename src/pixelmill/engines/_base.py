"""The engine base class: how work is scheduled, never what is computed."""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np

from .. import tiling
from ..ops import Operation
from ..ops._scratch import scratch

#: Rows of this many bytes (padded) per worker at a time when a result is written over its
#: image. A band's float work arrays (4x its bytes for 8-bit images) then stay in cache, and
#: freed they leave little in malloc's arenas. A 200-photo Gaussian batch on 2 threads of
#: the numpy engine, alternated: 1 MB bands 6.1-7.8 s and 187-205 MB peak, 4 MB bands
#: 7.7-10.0 s and 256-288 MB. A parallel engine splits each band among its workers, so its
#: bands grow with them: one 24 MP image on 2 threads, 1 MB bands were slower than 2 or 4.
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
    #: True when one image is split into tiles.
    tiled: ClassVar[bool] = False

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
        """``op``'s result written over ``image`` without a padded copy of the whole image.

        Band by band of :data:`BAND_BYTES` per worker: the band's rows and halo are padded (a small
        copy), computed into a buffer, and the buffer is copied over the image one band later,
        once the next band, the last to read those rows, has been padded. Rows a mirrored
        border reads lie within a halo of the edges, so they are still the input when read;
        a ``wrap`` border's last bands read the first rows, so it pads the whole image
        instead. False (nothing done) when the image is a single band, has no halo, or wraps.
        """
        top, bottom, left, right = op.halo
        if not (top or bottom) or border == "wrap" or image.ndim < 2:
            return False
        h = image.shape[0]
        rows = max(top + bottom + 1, BAND_BYTES * self.workers // max(1, image[0].size * dtype.itemsize))
        if h <= rows:
            return False
        source = tiling.border_indices(h, top, bottom, border)
        pending = None
        for k, first in enumerate(range(0, h, rows)):
            n = min(rows, h - first)
            taken = source[first : first + n + top + bottom]
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
