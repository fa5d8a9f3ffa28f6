"""The frequency-domain path: valid-region correlation of a padded block by overlap-save FFTs.

Same contract as every other correlation in :mod:`pixelmill.ops`: ``block`` is the padded
input, (H + kh - 1) x (W + kw - 1) [x C], already extended by the border rule (tiling's
``pad``, once, as for the direct paths), and ``out[i, j] = sum w[a, b] * block[i + a, j + b]``
per channel. Convolution is correlation with the flipped kernel (the caller flips it).

How (overlap-save on fixed blocks)
----------------------------------
The block is cut into FFT blocks of ``N x M`` input samples that step by ``N - kh + 1`` rows and
``M - kw + 1`` columns (the last ones zero-filled past the block). For each FFT block,
``irfft2(rfft2(x) * conj(rfft2(w, (N, M))))`` is the *circular* correlation of ``x`` with
``w``; its first ``N - kh + 1`` rows and ``M - kw + 1`` columns never wrap and are exactly the
valid-region correlation there. ``N`` and ``M`` depend on the kernel only (:func:`fft_shape`)
when the block is larger than that, else on the block (one FFT block, ``next_fast_len`` of
it). Each channel of each FFT block is one contiguous 2-D transform (pocketfft, as
``scipy.fft``, is fastest on those: measured 1.5 to 2 times faster per sample than batched or
channel-interleaved transforms of the same blocks). With ``workers > 1`` the strips of FFT
blocks go to that many threads (``scipy.fft`` releases the GIL); the strips are the serial
loop's, so the result does not depend on ``workers``. Tiled engines call it with one worker
per tile.

Precision and the error bound
-----------------------------
The FFTs run in float32 for 8- and 16-bit and float32 images (the direct paths' work dtype
for them) and in float64 for float64 and wider integer images. With ``u`` the unit roundoff
of that precision (2**-24 for float32, 2**-53 for float64), every output sample satisfies
(checked by ``tests/test_fft.py`` against the float64 direct sum, for every border, odd and
even kernels, tiny and 1 x N images, on every tiling engine)::

    |fft - exact| <= FFT_ERROR_C * u * log2(N * M) * sum|w| * max|x|      (FFT_ERROR_C = 2)

plus the rounding of the stored result (float32). This is the usual, observed size of FFT
convolution error (a random walk of ``log2(N M)`` butterfly roundings); the worst case that
can be proved for a normwise error carries an extra ``sqrt(N M)``. For 8-bit images and a
normalized kernel (``sum|w| = 1``, FFT blocks up to 1024 x 1024) the bound is
``2 * 2**-24 * 20 * 255 = 6.1e-4``, inside the 1e-3 pixelmill promises for them; measured on
24 MP photos with random 31x31 kernels the largest error is about 1e-4 (float64 FFTs: about
1e-13, at twice the time). Integer results are rounded to nearest afterwards, so a sample
within that error of a half-integer may round the other way than the direct path's.

Tiles: the FFT blocks are laid out from each tile's own corner, so a tiled engine (threads,
processes, dask) gives each output sample the same exact value plus a rounding error that
depends on the tile: results are *not* bit-identical across tile shapes (nor to the untiled
image), only equal within the bound above (tested).
"""

from __future__ import annotations

import math
import threading

import numpy as np

from ._scratch import scratch

__all__ = ["correlate_fft", "fft_precision", "fft_shape", "fft_error_bound", "FFT_ERROR_C", "method_costs",
           "auto_method", "MIN_TAPS"]

#: The constant of the stated error bound (see the module's docstring).
FFT_ERROR_C = 2.0
#: Smallest FFT block side, and how many kernel sides an FFT block spans at least: the rows
#: and columns an FFT block recomputes (``kh - 1`` of ``N``) are then a small share.
MIN_SIDE, KERNEL_SIDES = 256, 5
#: The largest FFT block side (1024: the error bound's log2(N M) stays at most 20).
MAX_SIDE = 1024


