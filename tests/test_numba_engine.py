"""The numba engine and the numba flavour of the operations.

Oracles: scipy.ndimage in float64 (per channel), the ``loops`` reference engine, and NumPy for
inversion. Tolerances are 1e-3 of one 8-bit grey level, scaled to the dtype's range.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

numba = pytest.importorskip("numba")
ndi = pytest.importorskip("scipy.ndimage")

import pixelmill  # noqa: E402
from pixelmill import kernels, tiling  # noqa: E402
from pixelmill.engines import available_engines, make_engine  # noqa: E402
from pixelmill.ops import Filter, Invert  # noqa: E402
from pixelmill.ops._numba import store_code  # noqa: E402

BORDERS = tiling.BORDER_MODES
#: scipy.ndimage mode -> np.pad mode, for the padding oracle.
NP_PAD_MODE = {
    "reflect": "symmetric",
    "mirror": "reflect",
    "nearest": "edge",
    "wrap": "wrap",
    "constant": "constant",
}

_rng = np.random.default_rng(20240601)


def _random_kernel(shape, *, separable, positive=False, seed=0):
    rng = np.random.default_rng(seed)
    if separable:
        column = rng.random(shape[0]) + 0.1 if positive else rng.standard_normal(shape[0])
        row = rng.random(shape[1]) + 0.1 if positive else rng.standard_normal(shape[1])
        w = np.outer(column, row)
    else:
        w = rng.random(shape) if positive else rng.standard_normal(shape)
    # Unit L1 norm keeps every result within the image's range, so one absolute tolerance fits.
    return kernels.from_array(w / np.abs(w).sum(), f"random-{shape[0]}x{shape[1]}")


#: name -> (kernel, expected separable)
KERNELS = {
    "gaussian-5": (kernels.get("gaussian"), True),
    "sobel-x": (kernels.get("sobel-x"), True),
    "edge-x": (kernels.get("edge-x"), True),
    "laplacian": (kernels.get("laplacian"), False),
    "random-3x5": (_random_kernel((3, 5), separable=False, seed=1), False),
    "even-sep-4x2": (_random_kernel((4, 2), separable=True, positive=True, seed=2), True),
    "even-sep-signed-2x6": (_random_kernel((2, 6), separable=True, seed=3), True),
    "even-2x4": (_random_kernel((2, 4), separable=False, seed=4), False),
    "random-15x15": (_random_kernel((15, 15), separable=False, seed=5), False),
    "one-by-one": (kernels.from_array([[0.75]], "scale"), True),
    "gaussian-7": (kernels.gaussian(7, 1.5), True),
}
SMALL_KERNELS = ["gaussian-5", "even-sep-4x2", "even-2x4", "random-15x15", "one-by-one"]


def _image(shape, dtype, seed=None):
    rng = _rng if seed is None else np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)
    return rng.random(shape, dtype=np.float64).astype(dtype)


def _scale(dtype) -> float:
    """Full range of the dtype, in units of 8-bit grey levels."""
    dtype = np.dtype(dtype)
    hi = float(np.iinfo(dtype).max) if dtype.kind in "iu" else 1.0
    return hi / 255.0


def _cval(dtype) -> float:
    return 0.3 * 255.0 * _scale(dtype)


def _oracle(image, weights, border, cval, *, flip):
    """scipy.ndimage in float64, each channel on its own.

    scipy.ndimage reads uninitialised memory for ``mode="reflect"`` on an axis of length <= 2
    with a kernel larger than the image; there the border is built with ``np.pad`` (its
    ``symmetric`` mode is SciPy's ``reflect``) and SciPy only filters the inside.
    """
    fn = ndi.convolve if flip else ndi.correlate
    x = image.astype(np.float64)
    w = weights if image.ndim == 2 else weights[:, :, np.newaxis]
    h, wd = image.shape[:2]
    kh, kw = weights.shape
    buggy = border == "reflect" and ((h <= 2 and kh > h) or (wd <= 2 and kw > wd))
    if not buggy:
        return fn(x, w, mode=border, cval=cval)
    p = max(kh, kw)
    widths = ((p, p), (p, p)) + ((0, 0),) * (image.ndim - 2)
    extra = {"constant_values": cval} if border == "constant" else {}
    padded = np.pad(x, widths, mode=NP_PAD_MODE[border], **extra)
    return fn(padded, w, mode="constant", cval=0.0)[p:-p, p:-p]


def _filter(image, kernel, border, cval, *, flip, engine="numba", workers=None):
    # The direct paths, whose arithmetic the two flavours share operation for operation; the
    # FFT and low-rank paths (method="auto" picks them from 10x10) are tests/test_fft.py's.
    fn = pixelmill.convolve if flip else pixelmill.correlate
    return fn(image, kernel, border=border, cval=cval, engine=engine, workers=workers, method="direct")


# -- registry and engine ----------------------------------------------------------------------


def test_registered_and_available():
    assert "numba" in available_engines()
    with make_engine("numba", workers=1) as eng:
        assert type(eng).__name__ == "NumbaEngine"
        assert (eng.name, eng.flavour, eng.parallel) == ("numba", "numba", True)


def test_kernels_take_the_intended_path():
    for name, (kernel, separable) in KERNELS.items():
        assert kernel.separable is separable, name


def test_execute_restores_thread_count():
    before = numba.get_num_threads()
    image = _image((20, 20), np.uint8)
    with make_engine("numba", workers=1) as eng:
        eng.run(Filter(kernels.get("gaussian")), image)
    assert numba.get_num_threads() == before


def test_workers_above_numba_pool_are_capped():
    image = _image((24, 17, 3), np.uint8)
    workers = numba.config.NUMBA_NUM_THREADS + 3
    many = _filter(image, "gaussian", "nearest", 0.0, flip=True, workers=workers)
    one = _filter(image, "gaussian", "nearest", 0.0, flip=True, workers=1)
    np.testing.assert_array_equal(many, one)


# -- filters against scipy.ndimage ------------------------------------------------------------


@pytest.mark.parametrize("flip", [True, False], ids=["convolve", "correlate"])
@pytest.mark.parametrize("kernel_name", list(KERNELS))
@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(23, 31), (23, 31, 3)], ids=["gray", "rgb"])
def test_filter_matches_scipy(shape, dtype, border, kernel_name, flip):
    kernel = KERNELS[kernel_name][0]
    image = _image(shape, dtype)
    cval = _cval(dtype)
    got = _filter(image, kernel, border, cval, flip=flip)
    assert got.dtype == np.float32 and got.shape == image.shape
    want = _oracle(image, kernel.weights, border, cval, flip=flip)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 * _scale(dtype))


@pytest.mark.parametrize("flip", [True, False], ids=["convolve", "correlate"])
@pytest.mark.parametrize("kernel_name", SMALL_KERNELS)
@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize(
    "shape",
    [(1, 1), (1, 9), (9, 1), (1, 7, 3), (2, 2), (3, 2, 3), (2, 5)],
    ids=lambda s: "x".join(map(str, s)),
)
def test_tiny_images_and_images_smaller_than_the_kernel(shape, border, kernel_name, flip):
    kernel = KERNELS[kernel_name][0]
    for dtype in (np.uint8, np.float32):
        image = _image(shape, dtype)
        cval = _cval(dtype)
        got = _filter(image, kernel, border, cval, flip=flip)
        want = _oracle(image, kernel.weights, border, cval, flip=flip)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 * _scale(dtype))


def test_padding_oracle_agrees_with_scipy_where_scipy_is_sound():
    # The np.pad-based branch of the oracle is itself checked against SciPy on a shape where
    # SciPy's reflect is fine, so the tiny-image tests do not rest on an unchecked oracle.
    image = _image((3, 4, 3), np.uint8)
    w = KERNELS["random-15x15"][0].weights
    x = image.astype(np.float64)
    p = 15
    padded = np.pad(x, ((p, p), (p, p), (0, 0)), mode="symmetric")
    via_pad = ndi.correlate(padded, w[:, :, None], mode="constant")[p:-p, p:-p]
    np.testing.assert_allclose(via_pad, ndi.correlate(x, w[:, :, None], mode="reflect"), atol=1e-9)


@pytest.mark.parametrize("dtype", [np.int16, np.bool_, np.int8], ids=lambda d: np.dtype(d).name)
def test_filter_other_dtypes(dtype):
    image = _image((13, 11, 3), dtype)
    kernel = KERNELS["random-3x5"][0]
    got = _filter(image, kernel, "mirror", 0.0, flip=True)
    want = _oracle(image, kernel.weights, "mirror", 0.0, flip=True)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 * _scale(dtype))


@pytest.mark.parametrize("border", BORDERS)
def test_sobel_magnitude_matches_scipy(border):
    image = _image((19, 22, 3), np.uint8)
    x = image.astype(np.float64)
    sx = kernels.get("sobel-x").weights[:, :, None]
    sy = sx.transpose(1, 0, 2)
    want = np.hypot(ndi.convolve(x, sx, mode=border), ndi.convolve(x, sy, mode=border))
    got = pixelmill.sobel(image, border=border, engine="numba")
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)


# -- against the loops reference and the numpy engine -----------------------------------------


@pytest.mark.parametrize(
    "kernel_name", ["gaussian-5", "even-2x4", "even-sep-signed-2x6", "laplacian"]
)
@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(9, 11), (7, 6, 3)], ids=["gray", "rgb"])
def test_filter_matches_loops_reference(shape, dtype, border, kernel_name):
    kernel = KERNELS[kernel_name][0]
    image = _image(shape, dtype)
    cval = _cval(dtype)
    got = _filter(image, kernel, border, cval, flip=True)
    want = _filter(image, kernel, border, cval, flip=True, engine="loops")
    assert want.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 * _scale(dtype))


@pytest.mark.parametrize("kernel_name", list(KERNELS))
@pytest.mark.parametrize("shape", [(29, 37), (29, 37, 3)], ids=["gray", "rgb"])
def test_filter_bit_identical_to_numpy_engine(shape, kernel_name):
    # Documented property of the numba flavour: the same operations in the same order as
    # the NumPy flavour (float32 row then column pass; float64 accumulation otherwise).
    kernel = KERNELS[kernel_name][0]
    image = _image(shape, np.uint8)
    got = _filter(image, kernel, "reflect", 0.0, flip=True)
    want = _filter(image, kernel, "reflect", 0.0, flip=True, engine="numpy")
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("policy", ["clip", "abs", "shift"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int8, np.float32])
def test_fused_conversion_bit_identical_to_numpy_engine(dtype, policy):
    # The numba kernels read the image dtype and store the converted result themselves;
    # the numpy engine converts to float32 first and calls to_dtype at the end.
    from dataclasses import replace

    from pixelmill.ops import SobelMagnitude

    image = _image((31, 2100, 3), dtype)  # wide: several column chunks
    # Separable columns of 1 to 5 taps (stored in the column pass's own loop) and of 7.
    separable = ("edge-x", "even-sep-signed-2x6", "sobel-x", "even-sep-4x2", "gaussian-5", "gaussian-7")
    ops = [Filter(KERNELS[name][0]) for name in (*separable, "random-3x5", "laplacian")] + [SobelMagnitude()]
    with make_engine("numba", workers=2) as fast, make_engine("numpy") as reference:
        for op in ops:
            fused = replace(op, policy=policy)
            got = fast.run(fused, image, border="mirror")
            want = reference.run(fused, image, border="mirror")
            assert got.dtype == want.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(got, want, err_msg=f"{op.label} {policy}")
            # and the float result too, read straight from the image dtype
            np.testing.assert_array_equal(fast.run(op, image, border="mirror"), reference.run(op, image, border="mirror"))



@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_sobel_on_8_bit_samples_is_hypot_bit_for_bit(dtype):
    # sobel_numba takes sqrt(gx^2 + gy^2) on 8-bit samples: gx and gy are then integers of at
    # most 1020 in magnitude, and for every such pair that is np.hypot's float32 result.
    from pixelmill.ops import SobelMagnitude

    g = np.arange(-1020, 1021, dtype=np.float32)
    gx, gy = np.meshgrid(g, g)
    np.testing.assert_array_equal(np.sqrt(gx * gx + gy * gy), np.hypot(gx, gy))
    info = np.iinfo(dtype)
    image = np.full((40, 60, 3), info.min, dtype=dtype)  # steps of the whole range: |gx|, |gy| up to 1020
    image[:, 30:] = info.max
    image[20:, :, 1] = info.max
    image[::7, ::5, 2] = info.max
    image = np.concatenate([image, _image((40, 60, 3), dtype)])
    with make_engine("numba", workers=2) as fast, make_engine("numpy") as reference:
        for op in (SobelMagnitude(), SobelMagnitude(policy="clip")):
            for border in ("nearest", "constant"):
                np.testing.assert_array_equal(fast.run(op, image, border=border), reference.run(op, image, border=border))


def test_even_chunks_are_the_fewest_and_nearly_equal():
    from pixelmill.ops._numba import CHUNK, _even_chunk

    for n in (1, 2047, 2048, 6300, 18000, 18001, 100_000):
        for widest in (0, 2048, 5000, 19660):
            width, cap = _even_chunk(n, widest), max(widest, CHUNK)
            chunks = -(-n // width)
            assert width <= max(cap, 1) and chunks == -(-n // cap)
            assert n - (chunks - 1) * width > width - chunks  # the last chunk is short by less than one per chunk


@pytest.mark.parametrize("width", [1575, 2100, 3150, 4000])
def test_separable_column_chunks_equal_one_chunk(monkeypatch, width):
    # Rows of 6300 samples (one chunk by default) cut into chunks of ``width``, equal or not.
    from dataclasses import replace

    import pixelmill.ops._numba as kernels_module
    from pixelmill.ops import SobelMagnitude

    image = _image((23, 2100, 3), np.uint8)
    ops = [replace(Filter(KERNELS["gaussian-5"][0]), policy="clip"), Filter(KERNELS["even-sep-4x2"][0]),
           SobelMagnitude()]
    with make_engine("numba", workers=2) as eng:
        whole = [eng.run(op, image, border="reflect") for op in ops]
        monkeypatch.setattr(kernels_module, "_even_chunk", lambda n, widest: width)
        for op, want in zip(ops, whole):
            np.testing.assert_array_equal(eng.run(op, image, border="reflect"), want, err_msg=op.label)


@pytest.mark.parametrize(
    "kernel_name", ["gaussian-5", "random-15x15", "even-sep-4x2", "random-3x5"]
)
@pytest.mark.parametrize("shape", [(64, 45), (70, 3000, 3)], ids=["gray", "rgb-wide"])
def test_workers_one_and_two_bit_identical(shape, kernel_name):
    # 64+ rows make two strips; 3000 x 3 samples per row span several column chunks.
    kernel = KERNELS[kernel_name][0]
    if shape[1] >= 1000 and kernel.shape[0] > 5:
        shape = (34,) + shape[1:]  # keep the 15x15 case quick, still two strips
    image = _image(shape, np.uint8)
    one = _filter(image, kernel, "wrap", 0.0, flip=True, workers=1)
    two = _filter(image, kernel, "wrap", 0.0, flip=True, workers=2)
    np.testing.assert_array_equal(one, two)
    want = _oracle(image, kernel.weights, "wrap", 0.0, flip=True)
    np.testing.assert_allclose(two, want, rtol=0, atol=1e-3)


@pytest.mark.parametrize("separable", [True, False])
def test_tiles_on_strided_views_stitch_exactly(separable):
    # Tiled engines may hand the numba flavour non-contiguous tile views of block and out.
    kernel = KERNELS["gaussian-5" if separable else "random-3x5"][0]
    op = Filter(kernel)
    image = _image((21, 26, 3), np.uint8)
    padded = tiling.pad(image, op.halo, "nearest", dtype=np.float32)
    whole = np.empty(image.shape, np.float32)
    op.compute(padded, whole, "numba")
    tiled = np.full(image.shape, np.nan, np.float32)
    for tile in tiling.plan_tiles(image.shape, (8, 10)):
        op.compute(padded[tile.source(op.halo)], tiled[tile.out], "numba")
    np.testing.assert_array_equal(tiled, whole)


UNPADDED_CASES = [
    # (kernel, shape): widths just above the halo, a column chunk boundary, several strips
    ("gaussian-5", (9, 5)),
    ("gaussian-5", (40, 6, 3)),
    ("even-sep-4x2", (33, 3)),
    ("even-sep-signed-2x6", (17, 7, 2)),
    ("edge-x", (3, 2100, 3)),
    ("gaussian-5", (70, 3000, 3)),
    ("sobel", (35, 4)),
    ("sobel", (66, 1500, 3)),
]


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.float32, np.bool_], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("policy", [None, "clip", "abs"])
@pytest.mark.parametrize("kernel_name,shape", UNPADDED_CASES, ids=lambda v: str(v))
def test_unpadded_border_reads_equal_the_padded_copy(kernel_name, shape, policy, dtype, border):
    # The engine's run() lets separable kernels read the border in place; the result must be
    # bit-identical to the kernels run on a padded copy (tiling.pad), for every border rule.
    from dataclasses import replace

    from pixelmill.ops import SobelMagnitude

    op = SobelMagnitude() if kernel_name == "sobel" else Filter(KERNELS[kernel_name][0])
    op = replace(op, policy=policy)
    image = _image(shape, dtype)
    cval = 1.0 if dtype == np.bool_ else 0.5 * _cval(dtype) if dtype == np.float32 else 7.0
    out_dtype = op.out_dtype(image.dtype)
    with make_engine("numba", workers=2) as eng:
        got = np.full(image.shape, 3, dtype=out_dtype)
        read_in_place = op.compute_unpadded(image, got, border, cval, "numba")
        padded = tiling.pad(image, op.halo, border, cval, dtype=image.dtype)
        want = np.full(image.shape, 5, dtype=out_dtype)
        op.compute(padded, want, "numba")
        via_run = eng.run(op, image, border=border, cval=cval)
    # Read in place exactly when the kernels store the result themselves (float32 results,
    # integer policies); otherwise to_dtype converts afterwards, from the padded path.
    assert read_in_place == (store_code(out_dtype, policy) is not None)
    if read_in_place:
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(via_run, want)


def test_unpadded_border_falls_back_when_it_cannot_read_in_place():
    from dataclasses import replace

    gaussian = replace(Filter(KERNELS["gaussian-5"][0]), policy="clip")
    narrow = _image((12, 4, 3), np.uint8)  # 4 columns: not more than the halo's 4
    assert not gaussian.compute_unpadded(narrow, np.empty_like(narrow), "reflect", 0.0, "numba")
    image = _image((12, 9), np.uint8)
    out = np.empty_like(image)
    # cval 300 does not fit uint8: the padded copy is float32, so the engine pads
    assert not gaussian.compute_unpadded(image, out, "constant", 300.0, "numba")
    # non-separable kernels, and other flavours, always pad
    general = replace(Filter(KERNELS["random-3x5"][0]), policy="clip")
    assert not general.compute_unpadded(image, out, "reflect", 0.0, "numba")
    assert not gaussian.compute_unpadded(image, out, "reflect", 0.0, "numpy")
    with make_engine("numba", workers=1) as eng, make_engine("numpy") as reference:
        got = eng.run(gaussian, image, border="constant", cval=300.0)
        np.testing.assert_array_equal(got, reference.run(gaussian, image, border="constant", cval=300.0))
        # out is the image itself, cval 300 again: read through the padded copy, then overwritten
        want = reference.run(gaussian, image, border="constant", cval=300.0)
        assert eng.run(gaussian, image, border="constant", cval=300.0, out=image) is image
        np.testing.assert_array_equal(image, want)


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("name", ["gaussian-5", "even-sep-4x2", "even-sep-signed-2x6", "sobel"])
@pytest.mark.parametrize("strips", [1, 2, 5])
@pytest.mark.parametrize("shape,dtype", [((37, 11, 3), np.uint8), ((23, 9), np.uint16), ((3, 13, 3), np.int8)],
                         ids=["rgb-u8", "gray-u16", "3-rows-i8"])
def test_writing_over_the_image_equals_a_new_output(monkeypatch, border, name, strips, shape, dtype):
    from dataclasses import replace

    from pixelmill.ops import SobelMagnitude
    from pixelmill.ops import _numba as kernels_module

    op = SobelMagnitude(policy="clip") if name == "sobel" else replace(Filter(KERNELS[name][0]), policy="clip")
    image = _image(shape, dtype, seed=strips)
    # More strips than this machine has threads: each strip's halo rows belong to its neighbours.
    monkeypatch.setattr(kernels_module, "_strips", lambda h, kh: max(1, min(strips, h // (2 * kh))))
    with make_engine("numba", workers=2) as eng, make_engine("numpy") as reference:
        want = reference.run(op, image, border=border, cval=7.0)
        work = image.copy()
        assert eng.run(op, work, border=border, cval=7.0, out=work) is work
        np.testing.assert_array_equal(work, want)
        # an output overlapping the image one row lower is not the image: padded copy first
        both = np.empty((len(image) + 1,) + image.shape[1:], dtype=image.dtype)
        both[:-1] = image
        eng.run(op, both[:-1], border=border, cval=7.0, out=both[1:])
        np.testing.assert_array_equal(both[1:], want)


# -- invert -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(17, 23), (17, 23, 3), (1, 1)], ids=["gray", "rgb", "1x1"])
@pytest.mark.parametrize(
    "dtype",
    [np.uint8, np.uint16, np.int16, np.float32, np.bool_, np.int8, np.uint32, np.int32, np.float64],
    ids=lambda d: np.dtype(d).name,
)
def test_invert_bit_identical_to_numpy(dtype, shape):
    image = _image(shape, dtype)
    if np.dtype(dtype).kind in "iu":
        image.flat[0] = np.iinfo(dtype).min  # the extremes are where wrapping would show
        image.flat[-1] = np.iinfo(dtype).max
    got = pixelmill.invert(image, engine="numba", workers=2)
    want = pixelmill.invert(image, engine="numpy")
    assert got.dtype == image.dtype
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(pixelmill.invert(image, engine="numba", workers=1), got)


def test_invert_follows_the_dtype_rules():
    u = np.array([[0, 1, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(pixelmill.invert(u, engine="numba"), 65535 - u.astype(np.int64))
    s = np.array([[-32768, 0, 32767]], dtype=np.int16)
    np.testing.assert_array_equal(pixelmill.invert(s, engine="numba"), -1 - s.astype(np.int64))
    f = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(pixelmill.invert(f, engine="numba"), np.float32(1) - f)
    b = np.array([[True, False]])
    np.testing.assert_array_equal(pixelmill.invert(b, engine="numba"), ~b)


def test_invert_on_strided_views():
    image = _image((12, 20, 4), np.uint8)
    block = image[:, ::3, 1:]
    out = np.zeros((12, 20, 3), np.uint8)[::1, :7]
    Invert().compute(block, out, "numba")
    np.testing.assert_array_equal(out, 255 - block)


# -- on-disk cache ----------------------------------------------------------------------------


def test_second_process_loads_the_cache_instead_of_compiling():
    # This process compiles (or loads) both correlate paths and a float32 invert; a fresh
    # process must then find all three in the on-disk cache.
    image = _image((6, 7, 3), np.uint8)
    pixelmill.convolve(image, "gaussian", engine="numba")
    pixelmill.convolve(image, KERNELS["random-3x5"][0], engine="numba")
    pixelmill.invert(image.astype(np.float32) / 255, engine="numba")
    script = textwrap.dedent(
        """
        import numpy as np, pixelmill
        from pixelmill import kernels
        from pixelmill.ops import _numba
        image = np.zeros((6, 7, 3), np.uint8)
        pixelmill.convolve(image, "gaussian", engine="numba")
        pixelmill.convolve(image, kernels.from_array(np.arange(15.0).reshape(3, 5)), engine="numba")
        pixelmill.invert(image.astype(np.float32), engine="numba")
        for fn in (_numba._correlate_separable, _numba._correlate_general, _numba._invert_float):
            hits, misses = fn.stats.cache_hits, fn.stats.cache_misses
            print(fn.__name__, sum(hits.values()), sum(misses.values()))
        """
    )
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    for line in done.stdout.split("\n")[:3]:
        name, hits, misses = line.split()
        assert (int(hits), int(misses)) == (1, 0), line
