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
    """An H x W or H x W x C array of a supported dtype, in native byte order (a big-endian
    array is converted: byte order is a layout, like strides). It may be empty."""
    arr = np.asarray(image)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.ndim not in (2, 3):
        raise InvalidImageError(
            f"image must be 2-D (H x W) or 3-D (H x W x C), got shape {arr.shape!r}"
        )
    if arr.dtype not in SUPPORTED_DTYPES:
        raise UnsupportedImageError(
            f"image dtype {arr.dtype.name!r} is not supported; use one of "
            + ", ".join(d.name for d in SUPPORTED_DTYPES)
        )
    return arr


class _Auto:
    """The default ``channel_axis``: -1 for a 3-D image whose last axis has 1-4 channels."""

    def __repr__(self) -> str:
        return "'auto'"


#: The default of ``channel_axis`` (see :func:`check_planes`).
AUTO = _Auto()
#: Most channels the default ``channel_axis`` takes a last axis for (grey+alpha, RGB, RGBA).
MAX_AUTO_CHANNELS = 4


def check_planes(image, channel_axis=AUTO):
    """``(planes, restore)``: the image as H x W or H x W x C (channels last), and a function
    giving a result of ``planes``' shape the caller's layout back (None: it has it already).

    A 1-D image is one row; ``channel_axis`` names the channel axis of a 3-D image (moved
    last, and back); by default it is the last one when it has at most 4 entries.
    """
    arr = np.asarray(image)
    if channel_axis is not AUTO and channel_axis is not None:
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
            raise InvalidParameterError(
                f"channel_axis must be an integer axis or None, got {channel_axis!r}"
            )
    if arr.ndim == 1:
        if channel_axis is not AUTO and channel_axis is not None:
            raise InvalidParameterError(
                f"channel_axis={channel_axis!r} was given for a 1-D image (one row, no channels); "
                "leave it out or pass None"
            )
        return check_image(arr[np.newaxis]), lambda result: result[0]
    if arr.ndim == 2:
        if channel_axis is not AUTO and channel_axis is not None:
            raise InvalidParameterError(
                f"channel_axis={channel_axis!r} was given for a 2-D image of shape {arr.shape!r}, "
                "which has no channel axis (H x W); leave it out or pass None"
            )
        return check_image(arr), None
    if arr.ndim != 3:
        raise InvalidImageError(
            f"image must be 1-D, 2-D (H x W) or 3-D (with a channel axis), got shape {arr.shape!r}"
        )
    if channel_axis is None:
        raise InvalidImageError(
            f"channel_axis=None on a 3-D image of shape {arr.shape!r}: pixelmill filters 2-D planes "
            "(volumes are not supported). Give the channel axis (channel_axis=-1 for H x W x C), or "
            "loop over the planes: np.stack([pixelmill.convolve(plane, kernel) for plane in volume])"
        )
    if channel_axis is AUTO:
        if arr.shape[-1] > MAX_AUTO_CHANNELS:
            raise InvalidImageError(
                f"image of shape {arr.shape!r}: its last axis has {arr.shape[-1]} entries, more than the "
                f"{MAX_AUTO_CHANNELS} channels taken by default; pass channel_axis= to name the channel "
                "axis (pixelmill filters 2-D planes; volumes are not supported)"
            )
        return check_image(arr), None
    if not -3 <= channel_axis <= 2:
        raise InvalidParameterError(
            f"channel_axis={channel_axis!r} is out of range for a 3-D image; use -3 to 2 (or None for 2-D)"
        )
    axis = int(channel_axis) % 3
    if axis == 2:
        return check_image(arr), None
    moved = check_image(np.moveaxis(arr, axis, -1))
    return moved, lambda result: np.ascontiguousarray(np.moveaxis(result, -1, axis))


#: SciPy's other names of the border modes: for filters (no interpolation) they are the same.
BORDER_ALIASES = {"grid-mirror": "reflect", "grid-wrap": "wrap", "grid-constant": "constant"}


