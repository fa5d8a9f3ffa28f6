"""Low-rank kernels: a kernel of rank r > 1 as the sum of r separable (column x row) terms.

``w = sum_i s_i u_i v_i^T`` (its SVD); keeping the terms whose singular values matter, the
correlation with ``w`` is the sum of r separable correlations, each a row pass then a column
pass (``kh + kw`` taps instead of ``kh * kw``). Disks, rings, rotated or anisotropic blurs and
differences of Gaussians are low-rank; a random kernel is not (its rank is ``min(kh, kw)``).

Error bound (float32 passes, ``u = 2**-24``), for each output sample, with
``A = sum_i |s_i| * sum|u_i| * sum|v_i|`` (:func:`lowrank_amplification`, at most
:data:`MAX_AMPLIFICATION` times ``sum|w|``, else the kernel is not split)::

    |lowrank - exact| <= LOWRANK_ERROR_C * (kh + kw + r) * u * A * max|x|  +  2**-30 * sum|w| * max|x|

the first term the passes' float32 roundings (each pass a sum of ``kh + kw`` products, then
``r - 1`` additions of the terms), the second the dropped singular values (checked by
``tests/test_fft.py`` against the float64 direct sum).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["lowrank_factors", "lowrank_amplification", "lowrank_error_bound", "LOWRANK_ERROR_C",
           "MAX_AMPLIFICATION"]

#: The constant of the stated error bound.
LOWRANK_ERROR_C = 1.0
#: A split whose terms add up to more than this many times ``sum|w|`` (terms that cancel)
#: would lose the accuracy of the direct sum: such a kernel is not split.
MAX_AMPLIFICATION = 4.0
#: The dropped terms add at most this share of ``sum|w| * max|x|`` to any sample.
DROPPED_SHARE = 2.0**-30


@lru_cache(maxsize=64)
def lowrank_factors(kernel) -> tuple[tuple[np.ndarray, np.ndarray], ...] | None:
    """``((column, row), ...)``: r >= 2 separable terms whose outer products add up to the
    kernel's weights (within :data:`DROPPED_SHARE`), or None when the kernel is rank 1, has
    no weights, or its terms would cancel (:data:`MAX_AMPLIFICATION`).

    >>> from pixelmill import kernels
    >>> w = np.outer([1, 2, 1], [1, 0, -1]) + np.outer([0, 1, 0], [1, 1, 1])
    >>> len(lowrank_factors(kernels.from_array(w)))
    2
    """
    w = np.asarray(kernel.weights, dtype=np.float64)
    total = float(np.abs(w).sum())
    if total == 0 or min(w.shape) < 2:
        return None
    u, s, vt = np.linalg.svd(w)
    # Drop the smallest terms while what they could add stays below DROPPED_SHARE: a term's
    # contribution to one sample is at most s_i * sum|u_i| * sum|v_i| * max|x|.
    sizes = s * np.abs(u).sum(axis=0)[: s.size] * np.abs(vt).sum(axis=1)[: s.size]
    dropped = np.cumsum(sizes[::-1])[::-1]  # dropped[i]: what terms i.. add at most
    r = next((i for i in range(s.size) if dropped[i] <= DROPPED_SHARE * total), s.size)
    if r < 2 or float(sizes[:r].sum()) > MAX_AMPLIFICATION * total:
        return None
    terms = []
    for i in range(r):
        column = np.ascontiguousarray(u[:, i] * s[i])
        row = np.ascontiguousarray(vt[i])
        column.setflags(write=False)
        row.setflags(write=False)
        terms.append((column, row))
    return tuple(terms)


def lowrank_amplification(terms) -> float:
    """``A = sum_i sum|column_i| * sum|row_i|``, the size of the terms' sum of magnitudes."""
    return float(sum(np.abs(c).sum() * np.abs(r).sum() for c, r in terms))


def lowrank_error_bound(weights: np.ndarray, terms, max_abs: float) -> float:
    """The stated bound on ``|lowrank - exact|`` for one sample (float32 passes)."""
    kh, kw = weights.shape
    u = 2.0**-24
    return (LOWRANK_ERROR_C * (kh + kw + len(terms)) * u * lowrank_amplification(terms) * max_abs
            + DROPPED_SHARE * float(np.abs(weights).sum()) * max_abs)
