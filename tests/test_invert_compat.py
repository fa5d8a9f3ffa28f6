"""Inversion against scikit-image's rules (``skimage.util.invert``), on every registered engine.

The dtype rules scikit-image's tests check, in this project's words: unsigned ``max - x``,
signed ``-1 - x`` (so the range maps onto itself, min <-> max), float ``1 - x`` (images in
[0, 1]), bool ``~x``; the dtype is kept, nothing wraps, inverting twice gives the image back.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pixelmill
from pixelmill.ops import Invert

ENGINES = pixelmill.available_engines()
UNSIGNED = [np.uint8, np.uint16, np.uint32, np.uint64]
SIGNED = [np.int8, np.int16, np.int32, np.int64]
FLOATS = [np.float16, np.float32, np.float64]


def run(engine, image):
    return engine.run(Invert(), np.asarray(image))


@pytest.mark.parametrize("name", ENGINES)
def test_bool_zeros_become_ones(every_engine, name):
    got = run(every_engine[name], np.zeros((2, 3), dtype=bool))
    assert got.dtype == np.bool_ and got.all()


@pytest.mark.parametrize("dtype", UNSIGNED, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ENGINES)
def test_unsigned_zeros_become_the_maximum(every_engine, name, dtype):
    top = np.iinfo(dtype).max
    got = run(every_engine[name], np.zeros((2, 3), dtype=dtype))
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, np.full((2, 3), top, dtype=dtype))
    np.testing.assert_array_equal(run(every_engine[name], np.array([[top, 1]], dtype=dtype)), [[0, top - 1]])


@pytest.mark.parametrize("dtype", SIGNED, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ENGINES)
def test_signed_is_minus_one_minus_x(every_engine, name, dtype):
    info = np.iinfo(dtype)
    image = np.array([[0, -1, int(info.min), int(info.max), 5]], dtype=dtype)
    got = run(every_engine[name], image)
    assert got.dtype == dtype
    # Python integers: no wrap-around is possible in the expectation itself.
    assert got.tolist() == [[-1, 0, int(info.max), int(info.min), -6]]


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ENGINES)
def test_float_is_one_minus_x(every_engine, name, dtype):
    image = np.array([[0.0, 0.25, 1.0], [0.5, 0.75, 0.125]], dtype=dtype)
    got = run(every_engine[name], image)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, (1 - image.astype(np.float64)).astype(dtype))


def test_public_invert_keeps_channels_and_accepts_every_layout(rng):
    rgb = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(pixelmill.invert(rgb), 255 - rgb)
    planar = np.ascontiguousarray(np.moveaxis(rgb, -1, 0))
    np.testing.assert_array_equal(pixelmill.invert(planar, channel_axis=0), 255 - planar)
    np.testing.assert_array_equal(pixelmill.invert(np.arange(4, dtype=np.uint8)), 255 - np.arange(4))
    big = np.arange(6, dtype=">u2").reshape(2, 3)
    assert pixelmill.invert(big).tolist() == (65535 - np.arange(6).reshape(2, 3)).tolist()
    assert pixelmill.invert(np.zeros((0, 3), dtype=np.int64)).dtype == np.int64


@st.composite
def images(draw):
    dtype = np.dtype(draw(st.sampled_from([np.bool_] + UNSIGNED + SIGNED + FLOATS)))
    if dtype.kind == "f":
        elements = st.floats(0, 1, width=16 if dtype == np.float16 else 32)
    elif dtype.kind == "b":
        elements = st.booleans()
    else:
        info = np.iinfo(dtype)
        elements = st.one_of(st.integers(int(info.min), int(info.max)), st.sampled_from([int(info.min), int(info.max)]))
    return draw(hnp.arrays(dtype, hnp.array_shapes(min_dims=2, max_dims=2, max_side=5), elements=elements))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(image=images(), name=st.sampled_from(ENGINES))
def test_rules_hold_for_every_dtype_and_engine(every_engine, image, name):
    got = run(every_engine[name], image)
    assert got.dtype == image.dtype
    kind = image.dtype.kind
    if kind == "b":
        want = [[not x for x in row] for row in image.tolist()]
    elif kind == "u":
        top = int(np.iinfo(image.dtype).max)
        want = [[top - x for x in row] for row in image.tolist()]
    elif kind == "i":
        want = [[-1 - x for x in row] for row in image.tolist()]
    else:
        want = (image.dtype.type(1) - image).tolist()
    assert got.tolist() == want
    if kind != "f":
        np.testing.assert_array_equal(run(every_engine[name], got), image)  # an involution
