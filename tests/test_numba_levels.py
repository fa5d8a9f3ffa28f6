"""The exact level-sum path of the numba flavour (:mod:`pixelmill.ops._numba_levels`).

Kernels with few distinct weights (disk, box, ring...) on 8/16-bit images take a fast path
that must be *bit-identical* to the general float64 path. Oracle: the ``numpy`` engine (one
whole-array float64 multiply-add per tap, independent code with the same documented
arithmetic), compared bit for bit (so the sign of a zero counts too); SciPy in float64 checks
that both are the right filter. Each kernel here is also checked to really take the fast path.
The oracle runs method="direct": on the numpy engine, "auto" would take the FFT path for the
larger kernels, which is within its error bound but not bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from conftest import scipy_filter

import pixelmill
from pixelmill import kernels, tiling
from pixelmill.ops import Filter
from pixelmill.ops._numba import correlate_numba, store_code
from pixelmill.ops._numba_levels import _plan, correlate_levels_numba

POLICIES = [None, "clip", "abs", "shift"]


def _disk_mask(size, radius=None):
    r = size // 2
    radius = r if radius is None else radius
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return xx**2 + yy**2 <= radius * radius


def _blocky(seed):
    """A random kernel of integer-valued levels (1 to 3, some negative, some scaled by a
    non-dyadic 1/7), laid out in one or two horizontal runs per row."""
    rng = np.random.default_rng(seed)
    kh, kw = int(rng.integers(2, 8)), int(rng.integers(8, 12))
    levels = int(rng.integers(1, 4))
    values = rng.choice([v for v in range(-5, 6) if v], size=levels, replace=False).astype(np.float64)
    if seed % 2:
        values /= 7.0
    w = np.zeros((kh, kw))
    for a in range(kh):
        for _ in range(int(rng.integers(1, 3))):
            s = int(rng.integers(0, kw))
            e = int(rng.integers(s + 1, kw + 1))
            w[a, s:e] = rng.choice(values)
    return kernels.from_array(w, f"blocky-{seed}")


def _kernels():
    disk15 = _disk_mask(15).astype(np.float64)
    ring = (_disk_mask(11) & ~_disk_mask(11, 3)).astype(np.float64)
    dob = -np.ones((9, 9))
    dob[3:6, 3:6] = 8.0  # zero sum, integer weights: the exact mode
    third = np.full((6, 12), 1.0 / 3.0)  # zero sum, not dyadic: flat regions need fix-ups
    third[:3, 6:] = -1.0 / 3.0
    third[3:, :3] = third[3:, 9:] = -1.0 / 3.0
    found = {
        "disk-15": kernels.from_array(disk15, normalize=True),
        "disk-7-ones": kernels.from_array(_disk_mask(7).astype(np.float64)),
        # (a full box is separable, and takes the separable path: corners cut)
        "box-5": kernels.from_array(_cut(np.ones((5, 5))), normalize=True),
        "box-4x6-even": kernels.from_array(_cut(np.full((4, 6), 0.25))),
        "ring-11": kernels.from_array(ring, normalize=True),
        "ring-signed-11": kernels.from_array(ring - 3.0 * _disk_mask(11, 2)),
        "dob-9-zero-sum": kernels.from_array(dob),
        "third-zero-sum": kernels.from_array(third),
    }
    seed = 0
    while len(found) < 14:
        k = _blocky(seed)
        if not k.separable:  # separable kernels take the separable path
            found[k.name] = k
        seed += 1
    return found


def _cut(w):
    w = w.copy()
    w[0, 0] = w[-1, -1] = 0.0
    return w


KERNELS = _kernels()


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view(f"u{a.dtype.itemsize}") if a.dtype.kind == "f" else a


def _assert_same(got, want, msg=""):
    assert got.dtype == want.dtype, msg
    np.testing.assert_array_equal(_bits(got), _bits(want), err_msg=msg)


def _image(rng, shape, dtype):
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    return rng.integers(0, int(np.iinfo(dtype).max) + 1, size=shape, dtype=dtype)


@pytest.mark.parametrize("name", list(KERNELS))
def test_kernels_take_the_level_path(name):
    kernel = KERNELS[name]
    assert not kernel.separable
    for dtype in (np.uint8, np.uint16, np.bool_):
        assert _plan(kernel.flipped().weights, np.dtype(dtype)) is not None


SHAPES = {
    "gray": (23, 31),
    "rgb": (19, 26, 3),
    "one-row": (1, 57, 3),
    "one-column": (40, 1),
    "smaller-than-kernel": (3, 4),
}
BORDERS = ["nearest", "reflect", "mirror", "wrap", "constant"]


@pytest.mark.parametrize("flip", [True, False], ids=["convolve", "correlate"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
@pytest.mark.parametrize("name", list(KERNELS))
def test_bit_identical_to_numpy_engine(rng, name, shape, dtype, flip):
    kernel = KERNELS[name]
    image = _image(rng, shape, dtype)
    fn = pixelmill.convolve if flip else pixelmill.correlate
    border = BORDERS[int(rng.integers(len(BORDERS)))]
    for policy in POLICIES:
        opts = {"border": border, "cval": 7.0, "policy": policy}
        got = fn(image, kernel, engine="numba", workers=2, method="direct", **opts)
        want = fn(image, kernel, engine="numpy", method="direct", **opts)
        _assert_same(got, want, f"{name} {border} policy={policy}")


def test_bool_images(rng):
    image = _image(rng, (17, 29, 3), np.bool_)
    for kernel in (KERNELS["disk-15"], KERNELS["dob-9-zero-sum"]):
        got = pixelmill.convolve(image, kernel, engine="numba", method="direct")
        _assert_same(got, pixelmill.convolve(image, kernel, engine="numpy", method="direct"), kernel.name)


@pytest.mark.parametrize("name", ["disk-15", "ring-signed-11", "blocky-3"])
def test_matches_scipy_and_workers_agree(rng, name):
    # Two strips (two threads) and several column chunks: same bits as one thread.
    kernel = KERNELS[name]
    image = _image(rng, (70, 800, 3), np.uint8)
    one = pixelmill.convolve(image, kernel, engine="numba", workers=1, method="direct")
    two = pixelmill.convolve(image, kernel, engine="numba", workers=2, method="direct")
    _assert_same(one, two)
    want = scipy_filter(image, kernel.weights)
    np.testing.assert_allclose(two, want, rtol=0, atol=1e-3 * np.abs(want).max())


def test_wide_uint16_rows_wrap_the_prefix_sums(rng):
    # 70000 samples of up to 65535 per row: the uint32 prefix sums wrap around, their
    # differences (the run sums) must not.
    image = rng.integers(60000, 65536, size=(4, 70000), dtype=np.uint16)
    assert image.shape[1] * 65535 > 2**32
    for kernel in (kernels.from_array(np.ones((3, 9))), KERNELS["box-5"], KERNELS["blocky-1"]):
        for policy in (None, "clip"):
            got = pixelmill.convolve(image, kernel, engine="numba", policy=policy, method="direct")
            want = pixelmill.convolve(image, kernel, engine="numpy", policy=policy, method="direct")
            _assert_same(got, want, f"{kernel.name} {policy}")


def test_largest_level_sum_fits():
    # 255 x 255 taps (two corners cut: not separable) of 65535: S = 65023 * 65535, just
    # below 2**32.
    image = np.full((2, 3), 65535, dtype=np.uint16)
    for weights in (_cut(np.ones((255, 255))), _cut(np.full((255, 255), 1.0 / 3.0))):
        kernel = kernels.from_array(weights)
        assert _plan(kernel.weights, image.dtype) is not None
        got = pixelmill.convolve(image, kernel, engine="numba", method="direct")
        _assert_same(got, pixelmill.convolve(image, kernel, engine="numpy", method="direct"))
        if weights[1, 1] == 1.0:
            assert np.all(got == np.float32(65023 * 65535))


def _direct(block, weights, dtype, policy):
    """(levels path result, general path result, fix-ups) on a padded ``block``."""
    store = store_code(dtype, policy)
    out_shape = (block.shape[0] - weights.shape[0] + 1, block.shape[1] - weights.shape[1] + 1) + block.shape[2:]
    fast = np.empty(out_shape, dtype)
    general = np.empty(out_shape, dtype)
    stats = {}
    assert correlate_levels_numba(block, weights, fast, store, stats=stats)
    correlate_numba(block, weights, general, None, store)
    return fast, general, stats["fixups"]


def test_fix_up_on_float32_rounding_midpoints(rng):
    # A 5x5 box of w = (1 + 2**-24) / 25 on flat patches of a power of two p: the exact
    # value p * (1 + 2**-24) is a float32 rounding midpoint, so the float32 result depends on
    # the general path's own rounding errors and the estimate cannot decide it.
    weights = np.full((5, 5), (1.0 + 2.0**-24) / 25.0)
    block = np.full((30, 34, 3), 64, dtype=np.uint8)
    block[:, :, 1] = 1
    block[20:, :, 2] = rng.integers(0, 256, size=(10, 34), dtype=np.uint8)
    for policy, dtype in ((None, np.float32), ("clip", np.uint8)):
        fast, general, fixups = _direct(block, weights, dtype, policy)
        assert fixups > 0
        _assert_same(fast, general, f"policy={policy}")
    # The same through the public API, against the numpy engine.
    image = block[2:-2, 2:-2]
    kernel = kernels.from_array(weights)
    _assert_same(
        pixelmill.convolve(image, kernel, engine="numba", method="direct"), pixelmill.convolve(image, kernel, engine="numpy", method="direct")
    )


def test_fix_up_on_zeros_of_unknown_sign(rng):
    # Weights +1/3 and -1/3 on a flat image: the exact value is 0, but the general path's
    # sum may end at +0.0, -tiny or +tiny; only recomputing it tells the float32 bits.
    weights = KERNELS["third-zero-sum"].weights
    block = np.full((20, 25), 200, dtype=np.uint16)
    block[12:] = rng.integers(0, 65536, size=(8, 25), dtype=np.uint16)
    for policy, dtype in ((None, np.float32), ("abs", np.uint16), ("shift", np.uint16)):
        fast, general, fixups = _direct(block, weights, dtype, policy)
        assert fixups > 0
        _assert_same(fast, general, f"policy={policy}")


def test_exact_kernels_never_fix_up(rng):
    # Integer (dyadic) weights: the estimate is the exact value, even for zero-sum kernels
    # on flat regions, where the sign of zero is known (+0.0).
    block = np.full((24, 30, 3), 90, dtype=np.uint8)
    block[12:] = rng.integers(0, 256, size=(12, 30, 3), dtype=np.uint8)
    for name in ("dob-9-zero-sum", "disk-7-ones", "box-4x6-even"):
        weights = KERNELS[name].weights
        fast, general, fixups = _direct(block, weights, np.float32, None)
        assert fixups == 0
        _assert_same(fast, general, name)
        if name == "dob-9-zero-sum":
            assert np.all(_bits(fast[:3]) == 0)  # +0.0 on the flat part


def test_other_kernels_and_dtypes_fall_back(rng):
    disk = KERNELS["disk-15"].weights
    cases = [
        (rng.random((7, 9)), np.uint8),  # many distinct weights
        (np.arange(1.0, 6.0)[None, :].repeat(5, 0), np.uint8),  # five levels
        (kernels.get("laplacian").weights, np.uint8),  # too many runs for 9 taps
        (disk, np.float32),  # float image
        (disk, np.int16),  # signed image
        (disk, np.uint32),  # too wide for exact float32 samples and uint32 sums
    ]
    for weights, dtype in cases:
        block = np.ones((20, 20), dtype=dtype)
        out = np.full((21 - weights.shape[0], 21 - weights.shape[1]), -7.0, np.float32)
        assert not correlate_levels_numba(block, weights, out, store_code(np.float32, None))
        assert np.all(out == -7.0)  # untouched


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint32])
def test_fallback_still_matches_numpy(rng, dtype):
    image = (rng.random((21, 18, 3)) * 1000).astype(dtype)
    for kernel in (KERNELS["disk-15"], kernels.from_array(rng.standard_normal((5, 6)))):
        got = pixelmill.convolve(image, kernel, engine="numba", method="direct")
        _assert_same(got, pixelmill.convolve(image, kernel, engine="numpy", method="direct"), kernel.name)
    # A constant border whose cval does not fit the image dtype pads in float32: general path.
    image8 = _image(rng, (15, 16), np.uint8)
    got = pixelmill.convolve(image8, KERNELS["box-5"], border="constant", cval=0.5, engine="numba", method="direct")
    _assert_same(got, pixelmill.convolve(image8, KERNELS["box-5"], border="constant", cval=0.5, engine="numpy", method="direct"))


def test_strided_tile_views(rng):
    # Tiled callers may pass non-contiguous views of the padded block and of out.
    op = Filter(KERNELS["ring-11"])
    image = _image(rng, (21, 26, 3), np.uint8)
    padded = tiling.pad(image, op.halo, "nearest")
    whole = np.empty(image.shape, np.uint8)
    fused = Filter(op.kernel, policy="clip")
    fused.compute(padded, whole, "numba")
    tiled = np.zeros(image.shape, np.uint8)
    for tile in tiling.plan_tiles(image.shape, (8, 10)):
        fused.compute(padded[tile.source(op.halo)], tiled[tile.out], "numba")
    _assert_same(tiled, whole)
    _assert_same(whole, pixelmill.convolve(image, op.kernel, engine="numpy", policy="clip", method="direct"))
