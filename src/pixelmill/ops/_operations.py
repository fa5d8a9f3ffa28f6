"""Operations: *what* to compute on an array, independent of *how* an engine schedules it.

An operation has a halo (context it needs around each output pixel), a work dtype for its
padded input, an output dtype, and one implementation per compute flavour:
``python`` (nested loops, the reference), ``numpy`` (vectorised) and ``numba`` (JIT).
Engines pad once (see :mod:`pixelmill.tiling`) and call :meth:`Operation.compute` on the
whole padded image or on tiles of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import kernels as _kernels
from ._correlate import correlate_loops, correlate_numpy
from ._invert import invert_loops, invert_numpy

__all__ = ["Operation", "Invert", "Filter", "SobelMagnitude", "FLAVOURS"]

FLAVOURS = ("python", "numpy", "numba")


class Operation:
    """Base class. Subclasses set :attr:`halo` and implement :meth:`compute`."""

    #: Output label used for folder names when several operations run at once.
    label: str = "op"
    halo: tuple[int, int, int, int] = (0, 0, 0, 0)
    #: Policy used to convert the float result back to the image dtype (None: no conversion).
    default_policy: str | None = None

    def work_dtype(self, dtype: np.dtype, flavour: str) -> np.dtype:
        """dtype of the padded input handed to :meth:`compute`."""
        return np.dtype(dtype)

    def out_dtype(self, dtype: np.dtype) -> np.dtype:
        return np.dtype(dtype)

    def compute(self, block: np.ndarray, out: np.ndarray, flavour: str) -> None:
        """Write the result for the padded ``block`` into ``out`` (shape: block minus halo)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Invert(Operation):
    """Photographic negative; see :func:`pixelmill.invert` for the dtype rules."""

    label: str = "invert"

    def compute(self, block, out, flavour):
        if flavour == "python":
            invert_loops(block, out)
        elif flavour == "numba":
            from ._numba import invert_numba

            invert_numba(block, out)
        else:
            invert_numpy(block, out)


def _float_work_dtype(flavour: str) -> np.dtype:
    # The loops reference runs in float64; every other flavour in float32 (DESIGN.md).
    return np.dtype(np.float64 if flavour == "python" else np.float32)


@dataclass(frozen=True)
class Filter(Operation):
    """Correlation with ``kernel``, or convolution (``flip=True``: the kernel is rotated 180°)."""

    kernel: _kernels.Kernel
    flip: bool = True

    @property
    def label(self) -> str:  # type: ignore[override]
        return self.kernel.name

    @property
    def halo(self) -> tuple[int, int, int, int]:  # type: ignore[override]
        return self.kernel.halo(flipped=self.flip)

    @property
    def default_policy(self) -> str:  # type: ignore[override]
        return self.kernel.default_policy

    @property
    def effective_kernel(self) -> _kernels.Kernel:
        """The kernel as correlated: flipped for convolution."""
        return self.kernel.flipped() if self.flip else self.kernel

    def work_dtype(self, dtype, flavour):
        return _float_work_dtype(flavour)

    def out_dtype(self, dtype):
        return np.dtype(np.float32)

    def compute(self, block, out, flavour):
        k = self.effective_kernel
        if flavour == "python":
            correlate_loops(block, k.weights, out)
        elif flavour == "numba":
            from ._numba import correlate_numba

            correlate_numba(block, k.weights, out, k.factors)
        else:
            correlate_numpy(block, k.weights, out, k.factors)


@dataclass(frozen=True)
class SobelMagnitude(Operation):
    """Gradient magnitude ``sqrt(gx^2 + gy^2)`` from the ``sobel-x`` and ``sobel-y`` kernels."""

    label: str = "sobel"
    halo: tuple[int, int, int, int] = (1, 1, 1, 1)
    default_policy: str = "clip"

    def work_dtype(self, dtype, flavour):
        return _float_work_dtype(flavour)

    def out_dtype(self, dtype):
        return np.dtype(np.float32)

    def compute(self, block, out, flavour):
        gx = Filter(_kernels.get("sobel-x"))
        gy = Filter(_kernels.get("sobel-y"))
        work = np.float64 if flavour == "python" else np.float32
        tx = np.empty(out.shape, dtype=work)
        ty = np.empty(out.shape, dtype=work)
        gx.compute(block, tx, flavour)
        gy.compute(block, ty, flavour)
        out[...] = np.hypot(tx, ty)
