"""The :class:`Image` value: pixels of one file plus what is needed to write it back."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InvalidImageError



@dataclass(eq=False)
class Image:
    """Pixels of one image file plus what is needed to write it back faithfully.

    Parameters
    ----------
    data : ndarray
        H x W or H x W x C, upright (EXIF orientation applied). When ``has_alpha`` the alpha
        channel is the last channel. Arrays decoded by Pillow may be read-only: copy before
        writing in place.
    has_alpha : bool
        Whether the last channel of ``data`` is alpha.
    mode : str
        Source mode as Pillow names it (``"1"``, ``"L"``, ``"LA"``, ``"P"``, ``"RGB"``,
        ``"RGBA"``, ``"CMYK"``, ``"I;16"``, ``"I"``, ``"F"``) or, for TIFFs read with tifffile,
        the layout plus sample type (``"RGB;16"``, ``"RGBA;16"``, ``"L;32F"``, ``"RGB;32F"``, ...).
    format : str
        ``"JPEG"``, ``"PNG"``, ``"TIFF"``, ``"BMP"`` or ``"WEBP"``.
    info : dict
        Metadata :func:`write_image` uses: ``icc_profile`` (bytes or None), ``exif`` (bytes or
        None, orientation reset to 1), ``orientation`` (the file's original orientation),
        ``dpi``, ``xmp``, and per format ``subsampling``/``progressive`` (JPEG),
        ``compression`` (TIFF), ``lossless`` (WebP), ``transparency`` (PNG colour key).
    path : Path, optional
        The file it was read from.

    Examples
    --------
    >>> import numpy as np
    >>> rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    >>> img = Image(rgba, has_alpha=True, mode="RGBA", format="PNG", info={})
    >>> img.color.shape, img.alpha.shape
    ((2, 3, 3), (2, 3))
    >>> img.with_color(np.full((2, 3, 3), 7, np.uint8)).data[0, 0]
    array([7, 7, 7, 0], dtype=uint8)
    """

    data: np.ndarray
    has_alpha: bool
    mode: str
    format: str
    info: dict = field(default_factory=dict)
    path: Path | None = None
    #: The frames or pages after the first (animated GIF/PNG/WebP, multi-page TIFF), each an
    #: Image with its own ``info`` (``duration`` in ms, ``disposal``, ``blend``); the first
    #: frame's ``info`` holds ``loop``. Empty for a single image.
    frames: list = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        """Frames (pages) in all: 1 plus ``len(frames)``."""
        return 1 + len(self.frames)

    def with_frames(self, frames) -> Image:
        """The same image with ``frames`` as the frames after the first."""
        return dataclasses.replace(self, frames=list(frames))

    @property
    def color(self) -> np.ndarray:
        """View of the colour channels (2-D for grey and grey + alpha)."""
        if not self.has_alpha:
            return self.data
        if self.data.shape[-1] == 2:
            return self.data[..., 0]
        return self.data[..., :-1]

    @property
    def alpha(self) -> np.ndarray | None:
        """H x W view of the alpha channel, or None."""
        return self.data[..., -1] if self.has_alpha else None

    def with_color(self, color) -> Image:
        """The same image (metadata, alpha) with new colour pixels.

        Parameters
        ----------
        color : array_like
            H x W or H x W x C colour pixels, same height and width. When its dtype differs
            from the alpha channel's, alpha is rescaled to the new dtype's range (uint8 255
            becomes uint16 65535 or float 1.0), so opacity is unchanged.

        Returns
        -------
        Image
            Of one frame: the other frames of a multi-frame image are given with
            :meth:`with_frames`.
        """
        color = np.asarray(color)
        if color.ndim not in (2, 3) or color.shape[:2] != self.data.shape[:2]:
            raise InvalidImageError(
                f"new colour pixels must be {self.data.shape[0]} x {self.data.shape[1]} "
                f"(H x W or H x W x C) like the image, got shape {color.shape!r}"
            )
        if self.has_alpha:
            alpha = self.alpha
            if alpha.dtype != color.dtype:
                alpha = _rescale(alpha, color.dtype)
            planes = color[..., None] if color.ndim == 2 else color
            data = np.concatenate([planes, alpha[..., None]], axis=-1)
        else:
            data = color
        # The other frames are not this frame's: give them with with_frames.
        return dataclasses.replace(self, data=data, info=dict(self.info), frames=[])

    def __array__(self, dtype=None, copy=None):
        data = self.data
        if dtype is not None and np.dtype(dtype) != data.dtype:
            if copy is False:
                raise ValueError("converting the image dtype needs a copy")
            return data.astype(dtype)
        return data.copy() if copy else data

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    @property
    def channels(self) -> int:
        """Channels in ``data``, alpha included."""
        return 1 if self.data.ndim == 2 else int(self.data.shape[2])

    @property
    def bit_depth(self) -> int:
        """Bits per sample: 1 for bilevel, 8, 16, 32 or 64."""
        return 1 if self.data.dtype == np.bool_ else self.data.dtype.itemsize * 8

    @property
    def megapixels(self) -> float:
        return self.height * self.width / 1e6

    def __repr__(self) -> str:
        return (
            f"Image({self.width}x{self.height} {self.mode} {self.format}, dtype={self.data.dtype}, "
            f"channels={self.channels}, has_alpha={self.has_alpha}, "
            + (f"frames={self.n_frames}, " if self.frames else "")
            + f"path={self.path!r})"
        )


def _rescale(values: np.ndarray, dtype) -> np.ndarray:
    """Map ``values`` from its dtype's range onto ``dtype``'s range (for alpha)."""
    from ..ops._convert import dtype_range, to_dtype

    lo, hi = dtype_range(values.dtype)
    nlo, nhi = dtype_range(dtype)
    x = (values.astype(np.float64) - lo) * ((nhi - nlo) / (hi - lo)) + nlo
    return to_dtype(x, dtype, policy="clip")


def unpremultiply(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Straight colour (float64, in the dtype's units) from premultiplied ``color``: 0 where
    alpha is 0."""
    from ..ops._convert import dtype_range

    top = dtype_range(alpha.dtype)[1]
    a = alpha.astype(np.float64)
    if color.ndim == 3:
        a = a[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        straight = np.where(a > 0, color.astype(np.float64) * top / a, 0.0)
    return np.clip(straight, *dtype_range(color.dtype))


def premultiply(straight: np.ndarray, alpha: np.ndarray, dtype) -> np.ndarray:
    """``straight`` colour times alpha, rounded to ``dtype``."""
    from ..ops._convert import dtype_range, to_dtype

    top = dtype_range(alpha.dtype)[1]
    a = alpha.astype(np.float64)
    if straight.ndim == 3:
        a = a[..., None]
    return to_dtype(np.asarray(straight, np.float64) * a / top, dtype, policy="clip")


# -- samples deeper than 8 bits, carried on uint16's whole range -------------------------------


def to_u16(data: np.ndarray, depth: int) -> np.ndarray:
    """Samples of ``depth`` bits onto uint16's range, exactly invertible by :func:`from_u16`."""
    if depth == 16:
        return data.astype(np.uint16)
    return np.rint(data.astype(np.float64) * (65535 / ((1 << depth) - 1))).astype(np.uint16)


def from_u16(data: np.ndarray, depth: int) -> np.ndarray:
    """uint16 samples back to ``depth`` bits (rounded), as :func:`to_u16` scaled them."""
    if depth == 16:
        return np.ascontiguousarray(data, dtype=np.uint16)
    return np.ascontiguousarray(np.rint(data.astype(np.float64) * (((1 << depth) - 1) / 65535)).astype(np.uint16))
