"""The dask engine: bit for bit the numpy engine's results, SciPy within float32 rounding,
on the local schedulers and on a real (local, multi-process) distributed cluster."""

from __future__ import annotations

import os
import socket
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pixelmill
from pixelmill import kernels
from pixelmill.engines import available_engines, get_engine_class, make_engine
from pixelmill.engines._dask import DaskEngine
from pixelmill.errors import ClusterConnectionError, InvalidParameterError, PixelmillError
from pixelmill.ops import Filter, Invert
from pixelmill.tiling import BORDER_MODES

from conftest import random_image, scipy_filter


DTYPES = [np.uint8, np.uint16, np.float32]
SHAPES = {"gray": (11, 9), "rgb": (9, 10, 3)}
# (kernel shape, tile shape): odd and even kernels; tiles that do not divide the image,
# including tiles smaller than the kernel radius, and the automatic tiles (None).
CASES = [
    ((3, 3), (1, 1)),
    ((7, 7), (3, 2)),
    ((2, 2), (3, 2)),
    ((4, 5), (7, 5)),
    ((6, 1), (1, 1)),
    ((1, 4), None),
    ((5, 5), (7, 5)),
]


def _expected_invert(image):
    if image.dtype.kind == "f":
        return (1 - image).astype(image.dtype)
    return (np.iinfo(image.dtype).max - image).astype(image.dtype)


def _tolerance(image) -> float:
    # Kernels below are normalised (sum |w| = 1), so the result is on the image's scale:
    # 1e-3 for 8-bit data, scaled up for 16-bit.
    return 1e-3 * max(1.0, float(np.abs(image.astype(np.float64)).max()) / 255)


@pytest.fixture(scope="module")
def engines():
    """One local-threads engine per tile shape, reused by the many small runs."""
    tile_shapes = {ts for _, ts in CASES} | {(1, 1), (3, 2), (7, 5), None}
    made = {ts: DaskEngine(workers=2, tile_shape=ts) for ts in tile_shapes}
    yield made
    for eng in made.values():
        eng.close()


def test_registered():
    assert "dask" in available_engines()
    assert get_engine_class("dask") is DaskEngine


