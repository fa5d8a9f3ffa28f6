"""Every registered engine equals the reference, and tiling never changes a bit.

Parametrized over ``pixelmill.available_engines()``: an engine is tested the moment it is
registered. One engine instance per engine name is reused (pools start once).
"""

from dataclasses import replace

import numpy as np
import pytest

import pixelmill
from pixelmill import kernels
from pixelmill.engines import get_engine_class, make_engine
from pixelmill.ops import TILEWISE_POLICIES, Filter, Invert, SobelMagnitude, to_dtype
from pixelmill.tiling import BORDER_MODES

from conftest import random_image

ENGINES = pixelmill.available_engines()
NUMPY_FLAVOURED = [n for n in ENGINES if get_engine_class(n).flavour == "numpy"]
DTYPES = [np.uint8, np.uint16, np.float32]
# Tiles that do not divide the 13 x 11 image, some smaller than the kernel radius.
TILES = [None, (1, 1), (3, 2), (7, 5), (13, 11)]


@pytest.fixture(scope="module")
def engines():
    made = {}
    yield lambda name: made.setdefault(name, make_engine(name, workers=2))
    for eng in made.values():
        eng.close()


def _ops(rng):
    weights = rng.normal(size=(4, 5))
    weights /= np.abs(weights).sum()
    return [
        ("invert", Invert()),
        ("convolve", Filter(kernels.from_array(weights), flip=True)),
        ("correlate", Filter(kernels.from_array(weights), flip=False)),
        ("gaussian", Filter(kernels.gaussian(5, 1.2))),
        ("sobel", SobelMagnitude()),
    ]


_CASES = {}


def _cases(dtype):
    """Images, ops and the loops reference for ``dtype``: computed once, shared by all engines."""
    key = np.dtype(dtype).name
    if key not in _CASES:
        rng = np.random.default_rng(1234)
        scale = 1.0 if np.dtype(dtype).kind == "f" else float(np.iinfo(dtype).max) / 255
        reference = make_engine("loops")
        cases = []
        for shape in [(13, 11, 3), (9, 7)]:
            image = random_image(rng, shape, dtype)
            for label, op in _ops(rng):
                for border in BORDER_MODES:
                    expected = reference.run(op, image, border=border, cval=0.25 * scale)
                    cases.append((f"{label} {border} {shape}", image, op, border, 0.25 * scale, expected))
        _CASES[key] = (scale, cases)
    return _CASES[key]


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_engine_equals_reference_for_every_border_and_tile(name, dtype, engines):
    engine = engines(name)
    scale, cases = _cases(dtype)
    for what, image, op, border, cval, expected in cases:
        untiled = None
        for tile in TILES:
            engine.tile_shape = tile
            got = engine.run(op, image, border=border, cval=cval)
            where = f"{name} {what} tile={tile}"
            assert got.dtype == expected.dtype and got.shape == expected.shape, where
            if isinstance(op, Invert):
                np.testing.assert_array_equal(got, expected, err_msg=where)
            else:
                np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3 * scale, err_msg=where)
            if untiled is None:
                untiled = got
            else:  # tiles never leave seams: bit-identical to the untiled result
                np.testing.assert_array_equal(got, untiled, err_msg=where)
    engine.tile_shape = None


@pytest.mark.parametrize("name", NUMPY_FLAVOURED)
def test_numpy_flavoured_engines_equal_numpy_bit_for_bit(name, engines, rng):
    engine = engines(name)
    numpy_engine = make_engine("numpy")
    image = random_image(rng, (37, 29, 3), np.uint8)
    for _, op in _ops(rng):
        for tile in [None, (5, 4)]:
            engine.tile_shape = tile
            np.testing.assert_array_equal(engine.run(op, image, border="wrap"), numpy_engine.run(op, image, border="wrap"))
    engine.tile_shape = None


