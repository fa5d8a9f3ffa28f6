"""A deterministic library of photo-like JPEGs with a realistic spread of sizes.

By default 733 images from 106,800 to 24,000,000 pixels (median 1,048,576), the size profile
of a real photo collection (:data:`PHOTO_LIBRARY`). :func:`write_sample_library` builds it
from the real photographs that come *inside* installed packages: scikit-image's bundled
data (astronaut, coffee, chelsea, rocket, ...) and matplotlib's sample data (Grace Hopper).
Nothing is downloaded.

Each image is a random crop (to a typical photo aspect ratio) of one source photograph,
resized with Pillow's LANCZOS filter to the target size and saved as an RGB JPEG.
Everything is drawn from ``seed``: the same seed on the same installation gives the same
files, byte for byte.

Examples
--------
>>> from pixelmill.tools.sample import PHOTO_LIBRARY, sample_sizes
>>> sizes = sample_sizes(PHOTO_LIBRARY["count"])
>>> pixels = sorted(w * h for w, h in sizes)
>>> len(pixels), pixels[0], pixels[-1]
(733, 106800, 24000000)
>>> abs(pixels[366] / PHOTO_LIBRARY["median_pixels"] - 1) < 0.01
True
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from statistics import NormalDist

import numpy as np

from .._files import atomic_write
from ..errors import InvalidParameterError, MissingDependencyError

__all__ = [
    "PHOTO_LIBRARY",
    "ASPECT_RATIOS",
    "sample_sizes",
    "source_photos",
    "write_sample_library",
]

#: Size profile of the sample library: a real photo collection's count, bounds and median.
PHOTO_LIBRARY = dict(count=733, min_pixels=106_800, max_pixels=24_000_000, median_pixels=1_048_576)
#: The former name of :data:`PHOTO_LIBRARY` (the files never showed flowers), kept for old code.
FLOWER_LIBRARY = PHOTO_LIBRARY

#: (width : height, weight) of typical photographs, landscape and portrait.
ASPECT_RATIOS = (
    ((3, 2), 0.30),
    ((4, 3), 0.25),
    ((16, 9), 0.10),
    ((1, 1), 0.10),
    ((2, 3), 0.12),
    ((3, 4), 0.10),
    ((9, 16), 0.03),
)

# Spread of log(pixel count). With sigma = 1 the top stratum of 733 images (z ~ 3.2) lands
# just above 24 MP, so the upper bound is reached naturally; ~1 % fall below 106,800 and clip.
_LOG_SIGMA = 1.0
# From this many images on, the smallest and the largest image sit exactly on the bounds
# (a full-size library spans the whole range; a small demo library need not).
_FORCE_BOUNDS_FROM = 100
# The extremes use 3:2, which makes both bounds exact: 400 x 267 and 6000 x 4000.
_EXTREME_ASPECT = (3, 2)

# Real photographs bundled with scikit-image (these load without network access; files such
# as kidney or lily need pooch and are deliberately absent). Grayscale ones become RGB.
_SKIMAGE_PHOTOS = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "ihc.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "motorcycle_left.png",
    "camera.png",
    "coins.png",
    "moon.png",
)
_MATPLOTLIB_PHOTOS = ("grace_hopper.jpg",)


def _check_int(name, value, *, minimum, maximum=None):
    # bool is an int subclass, but count=True is a mistake, not a 1.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidParameterError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        accepted = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise InvalidParameterError(f"{name} must be an integer {accepted}, got {value!r}")
    return value


def _dimensions(pixels: int, aspect: tuple[int, int], lo: int, hi: int) -> tuple[int, int]:
    """(width, height) close to ``pixels`` at ``aspect``, with lo <= w*h <= hi (hi wins)."""
    ratio = aspect[0] / aspect[1]
    height = max(1, round(math.sqrt(pixels / ratio)))
    width = max(1, round(pixels / height))
    if width * height < lo:
        width = -(-lo // height)  # ceil: the smallest width that reaches lo
    if width * height > hi:
        height = min(height, hi)
        width = max(1, hi // height)
    return width, height


def sample_sizes(count: int, *, seed: int = 0, max_pixels: int | None = None) -> list[tuple[int, int]]:
    """Image sizes that follow the sample library's size profile (:data:`PHOTO_LIBRARY`).

    Pixel counts are log-normal (median 1,048,576, sigma 1 in log space) and drawn by
    jittered stratified sampling: stratum ``i`` of ``count`` contributes one draw, so the
    median of any sample is within a fraction of a percent of 1,048,576 and the spread
    does not depend on luck. Counts are clipped to [106,800, 24,000,000] (and to
    ``max_pixels``); from 100 images on, the smallest and the largest image are put on the
    bounds exactly. Aspect ratios are typical of photographs (3:2, 4:3, 16:9, 1:1 and their
    portrait versions, see :data:`ASPECT_RATIOS`).

    Parameters
    ----------
    count : int
        Number of images (0 or more).
    seed : int, optional
        Seed (0 or more); the same seed gives the same list.
    max_pixels : int or None, optional
        Upper bound on width * height, for quick demos. If it is below 106,800 every image
        is at most ``max_pixels`` and the lower bound is lowered to it.

    Returns
    -------
    list of (int, int)
        ``(width, height)`` per image, in file order.

    Raises
    ------
    InvalidParameterError
        If ``count``, ``seed`` or ``max_pixels`` is not an accepted integer.

    Examples
    --------
    >>> sizes = sample_sizes(5, seed=1, max_pixels=500_000)
    >>> len(sizes), all(w * h <= 500_000 for w, h in sizes)
    (5, True)
    >>> sizes == sample_sizes(5, seed=1, max_pixels=500_000)
    True
    """
    count = _check_int("count", count, minimum=0)
    seed = _check_int("seed", seed, minimum=0)
    lo, hi = PHOTO_LIBRARY["min_pixels"], PHOTO_LIBRARY["max_pixels"]
    if max_pixels is not None:
        hi = min(hi, _check_int("max_pixels", max_pixels, minimum=1))
        lo = min(lo, hi)
    if count == 0:
        return []

    rng = np.random.default_rng(seed)
    # One uniform draw inside each of `count` equal strata, kept away from 0 and 1.
    u = (np.arange(count) + rng.uniform(0.02, 0.98, count)) / count
    inv = NormalDist().inv_cdf
    z = np.array([inv(float(p)) for p in u])
    pixels = np.exp(math.log(PHOTO_LIBRARY["median_pixels"]) + _LOG_SIGMA * z)
    pixels = np.clip(pixels, lo, hi)
    pixels = pixels[rng.permutation(count)]  # strata are sorted; shuffle into file order

    ratios = [a for a, _ in ASPECT_RATIOS]
    weights = np.array([w for _, w in ASPECT_RATIOS])
    choice = rng.choice(len(ratios), size=count, p=weights / weights.sum())
    aspects = [ratios[k] for k in choice]

    targets = [int(round(p)) for p in pixels]
    if count >= _FORCE_BOUNDS_FROM:
        smallest, largest = int(np.argmin(pixels)), int(np.argmax(pixels))
        targets[smallest], aspects[smallest] = lo, _EXTREME_ASPECT
        targets[largest], aspects[largest] = hi, _EXTREME_ASPECT
    return [_dimensions(p, a, lo, hi) for p, a in zip(targets, aspects)]


def source_photos() -> list[Path]:
    """Paths of the bundled real photographs that are present on this installation.

    Returns
    -------
    list of Path
        scikit-image data files first, then matplotlib sample data, in a fixed order.

    Raises
    ------
    MissingDependencyError
        If neither scikit-image nor matplotlib provides any of them.
    """
    found: list[Path] = []
    try:
        import skimage.data  # light: the data module does not import pooch until a fetch

        folder = Path(skimage.data.data_dir)
        found += [folder / name for name in _SKIMAGE_PHOTOS if (folder / name).is_file()]
    except ImportError:
        pass
    try:
        from matplotlib import cbook

        for name in _MATPLOTLIB_PHOTOS:
            try:
                path = Path(cbook.get_sample_data(name, asfileobj=False))
            except (OSError, ValueError):
                continue
            if path.is_file():
                found.append(path)
    except ImportError:
        pass
    if not found:
        raise MissingDependencyError(
            "no sample photographs found: the sample library takes them from scikit-image and matplotlib; "
            "pip install 'pixelmill[sample]'"
        )
    return found


def _render(source: Path, size: tuple[int, int], rng: np.random.Generator):
    """One photograph: random crop of ``source`` at the aspect of ``size``, resized to it."""
    from PIL import Image

    width, height = size
    with Image.open(source) as im:
        photo = im.convert("RGB")  # gray/RGBA/palette sources all become RGB
    if rng.random() < 0.5:
        # Mirror the small source, never the (possibly 24 MP) result: no second big buffer.
        photo = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    sw, sh = photo.size
    ratio = width / height
    # The largest window of the target aspect that fits, shrunk a little for variety.
    cw, ch = (sh * ratio, sh) if sw / sh > ratio else (sw, sw / ratio)
    scale = rng.uniform(0.7, 1.0)
    cw, ch = cw * scale, ch * scale
    x0, y0 = rng.uniform(0, sw - cw), rng.uniform(0, sh - ch)
    # resize(box=) crops and resamples in one pass, from sub-pixel crop coordinates.
    return photo.resize((width, height), Image.Resampling.LANCZOS, box=(x0, y0, x0 + cw, y0 + ch))


def _is_done(path: Path, size: tuple[int, int]) -> bool:
    """True if ``path`` is already an RGB JPEG of ``size`` (header only: cheap)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.format == "JPEG" and im.mode == "RGB" and im.size == tuple(size)
    except (OSError, SyntaxError, ValueError):
        return False


