"""The FFT and low-rank paths against the float64 direct sum (SciPy), within their stated
bounds (:mod:`pixelmill.ops._fft`, :mod:`pixelmill.ops._lowrank`): every border, odd and even
kernels, images smaller than the kernel, 1 x N and N x 1 images, every dtype class, and on
every engine that tiles (the FFT of a tile is not bit-identical to the untiled one: tiles
must stay inside the bound). Plus the ``auto`` method's choices and the keyword's validation.
"""

from __future__ import annotations

import numpy as np
import pytest

import pixelmill
from pixelmill import kernels
from pixelmill.engines import available_engines, make_engine
from pixelmill.errors import InvalidParameterError
from pixelmill.ops import Filter
from pixelmill.ops._fft import auto_method, correlate_fft, fft_error_bound, fft_precision, fft_shape
from pixelmill.ops._lowrank import lowrank_error_bound, lowrank_factors
from pixelmill.tiling import BORDER_MODES

from conftest import random_image, scipy_filter

CVAL = 7.5
#: Odd, even and mixed kernel shapes, convolved or correlated.
KERNEL_CASES = [((11, 11), True), ((10, 12), False), ((15, 4), True), ((4, 9), False)]
#: Larger than, smaller than the kernel, one row, one column.
IMAGE_SHAPES = [(37, 53, 3), (5, 4), (1, 60), (60, 1)]


def unit_kernel(rng, shape):
    w = rng.normal(size=shape)
    return kernels.from_array(w / np.abs(w).sum())


def low_rank_kernel(rng, shape, rank):
    w = sum(np.outer(rng.normal(size=shape[0]), rng.normal(size=shape[1])) for _ in range(rank))
    return kernels.from_array(w / np.abs(w).sum())


def output_rounding(image, kernel):
    """The float32 result's own rounding (and the float32 work copy of the input's)."""
    return 2.0**-23 * float(np.abs(kernel.weights).sum()) * max(1.0, float(np.abs(image.astype(np.float64)).max()))


def fft_bound(image, kernel, padded_shape):
    """The stated FFT bound for ``image`` (its padded shape gives the FFT blocks), plus output rounding."""
    max_abs = float(np.abs(image.astype(np.float64)).max()) if image.size else 0.0
    shape = fft_shape(kernel.shape, padded_shape)
    return fft_error_bound(kernel.weights, max_abs, shape, fft_precision(image.dtype)) + output_rounding(image, kernel)


def padded_shape(image, kernel):
    kh, kw = kernel.shape
    return (image.shape[0] + kh - 1, image.shape[1] + kw - 1)


def run(engine, op, image, border, **options):
    with make_engine(engine, **options) as eng:
        return eng.run(op, image, border=border, cval=CVAL)


@pytest.mark.parametrize("engine", ["numpy", "numba"])
@pytest.mark.parametrize("border", BORDER_MODES)
@pytest.mark.parametrize("kshape, flip", KERNEL_CASES, ids=str)
@pytest.mark.parametrize("ishape", IMAGE_SHAPES, ids=str)
def test_fft_within_its_bound_of_the_exact_sum(engine, border, kshape, flip, ishape, rng):
    image = random_image(rng, ishape, np.uint8)
    kernel = unit_kernel(rng, kshape)
    result = run(engine, Filter(kernel, flip=flip, method="fft"), image, border, workers=2)
    expected = scipy_filter(image, kernel.weights, mode=border, cval=CVAL, convolve=flip)
    err = np.abs(result.astype(np.float64) - expected).max()
    assert err <= fft_bound(image, kernel, padded_shape(image, kernel))
    assert err <= 1e-3  # the 8-bit promise


@pytest.mark.parametrize("engine", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64],
                         ids=lambda d: np.dtype(d).name)
