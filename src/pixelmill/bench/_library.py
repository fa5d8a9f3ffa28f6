"""Benchmark inputs: the image library, the picked sample, the large image, the references.

Inputs are decoded once by the parent process and stored as ``.npy`` files in the run's work
folder, so every method (each in its own process) reads exactly the same pixels without
paying for JPEG decoding in its timings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._cache import default_cache_dir
from ..errors import InvalidParameterError

__all__ = [
    "IMAGE_SUFFIXES",
    "default_cache_dir",
    "ensure_library",
    "list_images",
    "pick",
    "load_rgb",
    "large_image",
    "save_array",
    "megapixels",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


def list_images(folder) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted; hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidParameterError(f"library {str(folder)!r} is not a folder of images")
    found = sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )
    if not found:
        raise InvalidParameterError(
            f"library {str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
            "leave out --library to use the sample library"
        )
    return found


def ensure_library(library: str | None, *, count: int, max_pixels: int | None, seed: int = 0,
                   progress=None) -> tuple[list[Path], str]:
    """The library's image paths and a description of it.

    With ``library=None`` the sample library (:func:`pixelmill.tools.write_sample_library`)
    is generated once into the cache folder and reused by later runs.
    """
    if library:
        paths = list_images(library)
        return paths, f"{len(paths)} images from {library}"
    from ..tools import write_sample_library

    cap = f"-max{max_pixels}" if max_pixels else ""
    folder = default_cache_dir() / f"sample-library-{count}{cap}-seed{seed}"
    if progress:
        progress(f"sample library: {folder} ({count} images; generated once, then reused)")
    paths = write_sample_library(folder, count=count, seed=seed, max_pixels=max_pixels)
    what = f"sample library ({count} photographs, seed {seed}"
    what += f", at most {max_pixels / 1e6:g} MP each)" if max_pixels else ", 0.1-24 MP like a real photo collection's)"
    return paths, f"{what} in {folder}"


def pick(paths: list[Path], n: int, *, seed: int = 0) -> list[Path]:
    """``n`` images drawn once, without replacement, in a seeded order.

    Sample sizes are prefixes of this list, so the images of a smaller size are also part of
    every larger one, and every method sees the same images.
    """
    if n > len(paths):
        raise InvalidParameterError(
            f"a sample of {n} images was asked for but the library has {len(paths)}; "
            "give smaller --sizes or a larger --library"
        )
    order = np.random.default_rng([seed, 7]).permutation(len(paths))[:n]
    return [paths[i] for i in order]


def load_rgb(path) -> np.ndarray:
    """An image file as an H x W x 3 uint8 array (any mode is converted to RGB)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def megapixels(array: np.ndarray) -> float:
    return array.shape[0] * array.shape[1] / 1e6


def large_image(paths: list[Path], target_mp: float) -> tuple[np.ndarray, str]:
    """An RGB image of about ``target_mp`` megapixels made from the library's largest image.

    The largest image is used as is when it is within 5 % of the target, else resized with
    Pillow's LANCZOS filter (keeping its aspect ratio). Returns the array and what was done.
    """
    from PIL import Image

    def pixels(p):
        with Image.open(p) as im:
            return im.size[0] * im.size[1]

    best = max(paths, key=pixels)
    with Image.open(best) as im:
        im = im.convert("RGB")
        w, h = im.size
        if abs(w * h / (target_mp * 1e6) - 1) <= 0.05:
            return np.asarray(im), f"{best.name} ({w}x{h}, {w * h / 1e6:.1f} MP)"
        scale = (target_mp * 1e6 / (w * h)) ** 0.5
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        arr = np.asarray(im.resize((nw, nh), Image.Resampling.LANCZOS))
    verb = "upscaled" if scale > 1 else "downscaled"
    return arr, f"{best.name} {verb} from {w}x{h} to {nw}x{nh} ({nw * nh / 1e6:.1f} MP, LANCZOS)"


def save_array(folder: Path, name: str, array: np.ndarray) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.npy"
    np.save(path, np.ascontiguousarray(array))
    return str(path)


def load_array(path: str, *, mmap: bool = False) -> np.ndarray:
    """A ``.npy`` input. ``mmap`` for references that are only compared (no copy in RAM)."""
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def max_mean_abs(a: np.ndarray, b: np.ndarray, *, margin: int = 0) -> tuple[float, float]:
    """Largest and mean absolute difference (float64), optionally ignoring a border ``margin``."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if margin:
        a = a[margin:-margin, margin:-margin]
        b = b[margin:-margin, margin:-margin]
    if a.size == 0:
        return 0.0, 0.0
    # In row blocks: a float64 copy of a 24 MP RGB image would be 600 MB.
    worst, total = 0.0, 0.0
    step = max(1, (1 << 22) // max(1, a[0].size))
    for r in range(0, a.shape[0], step):
        d = np.abs(a[r:r + step].astype(np.float64) - b[r:r + step].astype(np.float64))
        worst = max(worst, float(d.max()))
        total += float(d.sum())
    return worst, total / a.size
