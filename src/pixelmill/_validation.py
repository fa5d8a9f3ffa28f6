"""Validation at the public edge. Engines and tiles trust what passes here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import kernels as _kernels
from .errors import InvalidImageError, InvalidParameterError, UnsupportedImageError
from .ops import POLICIES
from .tiling import BORDER_MODES

SUPPORTED_DTYPES = tuple(
    np.dtype(t)
    for t in (
        np.bool_, np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64,
        np.float16, np.float32, np.float64,
    )
)


def check_image(image) -> np.ndarray:
    """An H x W or H x W x C array of a supported dtype, non-empty, in native byte order
    (a big-endian array is converted: byte order is a layout, like strides)."""
    arr = np.asarray(image)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.ndim not in (2, 3):
        raise InvalidImageError(
            f"image must be 2-D (H x W) or 3-D (H x W x C), got shape {arr.shape!r}"
        )
    if arr.size == 0:
        raise InvalidImageError(f"image is empty (shape {arr.shape!r})")
    if arr.dtype not in SUPPORTED_DTYPES:
        raise UnsupportedImageError(
            f"image dtype {arr.dtype.name!r} is not supported; use one of "
            + ", ".join(d.name for d in SUPPORTED_DTYPES)
        )
    return arr


def check_border(border) -> str:
    if border not in BORDER_MODES:
        raise InvalidParameterError(
            f"border {border!r} is not known; use one of {', '.join(BORDER_MODES)}"
        )
    return border


def check_cval(cval) -> float:
    try:
        value = float(cval)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"cval must be a number, got {cval!r}") from None
    if not math.isfinite(value):
        raise InvalidParameterError(f"cval must be finite, got {cval!r}")
    return value


def check_policy(policy) -> str:
    if policy not in POLICIES:
        raise InvalidParameterError(
            f"policy {policy!r} is not known; use one of {', '.join(POLICIES)}"
        )
    return policy


def check_out(out, shape, dtype) -> np.ndarray | None:
    """A caller-supplied output array: writable, C-contiguous, of the result's shape and dtype."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise InvalidParameterError(f"out must be a NumPy array, got {type(out).__name__}")
    if out.shape != tuple(shape) or out.dtype != np.dtype(dtype):
        raise InvalidParameterError(
            f"out must have shape {tuple(shape)!r} and dtype {np.dtype(dtype).name}, "
            f"got shape {out.shape!r} and dtype {out.dtype.name}"
        )
    if not out.flags.writeable or not out.flags.c_contiguous:
        raise InvalidParameterError("out must be a writable, C-contiguous array")
    return out


def check_kernel(kernel) -> _kernels.Kernel:
    """A Kernel from a Kernel, a registered name, a kernel file path, or a 2-D array."""
    if isinstance(kernel, _kernels.Kernel):
        return kernel
    if isinstance(kernel, str):
        if kernel in _kernels.names():
            return _kernels.get(kernel)
        if Path(kernel).suffix.lower() in (".txt", ".csv", ".npy"):
            return _kernels.from_file(kernel)
        return _kernels.get(kernel)  # raises, listing the known names
    if isinstance(kernel, Path):
        return _kernels.from_file(kernel)
    return _kernels.from_array(kernel)


def check_quality(quality) -> int:
    """A JPEG / WebP quality: an integer from 1 to 100."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise InvalidParameterError(f"quality must be an integer from 1 to 100, got {quality!r}")
    return int(quality)