def test_fft_bound_for_every_dtype(engine, dtype, rng):
    image = random_image(rng, (300, 41, 2), dtype)  # two strips of FFT blocks
    kernel = unit_kernel(rng, (31, 9))
    result = run(engine, Filter(kernel, method="fft"), image, "reflect")
    expected = scipy_filter(image, kernel.weights, mode="reflect")
    bound = fft_bound(image, kernel, padded_shape(image, kernel))
    assert np.abs(result.astype(np.float64) - expected).max() <= bound
    if np.dtype(dtype).itemsize > 2 and dtype != np.float32:
        # float64 FFTs: far below float32's rounding (the result is float32).
        assert bound < 2 * output_rounding(image, kernel)


@pytest.mark.parametrize("policy", ["clip", "abs", "shift"])
@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_fft_with_a_policy_rounds_the_bounded_result(policy, engine, rng):
    image = random_image(rng, (40, 30, 3), np.uint8)
    kernel = unit_kernel(rng, (13, 13))
    result = run(engine, Filter(kernel, method="fft", policy=policy), image, "nearest")
    exact = scipy_filter(image, kernel.weights)
    exact = {"abs": np.abs(exact), "shift": exact + 128, "clip": exact}[policy]
    assert result.dtype == np.uint8
    assert np.abs(result - np.clip(exact, 0, 255)).max() <= 0.5 + 1e-3


TILING_ENGINES = [e for e in ("threads", "processes", "joblib", "dask") if e in available_engines()]


@pytest.mark.parametrize("engine", TILING_ENGINES)
@pytest.mark.parametrize("tile_shape", [(7, 5), (16, 100), None], ids=str)
def test_fft_inside_tiles_stays_within_the_bound(engine, tile_shape, rng):
    image = random_image(rng, (29, 41, 3), np.uint8)
    kernel = unit_kernel(rng, (11, 10))
    op = Filter(kernel, method="fft", policy=None)
    tiled = run(engine, op, image, "mirror", workers=2, tile_shape=tile_shape)
    whole = run("numpy", op, image, "mirror")
    expected = scipy_filter(image, kernel.weights, mode="mirror")
    bound = fft_bound(image, kernel, padded_shape(image, kernel))  # a tile's FFT blocks are no larger
    assert np.abs(tiled - expected).max() <= bound
    # Not bit-identical to the untiled result (the rounding depends on the FFT blocks), but close.
    assert np.abs(tiled - whole).max() <= 2 * bound


def test_fft_result_does_not_depend_on_its_workers(rng):
    image = random_image(rng, (700, 45, 3), np.uint8)
    kernel = unit_kernel(rng, (31, 31))
    block = np.pad(image, ((15, 15), (15, 15), (0, 0)), mode="edge")
    one, three = (np.empty(image.shape, np.float32) for _ in range(2))
    correlate_fft(block, kernel.weights, one, workers=1)
    correlate_fft(block, kernel.weights, three, workers=3)
    assert np.array_equal(one, three)


@pytest.mark.parametrize("engine", ["numpy", "numba"])
@pytest.mark.parametrize("border", BORDER_MODES)
@pytest.mark.parametrize("kshape", [(12, 12), (13, 9)], ids=str)
@pytest.mark.parametrize("ishape", [(30, 41, 3), (4, 5), (1, 50), (50, 1)], ids=str)
def test_lowrank_within_its_bound_of_the_exact_sum(engine, border, kshape, ishape, rng):
    image = random_image(rng, ishape, np.uint8)
    kernel = low_rank_kernel(rng, kshape, rank=3)
    terms = lowrank_factors(kernel.flipped())
    assert terms is not None and len(terms) == 3
    result = run(engine, Filter(kernel, method="lowrank"), image, border, workers=2)
    expected = scipy_filter(image, kernel.weights, mode=border, cval=CVAL)
    err = np.abs(result.astype(np.float64) - expected).max()
    assert err <= lowrank_error_bound(kernel.weights, terms, 255.0) + output_rounding(image, kernel)
    assert err <= 1e-3