def _save_atomic(image, path: Path, *, quality: int) -> None:
    """Write a JPEG to a temporary name in the same folder, then rename it into place."""
    atomic_write(path, lambda fh: image.save(fh, format="JPEG", quality=quality))


def write_sample_library(
    directory,
    *,
    count: int = 733,
    seed: int = 0,
    max_pixels: int | None = None,
    quality: int = 90,
    progress=None,
) -> list[Path]:
    """Write a deterministic library of photo-like JPEGs with a realistic spread of sizes.

    Files are named ``photo_0001.jpg`` ... (more digits past 9999). Sizes come from
    :func:`sample_sizes`; the source photograph of each file cycles through a seeded
    shuffle of :func:`source_photos`, and the crop window and a left-right mirror are
    drawn from ``(seed, index)``. Only one image is in memory at a time.

    A file that already exists as an RGB JPEG of the right size is left alone, so running
    again is cheap and resumes an interrupted run. (Only the size is checked: a file
    written with another seed but the same size is kept.) New files are written to a
    temporary name in ``directory`` and renamed into place, so a crash never leaves a
    half-written ``photo_*.jpg``.

    Parameters
    ----------
    directory : str or path-like
        Output folder, created if missing.
    count : int, optional
        Number of images (default 733: the whole size profile).
    seed : int, optional
        Seed (0 or more) for sizes, sources and crops.
    max_pixels : int or None, optional
        Upper bound on width * height per image, for quick demos.
    quality : int, optional
        JPEG quality, 1 to 100 (default 90).
    progress : callable or None, optional
        Called as ``progress(index, total, path)`` after each file is written or skipped;
        ``index`` counts from 1 to ``total``.

    Returns
    -------
    list of Path
        The image paths, in order.

    Raises
    ------
    InvalidParameterError
        If an option is out of range or ``directory`` exists and is not a folder.
    MissingDependencyError
        If no source photographs are installed.

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     paths = write_sample_library(tmp, count=3, max_pixels=20_000)
    ...     [p.name for p in paths], Image.open(paths[0]).mode
    (['photo_0001.jpg', 'photo_0002.jpg', 'photo_0003.jpg'], 'RGB')
    """
    sizes = sample_sizes(count, seed=seed, max_pixels=max_pixels)
    quality = _check_int("quality", quality, minimum=1, maximum=100)
    if progress is not None and not callable(progress):
        raise InvalidParameterError(f"progress must be a callable or None, got {progress!r}")
    folder = Path(os.fspath(directory))
    if folder.exists() and not folder.is_dir():
        raise InvalidParameterError(f"directory {str(folder)!r} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)

    sources = source_photos()
    order = np.random.default_rng([seed, 1]).permutation(len(sources))
    digits = max(4, len(str(count)))
    paths: list[Path] = []
    for i, size in enumerate(sizes):
        path = folder / f"photo_{i + 1:0{digits}d}.jpg"
        if not _is_done(path, size):
            rng = np.random.default_rng([seed, 2, i])
            image = _render(sources[order[i % len(sources)]], size, rng)
            _save_atomic(image, path, quality=quality)
            del image  # free the big buffer before the next one is made
        paths.append(path)
        if progress is not None:
            progress(i + 1, len(sizes), path)
    return paths
