"""pixelmill against scipy.ndimage: the cases SciPy's own filter tests check (correlate,
convolve, border modes, origin, the Gaussian's truncate/size/radius), on every registered engine.

Each case is written here in this project's terms; SciPy itself is the oracle. Engines are
started once (``every_engine``) and handed the operation the public API builds; the public
functions are checked on the numpy engine. The loops engine only sees small inputs.
Deliberate differences from SciPy are listed in the README ("Deliberate differences from
SciPy") and tested as such at the end.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pixelmill
from pixelmill import InvalidImageError, InvalidKernelError, InvalidParameterError, kernels
from pixelmill import _validation as v
from pixelmill.ops import Filter, SobelMagnitude, work_dtype

from conftest import scipy_filter

ENGINES = pixelmill.available_engines()
MODES = ("reflect", "mirror", "nearest", "constant", "wrap")
EPS64 = np.finfo(np.float64).eps


def run(engine, image, weights, *, convolve=True, origin=0, border="nearest", cval=0.0, policy=None):
    """What convolve()/correlate() compute, on an already started engine."""
    k = v.check_kernel(weights)
    op = Filter(k, flip=convolve, origin=v.check_origin(origin, k.shape))
    if policy is not None:
        op = op.with_policy(policy)
    planes, restore = v.check_planes(image)
    out = engine.run(op, planes, border=v.check_border(border), cval=v.check_cval(cval))
    return out if restore is None else restore(out)


def bound(weights, image):
    """Float64 tolerance: a few ulps of the largest term sum."""
    scale = float(np.abs(np.asarray(weights, dtype=np.float64)).sum()) * max(1.0, float(np.nanmax(np.abs(image))))
    return dict(rtol=1e-12, atol=16 * EPS64 * scale)


# -- exact small cases (the ones SciPy's documentation and tests spell out) --------------------

DOC_IMAGE = np.array([[1, 2, 0, 0], [5, 3, 0, 4], [0, 0, 0, 7], [9, 3, 0, 0]], dtype=np.float64)
DOC_KERNEL = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=np.float64)


@pytest.mark.parametrize("name", ENGINES)
def test_convolve_constant_border_known_values(every_engine, name):
    # The 4x4 example of scipy.ndimage.convolve's documentation, cval 0 and 1.
    engine = every_engine[name]
    zero = [[11, 10, 7, 4], [10, 3, 11, 11], [15, 12, 14, 7], [12, 3, 7, 0]]
    one = [[13, 11, 8, 7], [11, 3, 11, 14], [16, 12, 14, 10], [15, 6, 10, 5]]
    np.testing.assert_array_equal(run(engine, DOC_IMAGE, DOC_KERNEL, border="constant"), zero)
    np.testing.assert_array_equal(run(engine, DOC_IMAGE, DOC_KERNEL, border="constant", cval=1.0), one)


@pytest.mark.parametrize("name", ENGINES)
def test_convolve_reflect_known_values(every_engine, name):
    b = np.array([[2, 0, 0], [1, 0, 0], [0, 0, 0]], dtype=np.float64)
    k = np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=np.float64)
    np.testing.assert_array_equal(run(every_engine[name], b, k, border="reflect"), [[5, 0, 0], [3, 0, 0], [1, 0, 0]])


@pytest.mark.parametrize("name", ENGINES)
def test_one_row_correlate_and_convolve_known_values(every_engine, name):
    # 1-D inputs are one row; an even kernel's anchor differs between the two operations.
    engine = every_engine[name]
    row = np.array([2, 8, 0, 4, 1, 9, 9, 0], dtype=np.float64)
    np.testing.assert_array_equal(run(engine, row, [[1, 3]], convolve=False, border="reflect"),
                                  [8, 26, 8, 12, 7, 28, 36, 9])
    np.testing.assert_array_equal(run(engine, np.array([1.0, 2.0]), [[1, 1]], convolve=False), [2, 3])
    np.testing.assert_array_equal(run(engine, np.array([1.0, 2.0]), [[1, 1]]), [3, 4])
    np.testing.assert_array_equal(run(engine, np.array([1.0, 2.0, 3.0]), [[1.0]]), [1, 2, 3])
    np.testing.assert_array_equal(run(engine, np.array([1.0]), [[1, 1]]), [2])
    np.testing.assert_array_equal(run(engine, np.array([1.0, 2.0]), [[2.0]]), [2, 4])


# -- against SciPy: kernels x borders x origins ------------------------------------------------

CASES = [
    ("odd-3x3", np.array([[1.0, 2, -1], [0.5, 4, 1], [-2, 0, 3]])),
    ("even-2x2", np.array([[1.0, 0], [0, 1]])),
    ("even-2x4", np.array([[1.0, 2, 3, 4], [-1, 0.5, 0, 2]])),
    ("row-1x4", np.array([[1.0, 2, 3, 4]])),
    ("column-3x1", np.array([[1.0], [-2], [1]])),
    ("separable-3x5", np.outer([1.0, 2, 1], [1.0, 4, 6, 4, 1]) / 64),
    ("larger-than-image-7x7", np.arange(49, dtype=np.float64).reshape(7, 7) / 49 - 0.4),
]


def _origins(shape):
    kh, kw = shape
    return sorted({(0, 0), (-(kh // 2), (kw - 1) // 2), ((kh - 1) // 2, -(kw // 2))})


@pytest.mark.parametrize("convolve", [True, False], ids=["convolve", "correlate"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("name", ENGINES)
def test_matches_scipy_every_border_and_origin(every_engine, name, case, convolve, rng):
    _, weights = case
    image = rng.random((5, 6)) * 10 - 3
    fn = ndi.convolve if convolve else ndi.correlate
    for mode in MODES:
        for origin in _origins(weights.shape):
            got = run(every_engine[name], image, weights, convolve=convolve, origin=origin, border=mode, cval=1.5)
            want = fn(image, weights, mode=mode, cval=1.5, origin=origin)
            np.testing.assert_allclose(got, want, **bound(weights, image), err_msg=f"{mode} origin={origin}")


@pytest.mark.parametrize("mode", MODES)
def test_border_modes_on_tiny_axes(every_engine, mode):
    # Axes of length 1 and 3 under a kernel wider than the image: every mode's rule repeats.
    weights = np.array([[1.0, 2, 3, 4, 5]])
    for image in (np.array([[7.0]]), np.array([[1.0, 2.0, 4.0]])):
        want = scipy_filter(image, weights, mode=mode, cval=0.5)
        for name in ("numpy", "numba", "loops"):
            if name in every_engine:
                np.testing.assert_allclose(run(every_engine[name], image, weights, border=mode, cval=0.5),
                                           want, **bound(weights, image))


def test_public_functions_take_origin_like_scipy(rng):
    image = rng.random((6, 7))
    w = rng.random((2, 3))
    for origin in (0, -1, (0, 1), (-1, -1)):
        np.testing.assert_allclose(pixelmill.convolve(image, w, origin=origin, border="wrap"),
                                   ndi.convolve(image, w, origin=origin, mode="wrap"), **bound(w, image))
        np.testing.assert_allclose(pixelmill.correlate(image, w, origin=origin, border="mirror"),
                                   ndi.correlate(image, w, origin=origin, mode="mirror"), **bound(w, image))


@pytest.mark.parametrize("origin", [2, (0, 2), (-2, 0), (0.5, 0), "1", (1, 1, 1)])
def test_origin_out_of_range_or_malformed_is_refused(origin):
    with pytest.raises(InvalidParameterError, match="origin"):
        pixelmill.correlate(np.zeros((4, 4)), np.ones((3, 3)), origin=origin)


def test_scipy_grid_mode_names_are_accepted(rng):
    image = rng.random((5, 5))
    for alias, mode in (("grid-mirror", "reflect"), ("grid-wrap", "wrap"), ("grid-constant", "constant")):
        np.testing.assert_array_equal(pixelmill.convolve(image, "laplacian", border=alias),
                                      pixelmill.convolve(image, "laplacian", border=mode))


# -- the Gaussian: truncate, radius, anisotropic sigma, sigma 0 ---------------------------------


@pytest.mark.parametrize("name", ENGINES)
def test_gaussian_truncate_sets_the_support(every_engine, name):
    # An impulse spreads exactly 2 * int(truncate * sigma + 0.5) + 1 pixels along each axis.
    image = np.zeros((21, 21))
    image[10, 10] = 1.0
    for sigma, truncate in ((2.0, 2.0), (1.0, 4.0), (3.0, 1.0)):
        k = kernels.gaussian(None, sigma, truncate=truncate)
        got = run(every_engine[name], image, k, convolve=False, border="reflect")
        side = 2 * int(truncate * sigma + 0.5) + 1
        assert int((got > 0).sum()) == side * side
        np.testing.assert_allclose(got, ndi.gaussian_filter(image, sigma, truncate=truncate), **bound(k.weights, image))


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.7, (1.0, 2.0), (0, 1.5), (2.0, 0), 0])
@pytest.mark.parametrize("mode", MODES)
def test_gaussian_filter_equals_scipy(sigma, mode, rng):
    image = rng.random((12, 13)) * 100
    want = ndi.gaussian_filter(image, sigma, mode=mode, cval=3.0)
    got = pixelmill.gaussian_filter(image, sigma, border=mode, cval=3.0)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, **bound([1.0], image))


def test_gaussian_radius_overrides_truncate_as_in_scipy(rng):
    image = rng.random((11, 11))
    for sigma, radius in ((1.0, 2), (2.0, 1), ((1.0, 3.0), (2, 4))):
        want = ndi.gaussian_filter(image, sigma, radius=radius, mode="nearest")
        np.testing.assert_allclose(pixelmill.gaussian_filter(image, sigma, radius=radius), want, **bound([1.0], image))
    # radius = int(truncate * sigma + 0.5) is the same filter.
    np.testing.assert_array_equal(pixelmill.gaussian_filter(image, 1.5, truncate=3.0),
                                  pixelmill.gaussian_filter(image, 1.5, radius=int(3.0 * 1.5 + 0.5)))


def test_gaussian_filter_float32_and_uint8_keep_float32(rng):
    image = rng.integers(0, 256, (9, 10), dtype=np.uint8)
    got = pixelmill.gaussian_filter(image, 1.2, border="mirror")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ndi.gaussian_filter(image.astype(np.float64), 1.2, mode="mirror"), atol=1e-3)


@pytest.mark.parametrize("sigma", [-1.0, float("nan"), "x", (1.0, 2.0, 3.0)])
def test_gaussian_filter_bad_sigma(sigma):
    with pytest.raises(InvalidKernelError, match="sigma"):
        pixelmill.gaussian_filter(np.zeros((3, 3)), sigma)


def test_cli_gaussian_spec_derives_its_size():
    from pixelmill._opspec import parse_op

    assert parse_op("gaussian:sigma=3").kernel.shape == (25, 25)
    assert parse_op("gaussian:size=9,sigma=2").kernel.shape == (9, 9)
    assert parse_op("gaussian:sigma=2,truncate=2").kernel.shape == (9, 9)
    assert parse_op("gaussian").label == "gaussian-5-1" and parse_op("gaussian:size=9,sigma=2").label == "gaussian-9-2"


# -- dtypes: the work dtype is the result dtype ------------------------------------------------


@pytest.mark.parametrize("dtype,result", [
    (np.float64, np.float64), (np.float32, np.float32), (np.float16, np.float32), (np.uint8, np.float32),
    (np.int16, np.float32), (np.uint16, np.float32), (np.bool_, np.float32), (np.int32, np.float64),
    (np.uint32, np.float64), (np.int64, np.float64), (np.uint64, np.float64),
])
def test_result_dtype_follows_the_work_dtype(dtype, result):
    image = np.arange(12).reshape(3, 4).astype(dtype)
    assert work_dtype(dtype) == result
    assert pixelmill.convolve(image, "gaussian").dtype == result
    assert pixelmill.sobel(image).dtype == result
    assert pixelmill.to_dtype(np.zeros(2), dtype, policy="float32").dtype == result


def test_wide_integers_are_not_rounded_to_float32():
    # 2**24 + 1 is not a float32; the identity must give it back.
    image = np.array([[2**24 + 1, 2**31 - 1], [-(2**31), 2**30 + 3]], dtype=np.int32)
    np.testing.assert_array_equal(pixelmill.convolve(image, [[1.0]]), image.astype(np.float64))
    u = np.array([[2**32 - 1, 2**24 + 1]], dtype=np.uint32)
    np.testing.assert_array_equal(pixelmill.correlate(u, [[1.0]], policy="clip"), u)


def test_big_endian_arrays_are_accepted(rng):
    image = rng.random((5, 6))
    for dtype in (">f8", ">u2", ">i4"):
        x = (image * 1000).astype(dtype)
        got = pixelmill.convolve(x, "laplacian")
        np.testing.assert_array_equal(got, pixelmill.convolve(x.astype(x.dtype.newbyteorder("=")), "laplacian"))
        assert got.dtype.isnative
        assert pixelmill.invert(x).dtype == x.dtype.newbyteorder("=")


def test_complex_kernel_is_refused_without_a_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidKernelError, match="kernel 'custom'.*complex"):
            pixelmill.convolve(np.zeros((3, 3)), np.array([[1j, 1.0]]))


# -- shapes: channel_axis, 1-D, empty ----------------------------------------------------------


def test_channel_axis_moves_any_axis(rng):
    planes = rng.random((3, 7, 8))
    want = np.stack([ndi.convolve(p, kernels.get("laplacian").weights, mode="nearest") for p in planes])
    got = pixelmill.convolve(planes, "laplacian", channel_axis=0)
    assert got.shape == planes.shape and got.flags.c_contiguous
    np.testing.assert_allclose(got, want, **bound([8.0], planes))
    out = np.empty_like(planes)
    assert pixelmill.convolve(planes, "laplacian", channel_axis=0, out=out) is out
    np.testing.assert_array_equal(out, got)
    last = pixelmill.convolve(np.moveaxis(planes, 0, -1), "laplacian")
    np.testing.assert_array_equal(np.moveaxis(last, -1, 0), got)
    # Named explicitly, the last axis may hold more than 4 channels.
    many = rng.random((5, 6, 7))
    assert pixelmill.convolve(many, "laplacian", channel_axis=-1).shape == many.shape


def test_three_d_without_a_channel_axis_is_refused_clearly():
    with pytest.raises(InvalidImageError, match="more than the 4 channels.*channel_axis"):
        pixelmill.convolve(np.zeros((4, 5, 6)), "gaussian")
    with pytest.raises(InvalidImageError, match="2-D planes.*volumes are not supported.*loop over the planes"):
        pixelmill.convolve(np.zeros((4, 5, 3)), "gaussian", channel_axis=None)
    with pytest.raises(InvalidParameterError, match="channel_axis"):
        pixelmill.convolve(np.zeros((4, 5)), "gaussian", channel_axis=0)
    with pytest.raises(InvalidParameterError, match="channel_axis"):
        pixelmill.convolve(np.zeros((4, 5, 3)), "gaussian", channel_axis=3)
    with pytest.raises(InvalidImageError, match="shape"):
        pixelmill.convolve(np.zeros((2, 3, 4, 5)), "gaussian")


@pytest.mark.parametrize("shape", [(0, 5), (4, 0), (0, 0, 3), (0,)])
def test_empty_inputs_give_empty_results(shape):
    for dtype in (np.uint8, np.float64):
        image = np.zeros(shape, dtype=dtype)
        assert pixelmill.convolve(image, "gaussian").dtype == work_dtype(dtype)
        assert pixelmill.convolve(image, "gaussian").shape == shape
        assert pixelmill.convolve(image, "gaussian", policy="clip").dtype == dtype
        assert pixelmill.sobel(image, policy="normalize").shape == shape
        assert pixelmill.invert(image).shape == shape


def test_one_d_input_is_one_row(rng):
    row = rng.random(9)
    got = pixelmill.convolve(row, [[1.0, -2.0, 1.0]], border="mirror")
    assert got.shape == (9,)
    np.testing.assert_allclose(got, ndi.convolve1d(row, [1.0, -2.0, 1.0], mode="mirror"), **bound([4.0], row))
    out = np.empty(9)
    assert pixelmill.convolve(row, [[1.0, -2.0, 1.0]], out=out) is out


# -- NaN and inf: zero taps are not read --------------------------------------------------------


@pytest.mark.parametrize("name", ENGINES)
def test_nan_under_a_laplacian_marks_what_scipy_marks(every_engine, name):
    for dtype in (np.float32, np.float64):
        image = np.ones((7, 7), dtype=dtype)
        image[3, 3] = np.nan
        image[0, 6] = np.inf
        lap = kernels.get("laplacian").weights
        want = ndi.convolve(image.astype(np.float64), lap, mode="nearest")
        got = run(every_engine[name], image, lap)
        assert int(np.isnan(got[1:6, 1:6]).sum()) == 5  # the NaN and its 4 neighbours, not 9
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        assert got[1, 6] == 0 or not np.isfinite(want[1, 6]) or got[1, 6] == want[1, 6]


def test_all_zero_kernel_reads_nothing():
    image = np.array([[np.nan, 1.0], [np.inf, 2.0]])
    for name in ("loops", "numpy", "numba"):
        np.testing.assert_array_equal(pixelmill.convolve(image, np.zeros((3, 3)), engine=name),
                                      ndi.convolve(image, np.zeros((3, 3))))


# -- properties (hypothesis): dtypes x engines x borders ---------------------------------------

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
INT_DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64]
# The numba kernels are compiled for these; other dtypes run the numpy code on that engine.
SHAPES = hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6)


@st.composite
def integer_images(draw):
    dtype = np.dtype(draw(st.sampled_from(INT_DTYPES)))
    info = np.iinfo(dtype)
    # Every value of the dtype when float64 holds them all; past 2**53 (int64, uint64) the
    # limits themselves plus values float64 holds exactly.
    lo, hi = max(int(info.min), -(2**53)), min(int(info.max), 2**53)
    values = st.one_of(st.integers(lo, hi), st.sampled_from([int(info.min), int(info.max), 0]))
    return draw(hnp.arrays(dtype, SHAPES, elements=values))


@SETTINGS
@given(image=integer_images(), name=st.sampled_from(ENGINES), mode=st.sampled_from(MODES),
       policy=st.sampled_from(["clip", "abs", "shift"]))
def test_identity_never_wraps_at_any_dtype_limit(every_engine, image, name, mode, policy):
    got = run(every_engine[name], image, [[1.0]], border=mode, policy=policy)
    assert got.dtype == image.dtype
    info = np.iinfo(image.dtype)
    if policy == "clip":
        np.testing.assert_array_equal(got, image)  # exact, the limits included
        return
    # abs and shift run in the work dtype (float64 for the wide integers: 1 + 2**63 rounds),
    # then clip exactly to the dtype's limits, in Python integers here.
    f = work_dtype(image.dtype).type
    mid = (int(info.min) + int(info.max) + 1) // 2
    step = (lambda x: abs(f(x))) if policy == "abs" else (lambda x: f(x) + f(mid))
    want = [min(max(int(step(x)), int(info.min)), int(info.max)) for x in image.ravel().tolist()]
    assert got.ravel().tolist() == want


@SETTINGS
@given(value=st.one_of(st.floats(-1e30, 1e30), st.sampled_from([2.0**63, 2.0**64, -(2.0**63), 3e9, -3e9])),
       dtype=st.sampled_from(INT_DTYPES))
def test_to_dtype_clips_exactly(value, dtype):
    info = np.iinfo(dtype)
    got = int(pixelmill.to_dtype(np.array([value]), dtype)[0])
    want = min(max(int(np.rint(value)), int(info.min)), int(info.max))
    assert got == want


@st.composite
def float_images_with_specials(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    values = st.one_of(st.floats(-100, 100, width=32), st.sampled_from([np.nan, np.inf, -np.inf]))
    return draw(hnp.arrays(dtype, SHAPES, elements=values))


@SETTINGS
@given(image=float_images_with_specials(), name=st.sampled_from(ENGINES), mode=st.sampled_from(MODES),
       kernel=st.sampled_from(["laplacian", "sobel-x", "sobel-y", "sobel"]))
def test_nan_and_inf_masks_equal_scipys(every_engine, image, name, mode, kernel):
    x = image.astype(np.float64)
    if kernel == "sobel":
        gx, gy = (ndi.convolve(x, kernels.get(k).weights, mode=mode, cval=0.0) for k in ("sobel-x", "sobel-y"))
        want = np.hypot(gx, gy)
        got = every_engine[name].run(SobelMagnitude(), image, border=mode)
    else:
        want = ndi.convolve(x, kernels.get(kernel).weights, mode=mode)
        got = run(every_engine[name], image, kernel, border=mode)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-4)


@SETTINGS
@given(image=hnp.arrays(np.float64, SHAPES, elements=st.floats(-1e6, 1e6)),
       weights=hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=4),
                          # SciPy drops weights within DBL_EPSILON of 0 (a deliberate difference)
                          elements=st.floats(-10, 10).map(lambda w: 0.0 if abs(w) < 1e-12 else w)),
       name=st.sampled_from(ENGINES), mode=st.sampled_from(MODES), convolve=st.booleans())
def test_float64_within_a_few_ulps_of_scipy(every_engine, image, weights, name, mode, convolve):
    got = run(every_engine[name], image, weights, convolve=convolve, border=mode, cval=0.25)
    assert got.dtype == np.float64
    want = scipy_filter(image, weights, mode=mode, cval=0.25, convolve=convolve)
    np.testing.assert_allclose(got, want, **bound(weights, image))


@SETTINGS
@given(image=integer_images(), name=st.sampled_from(ENGINES), mode=st.sampled_from(MODES),
       kernel=st.sampled_from(["laplacian", "sobel-x", "sobel-y"]))
def test_integer_kernels_on_integer_images_are_exact(every_engine, image, name, mode, kernel):
    weights = kernels.get(kernel).weights
    x = image.astype(np.float64)
    if np.abs(x).max(initial=0) * np.abs(weights).sum() >= 2.0**24 and work_dtype(image.dtype) == np.float32:
        return  # beyond float32's integers (cannot happen for 8/16-bit images and these kernels)
    if np.abs(x).max(initial=0) * np.abs(weights).sum() >= 2.0**53:
        return  # beyond float64's integers
    want = scipy_filter(x, weights, mode=mode)  # exact: integer sums below 2**53
    np.testing.assert_array_equal(run(every_engine[name], image, weights, border=mode), want)


# -- deliberate differences (README: "Deliberate differences from SciPy") ---------------------


def test_difference_tiny_weights_are_read():
    # SciPy's N-D correlate drops weights within DBL_EPSILON of zero; pixelmill skips exact
    # zeros only, so a weight of 1e-20 still reads its sample (and its NaN).
    image = np.array([[np.nan, 1.0, 1.0]])
    assert np.isnan(pixelmill.correlate(image, [[1e-20, 1.0, 0.0]], border="constant")[0, 1])
    assert not np.isnan(ndi.correlate(image, [[1e-20, 1.0, 0.0]], mode="constant")[0, 1])


def test_difference_integer_images_give_the_float_result_or_a_policy():
    image = np.array([[1, 100, 200]], dtype=np.uint8)
    assert ndi.correlate(image, [[2.6]]).tolist() == [[2, 4, 8]]  # truncated and wrapped
    np.testing.assert_allclose(pixelmill.correlate(image, [[2.6]]), [[2.6, 260, 520]], rtol=1e-6)
    assert pixelmill.correlate(image, [[2.6]], policy="clip").tolist() == [[3, 255, 255]]


def test_difference_default_border_is_nearest(rng):
    image = rng.random((5, 5))
    np.testing.assert_allclose(pixelmill.gaussian_filter(image, 1.0),
                               ndi.gaussian_filter(image, 1.0, mode="nearest"), **bound([1.0], image))


@pytest.mark.parametrize("name", ENGINES)
def test_origin_on_8bit_images_is_the_numpy_engines_bit_for_bit(every_engine, name, rng):
    # The float32 kernels (numba's unpadded border reads included) with shifted anchors.
    image = rng.integers(0, 256, (11, 13, 3), dtype=np.uint8)
    separable = np.outer([1.0, 2, 1], [1.0, 4, 6, 4, 1]) / 64
    general = np.array([[0, 1, 0, 2], [1, -4, 1, 0.5]])
    for weights in (separable, general):
        for origin in _origins(weights.shape):
            for mode in ("reflect", "constant", "wrap"):
                for policy in (None, "clip"):
                    want = run(every_engine["numpy"], image, weights, origin=origin, border=mode, cval=7, policy=policy)
                    got = run(every_engine[name], image, weights, origin=origin, border=mode, cval=7, policy=policy)
                    if name == "loops":  # float64 inside: within float32 rounding
                        np.testing.assert_allclose(got, want, atol=1e-3 if policy is None else 1)
                    else:
                        np.testing.assert_array_equal(got, want, err_msg=f"{origin} {mode} {policy}")
            want = ndi.convolve(image[..., 0].astype(np.float64), weights, origin=origin, mode="mirror")
            got = run(every_engine[name], image[..., 0], weights, origin=origin, border="mirror")
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)
