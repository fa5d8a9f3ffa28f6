"""pixelmill: exact pixel operations and 2-D kernel filters, on every Python engine.

>>> import numpy as np, pixelmill
>>> img = np.arange(12, dtype=np.uint8).reshape(3, 4)
>>> pixelmill.invert(img)[0]
array([255, 254, 253, 252], dtype=uint8)
>>> pixelmill.to_dtype(pixelmill.convolve(img, "gaussian"), img.dtype).shape
(3, 4)
"""

from ._cache import ensure_numba_cache

ensure_numba_cache()  # before numba loads: a read-only install still compiles its kernels

from . import kernels  # noqa: E402
from ._api import convolve, correlate, gaussian_filter, invert, sobel
from .engines import available_engines
from .errors import (
    ImageTooLargeError,
    InvalidImageError,
    InvalidKernelError,
    InvalidParameterError,
    MissingDependencyError,
    PixelmillError,
    UnsafeOutputError,
    UnsupportedImageError,
)
from .kernels import Kernel
from .ops import POLICIES, to_dtype
from .tiling import BORDER_MODES

from ._version import __version__

__all__ = [
    "__version__",
    "kernels",
    "Kernel",
    "invert",
    "convolve",
    "correlate",
    "sobel",
    "gaussian_filter",
    "to_dtype",
    "POLICIES",
    "BORDER_MODES",
    "available_engines",
    "read_image",
    "write_image",
    "PixelmillError",
    "InvalidParameterError",
    "InvalidKernelError",
    "InvalidImageError",
    "UnsupportedImageError",
    "ImageTooLargeError",
    "MissingDependencyError",
    "UnsafeOutputError",
]


def __getattr__(name):
    # io pulls in Pillow and tifffile: import it only when used.
    if name in ("read_image", "write_image", "Image"):
        from . import io

        return getattr(io, name)
    raise AttributeError(f"module 'pixelmill' has no attribute {name!r}")
