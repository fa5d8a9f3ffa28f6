"""The serial engines against SciPy (the oracle) for every border mode and kernel shape."""

import numpy as np
import pytest

import pixelmill
from pixelmill import kernels
from pixelmill.tiling import BORDER_MODES

from conftest import random_image, scipy_filter

SHAPES = [(1, 1), (1, 9), (9, 1), (2, 3), (7, 5), (16, 13), (12, 11, 3)]
KERNEL_SHAPES = [(1, 1), (1, 3), (2, 2), (3, 3), (4, 5), (5, 5), (6, 2)]


@pytest.mark.parametrize("engine", ["loops", "numpy"])
@pytest.mark.parametrize("border", BORDER_MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("flip", [True, False], ids=["convolve", "correlate"])
def test_filters_match_scipy(engine, border, shape, flip, rng):
    fn = pixelmill.convolve if flip else pixelmill.correlate
    for ks in KERNEL_SHAPES:
        image = random_image(rng, shape, np.uint8)
        weights = rng.normal(size=ks)
        got = fn(image, weights, border=border, cval=17.0, engine=engine)
        assert got.dtype == np.float32 and got.shape == image.shape
        expected = scipy_filter(image, weights, mode=border, cval=17.0, convolve=flip)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3, err_msg=f"kernel {ks}")


@pytest.mark.parametrize("border", BORDER_MODES)
@pytest.mark.parametrize("kshape", [(31, 31), (30, 17), (15, 15)], ids=str)
def test_numpy_large_kernels_match_scipy(border, kshape, rng):
    # Normalised random kernels: the result stays in the 8-bit range, where 1e-3 is the promise.
    for shape in [(45, 38), (9, 7), (40, 33, 3)]:
        image = random_image(rng, shape, np.uint8)
        weights = rng.normal(size=kshape)
        weights /= np.abs(weights).sum()
        got = pixelmill.convolve(image, weights, border=border, engine="numpy")
        np.testing.assert_allclose(got, scipy_filter(image, weights, mode=border), rtol=0, atol=1e-3)


@pytest.mark.parametrize("border", BORDER_MODES)
def test_loops_large_kernel_on_small_image(border, rng):
    image = random_image(rng, (6, 5), np.uint8)
    weights = rng.normal(size=(31, 31)) / 100
    got = pixelmill.convolve(image, weights, border=border, engine="loops")
    np.testing.assert_allclose(got, scipy_filter(image, weights, mode=border), rtol=0, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int16, np.float64, np.bool_])
def test_filters_on_other_dtypes(dtype, rng):
    image = random_image(rng, (17, 14, 2), dtype)
    for name in ["gaussian", "sobel-x", "edge-y", "laplacian"]:
        k = kernels.get(name)
        got = pixelmill.convolve(image, k, border="mirror")
        expected = scipy_filter(image, k.weights, mode="mirror")
        scale = max(1.0, float(np.abs(image.astype(np.float64)).max()))
        np.testing.assert_allclose(got, expected, rtol=0, atol=4e-6 * scale * 10)


def test_edge_x_is_central_difference(rng):
    image = random_image(rng, (5, 9), np.uint8).astype(np.float64)
    got = pixelmill.convolve(image, "edge-x")
    np.testing.assert_allclose(got[:, 1:-1], (image[:, 2:] - image[:, :-2]) / 2, atol=1e-4)


def test_identity_returns_input(rng):
    image = random_image(rng, (11, 8, 3), np.uint8)
    np.testing.assert_array_equal(pixelmill.convolve(image, "identity", border="wrap"), image)


@pytest.mark.parametrize("engine", ["loops", "numpy"])
@pytest.mark.parametrize("border", BORDER_MODES)
def test_sobel_magnitude(engine, border, rng):
    image = random_image(rng, (13, 10, 3), np.uint8)
    gx = scipy_filter(image, kernels.get("sobel-x").weights, mode=border, cval=3)
    gy = scipy_filter(image, kernels.get("sobel-y").weights, mode=border, cval=3)
    got = pixelmill.sobel(image, border=border, cval=3, engine=engine)
    np.testing.assert_allclose(got, np.hypot(gx, gy), rtol=1e-6, atol=1e-3)


@pytest.mark.parametrize("engine", ["loops", "numpy"])
@pytest.mark.parametrize(
    "dtype,oracle",
    [
        (np.uint8, lambda x: 255 - x.astype(np.int64)),
        (np.uint16, lambda x: 65535 - x.astype(np.int64)),
        (np.int16, lambda x: -1 - x.astype(np.int64)),
        (np.int8, lambda x: -1 - x.astype(np.int64)),
        (np.float32, lambda x: 1.0 - x.astype(np.float64)),
        (np.bool_, lambda x: np.logical_not(x)),
    ],
)
def test_invert_dtype_rules(engine, dtype, oracle, rng):
    image = random_image(rng, (9, 7, 3), dtype)
    got = pixelmill.invert(image, engine=engine)
    assert got.dtype == image.dtype and got.shape == image.shape
    np.testing.assert_array_equal(got, oracle(image).astype(dtype))


