"""The ``numba`` flavour: JIT-compiled, multi-threaded invert and valid-region correlation.

Same semantics as the NumPy flavour (:mod:`._invert`, :mod:`._correlate`), and the same order
of floating-point operations per output sample, so the two flavours give equal values (the
only possible bit difference is the sign of a zero result):

* separable kernels (``factors = (column, row)``): a row pass then a column pass, both in the
  work dtype (float32), each summing its taps in index order starting from the first tap; a
  palindromic row (Gaussians, boxes) adds its mirrored taps first and multiplies once
  (:func:`._correlate.row_pass_terms`);
* general kernels: every nonzero tap ``float64(x) * w[a, b]`` added in row-major tap order
  into a float64 accumulator, rounded to the output dtype once at the end.

Zero taps (weights, factor taps, folded pairs) are skipped in every path, as the NumPy flavour
skips them: their samples are never read, so a NaN or an infinity under one does not spread.
The kernels compute in float32 (8/16-bit, float16 and float32 images); images computed in
float64 (float64, wider integers) run the NumPy flavour's code (see :mod:`._operations`).

The kernels read the padded block in the image's own dtype, converting each sample to float32
as they load it (exactly what the NumPy flavour's float32 copy holds), and store either the
float32 result or, for the ``clip``/``abs``/``shift`` policies, the rounded image-dtype value
with the same float32 steps as :func:`..to_dtype`; so no float copy of the image and no
full-size float result is ever made.

Borders: the separable and Sobel kernels also read an *unpadded* image (``border=``). Padded
row ``r`` is an image row through a row map (or a row of ``cval``), and the few output samples
at the left and right edges gather their taps into a small buffer by the border rule
(:func:`pixelmill.tiling.edge_maps`); every other sample reads the image row in place. So the numba engine makes no
padded copy of the image for them, which on large photos would cost a good part of a Gaussian.

Layout: ``block`` (the padded input) and ``out`` are handled as 2-D ``rows x (W * C)`` views,
so a tap ``b`` columns to the right is ``b * C`` samples further along the same contiguous row
and channels are the fastest-varying index. Output rows are split into one strip per thread
(``prange``); inside a strip the work goes column chunk by column chunk, down the rows, so the
few input rows a chunk needs stay in cache, and inner loops run over contiguous samples (they
compile to AVX2/SSE vector code). The separable path keeps only a ring buffer of
``kh`` row-pass results per chunk instead of a whole float32 intermediate image.

Threads: the kernels run on ``numba.get_num_threads()`` threads; the numba engine sets that
from its ``workers``. Functions are compiled on first use and cached on disk
(``cache=True``, in ``__pycache__`` next to this file), so later processes load them instead of
recompiling. This module imports numba at the top; it is itself imported only when the
``numba`` flavour is used (see :mod:`._operations`).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload

from ..tiling import edge_maps

__all__ = ["invert_numba", "correlate_numba", "sobel_numba", "store_code"]

# Column-chunk sizes, in samples (W * C units), chosen for cores with 32 KiB of L1 and 512 KiB
# of L2; results never depend on them (every sample has the same arithmetic).

#: General path: a float64 accumulator of this length (16 KiB, stays in L1) per thread, and
#: ``kh`` input rows of about this length, reused by consecutive output rows.
CHUNK = 2048
#: Separable path: the ring of ``kh`` float32 row-pass results per thread is kept under this
#: size (in L2). Wide chunks matter here: reading the input in long row runs is what keeps this
#: memory-bound pass fast, and so do equal ones: a 24 MP row as one 18000-sample chunk rather
#: than 13107 + 4893 samples.
RING_BYTES = 384 << 10


def _even_chunk(n: int, widest: int) -> int:
    """The width of the fewest equal chunks, each at most ``widest`` (and CHUNK), covering ``n``."""
    widest = max(CHUNK, widest)
    return -(-n // -(-n // widest))


# nogil: a batch runs whole images on Python threads, each calling these kernels at once
# (numba's omp and tbb threading layers are thread-safe; see the numba engine's notes).
_jit = numba.njit(parallel=True, cache=True, fastmath=False, nogil=True)
_jit_serial = numba.njit(cache=True, fastmath=False, nogil=True)


# -- invert ------------------------------------------------------------------------------------


@_jit
def _invert_integer(src, dst):
    # Two's complement: ~x is max - x for unsigned and -1 - x for signed integers. Storing
    # truncates the (possibly widened) result back to the array's width, same bits.
    for k in prange(src.shape[0]):
        dst[k] = ~src[k]


@_jit
def _invert_bool(src, dst):
    for k in prange(src.shape[0]):
        dst[k] = not src[k]


@_jit
def _invert_float(src, dst, one):
    # ``one`` has the image dtype, so float32 images subtract in float32, like NumPy.
    for k in prange(src.shape[0]):
        dst[k] = one - src[k]


def invert_numba(block: np.ndarray, out: np.ndarray) -> None:
    """``out = invert(block)`` in the image dtype: unsigned ``max - x``, signed ``-1 - x``,
    float ``1 - x``, bool ``not x``; bit-identical to :func:`._invert.invert_numpy`.

    Parameters
    ----------
    block : ndarray
        Input samples, any shape (the operation has no halo).
    out : ndarray
        Same shape and dtype as ``block``; written in place.

    Examples
    --------
    >>> import numpy as np
    >>> out = np.empty((1, 3), dtype=np.uint8)
    >>> invert_numba(np.array([[0, 100, 255]], dtype=np.uint8), out)
    >>> out
    array([[255, 155,   0]], dtype=uint8)
    """
    src = np.ascontiguousarray(block).reshape(-1)
    # Work on a flat view of ``out`` when it has one, else on a scratch copy (a tile view).
    dst = out.reshape(-1) if out.flags.c_contiguous else np.empty(src.shape, dtype=out.dtype)
    kind = block.dtype.kind
    if kind == "b":
        _invert_bool(src, dst)
    elif kind in "iu":
        _invert_integer(src, dst)
    else:
        _invert_float(src, dst, block.dtype.type(1))
    if not out.flags.c_contiguous:
        out[...] = dst.reshape(out.shape)


# -- correlate ---------------------------------------------------------------------------------


@_jit_serial
def _sweep(dst, m, first, x0, w0, x1, w1, x2, w2, x3, w3, x4, w4, taps):
    """Add ``taps`` (1 to 5) weighted rows into the float32 ``dst[:m]``, one after the other,
    in order; ``first``: start from the first product (the running sum is zero). Inputs of
    any dtype are converted to float32 as they are read (no float copy of the image)."""
    # One sweep for up to five taps keeps the running sum in a register between them (the
    # 3- and 5-tap kernels users run most take one sweep); the order of the additions is
    # unchanged, so this is exactly a tap-at-a-time sum.
    f = np.float32
    if taps == 5:
        if first:
            for k in range(m):
                dst[k] = (((w0 * f(x0[k]) + w1 * f(x1[k])) + w2 * f(x2[k])) + w3 * f(x3[k])) + w4 * f(x4[k])
        else:
            for k in range(m):
                dst[k] = ((((dst[k] + w0 * f(x0[k])) + w1 * f(x1[k])) + w2 * f(x2[k])) + w3 * f(x3[k])) + w4 * f(x4[k])
    elif taps == 4:
        if first:
            for k in range(m):
                dst[k] = ((w0 * f(x0[k]) + w1 * f(x1[k])) + w2 * f(x2[k])) + w3 * f(x3[k])
        else:
            for k in range(m):
                dst[k] = (((dst[k] + w0 * f(x0[k])) + w1 * f(x1[k])) + w2 * f(x2[k])) + w3 * f(x3[k])
    elif taps == 3:
        if first:
            for k in range(m):
                dst[k] = (w0 * f(x0[k]) + w1 * f(x1[k])) + w2 * f(x2[k])
        else:
            for k in range(m):
                dst[k] = ((dst[k] + w0 * f(x0[k])) + w1 * f(x1[k])) + w2 * f(x2[k])
    elif taps == 2:
        if first:
            for k in range(m):
                dst[k] = w0 * f(x0[k]) + w1 * f(x1[k])
        else:
            for k in range(m):
                dst[k] = (dst[k] + w0 * f(x0[k])) + w1 * f(x1[k])
    elif first:
        for k in range(m):
            dst[k] = w0 * f(x0[k])
    else:
        for k in range(m):
            dst[k] = dst[k] + w0 * f(x0[k])


#: How a float32 result is stored (``store`` codes): as float32, or rounded to an integer
#: dtype after the ``clip``, ``abs`` or ``shift`` policy, exactly as ``to_dtype`` does.
STORE_FLOAT, STORE_CLIP, STORE_ABS, STORE_SHIFT = 0, 1, 2, 3


@numba.njit(inline="always")
def _rounded(v, store, lo, hi, mid):
    # Same float32 steps as to_dtype: abs or + mid, round half to even, then clip.
    if store == STORE_ABS:
        v = abs(v)
    elif store == STORE_SHIFT:
        v = v + mid
    v = np.rint(v)
    # The clip in the form x86's maxps and minps compute (one instruction each, where a
    # clip by < and > takes compares and blends): the same value for every number, as
    # lo < hi. A NaN, which no integer image gives, becomes lo.
    v = v if v > lo else lo
    return v if v < hi else hi


@numba.njit(inline="always")
def _store_row_as(src, dst, m, store, lo, hi, mid):
    for k in range(m):
        dst[k] = _rounded(src[k], store, lo, hi, mid)


@_jit_serial
def _store_row(src, dst, m, store, lo, hi, mid):
    """``dst[:m] = src[:m]`` (float32), converted by ``store``."""
    # One inlined copy of the loop per policy: the policy is then a constant in each, and
    # its branch leaves the inner loop.
    if store == STORE_FLOAT:
        for k in range(m):
            dst[k] = src[k]
    elif store == STORE_CLIP:
        _store_row_as(src, dst, m, STORE_CLIP, lo, hi, mid)
    elif store == STORE_ABS:
        _store_row_as(src, dst, m, STORE_ABS, lo, hi, mid)
    else:
        _store_row_as(src, dst, m, STORE_SHIFT, lo, hi, mid)


def _pair_sum(a, b):
    """``float32(a) + float32(b)`` (numba only, see its overload)."""
    raise NotImplementedError


@overload(_pair_sum, inline="always")
def _pair_sum_overload(a, b):
    # Samples of up to 16 bits add exactly as integers, so converting their sum gives the same
    # float32 as adding their conversions: one conversion for two taps.
    if isinstance(a, types.Integer) and isinstance(b, types.Integer) and max(a.bitwidth, b.bitwidth) <= 16:
        return lambda a, b: np.float32(np.int32(a) + np.int32(b))
    return lambda a, b: np.float32(a) + np.float32(b)


@numba.njit(inline="always")
def _folded_term(a, b, k, single):
    return np.float32(a[k]) if single else _pair_sum(a[k], b[k])


@numba.njit(inline="always")
def _sweep_pairs_as(dst, m, first, a0, b0, w0, a1, b1, w1, a2, b2, w2, terms, single_last):
    """:func:`_sweep_pairs` for constant ``first``, ``terms`` and ``single_last``."""
    for k in range(m):
        v = w0 * _folded_term(a0, b0, k, single_last and terms == 1)
        if not first:
            v = dst[k] + v
        if terms >= 2:
            v = v + w1 * _folded_term(a1, b1, k, single_last and terms == 2)
        if terms >= 3:
            v = v + w2 * _folded_term(a2, b2, k, single_last and terms == 3)
        dst[k] = v


@_jit_serial
def _sweep_pairs(dst, m, first, a0, b0, w0, a1, b1, w1, a2, b2, w2, terms, single_last):
    """Add up to three folded terms ``w * (a + b)`` (the last one ``w * a`` when
    ``single_last``) into ``dst[:m]``, in order, as :func:`_sweep` adds taps."""
    if first:
        _sweep_pairs_from(dst, m, True, a0, b0, w0, a1, b1, w1, a2, b2, w2, terms, single_last)
    else:
        _sweep_pairs_from(dst, m, False, a0, b0, w0, a1, b1, w1, a2, b2, w2, terms, single_last)


@numba.njit(inline="always")
def _sweep_pairs_from(dst, m, first, a0, b0, w0, a1, b1, w1, a2, b2, w2, terms, single_last):
    # One inlined copy of the loop per case (``first`` is a constant here), so no case is
    # tested inside it.
    if single_last:
        if terms == 3:
            _sweep_pairs_as(dst, m, first, a0, b0, w0, a1, b1, w1, a2, b2, w2, 3, True)
        elif terms == 2:
            _sweep_pairs_as(dst, m, first, a0, b0, w0, a1, b1, w1, a2, b2, w2, 2, True)
        else:
            _sweep_pairs_as(dst, m, first, a0, b0, w0, a1, b1, w1, a2, b2, w2, 1, True)
    elif terms == 3:
        _sweep_pairs_as(dst, m, first, a0, b0, w0, a1, b1, w1, a2, b2, w2, 3, False)
    elif terms == 2:
        _sweep_pairs_as(dst, m, first, a0, b0, w0, a1, b1, w1, a2, b2, w2, 2, False)
    else:
        _sweep_pairs_as(dst, m, first, a0, b0, w0, a1, b1, w1, a2, b2, w2, 1, False)


@numba.njit(inline="always")
def _palindromic(weights):
    kw = weights.shape[0]
    for b in range(kw // 2):
        if weights[b] != weights[kw - 1 - b]:
            return False
    return True


@numba.njit(inline="always")
def _next_tap(weights, b, end):
    """The first index ``>= b`` (and ``< end``) of a nonzero weight, or ``end`` or more: zero
    taps are never read, so a NaN or an infinity under one does not spread (``0 * inf``)."""
    while b < end and weights[b] == 0:
        b += 1
    return b


@numba.njit(inline="always")
def _sweep_taps(weights, b, end):
    """The up to five nonzero taps from ``b`` (itself nonzero) that one :func:`_sweep` adds:
    ``(b1, b2, b3, b4, count, last)``; unused slots repeat the last tap (never added)."""
    b1 = _next_tap(weights, b + 1, end)
    b2 = _next_tap(weights, b1 + 1, end)
    b3 = _next_tap(weights, b2 + 1, end)
    b4 = _next_tap(weights, b3 + 1, end)
    n = 1 + (b1 < end) + (b2 < end) + (b3 < end) + (b4 < end)
    last = b
    for c in (b1, b2, b3, b4):
        if c < end:
            last = c
    return min(b1, last), min(b2, last), min(b3, last), min(b4, last), n, last


@numba.njit(inline="always")
def _zero(dst, m):
    for k in range(m):
        dst[k] = 0.0


@_jit_serial
def _row_pass_folded(src, start, weights, step, dst, m):
    """:func:`_row_pass` for palindromic ``weights``: the sum of ``weights[t] * (x[t] +
    x[kw - 1 - t])`` over ``t < kw // 2``, in order, then ``+ weights[mid] * x[mid]`` for an
    odd ``kw`` (see :func:`._correlate.row_pass_terms`); zero pairs are skipped."""
    kw = weights.shape[0]
    terms = (kw + 1) // 2
    t = _next_tap(weights, 0, terms)
    if t >= terms:
        _zero(dst, m)
        return
    first = True
    while t < terms:
        # Up to three nonzero terms per sweep; unused ones repeat the last (never added).
        t1 = _next_tap(weights, t + 1, terms)
        t2 = _next_tap(weights, t1 + 1, terms)
        n = 1 + (t1 < terms) + (t2 < terms)
        last = t2 if n == 3 else (t1 if n == 2 else t)
        t1, t2 = min(t1, last), min(t2, last)
        a0, a1, a2 = start + t * step, start + t1 * step, start + t2 * step
        b0, b1, b2 = start + (kw - 1 - t) * step, start + (kw - 1 - t1) * step, start + (kw - 1 - t2) * step
        _sweep_pairs(
            dst, m, first,
            src[a0 : a0 + m], src[b0 : b0 + m], weights[t],
            src[a1 : a1 + m], src[b1 : b1 + m], weights[t1],
            src[a2 : a2 + m], src[b2 : b2 + m], weights[t2],
            n, kw % 2 == 1 and last == terms - 1,
        )
        first = False
        t = _next_tap(weights, last + 1, terms)


@_jit_serial
def _row_pass(src, start, weights, step, dst, m):
    """``dst[k] = sum_b weights[b] * src[start + b * step + k]`` for ``k < m``, nonzero taps
    in order; palindromic weights (Gaussians, boxes) fold into :func:`_row_pass_folded`."""
    # Slices indexed from 0 let LLVM drop numba's negative-index wraparound test, which would
    # otherwise turn every vector load into a gather of single elements.
    kw = weights.shape[0]
    if kw > 1 and _palindromic(weights):
        _row_pass_folded(src, start, weights, step, dst, m)
        return
    _taps_pass(src, start, weights, step, dst, m)


@_jit_serial
def _taps_pass(src, start, weights, step, dst, m):
    """``dst[k] = sum_b weights[b] * src[start + b * step + k]``, nonzero taps in order."""
    kw = weights.shape[0]
    b = _next_tap(weights, 0, kw)
    if b >= kw:
        _zero(dst, m)
        return
    first = True
    while b < kw:
        b1, b2, b3, b4, n, last = _sweep_taps(weights, b, kw)
        o0, o1, o2 = start + b * step, start + b1 * step, start + b2 * step
        o3, o4 = start + b3 * step, start + b4 * step
        _sweep(
            dst, m, first,
            src[o0 : o0 + m], weights[b],
            src[o1 : o1 + m], weights[b1],
            src[o2 : o2 + m], weights[b2],
            src[o3 : o3 + m], weights[b3],
            src[o4 : o4 + m], weights[b4],
            n,
        )
        first = False
        b = _next_tap(weights, last + 1, kw)


@_jit_serial
def _column_pass(ring, top, weights, dst, m):
    """``dst[k] = sum_a weights[a] * ring[(top + a) % kh, k]`` for ``k < m``, nonzero taps in
    order (the ring's rows are :func:`_taps_pass`'s samples, ``kh`` rows apart)."""
    kh = weights.shape[0]
    a = _next_tap(weights, 0, kh)
    if a >= kh:
        _zero(dst, m)
        return
    first = True
    while a < kh:
        a1, a2, a3, a4, n, last = _sweep_taps(weights, a, kh)
        _sweep(
            dst, m, first,
            ring[(top + a) % kh, :m], weights[a],
            ring[(top + a1) % kh, :m], weights[a1],
            ring[(top + a2) % kh, :m], weights[a2],
            ring[(top + a3) % kh, :m], weights[a3],
            ring[(top + a4) % kh, :m], weights[a4],
            n,
        )
        first = False
        a = _next_tap(weights, last + 1, kh)


@numba.njit(inline="always")
def _has_zero(weights):
    for a in range(weights.shape[0]):
        if weights[a] == 0:
            return True
    return False


@_jit_serial
def _column_store(ring, top, weights, line, out, m, store, lo, hi, mid):
    """``out[:m]`` = the column pass of :func:`_column_pass`, stored by ``store``. Up to five
    taps (the usual kernels) in one loop that keeps each sum in a register, the same additions
    in the same order; longer columns, and columns with zero taps, go through ``line``."""
    kh = weights.shape[0]
    if kh > 5 or store == STORE_FLOAT or _has_zero(weights):
        _column_pass(ring, top, weights, line, m)
        _store_row(line, out, m, store, lo, hi, mid)
    elif store == STORE_CLIP:  # one inlined copy per policy, as in _store_row
        _column_store_as(ring, top, weights, out, m, STORE_CLIP, lo, hi, mid)
    elif store == STORE_ABS:
        _column_store_as(ring, top, weights, out, m, STORE_ABS, lo, hi, mid)
    else:
        _column_store_as(ring, top, weights, out, m, STORE_SHIFT, lo, hi, mid)


@numba.njit(inline="always")
def _column_store_as(ring, top, weights, out, m, store, lo, hi, mid):
    """:func:`_column_store` of up to five taps for one rounding ``store``."""
    kh = weights.shape[0]
    last = kh - 1
    x0, x1, x2 = ring[top % kh, :m], ring[(top + min(1, last)) % kh, :m], ring[(top + min(2, last)) % kh, :m]
    x3, x4 = ring[(top + min(3, last)) % kh, :m], ring[(top + min(4, last)) % kh, :m]
    w0, w1, w2, w3, w4 = weights[0], weights[min(1, last)], weights[min(2, last)], weights[min(3, last)], weights[last]
    if kh == 5:
        for k in range(m):
            out[k] = _rounded((((w0 * x0[k] + w1 * x1[k]) + w2 * x2[k]) + w3 * x3[k]) + w4 * x4[k], store, lo, hi, mid)
    elif kh == 4:
        for k in range(m):
            out[k] = _rounded(((w0 * x0[k] + w1 * x1[k]) + w2 * x2[k]) + w3 * x3[k], store, lo, hi, mid)
    elif kh == 3:
        for k in range(m):
            out[k] = _rounded((w0 * x0[k] + w1 * x1[k]) + w2 * x2[k], store, lo, hi, mid)
    elif kh == 2:
        for k in range(m):
            out[k] = _rounded(w0 * x0[k] + w1 * x1[k], store, lo, hi, mid)
    else:
        for k in range(m):
            out[k] = _rounded(w0 * x0[k], store, lo, hi, mid)


@_jit_serial
def _ring_row(image, edges, r, c0, m, weights, step, dst, seg):
    """Row pass of padded input row ``r`` into ``dst[:m]``, for outputs ``c0 .. c0 + m - 1``
    (samples), reading ``image`` through ``edges`` (see :func:`pixelmill.tiling.edge_maps`). Outputs whose taps
    all fall inside the image read it directly; the few at the left and right borders read
    their taps gathered into ``seg`` (scratch) by the border rule."""
    rows_map, const_row, left_map, right_map, lpad, rpad, cval, saved = edges
    source = rows_map[r]
    if source >= 0:
        src = image[source]
    elif source == -1:
        src = const_row
    else:
        src = saved[-2 - source]
    span = (weights.shape[0] - 1) * step
    n_out = src.shape[0] + lpad + rpad - span
    right0 = n_out - rpad
    # One call site of _row_pass for the three parts: LLVM inlines each call of the row pass
    # into the kernels, and three copies of it tripled their compile time.
    k, end = c0, c0 + m
    while k < end:
        if k < lpad:
            stop = min(end, lpad)
            for j in range(stop - k + span):
                p = left_map[k + j]
                seg[j] = src[p] if p >= 0 else cval
            part, start = seg, 0
        elif k < right0:
            stop = min(end, right0)
            part, start = src, k - lpad
        else:
            stop = end
            for j in range(end - k + span):
                p = right_map[k - right0 + j]
                seg[j] = src[p] if p >= 0 else cval
            part, start = seg, 0
        _row_pass(part, start, weights, step, dst[k - c0 :], stop - k)
        k = stop


@_jit
def _correlate_separable(image, edges, column, row, out, step, n_strips, chunk, store, lo, hi, mid):
    h, n = out.shape
    kh = column.shape[0]
    width = min(chunk, n)
    for s in prange(n_strips):
        r0 = s * h // n_strips
        r1 = (s + 1) * h // n_strips
        # Row-pass results of input rows r .. r + kh - 1, input row r kept in slot r % kh.
        ring = np.empty((kh, width), dtype=np.float32)
        line = np.empty(width, dtype=np.float32)
        # Border taps of one row: lpad or rpad outputs (edges[4], edges[5]) plus the span.
        seg = np.empty(max(edges[4], edges[5]) + (row.shape[0] - 1) * step, dtype=image.dtype)
        for c0 in range(0, n, chunk):
            m = min(chunk, n - c0)
            # Input row r completes the ring of output row r - kh + 1 (one call site each).
            for r in range(r0, r1 + kh - 1):
                _ring_row(image, edges, r, c0, m, row, step, ring[r % kh], seg)
                i = r - kh + 1
                if i >= r0:
                    _column_store(ring, i, column, line, out[i, c0 : c0 + m], m, store, lo, hi, mid)


@_jit
def _sobel(image, edges, x_column, x_row, y_column, y_row, out, step, n_strips, chunk, store, lo, hi, mid, squares):
    # The separable pass of _correlate_separable for both Sobel kernels at once, so the
    # input is read once and neither gradient is ever a full-size image. ``squares``: the
    # magnitude as the square root of gx^2 + gy^2 (see sobel_numba), a loop that vectorises.
    h, n = out.shape
    kh = x_column.shape[0]
    width = min(chunk, n)
    for s in prange(n_strips):
        r0 = s * h // n_strips
        r1 = (s + 1) * h // n_strips
        ring_x = np.empty((kh, width), dtype=np.float32)
        ring_y = np.empty((kh, width), dtype=np.float32)
        gx = np.empty(width, dtype=np.float32)
        gy = np.empty(width, dtype=np.float32)
        # Border taps of one row: lpad or rpad outputs (edges[4], edges[5]) plus the span.
        seg = np.empty(max(edges[4], edges[5]) + (x_row.shape[0] - 1) * step, dtype=image.dtype)
        for c0 in range(0, n, chunk):
            m = min(chunk, n - c0)
            # One call site of each pass, as in _correlate_separable.
            for r in range(r0, r1 + kh - 1):
                for g in range(2):
                    _ring_row(image, edges, r, c0, m, x_row if g == 0 else y_row, step,
                              (ring_x if g == 0 else ring_y)[r % kh], seg)
                i = r - kh + 1
                if i < r0:
                    continue
                for g in range(2):
                    _column_pass(ring_x if g == 0 else ring_y, i, x_column if g == 0 else y_column,
                                 gx if g == 0 else gy, m)
                if squares:
                    for k in range(m):
                        gx[k] = np.sqrt(gx[k] * gx[k] + gy[k] * gy[k])
                else:
                    for k in range(m):
                        gx[k] = np.hypot(gx[k], gy[k])
                _store_row(gx, out[i, c0 : c0 + m], m, store, lo, hi, mid)


@numba.njit(inline="always")
def _f64(x):
    # Through float32 first, as the NumPy flavour's float32 block holds every sample.
    return np.float64(np.float32(x))


@_jit
def _correlate_general(block, weights, out, step, n_strips, chunk, store, lo, hi, mid):
    h, n = out.shape
    kh, kw = weights.shape
    width = min(chunk, n)
    for s in prange(n_strips):
        r0 = s * h // n_strips
        r1 = (s + 1) * h // n_strips
        acc = np.empty(width, dtype=np.float64)
        # Chunk outer, rows inner: consecutive output rows share kh - 1 input rows, still cached.
        for c0 in range(0, n, chunk):
            m = min(chunk, n - c0)
            for i in range(r0, r1):
                for k in range(m):
                    acc[k] = 0.0
                for a in range(kh):
                    src = block[i + a]
                    wrow = weights[a]
                    # Nonzero taps only (a zero tap's NaN or inf must not spread), four per
                    # sweep over ``acc`` (a quarter of the loads and stores), still added one
                    # after the other, in tap order.
                    b = _next_tap(wrow, 0, kw)
                    while b < kw:
                        b1 = _next_tap(wrow, b + 1, kw)
                        b2 = _next_tap(wrow, b1 + 1, kw)
                        b3 = _next_tap(wrow, b2 + 1, kw)
                        if b3 < kw:
                            w0, w1, w2, w3 = wrow[b], wrow[b1], wrow[b2], wrow[b3]
                            x0 = src[c0 + b * step : c0 + b * step + m]
                            x1 = src[c0 + b1 * step : c0 + b1 * step + m]
                            x2 = src[c0 + b2 * step : c0 + b2 * step + m]
                            x3 = src[c0 + b3 * step : c0 + b3 * step + m]
                            for k in range(m):
                                t = acc[k] + _f64(x0[k]) * w0
                                t = t + _f64(x1[k]) * w1
                                t = t + _f64(x2[k]) * w2
                                acc[k] = t + _f64(x3[k]) * w3
                            b = _next_tap(wrow, b3 + 1, kw)
                        else:
                            wt = wrow[b]
                            x = src[c0 + b * step : c0 + b * step + m]
                            for k in range(m):
                                acc[k] += _f64(x[k]) * wt
                            b = b1
                dst = out[i, c0 : c0 + m]
                if store == STORE_FLOAT:
                    for k in range(m):
                        dst[k] = acc[k]
                else:
                    for k in range(m):
                        dst[k] = _rounded(np.float32(acc[k]), store, lo, hi, mid)


def _strips(h: int, kh: int) -> int:
    """One strip of output rows per thread; fewer when strips would be shorter than the kernel
    (the separable path recomputes ``kh - 1`` row-pass rows at the top of each strip)."""
    threads = numba.get_num_threads()
    return max(1, min(threads, h // max(1, 2 * kh)))


def store_code(dtype, policy: str | None) -> tuple[int, float, float, float] | None:
    """``(store, lo, hi, mid)`` for storing a float32 result as ``dtype`` with ``policy``
    inside the kernels, or None when :func:`..to_dtype` must do it afterwards (policies that
    need the whole result, float or wide integer targets)."""
    dtype = np.dtype(dtype)
    if policy is None or policy == "float32":
        return (STORE_FLOAT, 0.0, 0.0, 0.0) if dtype == np.float32 else None
    codes = {"clip": STORE_CLIP, "abs": STORE_ABS, "shift": STORE_SHIFT}
    # Integers up to 16 bits: their whole range is exact in float32, like to_dtype's clip.
    if policy not in codes or dtype.kind not in "iu" or dtype.itemsize > 2:
        return None
    info = np.iinfo(dtype)
    mid = (int(info.min) + int(info.max) + 1) / 2
    return codes[policy], float(info.min), float(info.max), mid


def correlate_numba(
    block: np.ndarray,
    weights: np.ndarray,
    out: np.ndarray,
    factors: tuple[np.ndarray, np.ndarray] | None = None,
    store: tuple[int, float, float, float] = (STORE_FLOAT, 0.0, 0.0, 0.0),
    border: tuple[tuple[int, int, int, int], str, float] | None = None,
) -> None:
    """Valid-region correlation ``out[i, j] = sum w[a, b] * block[i + a, j + b]``, per channel.

    Same contract and, operation for operation, the same arithmetic as
    :func:`._correlate.correlate_numpy` on ``block`` converted to float32; the conversions
    in and out happen in the kernels, so no float copy of the image is made.

    Parameters
    ----------
    block : ndarray
        Padded input, (H + kh - 1) x (W + kw - 1) [x C], any real dtype; or, with ``border``,
        the unpadded H x W [x C] image.
    weights : ndarray
        kh x kw float64 weights (already flipped for convolution).
    out : ndarray
        H x W [x C], written in place: float32, or the dtype ``store`` converts to. It must
        not overlap an unpadded ``block``, unless it is that very array (the result is then
        written over the image as the kernels go, see :func:`pixelmill.tiling.edge_maps`).
    factors : (ndarray, ndarray), optional
        ``(column, row)`` with ``outer(column, row) == weights``: run as a row pass then a
        column pass in float32. Without it, each output sample accumulates in float64.
    store : tuple, optional
        From :func:`store_code`: how the float32 result is stored into ``out``.
    border : (halo, str, float), optional
        ``(halo, mode, cval)``: ``block`` is not padded; the ``halo`` (top, bottom, left,
        right) around it follows the border rule ``mode`` (:func:`..tiling.border_indices`),
        read in place, so no padded copy of the image is made. Only with ``factors``;
        ``cval`` must be exact in the image dtype.

    Examples
    --------
    >>> import numpy as np
    >>> block = np.array([[0, 0, 10, 40, 40]], dtype=np.uint8)
    >>> out = np.empty((1, 3), dtype=np.float32)
    >>> correlate_numba(block, np.array([[-0.5, 0.0, 0.5]]), out)
    >>> out
    array([[ 5., 20., 15.]], dtype=float32)
    >>> out8 = np.empty((1, 3), dtype=np.uint8)
    >>> correlate_numba(block, np.array([[0.5, 0.0, -0.5]]), out8, store=store_code(np.uint8, "abs"))
    >>> out8
    array([[ 5, 20, 15]], dtype=uint8)

    Unpadded, with the ``nearest`` border rule:

    >>> row = np.array([0.25, 0.5, 0.25])
    >>> out = np.empty((1, 5), dtype=np.float32)
    >>> correlate_numba(block, row[None], out, (np.ones(1), row), border=((0, 0, 1, 1), "nearest", 0.0))
    >>> out
    array([[ 0. ,  2.5, 15. , 32.5, 40. ]], dtype=float32)
    """
    kh = weights.shape[0]
    storing = _store_args(store)
    if border is not None and factors is None:
        raise ValueError("an unpadded block needs a separable kernel (factors)")

    def run(src, dst, channels):
        if factors is not None:
            # The NumPy flavour multiplies by float32(wt): round the factors the same way.
            column, row = (np.ascontiguousarray(f, dtype=np.float32) for f in factors)
            edges, n_strips, chunk = _separable_layout(src, dst, channels, border, kh, rings=1)
            _correlate_separable(src, edges, column, row, dst, channels, n_strips, chunk, *storing)
        else:
            weights64 = np.ascontiguousarray(weights, dtype=np.float64)
            _correlate_general(src, weights64, dst, channels, _strips(dst.shape[0], kh), CHUNK, *storing)

    _on_rows(block, out, run)


def _separable_layout(src, dst, channels: int, border, kh: int, rings: int) -> tuple:
    """``(edges, strips, chunk)`` for the separable kernels, which keep ``rings`` rings of
    ``kh`` float32 rows per thread. Written over ``src`` itself, a row is read whole before
    its output row is written: one chunk the width of the row, and the rows read after being
    overwritten kept aside (:func:`pixelmill.tiling.edge_maps`)."""
    n_strips = _strips(dst.shape[0], kh)
    in_place = _same(src, dst)
    edges = edge_maps(src, channels, border, kh, n_strips if in_place else 0)
    chunk = src.shape[1] if in_place else _even_chunk(src.shape[1], RING_BYTES // (rings * kh * 4))
    return edges, n_strips, chunk


def _same(src: np.ndarray, dst: np.ndarray) -> bool:
    """True when ``dst`` is ``src`` itself (the same rows and samples, not just overlapping)."""
    return (src.shape == dst.shape and src.strides == dst.strides and src.dtype.itemsize == dst.dtype.itemsize
            and src.__array_interface__["data"][0] == dst.__array_interface__["data"][0])


def _store_args(store) -> tuple:
    code, lo, hi, mid = store
    return code, np.float32(lo), np.float32(hi), np.float32(mid)


def _on_rows(block: np.ndarray, out: np.ndarray, run) -> None:
    """Call ``run(src, dst, channels)`` with ``block`` and ``out`` as 2-D ``rows x (W * C)``
    arrays (a scratch ``dst`` when ``out`` is a non-contiguous tile view, copied back)."""
    if block.dtype == np.bool_:
        block = block.view(np.uint8)
    src = np.ascontiguousarray(block).reshape(block.shape[0], -1)
    h = out.shape[0]
    contiguous = out.flags.c_contiguous
    dst = out.reshape(h, -1) if contiguous else np.empty((h, out[0].size), dtype=out.dtype)
    run(src, dst, out.shape[2] if out.ndim == 3 else 1)
    if not contiguous:
        out[...] = dst.reshape(out.shape)


#: The (column, row) factors of the flipped ``sobel-x`` and ``sobel-y`` kernels, whose sums on
#: 8-bit samples :func:`sobel_numba` knows the range of.
SOBEL_FACTORS = (np.array([-1.0, -2.0, -1.0]), np.array([1.0, 0.0, -1.0]),
                 np.array([-2.0, 0.0, 2.0]), np.array([0.5, 1.0, 0.5]))


def sobel_numba(block, x_factors, y_factors, out, store=(STORE_FLOAT, 0.0, 0.0, 0.0), border=None) -> None:
    """``out = hypot(gx, gy)`` for the separable Sobel kernels given as ``(column, row)``
    factors (already flipped), with the same arithmetic as two :func:`correlate_numba` calls
    followed by ``np.hypot``, in one pass over ``block``; stored, and ``border`` read, as
    :func:`correlate_numba` does.

    On 8-bit samples with the Sobel kernels themselves (integer taps after the factors' 0.5 and
    2), gx and gy are integers of at most 1020 in magnitude: gx^2 + gy^2 is exact in float32,
    and its correctly rounded square root is ``np.hypot``'s float32 result, bit for bit (every
    such pair is checked in the tests), so those samples take the square root, which
    vectorises; other samples and kernels take ``np.hypot``."""
    kh = len(x_factors[0])
    f32 = [np.ascontiguousarray(f, dtype=np.float32) for f in (*x_factors, *y_factors)]
    sobel = all(np.array_equal(np.asarray(f, dtype=np.float64), s) for f, s in zip((*x_factors, *y_factors), SOBEL_FACTORS))

    def run(src, dst, channels):
        edges, n_strips, chunk = _separable_layout(src, dst, channels, border, kh, rings=2)
        squares = sobel and src.dtype.itemsize == 1 and src.dtype.kind in "iu"
        _sobel(src, edges, *f32, dst, channels, n_strips, chunk, *_store_args(store), squares)

    _on_rows(block, out, run)
