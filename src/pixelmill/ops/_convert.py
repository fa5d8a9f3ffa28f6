"""Converting a float result back to an image dtype, by an explicit, named policy.

Nothing here ever wraps around: every integer result is rounded to nearest and clipped.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidParameterError

__all__ = ["POLICIES", "to_dtype", "convert_into", "dtype_range", "work_dtype"]

#: ``clip``: round and clip to the dtype's range; ``abs``: magnitude, then clip (edge filters);
#: ``shift``: add mid-grey, then clip (shows signed responses); ``normalize``: stretch the result's
#: min..max onto the full range; ``float32``: keep the float result (TIFF/NPY output), which is
#: float64 for the images computed in float64 (see :func:`work_dtype`); the name is kept.
POLICIES = ("clip", "abs", "shift", "normalize", "float32")


def work_dtype(image_dtype) -> np.dtype:
    """The float dtype a filter computes in, and returns, for an image of ``image_dtype``.

    float64 for float64 images and for integers wider than 16 bits (float32 cannot hold every
    int32/uint32/int64 value exactly); float32 for bool, 8- and 16-bit integers, float16 and
    float32. The one place this rule lives: filters, :func:`to_dtype` and the fused policies
    all use it.

    >>> work_dtype(np.uint8), work_dtype(np.int32), work_dtype(np.float64), work_dtype(np.float16)
    (dtype('float32'), dtype('float64'), dtype('float64'), dtype('float32'))
    """
    dtype = np.dtype(image_dtype)
    if dtype == np.float64 or (dtype.kind in "iu" and dtype.itemsize > 2):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def dtype_range(dtype) -> tuple[float, float]:
    """The value range an image of ``dtype`` uses: integer limits, [0, 1] for float and bool."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return 0.0, 1.0


def to_dtype(result: np.ndarray, dtype, *, policy: str = "clip") -> np.ndarray:
    """Convert a float filter result to ``dtype`` with ``policy`` (see :data:`POLICIES`).

    Parameters
    ----------
    result : ndarray
        Float result of a filter.
    dtype : dtype
        Target image dtype (uint8, uint16, int16, int32, int64, float32, bool, ...). The
        policy's arithmetic runs in :func:`work_dtype` of it (float64 for the wide integers),
        so the clip is exact at every dtype's limits.
    policy : str
        One of ``clip``, ``abs``, ``shift``, ``normalize``, ``float32``.

    Raises
    ------
    InvalidParameterError
        For an unknown policy.

    Examples
    --------
    >>> import numpy as np
    >>> to_dtype(np.array([-3.0, 2.5, 300.0]), np.uint8)
    array([  0,   2, 255], dtype=uint8)
    >>> to_dtype(np.array([-3.0, 2.6, 300.0]), np.uint8, policy="abs")
    array([  3,   3, 255], dtype=uint8)
    >>> to_dtype(np.array([3e9, -3e9]), np.int32)
    array([ 2147483647, -2147483648], dtype=int32)
    >>> to_dtype(np.array([1e19, 2.0**63]), np.int64)
    array([9223372036854775807, 9223372036854775807])
    """
    if policy not in POLICIES:
        raise InvalidParameterError(
            f"policy {policy!r} is not known; use one of {', '.join(POLICIES)}"
        )
    dtype = np.dtype(dtype)
    work = work_dtype(dtype)
    if policy == "float32":
        return np.asarray(result, dtype=work)
    x = np.asarray(result, dtype=work)
    return _convert(x, dtype, policy, owned=x is not result)


def convert_into(work: np.ndarray, out: np.ndarray, policy: str) -> None:
    """``out[...] = to_dtype(work, out.dtype, policy=policy)``, with the same float steps,
    using the float ``work`` as scratch (it is overwritten): no new array for an integer
    ``out`` with a per-pixel policy (``clip``, ``abs``, ``shift``), which tile loops need.

    >>> work = np.array([-3.0, 2.5, 300.0], dtype=np.float32)
    >>> out = np.empty(3, dtype=np.uint8)
    >>> convert_into(work, out, "clip")
    >>> out
    array([  0,   2, 255], dtype=uint8)
    """
    if policy == "float32":
        out[...] = work
        return
    x = np.asarray(work, dtype=work_dtype(out.dtype))
    _convert(x, out.dtype, policy, owned=True, out=out)


def _convert(x: np.ndarray, dtype: np.dtype, policy: str, *, owned: bool, out: np.ndarray | None = None):
    """The policy's float steps on ``x`` (in its dtype, :func:`work_dtype` of ``dtype``), then
    the conversion to ``dtype`` (into ``out`` when given). ``owned``: ``x`` may be overwritten,
    so the steps run in place."""
    lo, hi = dtype_range(dtype)
    f = x.dtype.type
    if policy == "abs":
        x = np.abs(x, out=x if owned else None)
    elif policy == "shift":
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            mid = (int(info.min) + int(info.max) + 1) // 2  # exact: 0, or a power of two
        else:
            mid = (lo + hi) / 2
        x = np.add(x, f(mid), out=x if owned else None)
    elif policy == "normalize":
        finite = x[np.isfinite(x)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if high > low:
            x = (x - f(low)) * f((hi - lo) / (high - low)) + f(lo)
        else:
            x = np.full_like(x, lo)
    owned = owned or policy != "clip"  # every other policy made a new array
    if dtype == np.bool_:
        converted = np.clip(x, 0, 1) >= 0.5
    elif dtype.kind == "f":
        converted = np.clip(x, lo, hi).astype(dtype)
    else:
        x = np.rint(x, out=x if owned else None)
        top = _top_exact(dtype, x.dtype)
        if top is None:
            np.clip(x, lo, hi, out=x)
            if out is None:
                return x.astype(dtype)
            converted = x
        else:
            # ``float(max)`` rounds up past the dtype's max (int64, uint64): clip to the largest
            # float below it, which converts exactly, and send what was above to max.
            above = x > top
            np.clip(x, lo, top, out=x)
            converted = x.astype(dtype)
            converted[above] = np.iinfo(dtype).max
    if out is None:
        return converted
    out[...] = converted
    return out


def _top_exact(dtype: np.dtype, work: np.dtype) -> float | None:
    """None when the integer ``dtype``'s max is exact in ``work``; else the largest ``work``
    value below it (every value up to it converts to ``dtype`` exactly)."""
    top = int(np.iinfo(dtype).max)
    if int(work.type(top)) == top:
        return None
    below = work.type(top)
    while int(below) > top:
        below = np.nextafter(below, work.type(0))
    return float(below)
