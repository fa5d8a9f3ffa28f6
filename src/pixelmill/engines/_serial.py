"""The two serial engines: ``loops`` (the reference) and ``numpy`` (vectorised)."""

from __future__ import annotations

from ._base import Engine, compute_tiles


class LoopsEngine(Engine):
    """Plain nested Python loops over pixels and kernel taps, in float64.

    The reference every other engine is checked against; slow on purpose.
    """

    name = "loops"
    flavour = "python"


class NumpyEngine(Engine):
    """Vectorised NumPy: one array operation per kernel tap, no per-pixel Python.

    The image is computed in strips of rows (:func:`~pixelmill.tiling.auto_tile_shape`, about
    1 MB of output each), one after the other: the float work arrays of a strip are reused
    for the next (see :mod:`pixelmill.ops._scratch`), so a 24 MP photo needs a few MB of them
    instead of several float copies of the whole image, and they stay warm in cache. An
    operation without work arrays (inversion) runs in one piece: strips would only add calls.
    """

    name = "numpy"
    flavour = "numpy"

    def execute(self, op, padded, out):
        if op.pointwise:
            op.compute(padded, out, self.flavour)
            return
        compute_tiles(op, padded, out, self.tiles_for(out.shape, out.dtype.itemsize), self.flavour)
