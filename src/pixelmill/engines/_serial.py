"""The two serial engines: ``loops`` (the reference) and ``numpy`` (vectorised)."""

from __future__ import annotations

from ._base import Engine


class LoopsEngine(Engine):
    """Plain nested Python loops over pixels and kernel taps, in float64.

    The reference every other engine is checked against; slow on purpose.
    """

    name = "loops"
    flavour = "python"


class NumpyEngine(Engine):
    """Vectorised NumPy: one whole-array operation per kernel tap, no per-pixel Python."""

    name = "numpy"
    flavour = "numpy"