def test_invert_does_not_modify_input(rng):
    image = random_image(rng, (5, 5), np.uint8)
    before = image.copy()
    pixelmill.invert(image)
    pixelmill.convolve(image, "gaussian")
    np.testing.assert_array_equal(image, before)


def test_to_dtype_policies():
    x = np.array([-300.0, -1.5, -0.5, 0.4, 0.5, 1.5, 254.5, 255.6, 1000.0])
    np.testing.assert_array_equal(
        pixelmill.to_dtype(x, np.uint8, policy="clip"),
        np.clip(np.rint(x), 0, 255).astype(np.uint8),
    )
    np.testing.assert_array_equal(
        pixelmill.to_dtype(x, np.uint8, policy="abs"),
        np.clip(np.rint(np.abs(x)), 0, 255).astype(np.uint8),
    )
    np.testing.assert_array_equal(
        pixelmill.to_dtype(x, np.uint8, policy="shift"),
        np.clip(np.rint(x + 128), 0, 255).astype(np.uint8),
    )
    norm = pixelmill.to_dtype(x, np.uint16, policy="normalize")
    assert norm.min() == 0 and norm.max() == 65535 and norm.dtype == np.uint16
    kept = pixelmill.to_dtype(x, np.uint8, policy="float32")
    assert kept.dtype == np.float32
    np.testing.assert_array_equal(kept, x.astype(np.float32))
    f = pixelmill.to_dtype(np.array([-0.2, 0.3, 1.7]), np.float32)
    np.testing.assert_array_equal(f, np.array([0, 0.3, 1], dtype=np.float32))
    assert pixelmill.to_dtype(np.array([300.0, -500.0, -5.0]), np.int8).tolist() == [127, -128, -5]
    assert pixelmill.to_dtype(np.full(3, 7.0), np.uint8, policy="normalize").tolist() == [0, 0, 0]


@pytest.mark.parametrize("policy", ["clip", "abs", "shift", "normalize", "float32"])
def test_api_policy_equals_converting_afterwards(policy, rng):
    image = random_image(rng, (19, 23, 3), np.uint16)
    for call in (
        lambda **kw: pixelmill.convolve(image, "sobel-x", border="reflect", **kw),
        lambda **kw: pixelmill.correlate(image, "laplacian", border="constant", cval=7, **kw),
        lambda **kw: pixelmill.sobel(image, **kw),
    ):
        expected = pixelmill.to_dtype(call(), image.dtype, policy=policy)
        got = call(policy=policy)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
        out = np.empty_like(expected)
        assert call(policy=policy, out=out) is out
        np.testing.assert_array_equal(out, expected)


def test_invert_into_out_and_in_place(rng):
    image = random_image(rng, (9, 7, 3), np.uint8)
    expected = 255 - image
    out = np.empty_like(image)
    assert pixelmill.invert(image, out=out) is out
    np.testing.assert_array_equal(out, expected)
    pixelmill.invert(image, out=image)
    np.testing.assert_array_equal(image, expected)


def test_to_dtype_never_wraps(rng):
    x = rng.normal(scale=1e5, size=1000)
    for dtype in (np.uint8, np.uint16, np.int16):
        out = pixelmill.to_dtype(x, dtype)
        info = np.iinfo(dtype)
        # The result is float32 first (what filters return), then rounded and clipped.
        x32 = x.astype(np.float32).astype(np.float64)
        np.testing.assert_array_equal(out, np.clip(np.rint(x32), info.min, info.max).astype(dtype))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda img: pixelmill.convolve(img, "gaussian", border="edge"), "border 'edge'"),
        (lambda img: pixelmill.convolve(img, "nope"), "unknown kernel name 'nope'"),
        (lambda img: pixelmill.convolve(img, "gaussian", engine="gpu"), "engine 'gpu'"),
        (lambda img: pixelmill.convolve(img, "gaussian", workers=0), "workers"),
        (lambda img: pixelmill.convolve(img, "gaussian", cval="a"), "cval"),
        (lambda img: pixelmill.convolve(img[0, 0], "gaussian"), "2-D"),
        (lambda img: pixelmill.convolve(img.astype(np.complex64), "gaussian"), "complex64"),
        (lambda img: pixelmill.to_dtype(img, np.uint8, policy="wrap"), "policy 'wrap'"),
        (lambda img: pixelmill.sobel(img, policy="wrap"), "policy 'wrap'"),
        (lambda img: pixelmill.invert(img, out=np.empty((4, 5), np.uint8)), "out must have shape"),
        (lambda img: pixelmill.convolve(img, "gaussian", out=np.empty((4, 4), np.uint8)), "dtype float32"),
        (lambda img: pixelmill.invert(img, out=np.empty((4, 8), np.uint8)[:, ::2]), "C-contiguous"),
    ],
)
def test_bad_parameters_raise_clear_errors(call, match):
    image = np.zeros((4, 4), dtype=np.uint8)
    with pytest.raises(pixelmill.PixelmillError, match=match):
        call(image)


def test_errors_are_also_builtin_exceptions():
    with pytest.raises(ValueError):
        pixelmill.convolve(np.zeros((3, 3)), "gaussian", border="nope")
