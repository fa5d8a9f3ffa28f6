"""Streamed images (engines/_stream.py): band by band from an array-like source to a sink, bit
for bit the in-memory result, for every border, dtype, operation and band shape."""

from __future__ import annotations

import numpy as np
import pytest

from pixelmill import kernels, tiling
from pixelmill.engines import make_engine
from pixelmill.engines._stream import SCRATCH_BYTES, iter_bands, plan_stream, stream_apply
from pixelmill.errors import ImageTooLargeError
from pixelmill.ops import Filter, Invert, SobelMagnitude

from conftest import random_image

zarr = pytest.importorskip("zarr")

OPS = {
    "gaussian5": Filter(kernels.gaussian(5, 1.0), flip=False),
    # Even and not separable: asymmetric halo (SciPy's anchor), the generic kernels.
    "even4x2": Filter(kernels.from_array(np.array([[1.0, -2.0], [3.0, 0.5], [0.25, 1.0], [-1.0, 2.0]]))),
    "sobel": SobelMagnitude(),
    "invert": Invert(),
}
# Bands of one row (fewer than the halo), narrow column tiles, sizes that do not divide the
# image, and the automatic plan.
TILES = [(1, 7), (5, 13), (16, 1000), None]


def _memmap(tmp_path, name, shape, dtype):
    return np.lib.format.open_memmap(tmp_path / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)


def _expected(eng, op, image, border, cval):
    return eng.run(op, image, border=border, cval=cval)


@pytest.mark.parametrize("engine", ["numpy", "numba"])
@pytest.mark.parametrize("border", tiling.BORDER_MODES)
@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_streamed_memmap_equals_in_memory(tmp_path, rng, engine, border, op, dtype):
    if engine == "numba":
        pytest.importorskip("numba")
    image = random_image(rng, (37, 29, 3), dtype)
    source = _memmap(tmp_path, "in", image.shape, image.dtype)
    source[:] = image
    operation = OPS[op]
    cval = 300.5  # not an 8-bit value: the window is padded in the float work dtype
    with make_engine(engine, workers=2) as eng:
        expected = _expected(eng, operation, image, border, cval)
        for tile in TILES:
            sink = _memmap(tmp_path, "out", image.shape, expected.dtype)
            stream_apply(operation, source, sink, engine=eng, border=border, cval=cval, tile_shape=tile)
            np.testing.assert_array_equal(np.asarray(sink), expected, err_msg=f"tile_shape={tile}")


@pytest.mark.parametrize("border", tiling.BORDER_MODES)
def test_streamed_zarr_equals_in_memory_grey(rng, border):
    image = random_image(rng, (70, 45), np.uint16)
    source = zarr.create_array(store=zarr.storage.MemoryStore(), shape=image.shape, chunks=(16, 16), dtype=image.dtype)
    source[:] = image
    op = Filter(kernels.gaussian(5, 1.0), policy="clip")
    with make_engine("numba", workers=2) as eng:
        expected = eng.run(op, image, border=border)
        for tile in [(3, 45), (16, 20), None]:
            # Bands of 3 rows share the sink's 16-row chunks: their writes are serialised.
            sink = zarr.create_array(store=zarr.storage.MemoryStore(), shape=image.shape, chunks=(16, 16),
                                     dtype=expected.dtype)
            stream_apply(op, source, sink, engine=eng, border=border, tile_shape=tile)
            np.testing.assert_array_equal(sink[:], expected, err_msg=f"tile_shape={tile}")


def test_a_3000_x_2000_zarr_in_256_tiles(rng):
    image = random_image(rng, (3000, 2000, 3), np.uint8)
    chunks = (256, 256, 3)
    source = zarr.create_array(store=zarr.storage.MemoryStore(), shape=image.shape, chunks=chunks, dtype=image.dtype)
    source[:] = image
    for op, border in [(Filter(kernels.gaussian(5, 1.0), policy="clip"), "wrap"), (SobelMagnitude(policy="clip"), "reflect")]:
        with make_engine("numba", workers=2) as eng:
            expected = eng.run(op, image, border=border)
            sink = zarr.create_array(store=zarr.storage.MemoryStore(), shape=image.shape, chunks=chunks, dtype=np.uint8)
            stream_apply(op, source, sink, engine=eng, border=border)
        np.testing.assert_array_equal(sink[:], expected)


def test_bands_follow_the_sinks_chunks():
    class Shape:  # planning needs the shape, dtype and chunks only
        shape, dtype, chunks = (1000, 400), np.dtype(np.uint8), (64, 64)

    plan = plan_stream(OPS["gaussian5"], Shape(), Shape(), memory_limit=1 << 30)
    assert plan.rows % 64 == 0
    assert all(r0 % 64 == 0 for r0, _ in plan.bands)


def test_a_budget_that_cannot_hold_one_band_is_a_clear_error():
    class Huge:
        shape, dtype = (100_000, 2_000_000, 3), np.dtype(np.uint8)  # one row is 6 MB

    with pytest.raises(ImageTooLargeError, match=r"--memory-limit.*give at least"):
        plan_stream(OPS["gaussian5"], Huge(), memory_limit=64 << 20)


