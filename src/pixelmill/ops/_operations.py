"""Operations: *what* to compute on an array, independent of *how* an engine schedules it.

An operation has a halo (context it needs around each output pixel), a work dtype for its
padded input, an output dtype, and one implementation per compute flavour:
``python`` (nested loops, the reference), ``numpy`` (vectorised) and ``numba`` (JIT).
Engines pad once (see :mod:`pixelmill.tiling`) and call :meth:`Operation.compute` on the
whole padded image or on tiles of it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .. import kernels as _kernels
from .. import tiling
from ._convert import convert_into
from ._correlate import correlate_loops, correlate_numpy
from ._invert import invert_loops, invert_numpy
from ._scratch import scratch

__all__ = ["Operation", "Invert", "Filter", "SobelMagnitude", "FLAVOURS", "TILEWISE_POLICIES"]

FLAVOURS = ("python", "numpy", "numba")


class Operation:
    """Base class. Subclasses set :attr:`halo` and implement :meth:`compute`."""

    #: Output label used for folder names when several operations run at once.
    label: str = "op"
    halo: tuple[int, int, int, int] = (0, 0, 0, 0)
    #: Policy used to convert the float result back to the image dtype (None: no conversion).
    default_policy: str | None = None
    #: True when :meth:`compute` needs work arrays the size of its block (float copies, sums),
    #: which a serial engine keeps small and warm by computing strips of rows.
    uses_work_arrays: bool = True

    def work_dtype(self, dtype: np.dtype, flavour: str) -> np.dtype:
        """dtype of the padded input handed to :meth:`compute`."""
        return np.dtype(dtype)

    def out_dtype(self, dtype: np.dtype) -> np.dtype:
        return np.dtype(dtype)

    def compute(self, block: np.ndarray, out: np.ndarray, flavour: str) -> None:
        """Write the result for the padded ``block`` into ``out`` (shape: block minus halo)."""
        raise NotImplementedError

    def reads_unpadded(self, image: np.ndarray, out_dtype, border: str, cval: float, flavour: str) -> bool:
        """True when :meth:`compute_unpadded` can run for these arguments."""
        return False

    def compute_unpadded(self, image: np.ndarray, out: np.ndarray, border: str, cval: float, flavour: str) -> bool:
        """Write the result for the *unpadded* ``image`` into ``out``, reading the samples
        outside it by the border rule in place of a padded copy; False when this operation
        cannot for these arguments (:meth:`reads_unpadded`), and the caller pads. ``out``
        must not overlap ``image``, unless it is ``image`` itself."""
        return False

    def with_policy(self, policy: str | None) -> Operation:
        """This operation converting its result with ``policy`` tile by tile, when it can
        (a filter, a per-pixel policy); otherwise itself, and the caller converts afterwards."""
        return self


@dataclass(frozen=True)
class Invert(Operation):
    """Photographic negative; see :func:`pixelmill.invert` for the dtype rules."""

    label: str = "invert"
    uses_work_arrays = False

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


#: Policies that convert each pixel on its own, so they can run tile by tile, fused with the
#: filter: no full-size float image is ever needed. ``normalize`` needs the whole result's
#: range and ``float32`` keeps it, so those return the float result.
TILEWISE_POLICIES = ("clip", "abs", "shift")


class _FloatFilter(Operation):
    """Shared by the filters: float arithmetic on a padded block of any dtype, and an
    optional conversion back to the image dtype (``policy``) done tile by tile."""

    policy: str | None = None

    def work_dtype(self, dtype, flavour):
        return _float_work_dtype(flavour)

    def with_policy(self, policy):
        return replace(self, policy=policy) if policy in TILEWISE_POLICIES and policy != self.policy else self

    def out_dtype(self, dtype):
        if self.policy in TILEWISE_POLICIES:
            return np.dtype(dtype)
        return np.dtype(np.float32)

    def compute(self, block, out, flavour):
        if flavour == "numba":
            from ._numba import store_code

            store = store_code(out.dtype, self.policy)
            if store is not None:  # the kernels convert in and out as they go
                self.compute_numba(block, out, store)
                return
        # The padded input holds the image dtype (a quarter of float32's memory for 8-bit
        # images); each tile is converted to the work dtype here, into a reused work array.
        work = _float_work_dtype(flavour)
        if block.dtype != work:
            converted = scratch("filter.block", block.shape, work)
            np.copyto(converted, block, casting="unsafe")
            block = converted
        if out.dtype == np.float32 and self.policy not in TILEWISE_POLICIES:
            self.compute_float(block, out, flavour)
            return
        result = scratch("filter.result", out.shape, np.float32)
        self.compute_float(block, result, flavour)
        convert_into(result, out, self.policy)

    def reads_unpadded(self, image, out_dtype, border, cval, flavour):
        return self._unpadded_store(image, out_dtype, border, cval, flavour) is not None

    def compute_unpadded(self, image, out, border, cval, flavour):
        store = self._unpadded_store(image, out.dtype, border, cval, flavour)
        if store is None:
            return False
        self.compute_numba(image, out, store, (self.halo, border, cval))
        return True

    def _unpadded_store(self, image, out_dtype, border, cval, flavour):
        """The numba store code when the kernels can read ``image`` unpadded, else None."""
        # The numba kernels that store the image dtype themselves can read the border in
        # place (separable filters and Sobel): a 24 MP photo then needs no padded copy (a
        # fifth of a Gaussian's time).
        if flavour != "numba" or image.ndim not in (2, 3) or not self._separable():
            return None
        top, bottom, left, right = self.halo
        if image.shape[1] <= left + right or tiling.pad_dtype(image.dtype, np.float32, border, cval) != image.dtype:
            return None
        from ._numba import store_code

        return store_code(out_dtype, self.policy)

    def _separable(self) -> bool:
        """True when the numba kernel is the separable one (which alone reads unpadded images)."""
        return True

    def compute_float(self, block, out, flavour):
        """Write the float32 result for a float ``block`` into ``out``."""
        raise NotImplementedError

    def compute_numba(self, block, out, store, border=None) -> None:
        """The numba flavour, reading ``block`` in its own dtype and storing by ``store``;
        with ``border`` (``(halo, mode, cval)``) ``block`` is the unpadded image (separable
        kernels only, see :meth:`_separable`)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Filter(_FloatFilter):
    """Correlation with ``kernel``, or convolution (``flip=True``: the kernel is rotated 180°).

    With ``policy`` in :data:`TILEWISE_POLICIES` the result is converted to the image dtype;
    otherwise it is float32.
    """

    kernel: _kernels.Kernel
    flip: bool = True
    policy: str | None = None

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

    def _separable(self):
        return self.effective_kernel.factors is not None

    def compute_numba(self, block, out, store, border=None):
        from ._numba import correlate_numba

        k = self.effective_kernel
        if k.factors is None:
            # Few distinct weights (disk, box, ring) on 8/16-bit images: exact level sums.
            from ._numba_levels import correlate_levels_numba

            if correlate_levels_numba(block, k.weights, out, store):
                return
        correlate_numba(block, k.weights, out, k.factors, store, border)

    def compute_float(self, block, out, flavour):
        k = self.effective_kernel
        if flavour == "python":
            correlate_loops(block, k.weights, out)
        elif flavour == "numba":
            from ._numba import correlate_numba

            correlate_numba(block, k.weights, out, k.factors)
        else:
            correlate_numpy(block, k.weights, out, k.factors)


_SOBEL_X = Filter(_kernels.get("sobel-x"))
_SOBEL_Y = Filter(_kernels.get("sobel-y"))


@dataclass(frozen=True)
class SobelMagnitude(_FloatFilter):
    """Gradient magnitude ``sqrt(gx^2 + gy^2)`` from the ``sobel-x`` and ``sobel-y`` kernels."""

    label: str = "sobel"
    halo: tuple[int, int, int, int] = (1, 1, 1, 1)
    default_policy: str = "clip"
    policy: str | None = None

    def compute_float(self, block, out, flavour):
        work = _float_work_dtype(flavour)
        tx = scratch("sobel.x", out.shape, work)
        ty = scratch("sobel.y", out.shape, work)
        _SOBEL_X.compute_float(block, tx, flavour)
        _SOBEL_Y.compute_float(block, ty, flavour)
        np.hypot(tx, ty, out=tx)
        out[...] = tx

    def compute_numba(self, block, out, store, border=None):
        from ._numba import sobel_numba

        factors = _SOBEL_X.effective_kernel.factors, _SOBEL_Y.effective_kernel.factors
        sobel_numba(block, *factors, out, store, border)
