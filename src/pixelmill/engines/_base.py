"""The engine base class: how work is scheduled, never what is computed."""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np

from .. import tiling
from ..ops import Operation


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
        image itself (the image is read through the padded copy, or elementwise).
        """
        dtype = tiling.pad_dtype(image.dtype, op.work_dtype(image.dtype, self.flavour), border, cval)
        padded = tiling.pad(image, op.halo, border, cval, dtype=dtype)
        if out is None:
            out = np.empty(image.shape, dtype=op.out_dtype(image.dtype))
        if out.size:
            self.execute(op, padded, out)
        return out

    def overwrite_is_free(self, op: Operation, image: np.ndarray, *, border: str = "nearest",
                          cval: float = 0.0) -> bool:
        """True when :meth:`run` of ``op`` with ``out=image`` costs no more than a new output:
        elementwise operations, and engines that read the image through a padded copy."""
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