def test_the_budget_bounds_the_bands_in_flight(monkeypatch):
    class Wide:
        shape, dtype = (10_000, 50_000, 3), np.dtype(np.uint8)

    roomy = plan_stream(OPS["gaussian5"], Wide(), workers=2, memory_limit=8 << 30, tile_shape=(64, 50_000))
    limit = 2 * roomy.band_bytes + 2 * SCRATCH_BYTES
    tight = plan_stream(OPS["gaussian5"], Wide(), workers=2, memory_limit=limit, tile_shape=(64, 50_000))
    assert roomy.in_flight > tight.in_flight == 2
    # Automatic bands shrink to keep several in flight within the same budget.
    auto = plan_stream(OPS["gaussian5"], Wide(), workers=2, memory_limit=limit)
    assert auto.rows < 64 and auto.in_flight * auto.band_bytes <= limit


def test_what_the_writer_holds_comes_out_of_the_same_budget():
    """A TIFF writer's tile rows waiting to be encoded are part of the memory limit: reserved
    bytes leave fewer bands in flight, and a reserve the limit cannot hold is the budget's error."""
    from pixelmill.io import tile_rows_held_bytes

    class Wide:
        shape, dtype = (10_000, 50_000, 3), np.dtype(np.uint8)

    held = tile_rows_held_bytes(Wide.shape, Wide.dtype, (256, 256), workers=2)
    assert held == 11 * 256 * 50_000 * 3  # 5 rows waiting, each raw and encoded, and the one assembled
    limit = 700 << 20
    alone = plan_stream(OPS["gaussian5"], Wide(), workers=2, memory_limit=limit, tile_shape=(64, 50_000))
    shared = plan_stream(OPS["gaussian5"], Wide(), workers=2, memory_limit=limit, tile_shape=(64, 50_000),
                         reserved=held)
    assert shared.in_flight < alone.in_flight
    assert shared.in_flight * shared.band_bytes + held <= limit
    with pytest.raises(ImageTooLargeError, match=r"work arrays and the writer.*give at least"):
        plan_stream(OPS["gaussian5"], Wide(), workers=2, memory_limit=held, tile_shape=(64, 50_000), reserved=held)


def test_without_a_sink_the_bands_come_in_order(rng):
    image = random_image(rng, (50, 20), np.uint8)
    with make_engine("numpy", workers=2) as eng:
        got = list(iter_bands(Invert(), _Lazy(image), engine=eng, tile_shape=(7, 20)))
    assert [r0 for r0, _, _ in got] == list(range(0, 50, 7))
    np.testing.assert_array_equal(np.concatenate([b for _, _, b in got]), 255 - image)


def test_no_sink_returns_an_array_when_it_fits(rng):
    image = random_image(rng, (40, 30), np.uint8)
    with make_engine("numpy") as eng:
        got = stream_apply(Invert(), _Lazy(image), engine=eng)
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, 255 - image)
        with pytest.raises(ImageTooLargeError, match="out="):
            stream_apply(Invert(), _Lazy(image), engine=eng, memory_limit=1000)


class _Lazy:
    """An array-like that is not an ndarray, and counts what is read of it."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.read = data, data.shape, data.dtype, 0

    def __getitem__(self, key):
        part = self.data[key]
        self.read += part.size
        return part.copy()


# -- the array API on images that are not in memory --------------------------------------------


def test_the_api_streams_a_zarr_array_into_a_zarr_out(rng):
    import pixelmill

    image = random_image(rng, (90, 60, 3), np.uint8)
    source = zarr.create_array(store=zarr.storage.MemoryStore(), shape=image.shape, chunks=(32, 32, 3), dtype=image.dtype)
    source[:] = image
    for name, call in [
        ("convolve", lambda img, **kw: pixelmill.convolve(img, "gaussian", border="wrap", policy="clip", **kw)),
        ("correlate", lambda img, **kw: pixelmill.correlate(img, [[1.0, 2.0], [0.5, -1.0]], border="reflect", **kw)),
        ("sobel", lambda img, **kw: pixelmill.sobel(img, border="mirror", policy="clip", **kw)),
        ("invert", lambda img, **kw: pixelmill.invert(img, **kw)),
    ]:
        expected = call(image)
        out = zarr.create_array(store=zarr.storage.MemoryStore(), shape=image.shape, chunks=(32, 32, 3),
                                dtype=expected.dtype)
        assert call(source, out=out) is out, name
        np.testing.assert_array_equal(out[:], expected, err_msg=name)
        # Without out=, a result that fits the budget comes back as a NumPy array.
        np.testing.assert_array_equal(call(source, engine="numba"), expected, err_msg=name)


def test_the_api_streams_a_memmap_without_loading_it(tmp_path, rng):
    import pixelmill

    image = random_image(rng, (64, 48), np.uint16)
    source = _memmap(tmp_path, "in", image.shape, image.dtype)
    source[:] = image
    out = _memmap(tmp_path, "out", image.shape, np.float32)
    pixelmill.convolve(source, "edge-x", border="constant", cval=5.0, out=out, memory_limit="2GB")
    np.testing.assert_array_equal(np.asarray(out), pixelmill.convolve(image, "edge-x", border="constant", cval=5.0))


def test_the_api_refuses_what_a_stream_cannot_do(rng):
    import pixelmill
    from pixelmill.errors import InvalidParameterError

    lazy = _Lazy(random_image(rng, (20, 10), np.uint8))
    with pytest.raises(InvalidParameterError, match="whole result's range"):
        pixelmill.convolve(lazy, "gaussian", policy="normalize")
    with pytest.raises(InvalidParameterError, match="memory_limit"):
        pixelmill.invert(lazy, memory_limit="lots")
    with pytest.raises(ImageTooLargeError, match="out="):
        pixelmill.invert(lazy, memory_limit=100)
    assert lazy.read == 0  # nothing was read


_KILLED_WRITER = """
import sys, time, numpy as np, zarr
from pixelmill import kernels
from pixelmill.engines import make_engine, stream_apply
from pixelmill.ops import Filter
src = np.load(sys.argv[1], mmap_mode="r")
sink = zarr.open_array(sys.argv[2], mode="r+")
with make_engine("numpy", workers=2) as eng:
    stream_apply(Filter(kernels.gaussian(5, 1.0), policy="clip"), src, sink, engine=eng, border="wrap",
                 tile_shape=(8, 64), journal=sys.argv[3], progress=lambda r1: time.sleep(0.05))