@pytest.mark.parametrize("name", ENGINES)
def test_filter_bank_equals_separate_runs(name, engines, rng):
    engine = engines(name)
    image = random_image(rng, (21, 17, 3), np.uint8)
    ops = [op for _, op in _ops(rng)]
    bank = engine.run_many(ops, image, border="reflect")
    for op, got in zip(ops, bank):
        np.testing.assert_array_equal(got, engine.run(op, image, border="reflect"))


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("policy", TILEWISE_POLICIES)
def test_fused_policy_equals_converting_the_float_result(name, policy, engines, rng):
    # The policy runs tile by tile inside the filter; it must equal converting afterwards.
    engine = engines(name)
    for dtype in (np.uint8, np.uint16):
        image = random_image(rng, (23, 19, 3), dtype)
        for op in (Filter(kernels.get("sobel-x")), Filter(kernels.gaussian(5, 1.0)), SobelMagnitude()):
            expected = to_dtype(engine.run(op, image, border="mirror"), dtype, policy=policy)
            for tile in (None, (4, 3)):
                engine.tile_shape = tile
                got = engine.run(replace(op, policy=policy), image, border="mirror")
                assert got.dtype == np.dtype(dtype)
                np.testing.assert_array_equal(got, expected, err_msg=f"{name} {op.label} {policy} {tile}")
    engine.tile_shape = None


@pytest.mark.parametrize("name", ENGINES)
def test_run_writes_into_a_preallocated_output(name, engines, rng):
    engine = engines(name)
    image = random_image(rng, (17, 15, 3), np.uint8)
    expected = 255 - image
    out = np.zeros_like(image)
    assert engine.run(Invert(), image, out=out) is out
    np.testing.assert_array_equal(out, expected)
    engine.run(Invert(), image, out=image)  # in place
    np.testing.assert_array_equal(image, expected)


@pytest.mark.parametrize("border", BORDER_MODES)
@pytest.mark.parametrize("name", ENGINES)
def test_writing_over_the_image_band_by_band_equals_a_new_output(name, border, engines, rng, monkeypatch):
    """Bands of a few rows (at least the halo's height + 1) on a small image, so each band's
    halo reaches into the bands before and after it."""
    from pixelmill.engines import _base

    engine = engines(name)
    weights = rng.normal(size=(4, 5))  # halo 2 above, 1 below: the bands' reads are uneven
    ops = [replace(Filter(kernels.from_array(weights / np.abs(weights).sum())), policy="clip"),
           replace(Filter(kernels.get("gaussian")), policy="clip"), SobelMagnitude(policy="clip")]
    image = random_image(rng, (29, 11, 3), np.uint8)
    for rows in (1, 4, 9):
        monkeypatch.setattr(_base, "BAND_BYTES", rows * image[0].size)
        for op in ops:
            want = engine.run(op, image, border=border, cval=9.0)
            work = image.copy()
            assert engine.run(op, work, border=border, cval=9.0, out=work) is work
            np.testing.assert_array_equal(work, want, err_msg=f"{name} {op.label} {rows} rows")


def _square(x):
    return x * x


@pytest.mark.parametrize("name", ENGINES)
def test_map_runs_every_item(name, engines):
    engine = engines(name)
    assert sorted(engine.map(_square, range(7))) == [i * i for i in range(7)]


@pytest.mark.parametrize("name", ENGINES)
def test_public_api_accepts_every_engine(name, rng):
    image = random_image(rng, (6, 5), np.uint8)
    np.testing.assert_array_equal(pixelmill.invert(image, engine=name, workers=1), 255 - image)


def test_missing_dependency_names_the_extra(monkeypatch):
    from pixelmill.engines import ENGINES, EngineSpec

    monkeypatch.setitem(ENGINES, "fancy", EngineSpec("fancy", "pixelmill.engines._serial", "NumpyEngine", ("no_such_module_xyz",), "fancy"))
    assert "fancy" not in pixelmill.available_engines()
    with pytest.raises(pixelmill.MissingDependencyError, match=r"pip install 'pixelmill\[fancy\]'"):
        make_engine("fancy")
    with pytest.raises(ImportError):
        pixelmill.invert(np.zeros((2, 2), np.uint8), engine="fancy")