def check_border(border) -> str:
    if isinstance(border, str) and border in BORDER_ALIASES:
        return BORDER_ALIASES[border]
    if border not in BORDER_MODES:
        raise InvalidParameterError(
            f"border {border!r} is not known; use one of {', '.join(BORDER_MODES)} "
            f"(or SciPy's {', '.join(BORDER_ALIASES)})"
        )
    return border


def check_origin(origin, shape) -> tuple[int, int]:
    """SciPy's ``origin``: an int for both axes or ``(oy, ox)``, each within
    ``-(n // 2) .. (n - 1) // 2`` for a kernel side ``n``."""
    values = tuple(origin) if isinstance(origin, (tuple, list, np.ndarray)) else (origin, origin)
    if len(values) != 2 or any(isinstance(o, bool) or not isinstance(o, (int, np.integer)) for o in values):
        raise InvalidParameterError(
            f"origin must be an integer or a pair of integers (oy, ox), got {origin!r}"
        )
    for o, n, axis in zip(values, shape, ("rows", "columns")):
        if not -(n // 2) <= o <= (n - 1) // 2:
            raise InvalidParameterError(
                f"origin {origin!r} is out of range for a kernel of {n} {axis}: "
                f"use {-(n // 2)} to {(n - 1) // 2}"
            )
    return int(values[0]), int(values[1])


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


_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}


def check_memory_limit(value) -> int | None:
    """A memory budget in bytes from an int or a string such as ``"1GB"``, ``"512MiB"`` or
    ``"2.5 GB"`` (decimal units, and the binary ``KiB``/``MiB``/``GiB``); None: the default."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
        return int(value)
    if isinstance(value, str):
        text = value.strip().upper().replace(" ", "")
        number = text.rstrip("KMGTIB")
        unit = text[len(number):]
        try:
            amount = float(number)
        except ValueError:
            amount = -1.0
        if unit in _SIZE_UNITS and math.isfinite(amount) and amount > 0:
            return int(amount * _SIZE_UNITS[unit])
    raise InvalidParameterError(
        f"memory_limit (--memory-limit) must be a positive number of bytes or a size such as '1GB' "
        f"or '512MiB', got {value!r}"
    )


def check_streamed(image, channel_axis) -> bool:
    """True when ``image`` (an array-like not in memory: zarr, memmap, ...) can be streamed as it
    is: H x W, or H x W x C with the channels last, of a supported dtype in native byte order.
    False for a NumPy memmap that cannot (it is computed in memory); an error for the others."""
    shape = tuple(int(n) for n in image.shape)
    dtype = np.dtype(image.dtype)
    last = len(shape) == 3 and (
        channel_axis in (-1, 2) or (channel_axis is AUTO and shape[-1] <= MAX_AUTO_CHANNELS)
    )
    plain = len(shape) == 2 and (channel_axis is AUTO or channel_axis is None)
    if (last or plain) and dtype in SUPPORTED_DTYPES:
        return True
    if isinstance(image, np.memmap):
        return False
    raise InvalidImageError(
        f"an image that is not in memory ({type(image).__name__} of shape {shape!r}, dtype {dtype.str!r}) is "
        "streamed as H x W or H x W x C with the channels last, of a supported dtype in native byte order; "
        "give it so, or load it with np.asarray"
    )


def check_sink(out, shape, dtype):
    """An array-like result (zarr array, memmap) of the result's shape and dtype, or None."""
    if out is None:
        return None
    if not (hasattr(out, "__setitem__") and hasattr(out, "shape") and hasattr(out, "dtype")):
        raise InvalidParameterError(f"out must be an array-like with shape, dtype and item assignment, got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape) or np.dtype(out.dtype) != np.dtype(dtype):
        raise InvalidParameterError(
            f"out must have shape {tuple(shape)!r} and dtype {np.dtype(dtype).name}, "
            f"got shape {tuple(out.shape)!r} and dtype {np.dtype(out.dtype).name}"
        )
    return out


def check_method(method) -> str:
    """How a filter computes its sums: one of :data:`pixelmill.ops.METHODS`."""
    from .ops import METHODS

    if method not in METHODS:
        raise InvalidParameterError(f"method {method!r} is not known; use one of {', '.join(METHODS)}")
    return method
