"""The public array API: invert, convolve, correlate, sobel, gaussian_filter."""

from __future__ import annotations

import numpy as np

from . import _validation as v
from . import kernels as _kernels
from ._validation import AUTO
from .errors import InvalidParameterError
from .engines import is_array_like, make_engine, stream_apply
from .ops import Filter, Invert, Operation, SobelMagnitude, fuse_policy, to_dtype


def apply(
    op: Operation, image, *, border="nearest", cval=0.0, engine="numpy", workers=None, out=None,
    channel_axis=AUTO, **engine_options,
):
    """Apply an :class:`~pixelmill.ops.Operation` with the named engine (validated here).

    An image that is not in memory (see :func:`_streamed`) is streamed band by band."""
    memory_limit = v.check_memory_limit(engine_options.pop("memory_limit", None))
    journal = engine_options.pop("journal", None)  # resumable streams (see engines.stream_apply)
    if _streamed(image, channel_axis):
        border, cval = v.check_border(border), v.check_cval(cval)
        sink = v.check_sink(out, image.shape, op.out_dtype(np.dtype(image.dtype)))
        with make_engine(engine, workers, **engine_options) as eng:
            return stream_apply(op, image, sink, engine=eng, border=border, cval=cval, memory_limit=memory_limit,
                                journal=journal)
    shape = np.shape(image)
    planes, restore = v.check_planes(image, channel_axis)
    border = v.check_border(border)
    cval = v.check_cval(cval)
    out_dtype = op.out_dtype(planes.dtype)
    out = v.check_out(out, shape, out_dtype)
    if planes.size == 0:
        result = np.empty(shape, dtype=out_dtype)
        return result if out is None else out
    # A moved channel axis is computed channels-last and copied back; a 1-D row is a view.
    moved = restore is not None and planes.ndim == len(shape)
    target = None
    if out is not None and not moved:
        # ``out`` itself when it has the planes' shape: ``out is image`` (in place) must reach
        # the engine as such, for its in-place paths.
        target = out if out.shape == planes.shape else out.reshape(planes.shape)
    with make_engine(engine, workers, **engine_options) as eng:
        result = eng.run(op, planes, border=border, cval=cval, out=target)
    if out is None:
        return result if restore is None else restore(result)
    if moved:
        out[...] = restore(result)
    return out


def _streamed(image, channel_axis) -> bool:
    """True for an image that is not in memory and is computed band by band from it (the one
    place the array API decides so): an array-like with ``shape``, ``dtype`` and slicing that is
    not a NumPy array (a zarr array, tifffile's ``aszarr`` opened with zarr, an h5py dataset),
    or a NumPy memmap, laid out H x W or H x W x C (channels last)."""
    return is_array_like(image) and v.check_streamed(image, channel_axis)


def _apply_filter(op, image, policy, out, **options):
    """A filter's float result (float64 for float64 and wide integer images, else float32),
    or with ``policy`` the image dtype (see :func:`~pixelmill.ops.fuse_policy`)."""
    if policy is not None:
        v.check_policy(policy)
    arr = image if _streamed(image, options.get("channel_axis", AUTO)) else np.asarray(image)
    dtype = np.dtype(arr.dtype).newbyteorder("=")  # validated by apply(); the result is native
    op, after = fuse_policy(op, policy, dtype)
    if after is None:
        return apply(op, arr, out=out, **options)
    if arr is image and not isinstance(image, np.ndarray):
        raise InvalidParameterError(
            f"policy={policy!r} needs the whole result's range, which a streamed image is not held for; "
            f"use 'clip', 'abs' or 'shift', or load the image with np.asarray"
        )
    v.check_out(out, arr.shape, dtype)
    result = to_dtype(apply(op, arr, **options), dtype, policy=after)
    if out is None:
        return result
    out[...] = result
    return out


