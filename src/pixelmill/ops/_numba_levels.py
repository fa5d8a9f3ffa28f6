"""Exact fast path of the ``numba`` flavour for kernels with few distinct weights (disk, box, ring).

The general path (:func:`._numba.correlate_numba` without factors) costs ``kh * kw`` float64
multiply-adds per output sample. When the image is unsigned 8- or 16-bit and the kernel's
nonzero weights take only a few values ``w_1 .. w_L`` (its *levels*), laid out in a few
horizontal runs per row, the same sum is ``sum_l w_l * S_l``, where ``S_l`` is the exact
integer sum of the samples under level ``l``: a difference of two per-row prefix sums per run.
That gives a fast estimate; a rigorous error bound decides, sample by sample, whether the
estimate already determines the general path's float32 result, and the rare samples where it
does not are recomputed with the general path's arithmetic. The result is bit-identical to
the general path for every sample.

Contract (why it is exact)
--------------------------
Notation: ``u = 2**-53`` (float64 unit roundoff), ``gamma_k = k*u / (1 - k*u)``, ``n = kh*kw``,
``fl(.)`` a float64 operation rounded to nearest, ``f32(.)`` rounding float64 to float32.
For one output sample let ``x_ab >= 0`` be the samples under the taps (integers, exact in
float32 and float64), ``t = sum_ab w_ab x_ab = sum_l w_l S_l`` the exact real value with the
float64 weights, and ``E = sum_ab |w_ab| x_ab = sum_l |w_l| S_l``.

1. The general path computes ``r`` = the sum of the ``n`` rounded products in row-major order,
   from ``0.0``, and stores ``f32(r)``. Standard dot-product analysis (Higham, *Accuracy and
   Stability of Numerical Algorithms*, 3.1): ``|r - t| <= gamma_n E <= gamma_{n+1} E``
   (no underflow: nonzero products are ``>= 2**-900``; no overflow: ``E < 2**940``; both are
   checked when the kernel is planned).
2. Here ``S_l`` is computed exactly (modulo ``2**32``, and ``0 <= S_l <= 65025 * 65535 <
   2**32``), and ``v = fl(sum_l fl(w_l S_l))`` from ``0.0``, so ``|v - t| <= gamma_{L+1} E``.
   Hence ``|r - v| <= c E`` with ``c = gamma_{n+1} + gamma_{L+1} >= 3u``.
3. ``E' = fl(sum_l fl(|w_l| S_l)) >= (1 - gamma_L) E`` and ``B = fl(C2 * E')`` with
   ``C2 >= 2c`` (rounded up when planned), so ``B >= 2c E (1 - gamma_{L+1}) >= (c + 2u) E``.
   ``lo = fl(v - B) <= (v - B) + u (|v| + B) <= v - c E <= r`` because ``|v| <= (1 + gamma_L) E``
   and ``B (1 - u) >= (c + 2u) E (1 - u) >= c E + u (1 + gamma_L) E``; likewise
   ``hi = fl(v + B) >= r``.
4. Rounding to float32 is monotone, so ``f32(lo) <= f32(r) <= f32(hi)``. So when
   ``f32(lo) == f32(hi)`` and not ``lo < 0 <= hi``, ``f32(lo)`` is ``f32(r)`` bit for bit: a
   nonzero value has one encoding; for a zero the sign is settled too. If ``lo >= 0`` then
   ``r >= 0`` and ``f32(r)`` is ``+0.0`` (``r == 0`` gives ``+0.0``: the general path adds to
   ``+0.0``, and an exact cancellation rounds to ``+0.0``), as is ``f32(lo)`` (``lo`` is never
   ``-0.0``: neither is ``v``, whose sum also starts from ``+0.0``). If ``hi < 0``, both ``r``
   and ``lo`` are negative and round to ``-0.0``.
5. Every other sample (bounds disagree, or ``lo < 0 <= hi``: a zero of unknown sign) is
   recomputed with the general path's expression, its nonzero taps in row-major order
   (zero taps are skipped there too), and stored the same way (``_rounded`` for integer policies). Such
   *fix-ups* are rare: they need ``t`` within ``B`` (about ``2 n u E``) of a float32 rounding
   boundary, or an exact zero from non-dyadic weights of both signs (a zero-sum kernel like
   ``+-1/3`` on a flat region).

When every product and partial sum is exact (weights that are integer multiples of one power
of two and ``dtype max * sum|w| < 2**53`` in those units: integer kernels, box of 1/4...)
``r = v = t`` and ``B = 0``: no fix-ups at all, even for zero-sum kernels on flat regions.

Prefix sums: per thread strip, a ring of ``kh`` rows of uint32 prefix sums (``P[k + C] =
P[k] + x[k]``, ``C`` channels, so a run of taps ``b0 .. b1`` is ``P[o + (b1 + 1) C] -
P[o + b0 C]``), in wrapping uint32 arithmetic: the prefix sums may wrap, their differences and
the ``S_l`` are exact because the true values are below ``2**32``. So one 32-bit layout serves
uint8 and uint16 images of any width.
"""

