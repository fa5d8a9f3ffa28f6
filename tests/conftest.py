"""Shared test helpers: an independent oracle (SciPy) and random inputs."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import scipy.ndimage as ndi

_NP_PAD_MODE = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap"}


def scipy_filter(image, weights, *, mode="nearest", cval=0.0, convolve=True) -> np.ndarray:
    """scipy.ndimage.convolve/correlate in float64, per channel.

    SciPy's N-D filters read uninitialised memory for ``mode="reflect"`` on an axis of length 2
    when the kernel is larger than the image (its own ``correlate1d`` is right). For that case
    the oracle pads with ``np.pad(mode="symmetric")`` -- NumPy's, not ours -- and filters the
    padded array in ``constant`` mode, keeping the centre.
    """
    img = np.asarray(image, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if img.ndim == 3:
        return np.stack(
            [scipy_filter(img[..., c], w, mode=mode, cval=cval, convolve=convolve) for c in range(img.shape[2])],
            axis=-1,
        )
    fn = ndi.convolve if convolve else ndi.correlate
    if mode == "reflect" and min(img.shape) == 2 and max(w.shape) > 2:
        ph, pw = w.shape
        padded = np.pad(img, ((ph, ph), (pw, pw)), mode="symmetric")
        return fn(padded, w, mode="constant")[ph:-ph, pw:-pw]
    return fn(img, w, mode=mode, cval=cval)


def save_png(path, array):
    """Write ``array`` as a PNG with Pillow (folders created); returns the path."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def random_image(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) > 0.5
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)
    return rng.random(shape).astype(dtype)


@pytest.fixture
def rng(request):
    # A different, reproducible stream per test (crc32: str hash() changes per process).
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


@pytest.fixture(scope="session", autouse=True)
def machine_calibration(tmp_path_factory):
    """engine='auto' needs this machine's calibration: measure a small one once per test run
    (shared by the xdist workers and the CLI subprocesses through $PIXELMILL_CACHE), instead of
    the full one a user's first run makes, and never touch the user's cache folder."""
    import os

    from pixelmill.engines import _calibration as calibration

    shared = tmp_path_factory.getbasetemp().parent / "pixelmill-cache"
    shared.mkdir(exist_ok=True)
    os.environ["PIXELMILL_CACHE"] = str(shared)
    # One xdist worker measures; the other waits for its table (and its compiled kernels).
    return calibration.load(sizes_mp=(0.002, 0.05))


@pytest.fixture(scope="session")
def every_engine():
    """One started engine per registered name (2 workers), shared by the compatibility tests:
    a process pool or a dask cluster then starts once per test run, not once per call."""
    import pixelmill
    from pixelmill.engines import make_engine

    made = {name: make_engine(name, 2) for name in pixelmill.available_engines()}
    yield made
    for engine in made.values():
        engine.close()
