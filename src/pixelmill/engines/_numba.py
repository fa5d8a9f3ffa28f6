"""The ``numba`` engine: JIT-compiled kernels, parallel over row strips of one image."""

from __future__ import annotations

from contextlib import contextmanager

import numba
import numpy as np

from ._base import Engine


class NumbaEngine(Engine):
    """Numba-compiled operations (the ``numba`` flavour), multi-threaded within each image.

    ``execute`` runs the operation on the whole padded image with numba's own thread pool,
    one strip of output rows per thread; for separable filters and Sobel, ``run`` skips the
    padded copy and the kernels read the border samples in place. Results are bit-identical
    for every ``workers`` value: each output sample is computed by the same arithmetic
    whichever thread owns it.

    The kernels are compiled on first use (a few seconds) and cached on disk, so later
    processes load them instead of compiling again.

    The kernels compute in float32, the work dtype of 8/16-bit, float16 and float32 images.
    Images computed in float64 (float64, (u)int32, (u)int64; see
    :func:`pixelmill.ops.work_dtype`) run the numpy flavour's code on this engine, exactly
    the numpy engine's result: compiling float64 variants of every kernel would double the
    compile time for little speed.

    Parameters
    ----------
    workers : int, optional
        Threads for one image; defaults to the usable cores. Capped at
        ``numba.config.NUMBA_NUM_THREADS`` (numba's pool size, fixed when it starts; set the
        ``NUMBA_NUM_THREADS`` environment variable to allow more).
    tile_shape : (int, int), optional
        Unused: this engine does not tile.

    Notes
    -----
    :meth:`map` (a library of images) is the serial one from :class:`Engine`: images run one
    after the other and each uses ``workers`` threads. Running several images at once is
    left to the batch layer, which can combine this engine with a process pool.

    The thread count is numba's per-thread setting: ``execute`` sets it for the call and
    restores the previous value afterwards, so it does not leak into other numba code.
    Calling it from several Python threads at once needs numba's ``omp`` or ``tbb`` threading
    layer (``workqueue``, the fallback when neither is installed, is not thread-safe).
    """

    name = "numba"
    flavour = "numba"
    parallel = True

    def run(self, op, image, *, border="nearest", cval=0.0, out=None):
        """As :meth:`Engine.run`; the separable filters and Sobel read the image's border in
        place instead of padding a copy first, also when ``out`` is the image itself (the
        kernels then keep aside the few rows they read after writing over them)."""
        if out is None:
            out = np.empty(image.shape, dtype=op.out_dtype(image.dtype))
        if out.size and (out is image or not np.may_share_memory(out, image)):
            with self._threads():
                if op.compute_unpadded(image, out, border, cval, self.flavour):
                    return out
        return super().run(op, image, border=border, cval=cval, out=out)

    def execute(self, op, padded, out):
        """Fill ``out`` from ``padded`` with ``self.workers`` numba threads."""
        with self._threads():
            op.compute(padded, out, self.flavour)

    @contextmanager
    def _threads(self):
        # numba's thread count is per calling thread; restore it so it does not leak.
        threads = max(1, min(self.workers, numba.config.NUMBA_NUM_THREADS))
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            yield
        finally:
            numba.set_num_threads(previous)


def threadsafe() -> bool:
    """True when numba's threading layer lets several Python threads call the kernels at once
    (``omp`` or ``tbb``; the ``workqueue`` fallback does not)."""
    import numpy as np

    from ..ops._numba import invert_numba

    # The layer is chosen on the first parallel call.
    invert_numba(np.zeros(1, np.uint8), np.empty(1, np.uint8))
    return numba.threading_layer() in ("omp", "tbb")