from __future__ import annotations

from fractions import Fraction

import numba
import numpy as np
from numba import prange

from ._numba import (
    CHUNK,
    STORE_FLOAT,
    _f64,
    _jit,
    _jit_serial,
    _on_rows,
    _rounded,
    _store_args,
    _store_row,
    _strips,
)

__all__ = ["correlate_levels_numba"]

#: At most this many distinct nonzero weights.
MAX_LEVELS = 4
#: Worth it when the runs are at most this fraction of the taps (each run costs two loads and
#: two integer adds per sample, a tap one float64 multiply-add; plus a fixed float64 epilogue).
MAX_RUNS_PER_TAP = 0.25

_U = 2.0**-53
_UINT_MAX = {np.dtype(np.uint8): 255, np.dtype(np.bool_): 255, np.dtype(np.uint16): 65535}


def _gamma(k: int) -> float:
    return k * _U / (1 - k * _U)


class _Plan:
    """Levels and runs of a qualifying kernel (see :func:`_plan`)."""

    def __init__(self, values, runs, c2):
        self.values = np.asarray(values, dtype=np.float64)
        self.abs_values = np.abs(self.values)
        # runs sorted by level: (level, row, first column, one past the last column)
        self.runs = runs
        self.c2 = float(c2)
        counts = np.bincount([r[0] for r in runs], minlength=len(values))
        self.level_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def tables(self, step: int):
        """Run tables for ``step`` channels: rows, and start/end offsets into a prefix row."""
        rows = np.array([r[1] for r in self.runs], dtype=np.int64)
        lo = np.array([r[2] * step for r in self.runs], dtype=np.int64)
        hi = np.array([r[3] * step for r in self.runs], dtype=np.int64)
        return rows, lo, hi


def _plan(weights: np.ndarray, dtype: np.dtype) -> _Plan | None:
    """The levels plan for ``weights`` on a padded block of ``dtype``, or None when the
    kernel or dtype does not qualify (or the fast path would not be faster)."""
    maxval = _UINT_MAX.get(np.dtype(dtype))
    if maxval is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    kh, kw = w.shape
    n = kh * kw
    nonzero = w[w != 0]
    values = np.unique(nonzero)
    levels = len(values)
    if levels == 0 or levels > MAX_LEVELS:
        return None
    # Range guards for the error analysis: no underflow in any product, no overflow anywhere.
    absw = np.abs(nonzero)
    if absw.min() < 2.0**-900 or float(absw.sum()) * maxval >= 2.0**940:
        return None
    runs = []
    for level, value in enumerate(values):
        for a in range(kh):
            edges = np.diff(np.concatenate(([0], (w[a] == value).astype(np.int8), [0])))
            starts = np.flatnonzero(edges == 1)
            ends = np.flatnonzero(edges == -1)
            runs.extend((level, a, int(s), int(e)) for s, e in zip(starts, ends))
            if len(runs) > MAX_RUNS_PER_TAP * n:
                return None
    if _exact(values, w, maxval):
        c2 = 0.0
    else:
        # 2 * (gamma_{n+1} + gamma_{L+1}), nudged up past its own rounding errors.
        c2 = 2.0 * (_gamma(n + 1) + _gamma(levels + 1)) * (1 + 2.0**-40)
    return _Plan(values, runs, c2)


