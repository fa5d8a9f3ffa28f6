"""Valid-region correlation of a padded block: ``out[i, j] = sum w[a, b] * block[i + a, j + b]``.

Every flavour computes the same sum; convolution is correlation with the flipped kernel
(the caller flips it). Taps whose weight is zero are never read (as in SciPy): a NaN or an
infinity under a zero tap does not spread into the result (``0 * inf`` would be NaN). ``block`` is the padded input (H + kh - 1) x (W + kw - 1) [x C].
"""

from __future__ import annotations

import numpy as np

from ._scratch import scratch


def correlate_loops(block: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:
    """Reference: nested Python loops over pixels, channels and taps, in float64."""
    kh, kw = weights.shape
    h, w = out.shape[:2]
    channels = out.shape[2] if out.ndim == 3 else None
    src = block.tolist()
    taps = [(a, b, float(weights[a, b])) for a in range(kh) for b in range(kw) if weights[a, b] != 0]
    result = []
    for i in range(h):
        row = []
        for j in range(w):
            if channels is None:
                acc = 0.0
                for a, b, wt in taps:
                    acc += wt * src[i + a][j + b]
                row.append(acc)
            else:
                px = []
                for c in range(channels):
                    acc = 0.0
                    for a, b, wt in taps:
                        acc += wt * src[i + a][j + b][c]
                    px.append(acc)
                row.append(px)
        result.append(row)
    out[...] = np.asarray(result, dtype=np.float64).reshape(out.shape)


def row_pass_terms(row: np.ndarray) -> list[tuple[int, int, np.floating]]:
    """The row pass's terms ``(b, c, w)``, each adding ``w * (x[b] + x[c])`` (``w * x[b]`` when
    ``b == c``) in this order; ``row`` holds the weights in the work dtype.

    A palindromic row (Gaussians, boxes: ``row[b] == row[-1 - b]``) folds its mirrored taps:
    ``w * (x[b] + x[-1 - b])``, outer pair first, the middle tap last. That is half the
    multiplications, and for integer images the sum of two samples is exact, so each term is
    rounded once instead of three times. Other rows add one tap at a time, in order. Zero
    weights (zero pairs when folded) are left out: their samples are never read.

    >>> row_pass_terms(np.array([1, 2, 1], dtype=np.float32))
    [(0, 2, np.float32(1.0)), (1, 1, np.float32(2.0))]
    >>> row_pass_terms(np.array([1, 0, -1], dtype=np.float32))
    [(0, 0, np.float32(1.0)), (2, 2, np.float32(-1.0))]
    """
    kw = len(row)
    if kw > 1 and np.array_equal(row, row[::-1]):
        return [(b, kw - 1 - b, row[b]) for b in range((kw + 1) // 2) if row[b] != 0]
    return [(b, b, wt) for b, wt in enumerate(row) if wt != 0]



def correlate_numpy(
    block: np.ndarray,
    weights: np.ndarray,
    out: np.ndarray,
    factors: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Vectorised: one whole-array multiply-add per kernel tap, no per-pixel Python.

    A separable kernel runs as a row pass then a column pass (kh + kw taps instead of
    kh * kw). A general kernel accumulates in float64 so that up to 255 x 255 taps stay
    within rounding of the float64 reference. ``inf - inf`` gives NaN silently, as in SciPy
    (no RuntimeWarning).
    """
    with np.errstate(invalid="ignore", over="ignore"):
        _correlate_numpy(block, weights, out, factors)


def _correlate_numpy(block, weights, out, factors) -> None:
    h, w = out.shape[:2]
    # Sums start from zero and add one product per tap (``acc += wt * x``); products go
    # through a reused work array, so a tile allocates nothing (see :mod:`._scratch`).
    if factors is not None:
        column, row = factors
        dtype = out.dtype
        tmp = scratch("correlate.rows", (block.shape[0], w) + block.shape[2:], dtype)
        product = scratch("correlate.product", tmp.shape, dtype)
        tmp.fill(0)
        for b, c, wt in row_pass_terms(row.astype(dtype)):
            if b == c:
                np.multiply(block[:, b : b + w], wt, out=product)
            else:
                np.add(block[:, b : b + w], block[:, c : c + w], out=product)
                product *= wt
            tmp += product
        # The column pass sums straight into ``out`` (its dtype is the work dtype here).
        out.fill(0)
        product = product[:h]
        for a, wt in enumerate(column.astype(dtype)):
            if wt != 0:
                np.multiply(tmp[a : a + h], wt, out=product)
                out += product
        return
    kh, kw = weights.shape
    acc = scratch("correlate.sum64", out.shape, np.float64)
    product = scratch("correlate.product64", out.shape, np.float64)
    acc.fill(0)
    for a in range(kh):
        for b in range(kw):
            if weights[a, b] != 0:
                np.multiply(block[a : a + h, b : b + w], weights[a, b], out=product)
                acc += product
    out[...] = acc