"""


def test_a_killed_stream_resumes_at_its_first_unfinished_band(tmp_path, rng):
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    image = random_image(rng, (400, 64), np.uint8)
    np.save(tmp_path / "in.npy", image)
    zarr.create_array(store=str(tmp_path / "out.zarr"), shape=image.shape, chunks=(8, 64), dtype=np.uint8)
    journal = tmp_path / "out.zarr.progress.json"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    child = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(tmp_path / "in.npy"),
                              str(tmp_path / "out.zarr"), str(journal)], env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            if journal.exists() and json.loads(journal.read_text())["rows_done"] >= 80:
                break
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    killed_at = json.loads(journal.read_text())["rows_done"]
    assert 80 <= killed_at < 400
    op = Filter(kernels.gaussian(5, 1.0), policy="clip")
    sink = zarr.open_array(str(tmp_path / "out.zarr"), mode="r+")
    seen = []
    with make_engine("numpy", workers=2) as eng:
        stream_apply(op, np.load(tmp_path / "in.npy", mmap_mode="r"), sink, engine=eng, border="wrap",
                     tile_shape=(8, 64), journal=journal, progress=seen.append)
        expected = eng.run(op, image, border="wrap")
    assert seen[0] == killed_at + 8  # resumed at the first unfinished band, not at zero
    np.testing.assert_array_equal(sink[:], expected)
    assert not journal.exists()


@pytest.mark.parametrize("cluster", [False, True])
def test_engine_dask_streams_one_task_per_band(tmp_path, rng, cluster):
    pytest.importorskip("dask")
    image = random_image(rng, (300, 90, 3), np.uint8)
    source = zarr.create_array(store=str(tmp_path / "in.zarr"), shape=image.shape, chunks=(32, 45, 3), dtype=np.uint8)
    source[:] = image
    sink = zarr.create_array(store=str(tmp_path / "out.zarr"), shape=image.shape, chunks=(32, 90, 3), dtype=np.uint8)
    op = SobelMagnitude(policy="clip")
    options = {}
    if cluster:
        distributed = pytest.importorskip("distributed")
        lc = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address=None, memory_limit="1GB")
        options["scheduler"] = lc.scheduler_address
    try:
        seen = []
        with make_engine("dask", workers=2, **options) as eng:
            stream_apply(op, source, sink, engine=eng, border="wrap", progress=seen.append)
    finally:
        if cluster:
            lc.close()
    assert seen == sorted(seen) and seen[-1] == 300
    with make_engine("numpy") as eng:
        np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"))[:], eng.run(op, image, border="wrap"))


def test_a_lost_task_is_an_engine_error_naming_the_bands_done(rng):
    pytest.importorskip("dask")
    from pixelmill.errors import EngineError

    image = random_image(rng, (64, 16), np.uint8)

    class Flaky(_Lazy):
        def __getitem__(self, key):
            if key.start and key.start >= 32:
                raise ConnectionResetError("worker connection lost")
            return super().__getitem__(key)

    sink = np.zeros_like(image)
    with make_engine("dask", workers=1, local_scheduler="threads") as eng:
        with pytest.raises(EngineError, match=r"lost a band.*ConnectionResetError.*journal"):
            stream_apply(Invert(), Flaky(image), sink, engine=eng, tile_shape=(16, 16))