def _exact(values, w, maxval) -> bool:
    """True when every product ``w * x`` and every partial sum, in both the general path and
    here, is exactly representable: all weights are integer multiples of ``2**-d`` and
    ``maxval * sum|w| < 2**53 * 2**-d``."""
    # Float64 values are dyadic rationals: their denominators are powers of two.
    d = max(Fraction(float(x)).denominator for x in values).bit_length() - 1
    units = sum(abs(Fraction(float(x))) * (1 << d) * int(np.count_nonzero(w == x)) for x in values)
    return maxval * units < 2**53


# -- kernels -----------------------------------------------------------------------------------


@_jit_serial
def _prefix(src, start, span, step, p):
    """``p[k] = sum of src[start + k - step], src[start + k - 2 step], ... >= start`` for
    ``k < span + step``, wrapping in uint32 (``p[:step] = 0``)."""
    for c in range(step):
        p[c] = 0
    u32 = np.uint32
    if step == 3:
        # RGB: three running sums side by side, one contiguous pass.
        # (``span`` need not be a multiple of 3: chunks may split a pixel.)
        s0, s1, s2 = u32(0), u32(0), u32(0)
        full = span - span % 3
        for k in range(0, full, 3):
            s0 = u32(s0 + u32(src[start + k]))
            s1 = u32(s1 + u32(src[start + k + 1]))
            s2 = u32(s2 + u32(src[start + k + 2]))
            p[k + 3], p[k + 4], p[k + 5] = s0, s1, s2
        if span > full:
            p[full + 3] = u32(s0 + u32(src[start + full]))
        if span > full + 1:
            p[full + 4] = u32(s1 + u32(src[start + full + 1]))
        return
    # One running sum per channel, kept in a register (no store-to-load chain through ``p``).
    for c in range(step):
        s = np.uint32(0)
        for k in range(c, span, step):
            s = np.uint32(s + np.uint32(src[start + k]))
            p[k + step] = s


@_jit_serial
def _level_sum(ring, top, rows, lo, hi, q0, q1, s, m):
    """``s[k] = sum_{q0 <= q < q1} P_q[k + hi[q]] - P_q[k + lo[q]]`` (uint32, exact), with
    ``P_q`` the prefix row of input row ``top + rows[q]`` in the ring."""
    kh = ring.shape[0]
    u32 = np.uint32
    q = q0
    # Two runs per sweep over ``s``; the sum is exact (modular), so the order is free.
    while q < q1:
        pa = ring[(top + rows[q]) % kh]
        a1 = pa[hi[q] : hi[q] + m]
        a0 = pa[lo[q] : lo[q] + m]
        if q + 1 < q1:
            pb = ring[(top + rows[q + 1]) % kh]
            b1 = pb[hi[q + 1] : hi[q + 1] + m]
            b0 = pb[lo[q + 1] : lo[q + 1] + m]
            if q == q0:
                for k in range(m):
                    s[k] = u32(u32(a1[k] - a0[k]) + u32(b1[k] - b0[k]))
            else:
                for k in range(m):
                    s[k] = u32(s[k] + u32(u32(a1[k] - a0[k]) + u32(b1[k] - b0[k])))
            q += 2
        else:
            if q == q0:
                for k in range(m):
                    s[k] = u32(a1[k] - a0[k])
            else:
                for k in range(m):
                    s[k] = u32(s[k] + u32(a1[k] - a0[k]))
            q += 1


