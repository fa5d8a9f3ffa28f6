"""Conformance over the public PngSuite: every valid file read exactly, inverted and filtered
exactly with alpha untouched; every ``x*`` (deliberately broken) file a clear failure.

Oracles: libpng's pixels (imagecodecs.png_decode) and Pillow's (8-bit colour, 16-bit grey),
SciPy for the filter.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from PIL import Image as PILImage

import pixelmill
from pixelmill._opspec import parse_op
from pixelmill.batch import RunSettings, run_batch
from pixelmill.io import read_image

from conftest import scipy_filter


def _suite() -> Path | None:
    for root in (Path(__file__).resolve().parents[2] / "shared" / "corpora" / "pngsuite",
                 Path("/work/shared/corpora/pngsuite")):
        if root.is_dir() and any(root.glob("*.png")):
            return root
    return None


SUITE = _suite()
pytestmark = pytest.mark.skipif(SUITE is None, reason="PngSuite corpus not found (../shared/corpora/pngsuite)")


def _split(arr: np.ndarray):
    """(colour, alpha or None) of a libpng-decoded array (alpha for 2 and 4 channels)."""
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        color = arr[..., 0] if arr.shape[2] == 2 else arr[..., :3]
        return color, arr[..., -1]
    return arr, None


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    out = tmp_path_factory.mktemp("pngsuite-out")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in SUITE.glob("*.png")}
    settings = RunSettings(ops=(parse_op("invert"), parse_op("gaussian:size=3,sigma=1")),
                           engine="numpy", workers=1)
    run_batch([str(SUITE)], str(out), settings)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in SUITE.glob("*.png")}
    assert after == before  # the corpus is only read
    manifest = json.loads((out / "manifest.json").read_text())
    items = {}
    for it in manifest["items"]:
        items[Path(it["input"]).name, it["op"]] = it
    return out, items


def _valid():
    return sorted(p.name for p in SUITE.glob("*.png") if not p.name.startswith("x")) if SUITE else []


def _broken():
    return sorted(p.name for p in SUITE.glob("*.png") if p.name.startswith("x")) if SUITE else []


@pytest.mark.filterwarnings("ignore:Palette images with Transparency")  # Pillow's advice
def test_every_valid_file_read_exactly(batch):
    for name in _valid():
        raw = (SUITE / name).read_bytes()
        oracle = imagecodecs.png_decode(raw)
        img = read_image(SUITE / name)
        got = img.data.astype(np.uint8) * 255 if img.data.dtype == np.bool_ else img.data
        np.testing.assert_array_equal(got, oracle, err_msg=name)
        # Pillow, a second decoder: the colour of 8-bit files, 16-bit grey
        color, _ = _split(oracle)
        with PILImage.open(SUITE / name) as im:
            if oracle.dtype == np.uint8:
                pil = np.asarray(im.convert("L" if color.ndim == 2 else "RGB"))
                np.testing.assert_array_equal(pil, color, err_msg=name)
            elif oracle.ndim == 2:
                np.testing.assert_array_equal(np.asarray(im).astype(np.uint16), oracle, err_msg=name)


def test_every_valid_file_inverted_exactly_alpha_untouched(batch):
    out, items = batch
    for name in _valid():
        it = items[name, "invert"]
        assert it["status"] == "done", (name, it["error"])
        oracle = imagecodecs.png_decode((SUITE / name).read_bytes())
        got = imagecodecs.png_decode((out / it["output"]).read_bytes())
        assert got.shape == oracle.shape and got.dtype == oracle.dtype, name
        color, alpha = _split(oracle)
        gcolor, galpha = _split(got)
        np.testing.assert_array_equal(gcolor, np.iinfo(color.dtype).max - color, err_msg=name)
        if alpha is not None:
            np.testing.assert_array_equal(galpha, alpha, err_msg=name)


def test_every_valid_file_filtered_like_the_oracle(batch):
    out, items = batch
    weights = pixelmill.kernels.gaussian(3, 1.0).weights
    for name in _valid():
        it = items[name, "gaussian-3-1"]
        assert it["status"] == "done", (name, it["error"])
        oracle = imagecodecs.png_decode((SUITE / name).read_bytes())
        got = imagecodecs.png_decode((out / it["output"]).read_bytes())
        color, alpha = _split(oracle)
        gcolor, galpha = _split(got)
        top = np.iinfo(color.dtype).max
        expected = np.clip(np.rint(scipy_filter(color, weights)), 0, top)
        if name[4:8] == "0g01" and alpha is None:
            expected = expected >= top / 2  # bilevel stays bilevel
            gcolor = gcolor > 0
        assert np.abs(gcolor.astype(np.float64) - expected).max() <= 1, name
        if alpha is not None:
            np.testing.assert_array_equal(galpha, alpha, err_msg=name)


def test_every_broken_file_is_a_clear_failure(batch):
    out, items = batch
    broken = _broken()
    assert broken
    for name in broken:
        for op in ("invert",):
            it = items[name, op]
            assert it["status"] == "failed", name
            error = it["error"]
            # pixelmill's words (the file, what is wrong), not a bare internal exception
            assert str(SUITE / name) in error, (name, error)
            assert re.search(r"corrupt|damaged|not a valid|truncated|not an image", error), (name, error)
            assert not re.match(r"^[A-Z]\w*(Error|Exception):", error), (name, error)
            assert not (out / it["output"]).exists()
