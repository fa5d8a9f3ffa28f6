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
from ._convert import convert_into, work_dtype
from ._correlate import correlate_loops, correlate_numpy
from ._invert import invert_loops, invert_numpy
from ._scratch import scratch

__all__ = ["Operation", "Invert", "Filter", "SobelMagnitude", "FLAVOURS", "METHODS", "TILEWISE_POLICIES",
           "fuse_policy"]

FLAVOURS = ("python", "numpy", "numba")

#: How a filter computes its sums (``Filter.method``): ``direct`` (every tap; separable
#: kernels as a row and a column pass; the exact level sums for few distinct weights),
#: ``fft`` (overlap-save FFTs, :mod:`._fft`), ``lowrank`` (a rank-r kernel as r separable
#: passes, :mod:`._lowrank`), or ``auto``: the cheapest by :func:`._fft.auto_method`'s rule
#: (the ``auto`` engine decides from its calibrated costs instead). The loops reference
#: (``python`` flavour) is always direct, and so is a block holding NaN or infinity (FFTs
#: and low-rank terms would spread it to samples whose direct sum skips it).
METHODS = ("auto", "direct", "fft", "lowrank")


class Operation:
    """Base class. Subclasses set :attr:`halo` and implement :meth:`compute`."""

    #: Output label used for folder names when several operations run at once.
    label: str = "op"
    halo: tuple[int, int, int, int] = (0, 0, 0, 0)
    #: Policy used to convert the float result back to the image dtype (None: no conversion).
    default_policy: str | None = None
    #: True when each output sample depends on its own input sample only, in the image dtype
    #: (no halo, no float work arrays): any split of the image gives nothing but more calls.
    pointwise: bool = False

    def work_dtype(self, dtype: np.dtype, flavour: str) -> np.dtype:
        """dtype of the padded input handed to :meth:`compute`."""
        return np.dtype(dtype)

    def out_dtype(self, dtype: np.dtype) -> np.dtype:
        return np.dtype(dtype)

    def compute(self, block: np.ndarray, out: np.ndarray, flavour: str) -> None:
        """Write the result for the padded ``block`` into ``out`` (shape: block minus halo)."""
        raise NotImplementedError

    def compute_unpadded(self, image: np.ndarray, out: np.ndarray, border: str, cval: float, flavour: str) -> bool:
        """Write the result for the *unpadded* ``image`` into ``out``, reading the samples
        outside it by the border rule in place of a padded copy; False when this operation
        cannot for these arguments, and the caller pads. ``out``
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
    pointwise = True

    def compute(self, block, out, flavour):
        if flavour == "numba" and block.dtype not in _NUMBA_SAMPLES:
            flavour = "numpy"  # int64, uint64, float16: the same result, no new numba specialisation
        _INVERT[flavour]()(block, out)


def _invert_numba():
    from ._numba import invert_numba

    return invert_numba


#: The implementation of each flavour (the numba one imported on first use).
_INVERT = {"python": lambda: invert_loops, "numpy": lambda: invert_numpy, "numba": _invert_numba}


def _float_work_dtype(result_dtype, flavour: str) -> np.dtype:
    """The arithmetic dtype for a result stored as ``result_dtype`` (the image dtype with a
    tilewise policy, else the float result: :func:`work_dtype` of either is the image's).
    The loops reference runs in float64 whatever the result (DESIGN.md)."""
    return np.dtype(np.float64) if flavour == "python" else work_dtype(result_dtype)


#: Sample dtypes the numba kernels are compiled for (bool is read as uint8). Other images
#: (float16) are converted to the work dtype first, and float64 work runs the numpy flavour's
#: code: every compiled specialisation adds to the first run's compile time, and float64
#: variants would double them for no speed that matters.
_NUMBA_SAMPLES = tuple(
    np.dtype(t) for t in (np.bool_, np.uint8, np.uint16, np.int8, np.int16, np.uint32, np.int32, np.float32, np.float64)
)


#: Policies that convert each pixel on its own, so they can run tile by tile, fused with the
#: filter: no full-size float image is ever needed. ``normalize`` needs the whole result's
#: range and ``float32`` keeps it, so those return the float result.
TILEWISE_POLICIES = ("clip", "abs", "shift")


def fuse_policy(op: Operation, policy: str | None, dtype) -> tuple[Operation, str | None]:
    """``(operation to run, policy left for its result)``: the one rule for converting a result
    back to the image ``dtype``.

    Per-pixel policies (:data:`TILEWISE_POLICIES`) are fused into a filter, which then converts
    tile by tile and never makes a full-size float result; ``normalize`` needs the whole
    result's range, so it is left for :func:`~pixelmill.ops.to_dtype` afterwards, also for a
    float image. ``None`` and ``float32`` keep the float result; an operation without a float
    result (inversion, in the image's dtype) needs nothing.

    >>> from pixelmill import kernels
    >>> fuse_policy(Filter(kernels.get("gaussian")), "clip", np.uint8)[0].policy
    'clip'
    >>> fuse_policy(Filter(kernels.get("gaussian")), "normalize", np.float32)[1]
    'normalize'
    >>> fuse_policy(Invert(), "clip", np.uint8)
    (Invert(label='invert'), None)
    """
    if policy is None or policy == "float32" or not isinstance(op, _FloatFilter):
        return op, None
    fused = op.with_policy(policy)
    return fused, (None if fused.policy == policy else policy)


class _FloatFilter(Operation):
    """Shared by the filters: float arithmetic on a padded block of any dtype, and an
    optional conversion back to the image dtype (``policy``) done tile by tile."""

    policy: str | None = None

    def work_dtype(self, dtype, flavour):
        return _float_work_dtype(dtype, flavour)

    def with_policy(self, policy):
        return replace(self, policy=policy) if policy in TILEWISE_POLICIES and policy != self.policy else self

    def out_dtype(self, dtype):
        if self.policy in TILEWISE_POLICIES:
            return np.dtype(dtype)
        return work_dtype(dtype)

    def compute(self, block, out, flavour):
        work = _float_work_dtype(out.dtype, flavour)
        if flavour == "numba":
            if work == np.float64:
                # The numba kernels are float32 arithmetic: float64 work runs the numpy
                # flavour's code (exact, and no float64 specialisations to compile).
                flavour = "numpy"
            elif block.dtype in _NUMBA_SAMPLES:
                from ._numba import store_code

                store = store_code(out.dtype, self.policy)
                if store is not None:  # the kernels convert in and out as they go
                    self.compute_numba(block, out, store)
                    return
        # The padded input holds the image dtype (a quarter of float32's memory for 8-bit
        # images); each tile is converted to the work dtype here, into a reused work array.
        if block.dtype != work:
            converted = scratch("filter.block", block.shape, work)
            np.copyto(converted, block, casting="unsafe")
            block = converted
        if out.dtype.kind == "f" and self.policy not in TILEWISE_POLICIES:
            self.compute_float(block, out, flavour)
            return
        result = scratch("filter.result", out.shape, work)
        self.compute_float(block, result, flavour)
        convert_into(result, out, self.policy)

    def compute_unpadded(self, image, out, border, cval, flavour):
        store = self._unpadded_store(image, out.dtype, border, cval, flavour)
        if store is None:
            return False
        self.compute_numba(image, out, store, (self.halo, border, cval))
        return True

    def _unpadded_store(self, image, out_dtype, border, cval, flavour):
        """The numba store code when the kernels can read ``image`` unpadded, else None."""
        # The numba kernels that store the image dtype themselves can read the border in
        # place (separable filters and Sobel): the image then needs no padded copy.
        if flavour != "numba" or image.ndim not in (2, 3) or not self._separable():
            return None
        if image.dtype not in _NUMBA_SAMPLES or work_dtype(out_dtype) != np.float32:
            return None
        if not tiling.readable_in_place(image, self.halo, border, cval):
            return None
        from ._numba import store_code

        return store_code(out_dtype, self.policy)

    def _separable(self) -> bool:
        """True when the numba kernel is the separable one (which alone reads unpadded images)."""
        return True

    def compute_float(self, block, out, flavour):
        """Write the float result for a float ``block`` (the work dtype) into ``out``."""
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
    otherwise it is the float work dtype (:func:`~pixelmill.ops.work_dtype`).
    """

    kernel: _kernels.Kernel
    flip: bool = True
    policy: str | None = None
    #: SciPy's ``origin`` ``(oy, ox)``: shifts the kernel's anchor (see :meth:`Kernel.halo`).
    origin: tuple[int, int] = (0, 0)
    #: How the sums are computed (:data:`METHODS`).
    method: str = "auto"

    @property
    def label(self) -> str:  # type: ignore[override]
        return self.kernel.name

    @property
    def halo(self) -> tuple[int, int, int, int]:  # type: ignore[override]
        return self.kernel.halo(flipped=self.flip, origin=self.origin)

    @property
    def default_policy(self) -> str:  # type: ignore[override]
        return self.kernel.default_policy

    @property
    def effective_kernel(self) -> _kernels.Kernel:
        """The kernel as correlated: flipped for convolution."""
        return self.kernel.flipped() if self.flip else self.kernel

    def resolved_method(self, flavour: str) -> str:
        """``direct``, ``fft`` or ``lowrank``: what this filter runs on ``flavour`` (the
        choice depends on the kernel and flavour only, so every tile of an image makes it alike)."""
        from ._fft import auto_method

        if flavour == "python":
            return "direct"
        method = self.method
        if method == "auto":
            method = auto_method(self.effective_kernel, flavour)
        if method == "lowrank" and self._lowrank() is None:
            return "direct"
        if method != "direct" and self.effective_kernel.factors is not None:
            return "direct"  # rank 1: the separable passes are the low-rank and cheapest path
        return method

    def _lowrank(self):
        from ._lowrank import lowrank_factors

        return lowrank_factors(self.effective_kernel)

    def _separable(self):
        return self.effective_kernel.factors is not None

    def compute(self, block, out, flavour):
        resolved = method = self.resolved_method(flavour)
        if method != "direct" and block.dtype.kind == "f" and not np.isfinite(block).all():
            method = "direct"  # a NaN or inf would reach samples whose direct sum skips it
        if method == "fft":
            # The FFTs read the block in its own dtype (no float copy) and convert FFT block by
            # FFT block. The numba flavour runs them on numba's thread count (the numba engine's
            # workers); the other flavours' engines tile, so one thread per tile.
            workers = 1
            if flavour == "numba":
                import numba

                workers = numba.get_num_threads()
            self._fft(block, out, workers)
            return
        if resolved == "lowrank" and method == "direct":
            self = replace(self, method="direct")
        super().compute(block, out, flavour)

    def _fft(self, block, out, workers):
        from ._fft import correlate_fft

        if out.dtype.kind == "f" and self.policy not in TILEWISE_POLICIES:
            correlate_fft(block, self.effective_kernel.weights, out, workers=workers)
            return
        policy = self.policy

        def convert(result, dst):
            convert_into(result, dst, policy)

        correlate_fft(block, self.effective_kernel.weights, out, workers=workers, store=convert)

    def _lowrank_sum(self, block, out, flavour):
        """The sum of the low-rank terms' separable passes, in the work dtype, then converted."""
        terms = self._lowrank()
        # A float ``out`` takes the float result (compute_float's contract); an image-dtype
        # one (the numba flavour's fused policy) gets it converted.
        work = out.dtype if out.dtype.kind == "f" else np.dtype(np.float32)
        total = out if out.dtype.kind == "f" else scratch("filter.lowrank", out.shape, work)
        part = scratch("filter.lowrank.part", out.shape, work)
        correlate = _CORRELATE[flavour]()
        for i, (column, row) in enumerate(terms):
            correlate(block, np.outer(column, row), total if i == 0 else part, (column, row))
            if i:
                total += part
        if total is not out:
            convert_into(total, out, self.policy)

    def compute_numba(self, block, out, store, border=None):
        from ._numba import correlate_numba

        k = self.effective_kernel
        if border is None and self.resolved_method("numba") == "lowrank":
            self._lowrank_sum(block, out, "numba")
            return
        if k.factors is None:
            # Few distinct weights (disk, box, ring) on 8/16-bit images: exact level sums.
            from ._numba_levels import correlate_levels_numba

            if correlate_levels_numba(block, k.weights, out, store):
                return
        correlate_numba(block, k.weights, out, k.factors, store, border)

    def compute_float(self, block, out, flavour):
        k = self.effective_kernel
        if self.resolved_method(flavour) == "lowrank":
            self._lowrank_sum(block, out, flavour)
            return
        _CORRELATE[flavour]()(block, k.weights, out, k.factors)


def _correlate_numba():
    from ._numba import correlate_numba

    return correlate_numba


#: The float correlation of each flavour, called as ``fn(block, weights, out, factors)``.
_CORRELATE = {
    "python": lambda: lambda block, weights, out, factors: correlate_loops(block, weights, out),
    "numpy": lambda: correlate_numpy,
    "numba": _correlate_numba,
}


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
        tx = scratch("sobel.x", out.shape, block.dtype)
        ty = scratch("sobel.y", out.shape, block.dtype)
        _SOBEL_X.compute_float(block, tx, flavour)
        _SOBEL_Y.compute_float(block, ty, flavour)
        np.hypot(tx, ty, out=tx)
        out[...] = tx

    def compute_numba(self, block, out, store, border=None):
        from ._numba import sobel_numba

        factors = _SOBEL_X.effective_kernel.factors, _SOBEL_Y.effective_kernel.factors
        sobel_numba(block, *factors, out, store, border)