def fft_precision(dtype) -> np.dtype:
    """The FFT's precision for a block of ``dtype``: float32 for 8- and 16-bit and float32
    samples, float64 for float64 and wider integers (see the error bound)."""
    dtype = np.dtype(dtype)
    if dtype == np.float32 or dtype.itemsize <= 2:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _side(k: int, n: int) -> int:
    """FFT block side for a kernel side ``k`` and a padded block side ``n``."""
    import scipy.fft

    want = scipy.fft.next_fast_len(min(MAX_SIDE, max(MIN_SIDE, KERNEL_SIDES * k)), real=True)
    whole = scipy.fft.next_fast_len(n, real=True)
    return whole if whole <= want else max(want, k)


def fft_shape(kernel_shape: tuple[int, int], block_shape: tuple[int, ...]) -> tuple[int, int]:
    """``(N, M)``: the FFT block for this kernel and padded block."""
    kh, kw = kernel_shape
    return _side(kh, block_shape[0]), _side(kw, block_shape[1])


def fft_error_bound(weights: np.ndarray, max_abs: float, fft_shape_: tuple[int, int], precision) -> float:
    """The stated bound on ``|fft - exact|`` for one sample (without the output's rounding)."""
    u = float(np.finfo(np.dtype(precision)).eps) / 2
    n, m = fft_shape_
    return FFT_ERROR_C * u * math.log2(max(2, n * m)) * float(np.abs(weights).sum()) * float(max_abs)


_spectra: dict = {}
_spectra_lock = threading.Lock()


def _spectrum(weights: np.ndarray, shape: tuple[int, int], precision: np.dtype) -> np.ndarray:
    """``conj(rfft2(weights, shape))`` in ``precision``, kept for the next tile (few entries)."""
    import scipy.fft

    key = (weights.shape, weights.tobytes(), shape, precision.str)
    with _spectra_lock:
        found = _spectra.get(key)
    if found is None:
        found = np.conj(scipy.fft.rfft2(weights.astype(precision), s=shape))
        with _spectra_lock:
            if len(_spectra) >= 8:
                _spectra.pop(next(iter(_spectra)))
            _spectra[key] = found
    return found


def correlate_fft(block: np.ndarray, weights: np.ndarray, out: np.ndarray, *, workers: int = 1,
                  store=None) -> None:
    """Valid-region correlation of the padded ``block`` with ``weights`` by overlap-save FFTs.

    Parameters
    ----------
    block : ndarray
        Padded input (H + kh - 1) x (W + kw - 1) [x C], any real dtype.
    weights : ndarray
        kh x kw float64 weights (already flipped for convolution).
    out : ndarray
        H x W [x C]; float32 unless ``store`` converts.
    workers : int
        ``scipy.fft`` threads (1 inside a tiled engine's tiles).
    store : callable, optional
        ``store(result, dst)`` writes one FFT block's results (in the FFT's precision) into
        its part ``dst`` of ``out`` (a dtype policy); by default they are copied.

    Examples
    --------
    >>> block = np.array([[0, 0, 10, 40, 40]], dtype=np.uint8)
    >>> out = np.empty((1, 3), dtype=np.float32)
    >>> correlate_fft(block, np.array([[-0.5, 0.0, 0.5]]), out)
    >>> np.round(out, 4)
    array([[ 5., 20., 15.]], dtype=float32)
    """
    kh, kw = weights.shape
    h, w = out.shape[:2]
    if out.size == 0:
        return
    precision = fft_precision(block.dtype)
    src = block[..., np.newaxis] if block.ndim == 2 else block
    dst = out[..., np.newaxis] if out.ndim == 2 else out
    n, m = fft_shape((kh, kw), block.shape)
    spectrum = _spectrum(np.asarray(weights, dtype=np.float64), (n, m), precision)
    step_r = n - kh + 1
    strips = list(range(0, h, step_r))
    if workers <= 1 or len(strips) < 2:
        for r0 in strips:
            _strip(src, dst, r0, weights.shape, spectrum, (n, m), precision, store)
        return
    # Strips of FFT blocks on a pool of threads (scipy.fft releases the GIL); each strip's
    # FFT blocks are the same as in the serial loop, so the result does not depend on workers.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(workers, len(strips))) as pool:
        list(pool.map(lambda r0: _strip(src, dst, r0, weights.shape, spectrum, (n, m), precision, store), strips))


