"""Converting a float result back to an image dtype, by an explicit, named policy.

Nothing here ever wraps around: every integer result is rounded to nearest and clipped.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidParameterError

__all__ = ["POLICIES", "to_dtype", "convert_into", "dtype_range"]

#: ``clip``: round and clip to the dtype's range; ``abs``: magnitude, then clip (edge filters);
#: ``shift``: add mid-grey, then clip (shows signed responses); ``normalize``: stretch the result's
#: min..max onto the full range; ``float32``: keep the float result (TIFF/NPY output).
POLICIES = ("clip", "abs", "shift", "normalize", "float32")


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
        Target image dtype (uint8, uint16, int16, float32, bool, ...).
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
    """
    if policy not in POLICIES:
        raise InvalidParameterError(
            f"policy {policy!r} is not known; use one of {', '.join(POLICIES)}"
        )
    dtype = np.dtype(dtype)
    if policy == "float32":
        return np.asarray(result, dtype=np.float32)
    x = np.asarray(result, dtype=np.float32)
    return _convert(x, dtype, policy, owned=x is not result)


def convert_into(work: np.ndarray, out: np.ndarray, policy: str) -> None:
    """``out[...] = to_dtype(work, out.dtype, policy=policy)``, with the same float32 steps,
    using the float32 ``work`` as scratch (it is overwritten): no new array for an integer
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
    x = np.asarray(work, dtype=np.float32)
    _convert(x, out.dtype, policy, owned=True, out=out)


def _convert(x: np.ndarray, dtype: np.dtype, policy: str, *, owned: bool, out: np.ndarray | None = None):
    """The policy's float32 steps on ``x``, then the conversion to ``dtype`` (into ``out`` when
    given). ``owned``: ``x`` may be overwritten, so the steps run in place."""
    lo, hi = dtype_range(dtype)
    if policy == "abs":
        x = np.abs(x, out=x if owned else None)
    elif policy == "shift":
        x = np.add(x, np.float32((lo + hi + (1 if dtype.kind in "iu" else 0)) / 2), out=x if owned else None)
    elif policy == "normalize":
        finite = x[np.isfinite(x)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if high > low:
            x = (x - np.float32(low)) * np.float32((hi - lo) / (high - low)) + np.float32(lo)
        else:
            x = np.full_like(x, lo)
    owned = owned or policy != "clip"  # every other policy made a new array
    if dtype == np.bool_:
        converted = np.clip(x, 0, 1) >= 0.5
    elif dtype.kind == "f":
        converted = np.clip(x, lo, hi).astype(dtype)
    else:
        x = np.rint(x, out=x if owned else None)
        np.clip(x, lo, hi, out=x)
        if out is None:
            return x.astype(dtype)
        converted = x
    if out is None:
        return converted
    out[...] = converted
    return out