@numba.njit(inline="always")
def _unsure(v, e, c2):
    """``(float32(v - c2 e), 1 if that may not be the reference's float32 result else 0)``.

    The zero sign: ``v`` is never ``-0.0`` (its sum starts from ``+0.0``), so neither is
    ``lo`` when ``lo >= 0``, and ``float32(lo)`` then has the sign the reference has; when
    ``hi < 0`` both are negative. Only ``lo < 0 <= hi`` leaves the sign of a zero open.
    """
    b = c2 * e
    lo = v - b
    hi = v + b
    flo = np.float32(lo)
    return flo, np.int32((flo != np.float32(hi)) | ((lo < 0) & (hi >= 0)))


@_jit_serial
def _finish(sums, wl, al, c2, line, m):
    """``line[k]`` = the float32 result from the level sums; returns how many samples may be
    wrong (:func:`_unsure`). One loop per level count, so each vectorises."""
    levels = wl.shape[0]
    n_bad = 0
    if levels == 1:
        s0 = sums[0]
        w0, a0 = wl[0], al[0]
        for k in range(m):
            x0 = np.float64(s0[k])
            line[k], bad = _unsure(0.0 + w0 * x0, a0 * x0, c2)
            n_bad += bad
    elif levels == 2:
        s0, s1 = sums[0], sums[1]
        w0, a0, w1, a1 = wl[0], al[0], wl[1], al[1]
        for k in range(m):
            x0, x1 = np.float64(s0[k]), np.float64(s1[k])
            line[k], bad = _unsure((0.0 + w0 * x0) + w1 * x1, a0 * x0 + a1 * x1, c2)
            n_bad += bad
    elif levels == 3:
        s0, s1, s2 = sums[0], sums[1], sums[2]
        w0, a0, w1, a1, w2, a2 = wl[0], al[0], wl[1], al[1], wl[2], al[2]
        for k in range(m):
            x0, x1, x2 = np.float64(s0[k]), np.float64(s1[k]), np.float64(s2[k])
            v = ((0.0 + w0 * x0) + w1 * x1) + w2 * x2
            line[k], bad = _unsure(v, (a0 * x0 + a1 * x1) + a2 * x2, c2)
            n_bad += bad
    else:
        s0, s1, s2, s3 = sums[0], sums[1], sums[2], sums[3]
        w0, a0, w1, a1, w2, a2, w3, a3 = wl[0], al[0], wl[1], al[1], wl[2], al[2], wl[3], al[3]
        for k in range(m):
            x0, x1, x2, x3 = np.float64(s0[k]), np.float64(s1[k]), np.float64(s2[k]), np.float64(s3[k])
            v = (((0.0 + w0 * x0) + w1 * x1) + w2 * x2) + w3 * x3
            line[k], bad = _unsure(v, ((a0 * x0 + a1 * x1) + a2 * x2) + a3 * x3, c2)
            n_bad += bad
    return n_bad


@_jit_serial
def _unsure_at(sums, wl, al, c2, k):
    """:func:`_unsure` for sample ``k`` alone (same arithmetic as :func:`_finish`)."""
    v = 0.0
    e = 0.0
    for level in range(wl.shape[0]):
        x = np.float64(sums[level, k])
        v = v + wl[level] * x
        e = e + al[level] * x
    return _unsure(v, e, c2)


@_jit_serial
def _reference(block, i, col, weights, step):
    """The general path's float64 sum for one output sample: nonzero taps, row-major, from 0.0."""
    kh, kw = weights.shape
    acc = 0.0
    for a in range(kh):
        src = block[i + a]
        for b in range(kw):
            if weights[a, b] != 0:
                acc = acc + _f64(src[col + b * step]) * weights[a, b]
    return np.float32(acc)