def _strip(src, dst, r0, kernel_shape, spectrum, shape, precision, store) -> None:
    """Output rows ``r0 .. r0 + N - kh`` of every channel, FFT block by FFT block."""
    import scipy.fft

    kh, kw = kernel_shape
    n, m = shape
    h, w, channels = dst.shape
    step_r, step_c = n - kh + 1, m - kw + 1
    hh = min(step_r, h - r0)
    rows = src[r0 : r0 + n]
    # One contiguous N x M plane per transform: pocketfft is fastest on those, faster than
    # batched or channel-interleaved transforms of the same blocks.
    tile = scratch("fft.tile", (n, m), precision)
    for c0 in range(0, w, step_c):
        cw = min(step_c, w - c0)
        part = rows[:, c0 : c0 + m]
        ph, pw = part.shape[:2]
        for c in range(channels):
            np.copyto(tile[:ph, :pw], part[:, :, c], casting="unsafe")
            tile[ph:] = 0
            tile[:ph, pw:] = 0
            spec = scipy.fft.rfft2(tile)
            spec *= spectrum
            result = scipy.fft.irfft2(spec, s=shape, overwrite_x=True)[:hh, :cw]
            target = dst[r0 : r0 + hh, c0 : c0 + cw, c]
            if store is None:
                target[...] = result
            else:
                store(result, target)


#: The ``auto`` method's costs, in the time of one general-path tap per output sample on
#: each flavour: an FFT correlation (roughly flat in the kernel's size, since its blocks are
#: 256 to 384 a side; the numpy flavour's direct taps are whole-array passes, so its FFT costs
#: fewer of them), and a separable pass per tap of ``kh + kw`` plus a fixed cost. The
#: figures behind them are in the commit that set them.
FFT_COST_TAPS = {"numpy": 16.0, "numba": 100.0}
SEPARABLE_TAP_COST = {"numpy": 0.45, "numba": 0.6}
SEPARABLE_TERM_COST = {"numpy": 1.0, "numba": 1.0}
#: ``auto`` chooses the FFTs or the low-rank split only for kernels of at least this many
#: taps (where the FFT starts to beat numba's direct sum): below it every flavour sums directly, and
#: the flavours agree bit for bit, as before these paths existed.
MIN_TAPS = 100
#: At most this many distinct nonzero weights: the numba flavour's exact level sums
#: (:data:`._numba_levels.MAX_LEVELS`) are cheaper than any other path.
LEVELS = 4
LEVELS_COST_TAPS = 49.0


def method_costs(kernel, flavour: str) -> dict[str, float]:
    """Each method's modelled cost for ``kernel`` (already flipped) on ``flavour``, in
    general-path taps per output sample (the ``auto`` engine scales them by its calibration
    and costs the FFT by its own measurement)."""
    from ._lowrank import lowrank_factors

    kh, kw = kernel.shape
    costs = {"direct": float(kh * kw)}
    if kernel.factors is not None or flavour == "python":
        return costs
    if flavour == "numba" and np.unique(kernel.weights[kernel.weights != 0]).size <= LEVELS:
        # The exact level sums: not measured against the others here; costed as the
        # calibration's 7x7 general sample, as the auto engine assumed before these paths.
        return {"direct": min(costs["direct"], LEVELS_COST_TAPS)}
    if kh * kw < MIN_TAPS:
        return costs
    flavour = flavour if flavour in FFT_COST_TAPS else "numpy"
    costs["fft"] = FFT_COST_TAPS[flavour]
    terms = lowrank_factors(kernel)
    if terms is not None:
        costs["lowrank"] = len(terms) * ((kh + kw) * SEPARABLE_TAP_COST[flavour] + SEPARABLE_TERM_COST[flavour])
    return costs


def auto_method(kernel, flavour: str) -> str:
    """The cheapest method for ``kernel`` on ``flavour`` by :func:`method_costs`; ``direct``
    for separable kernels and, on the numba flavour, kernels with few distinct weights."""
    costs = method_costs(kernel, flavour)
    return min(costs, key=costs.get)