def test_lowrank_with_a_policy(rng):
    image = random_image(rng, (30, 20, 3), np.uint8)
    kernel = low_rank_kernel(rng, (11, 11), rank=2)
    for engine in ("numpy", "numba"):
        result = run(engine, Filter(kernel, method="lowrank", policy="abs"), image, "nearest")
        exact = np.abs(scipy_filter(image, kernel.weights))
        assert result.dtype == np.uint8 and np.abs(result - np.clip(exact, 0, 255)).max() <= 0.5 + 1e-3


def test_auto_method_choices(rng):
    big = unit_kernel(rng, (31, 31))
    assert auto_method(big, "numba") == "fft" and auto_method(big, "numpy") == "fft"
    assert auto_method(unit_kernel(rng, (7, 7)), "numba") == "direct"  # below MIN_TAPS
    assert auto_method(kernels.gaussian(31, 5.0), "numba") == "direct"  # separable
    disk = (np.hypot(*np.mgrid[-7:8, -7:8]) <= 7).astype(float)
    assert auto_method(kernels.from_array(disk / disk.sum()), "numba") == "direct"  # level sums
    assert auto_method(low_rank_kernel(rng, (31, 31), rank=2), "numba") == "lowrank"
    # The loops reference is always direct.
    assert Filter(big, method="fft").resolved_method("python") == "direct"


def test_method_keyword(rng):
    image = random_image(rng, (20, 30), np.uint8)
    kernel = unit_kernel(rng, (11, 11))
    direct = pixelmill.convolve(image, kernel, method="direct")
    fft = pixelmill.convolve(image, kernel, method="fft")
    assert np.abs(direct - fft).max() <= 1e-3
    assert np.array_equal(pixelmill.correlate(image, kernel, method="auto", engine="numba"),
                          pixelmill.correlate(image, kernel, method="fft", engine="numba"))
    with pytest.raises(InvalidParameterError, match="method 'dft'"):
        pixelmill.convolve(image, kernel, method="dft")


def test_auto_engine_costs_the_methods_and_runs_the_cheapest(rng):
    from pixelmill.engines import Calibration
    from pixelmill.engines._auto import AutoEngine

    # numba's direct general path 10x faster per tap than numpy's; the FFT 0.1 s per MP.
    table = Calibration([1.0], {"general": {"numba:2:0": [0.049], "numpy:1:0": [0.49], "threads:2:1048576": [0.25]}},
                        machine={}, fft_s_per_mp=0.1)
    image = random_image(rng, (30, 40, 3), np.uint8)
    big, small = unit_kernel(rng, (31, 31)), unit_kernel(rng, (7, 7))
    with AutoEngine(calibration=table, workers=2) as eng:
        cand, methods = eng._plan(Filter(big), (1000, 1000))
        # fft: numba 0.1 / 2 = 0.05 s, threads 0.06 s, numpy 0.1 s; direct 0.049 * 961/49 s and more.
        assert (cand.engine, cand.workers, methods) == ("numba", 2, ("fft",))
        assert eng._plan(Filter(small), (1000, 1000))[1] == ("direct",)
        assert eng._plan(Filter(big, method="direct"), (1000, 1000))[1] == (None,)  # the user's choice
        result = eng.run(Filter(big, policy=None), image, border="wrap")
    expected = scipy_filter(image, big.weights, mode="wrap")
    assert np.abs(result - expected).max() <= fft_bound(image, big, padded_shape(image, big))


@pytest.mark.parametrize("method", ["fft", "lowrank"])
def test_nan_does_not_spread_beyond_the_direct_sum(method, rng):
    # Zero taps are never read (the array API's rule); FFTs and low-rank terms would carry a
    # NaN to every sample of their block, so a block holding one is summed directly.
    image = random_image(rng, (30, 30), np.float32)
    image[10, 12] = np.nan
    w = low_rank_kernel(rng, (11, 11), rank=2).weights.copy()
    w[:, :5] = 0.0
    kernel = kernels.from_array(w)
    direct = pixelmill.correlate(image, kernel, method="direct")
    other = pixelmill.correlate(image, kernel, method=method)
    assert np.array_equal(np.isnan(direct), np.isnan(other))
    assert np.isnan(direct).sum() < image.size // 4
