"""The operations the suites time, and the independent references they are checked against.

An operation is named by a short spec (it crosses process boundaries as text):
``invert``, ``sobel``, ``gaussian:size=5,sigma=1``, ``disk:15`` (a normalised 15 x 15 disk,
*not* separable), ``random:31`` (a seeded random normalised 31 x 31 kernel: full rank, every
weight different, so no fast path but the FFT applies), or any kernel name (``laplacian``...).

References
----------
pixelmill engines are checked against an *independent* oracle in float64:
``iinfo.max - x`` for invert, ``scipy.ndimage.convolve`` per channel (same border mode) for
kernels, and ``hypot`` of two SciPy convolutions for Sobel. Without SciPy the oracle falls back
to pixelmill's own loops-free numpy engine and the records say so.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..ops import Filter, Invert, Operation, SobelMagnitude, to_dtype

__all__ = ["make_op", "disk_kernel", "random_kernel", "oracle", "ORACLE_NAME", "numpy_result", "uint8_result", "op_label",
           "int_gaussian_row"]

BORDER = "nearest"  # pixelmill's default; every peer below is configured to match it


def disk_kernel(size: int) -> kernels.Kernel:
    """A normalised ``size`` x ``size`` disk (a "bokeh" blur): realistic and not separable."""
    r = size // 2
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    w = (xx**2 + yy**2 <= r * r).astype(np.float64)
    return kernels.from_array(w / w.sum(), f"disk-{size}")


def random_kernel(size: int) -> kernels.Kernel:
    """A ``size`` x ``size`` kernel of seeded random positive weights summing to 1 (the same
    in every process): what a user brings who designed a kernel, with no structure to exploit."""
    w = np.random.default_rng(size).random((size, size))
    return kernels.from_array(w / w.sum(), f"random-{size}")


def make_op(spec: str) -> Operation:
    """The :class:`~pixelmill.ops.Operation` for ``spec`` (convolution for kernels)."""
    if spec.startswith("disk:"):
        return Filter(disk_kernel(int(spec.split(":", 1)[1])))
    if spec.startswith("random:"):
        return Filter(random_kernel(int(spec.split(":", 1)[1])))
    from .._opspec import parse_op

    return parse_op(spec)


def op_label(spec: str) -> str:
    return make_op(spec).label


def int_gaussian_row(kernel: kernels.Kernel) -> tuple[list[int], int]:
    """A separable kernel's 1-D weights (its middle row, normalised) as integers times 1024,
    and their sum: the mask and scale libvips' integer ``convsep`` takes, as its users write
    a Gaussian (the rounding moves the result by at most a grey level)."""
    k = np.asarray(kernel.weights, dtype=np.float64)
    mid = k.shape[0] // 2
    w = k[mid] / k[mid].sum()
    ints = [int(v) for v in np.rint(w * 1024)]
    return ints, sum(ints)


def _scipy_oracle(image: np.ndarray, op: Operation, border: str) -> np.ndarray:
    import scipy.ndimage as ndi

    def conv(weights):
        img = image.astype(np.float64)
        w = np.asarray(weights, dtype=np.float64)
        if img.ndim == 3:
            return np.stack([ndi.convolve(img[..., c], w, mode=border) for c in range(img.shape[2])], axis=-1)
        return ndi.convolve(img, w, mode=border)

    if isinstance(op, SobelMagnitude):
        return np.hypot(conv(kernels.get("sobel-x").weights), conv(kernels.get("sobel-y").weights))
    assert isinstance(op, Filter)
    w = op.kernel.weights if op.flip else op.kernel.weights[::-1, ::-1]
    return conv(w)


def _have_scipy() -> bool:
    import importlib.util

    return importlib.util.find_spec("scipy") is not None


ORACLE_NAME = {
    "invert": "exact inversion (iinfo.max - x)",
    "filter": "scipy.ndimage.convolve, float64, per channel, mode 'nearest'",
    "sobel": "hypot of two scipy.ndimage.convolve (sobel-x, sobel-y), float64, mode 'nearest'",
    "fallback": "pixelmill numpy engine (SciPy is not installed: not an independent check)",
}


def oracle(image: np.ndarray, spec: str, *, border: str = BORDER) -> tuple[np.ndarray, str]:
    """``(reference result, what it is)`` for ``spec`` on ``image``.

    Invert is exact in the image dtype; filters are float32 (computed in float64).
    """
    op = make_op(spec)
    if isinstance(op, Invert):
        # The library images are unsigned; DESIGN.md's other rules are not needed here.
        return (np.iinfo(image.dtype).max - image).astype(image.dtype), ORACLE_NAME["invert"]
    if not _have_scipy():
        return numpy_result(op, image, border=border), ORACLE_NAME["fallback"]
    name = ORACLE_NAME["sobel" if isinstance(op, SobelMagnitude) else "filter"]
    return _scipy_oracle(image, op, border).astype(np.float32), name


def numpy_result(op: Operation, image: np.ndarray, *, border: str = BORDER) -> np.ndarray:
    """``op`` on ``image`` with pixelmill's ``numpy`` engine, once (a reference, not a timing)."""
    from ..engines import make_engine

    with make_engine("numpy") as engine:
        return engine.run(op, image, border=border)


def float_tolerance(reference: np.ndarray) -> float:
    """Tolerance for a float32 result against the float64 oracle: 1e-4 of the largest value.

    float32 accumulation over a few hundred taps stays far below this; any real error
    (a wrong tap, border or tile seam) is orders of magnitude larger.
    """
    peak = float(np.max(np.abs(reference))) if reference.size else 0.0
    return 1e-4 * max(1.0, peak)


def uint8_result(result: np.ndarray, spec: str) -> np.ndarray:
    """A pixelmill result as the uint8 image a user writes: the operation's default policy."""
    if result.dtype == np.uint8:
        return result
    op = make_op(spec)
    return to_dtype(result, np.uint8, policy=op.default_policy or "clip")
