"""The public array API: invert, convolve, correlate, sobel."""

from __future__ import annotations

import numpy as np

from . import _validation as v
from .engines import make_engine
from .ops import Filter, Invert, Operation, SobelMagnitude, fuse_policy, to_dtype


def apply(
    op: Operation, image, *, border="nearest", cval=0.0, engine="numpy", workers=None, out=None,
    **engine_options,
):
    """Apply an :class:`~pixelmill.ops.Operation` with the named engine (validated here)."""
    image = v.check_image(image)
    border = v.check_border(border)
    cval = v.check_cval(cval)
    out = v.check_out(out, image.shape, op.out_dtype(image.dtype))
    with make_engine(engine, workers, **engine_options) as eng:
        return eng.run(op, image, border=border, cval=cval, out=out)


def _apply_filter(op, image, policy, out, **options):
    """A filter's float result, or with ``policy`` the image dtype (see :func:`~pixelmill.ops.fuse_policy`)."""
    if policy is not None:
        v.check_policy(policy)
    image = v.check_image(image)
    op, after = fuse_policy(op, policy, image.dtype)
    if after is None:
        return apply(op, image, out=out, **options)
    v.check_out(out, image.shape, image.dtype)
    result = to_dtype(apply(op, image, **options), image.dtype, policy=after)
    if out is None:
        return result
    out[...] = result
    return out


def invert(
    image, *, engine: str = "numpy", workers: int | None = None, out: np.ndarray | None = None,
    **engine_options,
) -> np.ndarray:
    """The negative of ``image``, in the image's own dtype.

    Unsigned integers become ``max - x``, signed integers ``-1 - x``, floats ``1 - x``
    (images in [0, 1]) and booleans ``~x``. All channels are inverted: split off an alpha
    channel first if it must be kept (:func:`pixelmill.read_image` does that for files).

    Parameters
    ----------
    image : array_like
        H x W or H x W x C.
    engine : str
        A name from :func:`pixelmill.available_engines`.
    workers : int, optional
        Parallel workers for parallel engines; defaults to the usable cores.
    out : ndarray, optional
        A preallocated C-contiguous result array of the image's shape and dtype (it may be
        ``image`` itself, to invert in place).

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``.

    Raises
    ------
    InvalidImageError, InvalidParameterError

    Examples
    --------
    >>> import numpy as np
    >>> invert(np.array([[0, 100, 255]], dtype=np.uint8))
    array([[255, 155,   0]], dtype=uint8)
    >>> invert(np.array([[-128, 0, 127]], dtype=np.int8))
    array([[ 127,   -1, -128]], dtype=int8)
    """
    return apply(Invert(), image, engine=engine, workers=workers, out=out, **engine_options)


def convolve(
    image, kernel, *, border: str = "nearest", cval: float = 0.0, engine: str = "numpy",
    workers: int | None = None, policy: str | None = None, out: np.ndarray | None = None,
    **engine_options,
) -> np.ndarray:
    """2-D convolution of each channel with ``kernel`` (the kernel is flipped), as float32.

    Same result as ``scipy.ndimage.convolve`` on each channel, including its anchor for
    even-sized kernels, to within float32 rounding.

    Parameters
    ----------
    image : array_like
        H x W or H x W x C, any supported dtype.
    kernel : Kernel, str, path or array_like
        A :class:`~pixelmill.kernels.Kernel`, a name from :func:`pixelmill.kernels.names`,
        a ``.txt``/``.csv``/``.npy`` kernel file, or 2-D weights.
    border : {"nearest", "reflect", "mirror", "constant", "wrap"}
        SciPy's border modes. ``wrap`` wraps around the whole image.
    cval : float
        Value outside the image for ``border="constant"``.
    engine, workers
        As for :func:`invert`.
    policy : str, optional
        Convert the result back to the image dtype with this policy (see
        :func:`pixelmill.to_dtype`). ``clip``, ``abs`` and ``shift`` are applied tile by tile,
        fused with the filter, so no full-size float image is made. None (the default) or
        ``float32`` returns the float32 result.
    out : ndarray, optional
        A preallocated C-contiguous result array of the result's shape and dtype.

    Returns
    -------
    ndarray
        Same shape as ``image``: float32, or the image dtype when a ``policy`` converts it.

    Examples
    --------
    >>> import numpy as np
    >>> convolve(np.array([[0, 10, 40]], dtype=np.uint8), "edge-x")
    array([[ 5., 20., 15.]], dtype=float32)
    """
    op = Filter(v.check_kernel(kernel), flip=True)
    return _apply_filter(
        op, image, policy, out, border=border, cval=cval, engine=engine, workers=workers, **engine_options
    )


def correlate(
    image, kernel, *, border: str = "nearest", cval: float = 0.0, engine: str = "numpy",
    workers: int | None = None, policy: str | None = None, out: np.ndarray | None = None,
    **engine_options,
) -> np.ndarray:
    """2-D correlation (the kernel is not flipped; what ``cv2.filter2D`` computes), as float32.

    Same parameters and result conventions as :func:`convolve`; matches
    ``scipy.ndimage.correlate``.

    Examples
    --------
    >>> import numpy as np
    >>> correlate(np.array([[0, 10, 40]], dtype=np.uint8), "edge-x")
    array([[ -5., -20., -15.]], dtype=float32)
    """
    op = Filter(v.check_kernel(kernel), flip=False)
    return _apply_filter(
        op, image, policy, out, border=border, cval=cval, engine=engine, workers=workers, **engine_options
    )


def sobel(
    image, *, border: str = "nearest", cval: float = 0.0, engine: str = "numpy",
    workers: int | None = None, policy: str | None = None, out: np.ndarray | None = None,
    **engine_options,
) -> np.ndarray:
    """Sobel gradient magnitude ``hypot(convolve(sobel-x), convolve(sobel-y))`` as float32,
    or converted to the image dtype with ``policy`` (parameters as for :func:`convolve`).

    Examples
    --------
    >>> import numpy as np
    >>> sobel(np.array([[0, 0, 4, 4]], dtype=np.uint8))
    array([[ 0., 16., 16.,  0.]], dtype=float32)
    """
    return _apply_filter(
        SobelMagnitude(), image, policy, out, border=border, cval=cval, engine=engine, workers=workers,
        **engine_options,
    )
