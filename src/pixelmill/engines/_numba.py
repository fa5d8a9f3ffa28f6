"""The ``numba`` engine: JIT-compiled kernels, parallel over row strips of one image."""

from __future__ import annotations

from contextlib import contextmanager

import numba
import numpy as np

from ..ops._scratch import scratch
from ._base import Engine

#: Size of the bands a result is written over its image in (see NumbaEngine._in_bands).
BAND_BYTES = 4 << 20


class NumbaEngine(Engine):
    """Numba-compiled operations (the ``numba`` flavour), multi-threaded within each image.

    ``execute`` runs the operation on the whole padded image with numba's own thread pool,
    one strip of output rows per thread; for separable filters and Sobel, ``run`` skips the
    padded copy and the kernels read the border samples in place. Results are bit-identical
    for every ``workers`` value: each output sample is computed by the same arithmetic
    whichever thread owns it.

    The kernels are compiled on first use (a few seconds) and cached on disk, so later
    processes load them instead of compiling again.

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
        place instead of padding a copy first. Into the image itself (``out=image``) they
        write band by band, each band once the next no longer reads it, so the image is
        never held twice."""
        if out is None:
            out = np.empty(image.shape, dtype=op.out_dtype(image.dtype))
        if out.size and op.reads_unpadded(image, out.dtype, border, cval, self.flavour):
            if not np.may_share_memory(out, image):
                with self._threads():
                    op.compute_unpadded(image, out, border, cval, self.flavour)
                return out
            if self._in_bands(op, image, out, border, cval):
                return out
        return super().run(op, image, border=border, cval=cval, out=out)

    def overwrite_is_free(self, op, image, *, border="nearest", cval=0.0):
        # Band by band or through the padded copy, writing over the image costs a copy of
        # the result that a new output does not (measured on 24 MP: 84 ms against 71).
        return not op.reads_unpadded(image, op.out_dtype(image.dtype), border, cval, self.flavour)

    def _band_rows(self, op, image, out_dtype, border) -> int | None:
        """Rows per band for writing ``op``'s result over ``image``, or None when bands
        cannot: the last bands of a ``wrap`` border read the first rows again."""
        top, bottom = op.halo[:2]
        rows = max(top + bottom + 1, BAND_BYTES // max(1, image[0].size * np.dtype(out_dtype).itemsize))
        if border == "wrap" and image.shape[0] > rows:
            return None
        return rows

    def _in_bands(self, op, image, out, border, cval) -> bool:
        """``op``'s result written over ``image`` (``out`` is the image): each band is
        computed into a buffer and copied over the image one band later. A band reads the
        image's rows up to a halo above and below it (and, for the mirrored borders, rows
        within a halo of the edges); once the next band is computed, none of the band's own
        rows is read again. False when ``out`` is not exactly the image, or bands cannot."""
        same = (out.shape == image.shape and out.strides == image.strides
                and out.__array_interface__["data"][0] == image.__array_interface__["data"][0])
        rows = self._band_rows(op, image, out.dtype, border) if same else None
        if rows is None:
            return False
        h = image.shape[0]
        # Reused from call to call (a library of photos): faulted in once.
        buffers = [scratch(f"numba.band{k}", (min(rows, h),) + image.shape[1:], out.dtype)
                   for k in range(2 if h > rows else 1)]
        pending = None
        with self._threads():
            for k, first in enumerate(range(0, h, rows)):
                band = buffers[k % len(buffers)][: min(rows, h - first)]
                op.compute_unpadded(image, band, border, cval, self.flavour, first_row=first)
                if pending is not None:
                    out[pending[0] : pending[0] + len(pending[1])] = pending[1]
                pending = (first, band)
            out[pending[0] : pending[0] + len(pending[1])] = pending[1]
        return True

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