@pytest.mark.parametrize("border", BORDER_MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layout", list(SHAPES))
def test_filters_equal_numpy_and_scipy(engines, border, dtype, layout, rng):
    image = random_image(rng, SHAPES[layout], dtype)
    for flip in (True, False):
        for kshape, tile_shape in CASES:
            weights = rng.normal(size=kshape)
            weights /= np.abs(weights).sum()
            op = Filter(kernels.from_array(weights), flip=flip)
            got = engines[tile_shape].run(op, image, border=border, cval=17.0)
            ref = pixelmill.convolve if flip else pixelmill.correlate
            reference = ref(image, weights, border=border, cval=17.0, engine="numpy")
            what = f"flip={flip} kernel={kshape} tiles={tile_shape}"
            assert got.dtype == np.float32 and got.shape == image.shape, what
            np.testing.assert_array_equal(got, reference, err_msg=what)
            expected = scipy_filter(image, weights, mode=border, cval=17.0, convolve=flip)
            np.testing.assert_allclose(got, expected, rtol=0, atol=_tolerance(image), err_msg=what)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layout", list(SHAPES))
def test_invert_equals_numpy(engines, dtype, layout, rng):
    image = random_image(rng, SHAPES[layout], dtype)
    for tile_shape in [(1, 1), (3, 2), (7, 5), None]:
        got = engines[tile_shape].run(Invert(), image)
        assert got.dtype == image.dtype
        np.testing.assert_array_equal(got, _expected_invert(image), err_msg=str(tile_shape))
        np.testing.assert_array_equal(got, pixelmill.invert(image, engine="numpy"))


@pytest.mark.parametrize("name", ["sobel-x", "gaussian", "laplacian"])
def test_public_api_with_engine_name(name, rng):
    image = random_image(rng, (21, 17, 3), np.uint8)
    got = pixelmill.convolve(image, name, border="wrap", engine="dask", workers=2, tile_shape=(5, 4))
    np.testing.assert_array_equal(got, pixelmill.convolve(image, name, border="wrap", engine="numpy"))
    got = pixelmill.sobel(image, border="mirror", engine="dask", workers=2, tile_shape=(4, 6))
    np.testing.assert_array_equal(got, pixelmill.sobel(image, border="mirror", engine="numpy"))


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    channels=st.sampled_from([None, 1, 3]),
    kh=st.integers(1, 7),
    kw=st.integers(1, 7),
    th=st.integers(1, 8),
    tw=st.integers(1, 8),
    border=st.sampled_from(BORDER_MODES),
    flip=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_any_tiling_equals_numpy(h, w, channels, kh, kw, th, tw, border, flip, seed):
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels is None else (h, w, channels)
    image = random_image(rng, shape, np.uint8)
    op = Filter(kernels.from_array(rng.normal(size=(kh, kw))), flip=flip)
    with DaskEngine(workers=2, tile_shape=(th, tw)) as eng:
        got = eng.run(op, image, border=border, cval=3.0)
    reference = make_engine("numpy").run(op, image, border=border, cval=3.0)
    np.testing.assert_array_equal(got, reference)


# -- across a library: fn reads and writes by path, never raises ----------------------------------


def _gaussian_file(item):
    src, dst = item
    image = np.load(src)
    np.save(dst, pixelmill.convolve(image, "gaussian", border="reflect", engine="numpy"))
    return {"src": src, "dst": dst, "pid": os.getpid()}


def _library(tmp_path, rng, count):
    items = []
    for i in range(count):
        src, dst = tmp_path / f"in{i}.npy", tmp_path / f"out{i}.npy"
        np.save(src, random_image(rng, (12 + i, 9, 3), np.uint8))
        items.append((str(src), str(dst)))
    return items


def _check_library(results, items):
    assert sorted(r["src"] for r in results) == sorted(src for src, _ in items)
    for src, dst in items:
        expected = pixelmill.convolve(np.load(src), "gaussian", border="reflect", engine="numpy")
        np.testing.assert_array_equal(np.load(dst), expected)


def test_map_local_threads(tmp_path, rng):
    items = _library(tmp_path, rng, 5)
    with DaskEngine(workers=2) as eng:
        results = list(eng.map(_gaussian_file, items))
        assert list(eng.map(_gaussian_file, [])) == []
    _check_library(results, items)


def test_map_stops_early_without_hanging(tmp_path, rng):
    items = _library(tmp_path, rng, 6)
    with DaskEngine(workers=2) as eng:
        stream = eng.map(_gaussian_file, items)
        first = next(stream)
        stream.close()
    assert first["src"] in {src for src, _ in items}


def test_local_processes_scheduler(tmp_path, rng):
    items = _library(tmp_path, rng, 3)
    image = random_image(rng, (14, 11, 3), np.uint16)
    with DaskEngine(workers=2, tile_shape=(4, 4), local_scheduler="processes") as eng:
        got = eng.run(Filter(kernels.get("sobel-y")), image, border="wrap")
        results = list(eng.map(_gaussian_file, items))
    np.testing.assert_array_equal(got, pixelmill.convolve(image, "sobel-y", border="wrap", engine="numpy"))
    _check_library(results, items)
    assert all(r["pid"] != os.getpid() for r in results)


# -- a real distributed cluster ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    import dask
    from distributed import LocalCluster

    # Bounded: a cluster that cannot start within the connect timeout fails the tests.
    with dask.config.set({"distributed.comm.timeouts.connect": "20s"}):
        cl = LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        )
    try:
        yield cl
    finally:
        cl.close(timeout=20)


def test_distributed_cluster(cluster, tmp_path, rng):
    address = cluster.scheduler_address
    image = random_image(rng, (23, 19, 3), np.uint8)
    weights = rng.normal(size=(4, 3))
    got = pixelmill.convolve(
        image, weights, border="reflect", engine="dask", scheduler=address, tile_shape=(5, 4)
    )
    np.testing.assert_array_equal(got, pixelmill.convolve(image, weights, border="reflect", engine="numpy"))

    items = _library(tmp_path, rng, 4)
    with DaskEngine(scheduler=address) as eng:
        assert eng.client is not None and eng.client.status == "running"
        results = list(eng.map(_gaussian_file, items))
        got = eng.run(Invert(), image)
        client = eng.client
    assert client.status == "closed"  # closed by the engine that created it
    eng.close()  # safe twice
    _check_library(results, items)
    assert all(r["pid"] != os.getpid() for r in results)  # ran in the cluster's worker processes
    np.testing.assert_array_equal(got, 255 - image)


# -- errors -------------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_is_a_clear_error():
    address = f"tcp://127.0.0.1:{_closed_port()}"
    image = np.zeros((4, 4), dtype=np.uint8)
    start = time.monotonic()
    with pytest.raises(ClusterConnectionError, match=address) as info:
        pixelmill.convolve(image, "gaussian", engine="dask", scheduler=address, connect_timeout=2)
    assert time.monotonic() - start < 15  # a bound against hanging, not a timing claim
    assert isinstance(info.value, PixelmillError) and isinstance(info.value, ConnectionError)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"scheduler": 8786}, "scheduler"),
        ({"scheduler": "  "}, "scheduler"),
        ({"local_scheduler": "synchronous"}, "local_scheduler 'synchronous'"),
        ({"connect_timeout": 0}, "connect_timeout"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(InvalidParameterError, match=match):
        DaskEngine(**options)


def test_bad_scheduler_address():
    with DaskEngine(scheduler="nonsense://here") as eng:
        with pytest.raises(InvalidParameterError, match="'nonsense://here'"):
            eng.run(Invert(), np.zeros((2, 2), dtype=np.uint8))
