"""The sample library: size profile, determinism, real JPEGs, resume and atomic writes.

No test writes a large image: libraries are a few files with a small ``max_pixels``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelmill import InvalidParameterError
from pixelmill.tools import sample
from pixelmill.tools.sample import PHOTO_LIBRARY, sample_sizes, source_photos, write_sample_library

SMALL = dict(count=6, max_pixels=40_000)


def digests(paths):
    return [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]


# --- sizes ----------------------------------------------------------------------------------


def test_photo_profile_min_max_median():
    sizes = sample_sizes(PHOTO_LIBRARY["count"])
    pixels = np.array([w * h for w, h in sizes])
    assert len(sizes) == 733
    assert pixels.min() >= PHOTO_LIBRARY["min_pixels"]
    assert pixels.max() <= PHOTO_LIBRARY["max_pixels"]
    # "close to" the bounds: within 1 % (they are in fact put on the bounds)
    assert pixels.min() <= PHOTO_LIBRARY["min_pixels"] * 1.01
    assert pixels.max() >= PHOTO_LIBRARY["max_pixels"] * 0.99
    assert float(np.median(pixels)) == pytest.approx(PHOTO_LIBRARY["median_pixels"], rel=0.03)


@pytest.mark.parametrize("seed", [1, 7, 12345])
def test_profile_holds_for_other_seeds(seed):
    pixels = np.array([w * h for w, h in sample_sizes(733, seed=seed)])
    assert PHOTO_LIBRARY["min_pixels"] <= pixels.min() and pixels.max() <= PHOTO_LIBRARY["max_pixels"]
    assert float(np.median(pixels)) == pytest.approx(PHOTO_LIBRARY["median_pixels"], rel=0.03)


def test_sizes_are_log_normal_like_and_photo_shaped():
    sizes = sample_sizes(733)
    logs = np.log([w * h for w, h in sizes])
    q1, med, q3 = np.percentile(logs, [25, 50, 75])
    # symmetric in log space (a log-normal), with a real spread
    assert (q3 - med) == pytest.approx(med - q1, rel=0.15)
    assert q3 - q1 > 0.5
    ratios = np.array([w / h for w, h in sizes])
    known = np.array([a / b for (a, b), _ in sample.ASPECT_RATIOS])
    # rounding to whole pixels moves the ratio by well under 1 % at these sizes
    assert np.all(np.min(np.abs(ratios[:, None] / known[None, :] - 1), axis=1) < 0.01)
    assert (ratios > 1.01).any() and (ratios < 0.99).any() and (np.abs(ratios - 1) < 0.01).any()
    assert all(isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0 for w, h in sizes)


def test_sizes_are_deterministic_per_seed():
    assert sample_sizes(50, seed=3) == sample_sizes(50, seed=3)
    assert sample_sizes(50, seed=3) != sample_sizes(50, seed=4)
    assert sample_sizes(0) == []


@pytest.mark.parametrize("max_pixels", [4_000_000, 200_000, 50_000, 64])
def test_max_pixels_is_honoured(max_pixels):
    sizes = sample_sizes(733, max_pixels=max_pixels)
    pixels = np.array([w * h for w, h in sizes])
    assert pixels.max() <= max_pixels
    assert pixels.max() >= max_pixels * 0.95  # the big end piles up at the cap
    assert pixels.min() >= 1


@pytest.mark.parametrize(
    "kwargs,word",
    [
        (dict(count=-1), "count"),
        (dict(count=2.5), "count"),
        (dict(count=True), "count"),
        (dict(count=3, seed=-1), "seed"),
        (dict(count=3, seed="a"), "seed"),
        (dict(count=3, max_pixels=0), "max_pixels"),
    ],
)
def test_sample_sizes_rejects_bad_options(kwargs, word):
    count = kwargs.pop("count")
    with pytest.raises(InvalidParameterError, match=word):
        sample_sizes(count, **kwargs)
    with pytest.raises(ValueError):  # also the built-in it means
        sample_sizes(count, **kwargs)


# --- sources --------------------------------------------------------------------------------


def test_sources_are_bundled_real_photographs():
    import matplotlib
    import skimage

    roots = [Path(skimage.__file__).parent, Path(matplotlib.__file__).parent]
    photos = source_photos()
    assert len(photos) >= 5
    names = {p.name for p in photos}
    assert {"astronaut.png", "coffee.png", "chelsea.png", "grace_hopper.jpg"} <= names
    for p in photos:
        assert p.is_file() and any(root in p.parents for root in roots)
        with Image.open(p) as im:
            assert min(im.size) >= 250  # photographs, not icons


# --- writing --------------------------------------------------------------------------------


def test_files_are_rgb_jpegs_of_the_requested_sizes(tmp_path):
    paths = write_sample_library(tmp_path, count=9, seed=2, max_pixels=60_000)
    assert [p.name for p in paths] == [f"photo_{i:04d}.jpg" for i in range(1, 10)]
    assert sorted(tmp_path.iterdir()) == sorted(paths)  # no temp files left behind
    for path, size in zip(paths, sample_sizes(9, seed=2, max_pixels=60_000)):
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == size
            arr = np.asarray(im)
        assert arr.shape == (size[1], size[0], 3)
        assert arr.std() > 1.0  # a picture, not a flat fill
    assert len(set(digests(paths))) == len(paths)


def _box_thumbnails(integral, x0, y0, cw, ch, n):
    """n x n box-averaged thumbnails of the windows (x0[k], y0[k], cw, ch) of an image, read
    from its summed-area table: an independent stand-in for crop + resize, vectorised."""
    steps = np.linspace(0.0, 1.0, n + 1)
    xs = np.round(x0[:, None] + cw * steps).astype(int)  # (k, n + 1)
    ys = np.round(y0[:, None] + ch * steps).astype(int)
    d = integral[ys[:, :, None], xs[:, None, :]]  # (k, n + 1, n + 1)
    cells = d[:, 1:, 1:] - d[:, :-1, 1:] - d[:, 1:, :-1] + d[:, :-1, :-1]
    areas = np.diff(ys)[:, :, None] * np.diff(xs)[:, None, :]
    return cells / np.maximum(areas, 1)


def _best_corr(out, thumbs):
    a = out.ravel() - out.mean()
    b = thumbs.reshape(len(thumbs), -1)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a @ a) * (b * b).sum(axis=1))
    return float(np.max(np.where(den > 0, b @ a / np.where(den > 0, den, 1), 0.0)))


def test_content_is_a_resized_crop_of_distinct_sources(tmp_path):
    # Each file must look like (correlate strongly with) a window of one source photo, found
    # by brute-force search over window scale, position and mirroring on coarse thumbnails.
    # Files cycle through a shuffle of the sources, so the first six match six distinct ones.
    n, grid, scales = 16, 13, 9
    paths = write_sample_library(tmp_path, count=6, seed=5, max_pixels=150_000)
    tables = []
    for p in source_photos():
        with Image.open(p) as im:
            g = im.convert("L")
        g.thumbnail((160, 160), Image.Resampling.BOX)
        a = np.asarray(g, dtype=float)
        for arr in (a, a[:, ::-1]):
            tables.append((p.name, np.pad(arr.cumsum(0).cumsum(1), ((1, 0), (1, 0)))))
    matched = []
    for path in paths:
        with Image.open(path) as im:
            ratio = im.size[0] / im.size[1]
            out = np.asarray(im.convert("L").resize((n, n), Image.Resampling.BOX), dtype=float)
        best = (-1.0, None)
        for name, table in tables:
            sh, sw = table.shape[0] - 1, table.shape[1] - 1
            fw, fh = (sh * ratio, sh) if sw / sh > ratio else (sw, sw / ratio)
            for scale in np.linspace(0.7, 1.0, scales):
                cw, ch = fw * scale, fh * scale
                x0, y0 = (m.ravel() for m in np.meshgrid(np.linspace(0, sw - cw, grid), np.linspace(0, sh - ch, grid)))
                best = max(best, (_best_corr(out, _box_thumbnails(table, x0, y0, cw, ch, n)), name))
        assert best[0] > 0.75, (path.name, best)  # smooth random images reach ~0.7
        matched.append(best[1])
    assert len(set(matched)) == len(paths), matched


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = write_sample_library(tmp_path / "a", seed=11, **SMALL)
    b = write_sample_library(tmp_path / "b", seed=11, **SMALL)
    c = write_sample_library(tmp_path / "c", seed=12, **SMALL)
    assert digests(a) == digests(b)
    assert all(x != y for x, y in zip(digests(a), digests(c)))


def test_rerun_skips_existing_files_and_rewrites_wrong_ones(tmp_path):
    paths = write_sample_library(tmp_path, seed=4, **SMALL)
    before = digests(paths)
    # make the mtimes distinguishable from a rewrite
    for p in paths:
        os.utime(p, ns=(1_000_000_000, 1_000_000_000))
    paths[1].unlink()  # missing: written again
    Image.new("RGB", (5, 5), "red").save(paths[2], format="JPEG")  # wrong size: rewritten
    paths[3].write_bytes(paths[3].read_bytes()[:10])  # unreadable: rewritten
    os.utime(paths[2], ns=(1_000_000_000, 1_000_000_000))
    os.utime(paths[3], ns=(1_000_000_000, 1_000_000_000))

    again = write_sample_library(tmp_path, seed=4, **SMALL)
    assert again == paths
    assert digests(again) == before
    mtimes = [p.stat().st_mtime_ns for p in paths]
    for i in (0, 4, 5):
        assert mtimes[i] == 1_000_000_000
    for i in (2, 3):
        assert mtimes[i] != 1_000_000_000


def test_progress_is_called_once_per_file_in_order(tmp_path):
    calls = []
    paths = write_sample_library(tmp_path, count=4, max_pixels=10_000, progress=lambda *a: calls.append(a))
    assert calls == [(i + 1, 4, p) for i, p in enumerate(paths)]
    calls.clear()
    write_sample_library(tmp_path, count=4, max_pixels=10_000, progress=lambda *a: calls.append(a))
    assert calls == [(i + 1, 4, p) for i, p in enumerate(paths)]  # skipped files are reported too


def test_written_files_honour_max_pixels(tmp_path):
    paths = write_sample_library(tmp_path, count=12, seed=9, max_pixels=30_000)
    for p in paths:
        with Image.open(p) as im:
            assert im.size[0] * im.size[1] <= 30_000


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\xff\xd8 half a jpeg")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_sample_library(tmp_path, count=2, max_pixels=10_000)
    assert list(tmp_path.iterdir()) == []


def test_creates_missing_directory_and_rejects_a_file(tmp_path):
    paths = write_sample_library(tmp_path / "x" / "y", count=1, max_pixels=5_000)
    assert paths[0].parent == tmp_path / "x" / "y" and paths[0].is_file()
    with pytest.raises(InvalidParameterError, match="directory"):
        write_sample_library(paths[0], count=1, max_pixels=5_000)


@pytest.mark.parametrize(
    "kwargs,word",
    [(dict(quality=0), "quality"), (dict(quality=101), "quality"), (dict(progress=3), "progress"), (dict(count=-2), "count")],
)
def test_write_rejects_bad_options(tmp_path, kwargs, word):
    opts = dict(count=1, max_pixels=5_000) | kwargs
    with pytest.raises(InvalidParameterError, match=word):
        write_sample_library(tmp_path / "out", **opts)
    assert not (tmp_path / "out").exists()
