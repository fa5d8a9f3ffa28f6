import numpy as np
import pytest

from pixelmill import InvalidKernelError, kernels


def test_named_kernels_have_documented_weights():
    assert kernels.get("edge-x").weights.tolist() == [[0.5, 0.0, -0.5]]
    np.testing.assert_array_equal(kernels.get("edge-y").weights, kernels.get("edge-x").weights.T)
    np.testing.assert_array_equal(kernels.get("sobel-y").weights, kernels.get("sobel-x").weights.T)
    ident = kernels.get("identity").weights
    assert ident.shape == (5, 5) and ident.sum() == 1 and ident[2, 2] == 1
    lap = kernels.get("laplacian")
    assert lap.zero_sum and lap.weights[1, 1] < 0


@pytest.mark.parametrize("size,sigma", [(1, 1.0), (3, 0.5), (5, 1.0), (9, 2.0), (31, 7.5)])
def test_gaussian_matches_formula_and_sums_to_one(size, sigma):
    k = kernels.gaussian(size, sigma)
    r = size // 2
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    expected = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    expected /= expected.sum()
    np.testing.assert_allclose(k.weights, expected, rtol=1e-12)
    assert k.separable


@pytest.mark.parametrize("size", [0, 2, 4, -3, 257])
def test_gaussian_rejects_bad_size(size):
    with pytest.raises(InvalidKernelError, match="size"):
        kernels.gaussian(size, 1.0)


@pytest.mark.parametrize("sigma", [-1, float("nan"), float("inf"), "x", (1.0, 2.0, 3.0), (1.0, -1.0)])
def test_gaussian_rejects_bad_sigma(sigma):
    with pytest.raises(InvalidKernelError, match="sigma"):
        kernels.gaussian(5, sigma)


def test_gaussian_sigma_zero_is_the_identity_along_its_axis():
    # As scipy.ndimage.gaussian_filter: sigma 0 leaves that axis alone.
    assert kernels.gaussian(None, 0).shape == (1, 1)
    k = kernels.gaussian(None, (0, 1.0))
    assert k.shape == (1, 9) and k.weights.sum() == pytest.approx(1.0)
    impulse = kernels.gaussian(5, 0).weights
    assert impulse[2, 2] == 1.0 and impulse.sum() == 1.0


@pytest.mark.parametrize("sigma,truncate,radius,shape", [
    (1.0, 4.0, None, (9, 9)), (2.0, 4.0, None, (17, 17)), (0.5, 4.0, None, (5, 5)),
    (1.3, 2.0, None, (7, 7)), (3.0, 4.0, 2, (5, 5)), ((1.0, 2.0), 4.0, None, (9, 17)),
    ((1.0, 2.0), 4.0, (1, 3), (3, 7)),
])
def test_gaussian_size_from_sigma_follows_scipy(sigma, truncate, radius, shape):
    # SciPy: radius = int(truncate * sigma + 0.5) (or radius), side 2 * radius + 1.
    assert kernels.gaussian(None, sigma, truncate=truncate, radius=radius).shape == shape


def test_gaussian_keeps_explicit_sizes_and_labels():
    assert kernels.gaussian(9, 2).shape == (9, 9) and kernels.gaussian(9, 2).name == "gaussian-9-2"
    assert kernels.gaussian(5, 1.0).name == "gaussian-5-1"
    with pytest.raises(InvalidKernelError, match="radius"):
        kernels.gaussian(5, 1.0, radius=2)
    with pytest.raises(InvalidKernelError, match="too large"):
        kernels.gaussian(None, 40.0)


def test_complex_kernel_is_refused_by_name():
    with pytest.raises(InvalidKernelError, match="kernel 'ring'.*complex"):
        kernels.from_array(np.array([[1 + 1j, 0], [0, 1]]), "ring")


def test_separability_detected(rng):
    col, row = rng.normal(size=4), rng.normal(size=6)
    k = kernels.from_array(np.outer(col, row))
    assert k.separable
    c, r = k.factors
    np.testing.assert_allclose(np.outer(c, r), k.weights, atol=1e-12)
    assert not kernels.from_array(rng.normal(size=(3, 3))).separable
    assert not kernels.get("laplacian").separable
    assert kernels.get("sobel-x").separable


def test_halo_follows_scipy_anchor():
    k = kernels.from_array(np.ones((4, 3)))
    assert k.halo() == (2, 1, 1, 1)
    assert k.halo(flipped=True) == (1, 2, 1, 1)


def test_parse_inline_and_normalize():
    k = kernels.parse("1 2 1; 2 4 2; 1 2 1", normalize=True)
    np.testing.assert_allclose(k.weights, np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16)
    assert kernels.parse("1,0,-1\n2,0,-2  # comment\n1,0,-1").weights[1, 2] == -2


@pytest.mark.parametrize(
    "text,match",
    [("", "no weights"), ("1 2; 3", "different lengths"), ("1 a 2", "non-numeric"),
     ("1 nan", "NaN"), ("1 inf", "NaN or infinity"), ("1 -1", "sum to 0")],
)
def test_parse_rejects_bad_text(text, match):
    with pytest.raises(InvalidKernelError, match=match):
        kernels.parse(text, normalize=True)


def test_from_array_rejects_bad_shapes():
    with pytest.raises(InvalidKernelError, match="2-D"):
        kernels.from_array(np.ones((2, 2, 2)))
    with pytest.raises(InvalidKernelError, match="too large"):
        kernels.from_array(np.ones((3, 1000)))
    with pytest.raises(InvalidKernelError, match="empty"):
        kernels.from_array(np.ones((0, 3)))
    with pytest.raises(InvalidKernelError, match="not numeric"):
        kernels.from_array([["a", "b"]])


def test_from_file_formats(tmp_path, rng):
    w = rng.normal(size=(3, 5))
    np.save(tmp_path / "k.npy", w)
    np.testing.assert_array_equal(kernels.from_file(tmp_path / "k.npy").weights, w)
    np.savetxt(tmp_path / "k.csv", w, delimiter=",")
    np.testing.assert_allclose(kernels.from_file(tmp_path / "k.csv").weights, w)
    np.savetxt(tmp_path / "k.txt", w)
    np.testing.assert_allclose(kernels.from_file(tmp_path / "k.txt").weights, w)


def test_from_file_errors_name_the_file(tmp_path):
    with pytest.raises(InvalidKernelError, match="missing.txt"):
        kernels.from_file(tmp_path / "missing.txt")
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\n3,x\n")
    with pytest.raises(InvalidKernelError, match="bad.csv.*non-numeric"):
        kernels.from_file(bad)
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidKernelError, match="obj.npy"):
        kernels.from_file(obj)
    other = tmp_path / "k.png"
    other.write_bytes(b"x")
    with pytest.raises(InvalidKernelError, match="extension"):
        kernels.from_file(other)


def test_unknown_name_lists_known_ones():
    with pytest.raises(InvalidKernelError, match="known kernels: .*sobel-x"):
        kernels.get("sobel-z")