@_jit
def _correlate_levels(
    block, weights, wl, al, c2, rows, lo, hi, level_start, out, step, n_strips, chunk,
    store, lo_val, hi_val, mid,
):
    h, n = out.shape
    kh, kw = weights.shape
    levels = wl.shape[0]
    width = min(chunk, n)
    halo = (kw - 1) * step
    # Fix-ups per strip (an array, not a prange reduction: simpler for numba's parfor pass).
    fixups = np.zeros(n_strips, dtype=np.int64)
    for s in prange(n_strips):
        r0 = s * h // n_strips
        r1 = (s + 1) * h // n_strips
        # Prefix sums of input rows r .. r + kh - 1 over the chunk's span, row r in slot r % kh.
        ring = np.empty((kh, width + halo + step), dtype=np.uint32)
        sums = np.empty((levels, width), dtype=np.uint32)
        line = np.empty(width, dtype=np.float32)
        count = 0
        for c0 in range(0, n, chunk):
            m = min(chunk, n - c0)
            span = m + halo
            for r in range(r0, r0 + kh - 1):
                _prefix(block[r], c0, span, step, ring[r % kh])
            for i in range(r0, r1):
                r = i + kh - 1
                _prefix(block[r], c0, span, step, ring[r % kh])
                for level in range(levels):
                    _level_sum(ring, i, rows, lo, hi, level_start[level], level_start[level + 1], sums[level], m)
                n_bad = _finish(sums, wl, al, c2, line, m)
                dst = out[i, c0 : c0 + m]
                _store_row(line, dst, m, store, lo_val, hi_val, mid)
                if n_bad:
                    # Rare: find those samples again and recompute them as the general path does.
                    for k in range(m):
                        if _unsure_at(sums, wl, al, c2, k)[1]:
                            count += 1
                            f = _reference(block, i, c0 + k, weights, step)
                            if store == STORE_FLOAT:
                                dst[k] = f
                            else:
                                dst[k] = _rounded(f, store, lo_val, hi_val, mid)
        fixups[s] = count
    return fixups.sum()


def correlate_levels_numba(
    block: np.ndarray, weights: np.ndarray, out: np.ndarray, store: tuple, *, stats: dict | None = None,
) -> bool:
    """Valid-region correlation by level sums, bit-identical to the general numba path.

    ``out[i, j] = sum w[a, b] * block[i + a, j + b]`` per channel, stored exactly as
    :func:`._numba.correlate_numba` stores it for a general (non-separable) kernel, when
    ``block`` is uint8, uint16 or bool and ``weights`` has at most :data:`MAX_LEVELS`
    distinct nonzero values in few enough horizontal runs; see the module docstring for the
    proof of exactness.

    Parameters
    ----------
    block : ndarray
        Padded input, (H + kh - 1) x (W + kw - 1) [x C].
    weights : ndarray
        kh x kw float64 weights (already flipped for convolution).
    out : ndarray
        H x W [x C], written in place: float32, or the dtype ``store`` converts to.
    store : tuple
        From :func:`._numba.store_code`.
    stats : dict, optional
        If given, ``stats["fixups"]`` is increased by the number of samples recomputed with
        the reference arithmetic (diagnostics and tests).

    Returns
    -------
    bool
        True when ``out`` was written; False (``out`` untouched) when the kernel or dtype
        does not qualify, and the caller should use the general path.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmill.ops._numba import store_code
    >>> block = np.array([[0, 10, 40, 40, 0]], dtype=np.uint8)
    >>> out = np.empty((1, 1), dtype=np.float32)
    >>> correlate_levels_numba(block, np.full((1, 5), 0.2), out, store_code(np.float32, None))
    True
    >>> out
    array([[18.]], dtype=float32)
    >>> correlate_levels_numba(block.astype(np.float32), np.full((1, 5), 0.2), out, store_code(np.float32, None))
    False
    """
    # A writable copy: one compiled signature whether or not the caller's array is read-only.
    weights = np.array(weights, dtype=np.float64, order="C")
    plan = _plan(weights, block.dtype)
    if plan is None:
        return False
    kh = weights.shape[0]
    storing = _store_args(store)
    fixups = 0

    def run(src, dst, channels):
        nonlocal fixups
        rows, lo, hi = plan.tables(channels)
        fixups = _correlate_levels(
            src, weights, plan.values, plan.abs_values, plan.c2, rows, lo, hi, plan.level_start,
            dst, channels, _strips(dst.shape[0], kh), CHUNK, *storing,
        )

    _on_rows(block, out, run)
    if stats is not None:
        stats["fixups"] = stats.get("fixups", 0) + int(fixups)
    return True