def invert(
    image, *, engine: str = "numpy", workers: int | None = None, out: np.ndarray | None = None,
    channel_axis=AUTO, **engine_options,
) -> np.ndarray:
    """The negative of ``image``, in the image's own dtype.

    Unsigned integers become ``max - x``, signed integers ``-1 - x``, floats ``1 - x``
    (images in [0, 1]) and booleans ``~x``. All channels are inverted: split off an alpha
    channel first if it must be kept (:func:`pixelmill.read_image` does that for files).

    Parameters
    ----------
    image : array_like
        H x W, H x W x C (see ``channel_axis``) or a 1-D row; bool, (u)int8/16/32/64,
        float16/32/64, either byte order. An empty image gives an empty result.
    engine : str
        A name from :func:`pixelmill.available_engines`.
    workers : int, optional
        Parallel workers for parallel engines; defaults to the usable cores.
    out : ndarray, optional
        A preallocated C-contiguous result array of the image's shape and dtype (it may be
        ``image`` itself, to invert in place).
    channel_axis : int or None, optional
        The channel axis of a 3-D image (as scikit-image's): by default the last one when it
        has 1 to 4 entries; any axis may be named. None is for 2-D images only (pixelmill
        works on 2-D planes; volumes are not supported).

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
    return apply(Invert(), image, engine=engine, workers=workers, out=out, channel_axis=channel_axis, **engine_options)


def _kernel_filter(kernel, flip: bool, origin, image, policy, out, method="auto", **options):
    """Correlation (``flip=False``) or convolution with a checked ``kernel``, ``origin`` and ``method``."""
    k = v.check_kernel(kernel)
    op = Filter(k, flip=flip, origin=v.check_origin(origin, k.shape), method=v.check_method(method))
    return _apply_filter(op, image, policy, out, **options)


def convolve(
    image, kernel, *, origin=0, border: str = "nearest", cval: float = 0.0, engine: str = "numpy",
    workers: int | None = None, policy: str | None = None, out: np.ndarray | None = None,
    channel_axis=AUTO, method: str = "auto", **engine_options,
) -> np.ndarray:
    """2-D convolution of each channel with ``kernel`` (the kernel is flipped).

    Same result as ``scipy.ndimage.convolve`` on each channel (its anchor for even-sized
    kernels and its ``origin``), to within the rounding of the work dtype: float64 for
    float64 images and integers wider than 16 bits, float32 otherwise.

    Parameters
    ----------
    image : array_like
        H x W, H x W x C (see ``channel_axis``) or a 1-D row; bool, (u)int8/16/32/64,
        float16/32/64, either byte order. An empty image gives an empty result.
    kernel : Kernel, str, path or array_like
        A :class:`~pixelmill.kernels.Kernel`, a name from :func:`pixelmill.kernels.names`,
        a ``.txt``/``.csv``/``.npy`` kernel file, or 2-D real weights (complex ones are
        refused). Zero weights are never read: a NaN or inf under them does not spread.
    origin : int or (int, int)
        SciPy's ``origin``, per axis ``(oy, ox)`` or one int for both: shifts the kernel's
        anchor; each within ``-(n // 2) .. (n - 1) // 2`` for a kernel side ``n``.
    border : {"nearest", "reflect", "mirror", "constant", "wrap"}
        SciPy's border modes (also its names ``grid-mirror``, ``grid-wrap``,
        ``grid-constant``). ``wrap`` wraps around the whole image.
    cval : float
        Value outside the image for ``border="constant"``.
    engine, workers
        As for :func:`invert`.
    policy : str, optional
        Convert the result back to the image dtype with this policy (see
        :func:`pixelmill.to_dtype`). ``clip``, ``abs`` and ``shift`` are applied tile by tile,
        fused with the filter, so no full-size float image is made. None (the default) or
        ``float32`` returns the float result.
    out : ndarray, optional
        A preallocated C-contiguous result array of the result's shape and dtype; for an
        image that is not in memory, an array-like of that shape and dtype (a zarr array, a
        NumPy memmap) written band by band.
    channel_axis : int or None, optional
        As for :func:`invert`: channels are filtered independently.
    method : {"auto", "direct", "fft", "lowrank"}
        How the sums are computed: ``direct`` runs every tap (a row and a column pass for a
        separable kernel; exact level sums for kernels with few distinct weights), ``fft``
        overlap-save FFTs (large general kernels), ``lowrank`` a kernel of rank r as r
        separable passes; ``auto`` (the default) the cheapest by a cost model (the ``auto``
        engine's is calibrated on this machine). ``fft`` and ``lowrank`` results differ from
        the direct sum by rounding only, within the bounds stated in
        :mod:`pixelmill.ops._fft` and :mod:`pixelmill.ops._lowrank` (for 8-bit images and
        normalized kernels, below 1e-3); the loops engine always runs ``direct``, and so does
        a block holding NaN or infinity (the FFTs would spread it over their whole block).

    Notes
    -----
    An image that is not in memory -- an array-like with ``shape``, ``dtype`` and slicing that
    is not a NumPy array (a zarr array, tifffile's ``aszarr`` store opened with zarr), or a
    NumPy memmap -- is streamed: each band of output rows reads its rows plus the halo from
    it, computed by the engine's kernels, bit for bit the in-memory result. The result goes
    into ``out``; without ``out`` it is returned as a NumPy array if it fits half of
    ``memory_limit`` (bytes or a size such as ``"1GB"``, an engine option; a quarter of the
    machine's memory by default), else :class:`~pixelmill.errors.ImageTooLargeError` asks for ``out``.

    Returns
    -------
    ndarray
        Same shape as ``image``: the float result (float64 for float64, (u)int32 and (u)int64
        images, float32 otherwise), or the image dtype when a ``policy`` converts it.

    Examples
    --------
    >>> import numpy as np
    >>> convolve(np.array([[0, 10, 40]], dtype=np.uint8), "edge-x")
    array([[ 5., 20., 15.]], dtype=float32)
    >>> convolve(np.array([0.0, 1.0, 0.0, 0.0]), [[1.0, 2.0]], origin=(0, -1))  # a 1-D row
    array([0., 1., 2., 0.])
    """
    return _kernel_filter(
        kernel, True, origin, image, policy, out, method, border=border, cval=cval, engine=engine, workers=workers,
        channel_axis=channel_axis, **engine_options,
    )


def correlate(
    image, kernel, *, origin=0, border: str = "nearest", cval: float = 0.0, engine: str = "numpy",
    workers: int | None = None, policy: str | None = None, out: np.ndarray | None = None,
    channel_axis=AUTO, method: str = "auto", **engine_options,
) -> np.ndarray:
    """2-D correlation (the kernel is not flipped; what ``cv2.filter2D`` computes).

    Same parameters and result conventions as :func:`convolve`; matches
    ``scipy.ndimage.correlate``, ``origin`` included.

    Examples
    --------
    >>> import numpy as np
    >>> correlate(np.array([[0, 10, 40]], dtype=np.uint8), "edge-x")
    array([[ -5., -20., -15.]], dtype=float32)
    >>> correlate(np.array([[0.0, 1.0, 0.0, 0.0]]), [[1.0, 2.0]], origin=(0, -1))
    array([[2., 1., 0., 0.]])
    """
    return _kernel_filter(
        kernel, False, origin, image, policy, out, method, border=border, cval=cval, engine=engine, workers=workers,
        channel_axis=channel_axis, **engine_options,
    )


def gaussian_filter(
    image, sigma, *, truncate: float = 4.0, radius=None, border: str = "nearest", cval: float = 0.0,
    engine: str = "numpy", workers: int | None = None, policy: str | None = None,
    out: np.ndarray | None = None, channel_axis=AUTO, **engine_options,
) -> np.ndarray:
    """Gaussian smoothing of each channel, as ``scipy.ndimage.gaussian_filter`` (same name).

    The kernel is SciPy's: along each axis ``2 * radius + 1`` taps with ``radius =
    int(truncate * sigma + 0.5)`` unless ``radius`` is given, normalized to sum 1; a sigma of
    0 leaves that axis alone. Equal to SciPy's result to within the rounding of the work
    dtype (see :func:`convolve`). Note pixelmill's default ``border`` is ``nearest``
    (SciPy's ``mode`` defaults to ``reflect``).

    Parameters
    ----------
    image : array_like
        As for :func:`convolve`.
    sigma : float or (float, float)
        Standard deviation in pixels, >= 0; a pair is ``(sigma_y, sigma_x)``.
    truncate : float
        The kernel's radius in standard deviations (SciPy's default 4.0).
    radius : int or (int, int), optional
        The kernel's radius itself, overriding ``truncate``.
    border, cval, engine, workers, policy, out, channel_axis
        As for :func:`convolve` (``border`` takes SciPy's mode names).

    Returns
    -------
    ndarray
        As for :func:`convolve`.

    Raises
    ------
    InvalidKernelError
        For a negative or non-numeric ``sigma``, a bad ``truncate`` or ``radius``, or a kernel
        wider than 255.

    Examples
    --------
    >>> import numpy as np
    >>> gaussian_filter(np.array([[0.0, 0.0, 1.0, 0.0, 0.0]]), (0, 1.0), radius=1).round(4)
    array([[0.    , 0.2741, 0.4519, 0.2741, 0.    ]])
    >>> gaussian_filter(np.eye(3, dtype=np.uint8) * 255, 0)
    array([[255.,   0.,   0.],
           [  0., 255.,   0.],
           [  0.,   0., 255.]], dtype=float32)
    """
    kernel = _kernels.gaussian(None, sigma, truncate=truncate, radius=radius)
    return _apply_filter(
        Filter(kernel, flip=False), image, policy, out, border=border, cval=cval, engine=engine,
        workers=workers, channel_axis=channel_axis, **engine_options,
    )


def sobel(
    image, *, border: str = "nearest", cval: float = 0.0, engine: str = "numpy",
    workers: int | None = None, policy: str | None = None, out: np.ndarray | None = None,
    channel_axis=AUTO, **engine_options,
) -> np.ndarray:
    """Sobel gradient magnitude ``hypot(convolve(sobel-x), convolve(sobel-y))`` as the float
    result, or converted to the image dtype with ``policy`` (parameters as for :func:`convolve`).

    Examples
    --------
    >>> import numpy as np
    >>> sobel(np.array([[0, 0, 4, 4]], dtype=np.uint8))
    array([[ 0., 16., 16.,  0.]], dtype=float32)
    """
    return _apply_filter(
        SobelMagnitude(), image, policy, out, border=border, cval=cval, engine=engine, workers=workers,
        channel_axis=channel_axis, **engine_options,
    )
