"""Reading and writing image files: mode, bit depth, alpha, orientation, ICC/EXIF, atomic writes.

Pillow decodes and encodes everything it can hold exactly; ``tifffile`` takes the TIFFs
Pillow would truncate or cannot open (16-bit or float colour, int16, uint32, float64, ...).

What :func:`read_image` returns, per source mode (Pillow's names):

========================  ==========================================  ===========
source                    ``Image.data``                              ``has_alpha``
========================  ==========================================  ===========
``1`` (bilevel)           bool, H x W                                 no
``L``                     uint8, H x W                                no
``LA``                    uint8, H x W x 2                            yes
``P`` (palette)           uint8, H x W x 3 (x 4 with transparency)    with tRNS
``RGB`` / ``RGBA``        uint8, H x W x 3 / x 4                      RGBA: yes
``CMYK``                  uint8, H x W x 4                            no
``I;16`` (16-bit grey)    uint16, H x W                               no
``I`` (32-bit int TIFF)   int32, H x W                                no
``F`` (float TIFF)        float32, H x W                              no
tifffile TIFFs            e.g. ``RGB;16`` uint16 H x W x 3,           with an
                          ``RGB;32F`` float32, ``L;16S`` int16         extra sample
========================  ==========================================  ===========

16-bit colour PNGs are refused (Pillow could only give 8 bits of them; use 16-bit TIFF).
Pillow's writers bound what can be written: BMP gets no alpha, PNG no 16-bit colour, JPEG no
alpha (dropped on write); TIFF holds every layout above.

The EXIF orientation is applied on read (as :func:`PIL.ImageOps.exif_transpose` does), so
``data`` is upright; the EXIF kept in ``Image.info`` says orientation 1. Only the first
frame or page of a multi-frame file is read.

Writes are atomic: the encoder writes a hidden temporary file next to the target
(``.name.ext.<random>.tmp``), which is flushed, fsync'ed and then renamed over the
target, so a reader never sees a half-written image under the final name. A batch writes
with ``durable=False`` instead: the same temporary file and rename, the disk write started
but not waited for, and every output fsync'ed once, on a background thread while the batch
goes on (:func:`durable_in_background`; :func:`make_durable` does the same in the caller).
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import struct
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image as PILImage
from PIL import ImageFile

from .errors import (
    ImageTooLargeError,
    InvalidImageError,
    InvalidParameterError,
    UnsupportedImageError,
)

__all__ = [
    "Image",
    "read_image",
    "write_image",
    "describe",
    "is_image_path",
    "SUPPORTED_FORMATS",
    "IMAGE_EXTENSIONS",
    "EXTENSION_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "atomic_write",
]

#: Formats pixelmill reads and writes (Pillow's names).
SUPPORTED_FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "WEBP")

#: File extension (lower case, with the dot) -> format.
EXTENSION_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".webp": "WEBP",
}

#: Extensions recognised as images when walking a folder (compared case-insensitively).
IMAGE_EXTENSIONS = frozenset(EXTENSION_FORMATS)

#: Default decompression-bomb guard: images with more pixels are refused before decoding.
DEFAULT_MAX_PIXELS = 250_000_000

_FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF"}

_ORIENTATION = 0x0112
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
# TIFF tags that describe a file's layout, not the picture: never carried in EXIF (an
# encoder writes its own, and stale ones would describe the wrong pixels).
_LAYOUT_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284, 317, 320,
     322, 323, 324, 325, 338, 339, 340, 341, 347, 513, 514, 700, 34675}
)
# ... plus those a TIFF encoder sets from its own parameters (resolution, YCbCr layout).
_TIFF_OWN_TAGS = _LAYOUT_TAGS | {282, 283, 296, 529, 530, 531, 532}
_XMP_ORIENTATION = (rb'tiff:Orientation="([0-9])"', rb"<tiff:Orientation>([0-9])</tiff:Orientation>")


# -- the Image value ---------------------------------------------------------------------------


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
        return dataclasses.replace(self, data=data, info=dict(self.info))

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
            f"channels={self.channels}, has_alpha={self.has_alpha}, path={self.path!r})"
        )


def _rescale(values: np.ndarray, dtype) -> np.ndarray:
    """Map ``values`` from its dtype's range onto ``dtype``'s range (for alpha)."""
    from .ops._convert import dtype_range, to_dtype

    lo, hi = dtype_range(values.dtype)
    nlo, nhi = dtype_range(dtype)
    x = (values.astype(np.float64) - lo) * ((nhi - nlo) / (hi - lo)) + nlo
    return to_dtype(x, dtype, policy="clip")


# -- small helpers ------------------------------------------------------------------------------


def is_image_path(path) -> bool:
    """Whether ``path`` has an image extension (see :data:`IMAGE_EXTENSIONS`).

    >>> is_image_path("holiday/IMG_001.JPG"), is_image_path("notes.txt")
    (True, False)
    """
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _check_format(format) -> str:
    name = str(format).upper().lstrip(".") if isinstance(format, str) else None
    name = _FORMAT_ALIASES.get(name, name)
    if name not in SUPPORTED_FORMATS:
        raise InvalidParameterError(
            f"format {format!r} is not supported; use one of {', '.join(SUPPORTED_FORMATS)}"
        )
    return name


def _check_max_pixels(max_pixels) -> int | None:
    if max_pixels is None:
        return None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise InvalidParameterError(
            f"max_pixels must be a positive integer or None (no limit), got {max_pixels!r}"
        )
    return int(max_pixels)


def _check_size(path: Path, width: int, height: int, limit: int | None) -> None:
    pixels = int(width) * int(height)
    if limit is not None and pixels > limit:
        raise ImageTooLargeError(
            f"image file {str(path)!r} has {pixels:,} pixels ({width} x {height}), more than the "
            f"limit of {limit:,}; raise max_pixels if the file is trusted"
        )


def _input_path(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise InvalidImageError(f"image file {str(p)!r} does not exist")
    if not p.is_file():
        raise InvalidImageError(f"image path {str(p)!r} is not a file")
    return p


def _sniff(head: bytes) -> str | None:
    """The format the first bytes announce (independent of the file name)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


_OTHER_IMAGE_MAGIC = {b"GIF87a": "GIF", b"GIF89a": "GIF", b"\x00\x00\x01\x00": "ICO",
                      b"8BPS": "PSD", b"\x00\x00\x00\x0cjP": "JPEG 2000", b"qoif": "QOI"}


def _sniff_file(fh, path: Path) -> str:
    head = fh.read(16)
    fh.seek(0)
    if not head:
        raise InvalidImageError(f"image file {str(path)!r} is empty (0 bytes)")
    fmt = _sniff(head)
    if fmt is not None:
        return fmt
    for magic, name in _OTHER_IMAGE_MAGIC.items():
        if head.startswith(magic):
            raise UnsupportedImageError(
                f"image file {str(path)!r} is a {name} image; pixelmill reads "
                f"{', '.join(SUPPORTED_FORMATS)}"
            )
    raise InvalidImageError(
        f"file {str(path)!r} is not a JPEG, PNG, TIFF, BMP or WebP image "
        f"(it starts with {head[:8]!r})"
    )


# Pillow's guards are process-wide switches. Our own size check has already run when we
# decode, so Pillow's bomb limit (lower than ours) is lifted meanwhile, and truncated files
# must always fail. The switches are only touched when needed, reference-counted so that
# concurrent reads in threads restore the caller's values exactly once.
_GUARD_LOCK = threading.Lock()
_guard_depth = 0
_guard_saved: tuple = ()


@contextmanager
def _pillow_strict(pixels: int):
    global _guard_depth, _guard_saved
    limit = PILImage.MAX_IMAGE_PIXELS
    needed = ImageFile.LOAD_TRUNCATED_IMAGES or (limit is not None and pixels > limit)
    if not needed:
        yield
        return
    with _GUARD_LOCK:
        if _guard_depth == 0:
            _guard_saved = (ImageFile.LOAD_TRUNCATED_IMAGES, PILImage.MAX_IMAGE_PIXELS)
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            PILImage.MAX_IMAGE_PIXELS = None
        _guard_depth += 1
    try:
        yield
    finally:
        with _GUARD_LOCK:
            _guard_depth -= 1
            if _guard_depth == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES, PILImage.MAX_IMAGE_PIXELS = _guard_saved


_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError,
                  struct.error, ZeroDivisionError)


def _pil_class(fmt: str):
    # The plugin classes are opened directly (not through PIL.Image.open) so that Pillow's
    # own decompression-bomb check, with its lower global limit, does not preempt ours.
    if fmt == "JPEG":
        from PIL.JpegImagePlugin import JpegImageFile as cls
    elif fmt == "PNG":
        from PIL.PngImagePlugin import PngImageFile as cls
    elif fmt == "TIFF":
        from PIL.TiffImagePlugin import TiffImageFile as cls
    elif fmt == "BMP":
        from PIL.BmpImagePlugin import BmpImageFile as cls
    else:
        from PIL import features

        if not features.check("webp"):
            raise UnsupportedImageError("this Pillow was built without WebP support")
        from PIL.WebPImagePlugin import WebPImageFile as cls
    return cls


def _pil_open(fh, path: Path, fmt: str):
    cls = _pil_class(fmt)
    fh.seek(0)
    try:
        return cls(fh, str(path))
    except PILImage.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image file {str(path)!r}: {_one_line(exc)}") from None
    except _DECODE_ERRORS as exc:
        raise InvalidImageError(
            f"cannot read {fmt} image file {str(path)!r}: {_one_line(exc)}"
        ) from None


# -- TIFF: which decoder ------------------------------------------------------------------------


@dataclass
class _TiffPage:
    page: object
    width: int
    height: int
    dtype: np.dtype | None
    samples: int
    bits: int
    pillow_ok: bool


def _tiff_peek(fh, path: Path) -> _TiffPage | None:
    """First-page facts from tifffile (header only), or None if tifffile cannot parse it."""
    import tifffile

    fh.seek(0)
    try:
        tf = tifffile.TiffFile(fh)
        page = tf.pages.first
        width, height = int(page.imagewidth), int(page.imagelength)
        dtype = page.dtype
        samples, bits = int(page.samplesperpixel), int(page.bitspersample)
    except Exception:  # tifffile is stricter than libtiff on odd files: let Pillow try
        return None
    dtype = None if dtype is None else np.dtype(dtype)
    # Pillow holds these exactly; anything else it would truncate to 8 bits or refuse.
    pillow_ok = (
        bits == 1
        or dtype == np.uint8
        or (samples == 1 and dtype in (np.dtype(np.uint16), np.dtype(np.float32), np.dtype(np.int32)))
    )
    return _TiffPage(page, width, height, dtype, samples, bits, pillow_ok)


# -- reading with Pillow ------------------------------------------------------------------------

_I16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
# mode -> (dtype, channels, has_alpha, Pillow mode to convert to first)
_PIL_LAYOUT = {
    "1": (np.bool_, 1, False, None),
    "L": (np.uint8, 1, False, None),
    "LA": (np.uint8, 2, True, None),
    "La": (np.uint8, 2, True, "LA"),
    "PA": (np.uint8, 4, True, "RGBA"),
    "RGB": (np.uint8, 3, False, None),
    "RGBX": (np.uint8, 3, False, "RGB"),
    "YCbCr": (np.uint8, 3, False, "RGB"),
    "RGBA": (np.uint8, 4, True, None),
    "RGBa": (np.uint8, 4, True, "RGBA"),
    "CMYK": (np.uint8, 4, False, None),
    "I": (np.int32, 1, False, None),
    "F": (np.float32, 1, False, None),
    **{m: (np.uint16, 1, False, None) for m in _I16_MODES},
}


def _refuse_deep_color_png(fh, path: Path) -> None:
    """Pillow silently reduces 16-bit grey + alpha / RGB / RGBA PNGs to 8 bits: refuse them."""
    head = fh.read(26)
    fh.seek(0)
    if len(head) == 26 and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 4, 6):
        kind = {2: "RGB", 4: "grey + alpha", 6: "RGBA"}[head[25]]
        raise UnsupportedImageError(
            f"PNG file {str(path)!r} is 16-bit {kind}, which Pillow can only decode to 8 bits; "
            f"convert it to a 16-bit TIFF (pixelmill reads 16-bit PNGs in grey only)"
        )


def _pil_layout(im, fmt: str, path: Path):
    mode = im.mode
    if mode == "P":
        alpha = "transparency" in im.info
        return np.uint8, 4 if alpha else 3, alpha, "RGBA" if alpha else "RGB"
    if mode == "I" and fmt == "PNG":  # older Pillow opens 16-bit grey PNGs as "I"
        return np.uint16, 1, False, None
    try:
        return _PIL_LAYOUT[mode]
    except KeyError:
        raise UnsupportedImageError(
            f"image file {str(path)!r} has mode {mode!r}, which pixelmill does not support; "
            f"supported: 1, L, LA, P, RGB, RGBA, CMYK, I;16, I, F"
        ) from None


def _read_pillow(fh, path: Path, fmt: str, im) -> Image:
    dtype, _, has_alpha, convert_to = _pil_layout(im, fmt, path)
    mode = im.mode
    try:
        with _pillow_strict(im.size[0] * im.size[1]):
            data = _turbo_decode(fh, im, fmt) if convert_to is None else None
            if data is None:
                im.load()
            exif = im.getexif()
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image file {str(path)!r}: {_one_line(exc)}") from None
    except _DECODE_ERRORS as exc:
        raise InvalidImageError(
            f"cannot decode {fmt} image file {str(path)!r} (truncated or corrupt): {_one_line(exc)}"
        ) from None
    info = _pil_metadata(fh, im, fmt, exif, mode)
    if convert_to is not None:
        im = im.convert(convert_to)
    if data is None:
        data = np.asarray(im)  # one copy out of Pillow's buffer; read-only, which is fine
    if data.dtype != dtype:
        data = data.astype(dtype)  # e.g. big-endian I;16B or PNG "I" -> native uint16
    data = _orient(data, info["orientation"])
    if info["orientation"] in (5, 6, 7, 8) and info.get("dpi"):
        info["dpi"] = info["dpi"][::-1]
    return Image(data=data, has_alpha=has_alpha, mode=mode, format=fmt, info=info, path=path)


def _turbo_decode(fh, im, fmt: str) -> np.ndarray | None:
    """An 8-bit RGB or grey JPEG decoded by libjpeg-turbo straight into a NumPy array
    (simplejpeg), or None for Pillow to decode. Same library, same settings (accurate DCT,
    fancy upsampling), same pixels as Pillow's decoder, without Pillow's 4-bytes-per-pixel
    buffer and the copy out of it: about twice as fast. Metadata still comes from Pillow,
    which parsed the header."""
    if fmt != "JPEG" or im.mode not in ("RGB", "L"):
        return None
    fh.seek(0)
    raw = fh.read()
    try:
        data = simplejpeg.decode_jpeg(raw, colorspace="RGB" if im.mode == "RGB" else "GRAY")
    except ValueError:
        # Strict mode raises on any libjpeg warning (e.g. extraneous bytes before a marker,
        # common in camera files); Pillow decides those cases as it always has.
        return None
    if data.shape[:2] != im.size[::-1]:
        return None
    return data[..., 0] if im.mode == "L" else data


def _pil_metadata(fh, im, fmt: str, exif, mode: str) -> dict:
    src = im.info
    orientation = _orientation(exif.get(_ORIENTATION))
    info = {
        "icc_profile": src.get("icc_profile") or None,
        "exif": _clean_exif(exif, src.get("exif")),
        "orientation": orientation,
    }
    if src.get("dpi"):
        info["dpi"] = tuple(float(v) for v in src["dpi"])
    xmp = src.get("xmp") or src.get("XML:com.adobe.xmp")
    if xmp:
        xmp = xmp.encode() if isinstance(xmp, str) else bytes(xmp)
        if orientation != 1:  # as exif_transpose: the pixels are upright now
            for pattern in _XMP_ORIENTATION:
                xmp = re.sub(pattern, b"", xmp)
        info["xmp"] = xmp
    if fmt == "JPEG":
        from PIL import JpegImagePlugin

        info["subsampling"] = JpegImagePlugin.get_sampling(im)
        info["progressive"] = bool(src.get("progressive") or src.get("progression"))
    elif fmt == "TIFF":
        info["compression"] = src.get("compression", "raw")
    elif fmt == "WEBP":
        info["lossless"] = _webp_is_lossless(fh)
    elif fmt == "PNG" and mode in ("L", "RGB", *_I16_MODES) and "transparency" in src:
        info["transparency"] = src["transparency"]
    return info


def _clean_exif(exif, raw: bytes | None) -> bytes | None:
    """EXIF bytes (with the ``Exif\\0\\0`` header) with orientation 1 and no layout tags."""
    if exif is None or (len(exif) == 0 and not raw):
        return None
    layout = [t for t in exif if t in _LAYOUT_TAGS]
    orientation = exif.get(_ORIENTATION)
    if raw and not layout:
        # Keep the bytes (re-serialising can break maker notes); patch orientation in place.
        raw = bytes(raw) if raw.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + bytes(raw)
        if orientation in (None, 1):
            return raw
        patched = _reset_orientation(raw)
        if patched is not None:
            return patched
    for tag in (_EXIF_IFD, _GPS_IFD):  # load nested IFDs before editing the top one
        if tag in exif:
            exif.get_ifd(tag)
    for tag in layout:
        del exif[tag]
    if orientation is not None:
        exif[_ORIENTATION] = 1
    if len(exif) == 0:
        return None
    data = exif.tobytes()
    return data if data.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + data


def _reset_orientation(raw: bytes) -> bytes | None:
    """``raw`` EXIF with IFD0's orientation SHORT overwritten by 1, or None if not found."""
    start = 6  # after b"Exif\0\0"
    order = {b"II": "<", b"MM": ">"}.get(raw[start:start + 2])
    if order is None:
        return None
    try:
        ifd = start + struct.unpack_from(order + "I", raw, start + 4)[0]
        (count,) = struct.unpack_from(order + "H", raw, ifd)
        for i in range(count):
            entry = ifd + 2 + 12 * i
            tag, kind, n = struct.unpack_from(order + "HHI", raw, entry)
            if tag == _ORIENTATION and kind == 3 and n == 1:
                out = bytearray(raw)
                struct.pack_into(order + "H", out, entry + 8, 1)
                return bytes(out)
    except struct.error:
        return None
    return None


def _webp_is_lossless(fh) -> bool:
    """Whether the WebP file's bitstream is VP8L (lossless): walk its RIFF chunks."""
    pos = fh.tell()
    try:
        fh.seek(12)
        while True:
            header = fh.read(8)
            if len(header) < 8:
                return False
            tag, size = header[:4], struct.unpack("<I", header[4:])[0]
            if tag == b"VP8L":
                return True
            if tag == b"VP8 ":
                return False
            fh.seek(size + (size & 1), os.SEEK_CUR)
    finally:
        fh.seek(pos)


def _orientation(value) -> int:
    """An EXIF orientation 1..8 (anything else, e.g. a broken tag, counts as 1)."""
    try:
        value = int(value)
    except (TypeError, ValueError):
        return 1
    return value if 1 <= value <= 8 else 1


def _orient(data: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (2..8) to an H x W[ x C] array, as exif_transpose does."""
    if orientation == 2:
        out = data[:, ::-1]
    elif orientation == 3:
        out = data[::-1, ::-1]
    elif orientation == 4:
        out = data[::-1]
    elif orientation == 5:
        out = data.swapaxes(0, 1)
    elif orientation == 6:
        out = np.rot90(data, -1)
    elif orientation == 7:
        out = data[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        out = np.rot90(data, 1)
    else:
        return data
    return np.ascontiguousarray(out)


# -- reading with tifffile ----------------------------------------------------------------------

_DTYPE_SUFFIX = {
    np.dtype(np.uint8): "", np.dtype(np.int8): ";8S", np.dtype(np.uint16): ";16",
    np.dtype(np.int16): ";16S", np.dtype(np.uint32): ";32", np.dtype(np.int32): ";32S",
    np.dtype(np.float32): ";32F", np.dtype(np.float64): ";64F",
}


def _read_tifffile(fh, path: Path, tp: _TiffPage) -> Image:
    from tifffile import PHOTOMETRIC

    page = tp.page
    photometric = page.photometric
    extras = tuple(page.extrasamples or ())
    ncolor = tp.samples - len(extras)
    base = {
        (PHOTOMETRIC.MINISBLACK, 1): "L",
        (PHOTOMETRIC.RGB, 3): "RGB",
        (PHOTOMETRIC.SEPARATED, 4): "CMYK",
    }.get((photometric, ncolor))
    dtype = tp.dtype
    if dtype == np.float16:
        dtype = np.dtype(np.float32)  # exact widening: float16 is not a pixelmill dtype
    if base is None or len(extras) > 1 or (base == "CMYK" and extras) or dtype not in _DTYPE_SUFFIX:
        name = getattr(photometric, "name", photometric)
        raise UnsupportedImageError(
            f"TIFF file {str(path)!r} has {tp.samples} {tp.bits}-bit samples of type "
            f"{tp.dtype} with photometric {name}; pixelmill reads grey, grey + alpha, RGB, RGBA "
            f"and CMYK TIFFs"
        )
    has_alpha = bool(extras)  # premultiplied (associated) alpha is carried as is
    mode = base + ("A" if has_alpha else "") + _DTYPE_SUFFIX[dtype]
    _check_tiff_extent(fh, path, page)
    try:
        data = page.asarray()
    except KeyError as exc:  # tifffile: "<COMPRESSION.LZW: 5> requires the 'imagecodecs' package"
        raise UnsupportedImageError(
            f"cannot decode TIFF file {str(path)!r}: {_one_line(exc).strip(chr(34))} "
            f"(pip install imagecodecs)"
        ) from None
    except Exception as exc:
        raise InvalidImageError(
            f"cannot decode TIFF image file {str(path)!r} (truncated or corrupt): {_one_line(exc)}"
        ) from None
    axes = page.axes
    if "S" in axes and axes.index("S") < axes.index("Y"):  # planar: S x H x W
        data = np.moveaxis(data, axes.index("S"), -1)
    data = data.reshape((tp.height, tp.width) if tp.samples == 1 else (tp.height, tp.width, tp.samples))
    if data.dtype != dtype:
        data = data.astype(dtype)  # float16 -> float32, big-endian -> native
    info = _tifffile_metadata(fh, page)
    data = _orient(data, info["orientation"])
    if info["orientation"] in (5, 6, 7, 8) and info.get("dpi"):
        info["dpi"] = info["dpi"][::-1]
    return Image(data=data, has_alpha=has_alpha, mode=mode, format="TIFF", info=info, path=path)


def _check_tiff_extent(fh, path: Path, page) -> None:
    """Fail on a truncated TIFF (tifffile would otherwise return zeros or garbage)."""
    size = os.fstat(fh.fileno()).st_size
    ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts)]
    if ends and max(ends) > size:
        raise InvalidImageError(
            f"cannot decode TIFF image file {str(path)!r}: image file is truncated "
            f"({max(ends) - size} bytes missing)"
        )


def _tifffile_metadata(fh, page) -> dict:
    from PIL.TiffImagePlugin import COMPRESSION_INFO

    tags = page.tags

    def tag(code):
        t = tags.get(code)
        return None if t is None else t.value

    orientation = _orientation(tag(274))
    icc = tag(34675)
    info = {
        "icc_profile": bytes(icc) if icc else None,
        "exif": None,
        "orientation": orientation,
        "compression": COMPRESSION_INFO.get(int(page.compression), "raw"),
    }
    xres, yres, unit = tag(282), tag(283), tag(296)
    if xres and yres and unit in (2, 3):
        scale = 2.54 if unit == 3 else 1.0
        info["dpi"] = tuple(float(r[0]) / float(r[1]) * scale if r[1] else 0.0 for r in (xres, yres))
    xmp = tag(700)
    if xmp:
        xmp = bytes(xmp)
        if orientation != 1:
            for pattern in _XMP_ORIENTATION:
                xmp = re.sub(pattern, b"", xmp)
        info["xmp"] = xmp
    try:  # Pillow's EXIF reader handles nested IFDs; tifffile's values are not re-encodable
        exif = PILImage.Exif()
        fh.seek(0)
        exif.load_from_fp(fh)
        info["exif"] = _clean_exif(exif, None)
    except Exception:
        info["exif"] = None
    return info


# -- read_image / describe ----------------------------------------------------------------------


def read_image(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image:
    """Decode an image file into an upright array plus the metadata to write it back.

    Parameters
    ----------
    path : str or Path
        A JPEG, PNG, TIFF, BMP or WebP file. The content decides the format, not the
        extension. The file is only read.
    max_pixels : int or None
        Refuse images with more pixels than this, checked from the header before any
        decoding (decompression-bomb guard). None disables the check.

    Returns
    -------
    Image
        See the module docstring for the array each source mode gives.

    Raises
    ------
    InvalidImageError
        Missing, empty, truncated or corrupt file, or content that is no supported image.
    UnsupportedImageError
        A readable image of a mode, sample type or format pixelmill does not handle.
    ImageTooLargeError
        More than ``max_pixels`` pixels.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     p = write_image(Path(tmp) / "a.png", np.zeros((2, 3), dtype=np.uint16))
    ...     img = read_image(p)
    >>> img.data.dtype, img.data.shape, img.mode, img.format
    (dtype('uint16'), (2, 3), 'I;16', 'PNG')
    """
    path = _input_path(path)
    limit = _check_max_pixels(max_pixels)
    with open(path, "rb") as fh:
        fmt = _sniff_file(fh, path)
        tp = None
        if fmt == "TIFF":
            tp = _tiff_peek(fh, path)
            if tp is not None:
                _check_size(path, tp.width, tp.height, limit)
                if not tp.pillow_ok:
                    return _read_tifffile(fh, path, tp)
        if fmt == "PNG":
            _refuse_deep_color_png(fh, path)
        try:
            im = _pil_open(fh, path, fmt)
        except InvalidImageError:
            if tp is None:
                raise
            return _read_tifffile(fh, path, tp)  # a TIFF layout Pillow does not know
        try:
            _check_size(path, im.size[0], im.size[1], limit)
            return _read_pillow(fh, path, fmt, im)
        finally:
            im.close()


def describe(path) -> dict:
    """Header facts about an image file, without decoding its pixels.

    Returns
    -------
    dict
        ``path``, ``format``, ``width``, ``height`` (upright, after the orientation),
        ``mode`` (source), ``dtype``, ``bit_depth``, ``channels`` and ``has_alpha`` (of the
        array :func:`read_image` returns), ``orientation``, ``icc``, ``exif`` (bools),
        ``megapixels`` and ``file_size`` (bytes).

    Raises
    ------
    InvalidImageError, UnsupportedImageError
        As :func:`read_image` (size limits are not applied).
    """
    path = _input_path(path)
    with open(path, "rb") as fh:
        fmt = _sniff_file(fh, path)
        tp = _tiff_peek(fh, path) if fmt == "TIFF" else None
        if fmt == "PNG":
            _refuse_deep_color_png(fh, path)
        if tp is not None and not tp.pillow_ok:
            facts = _describe_tifffile(fh, path, tp)
        else:
            im = _pil_open(fh, path, fmt)
            try:
                dtype, channels, has_alpha, _ = _pil_layout(im, fmt, path)
                try:
                    exif = im.getexif()
                except _DECODE_ERRORS:
                    exif = {}
                orientation = _orientation(exif.get(_ORIENTATION))
                facts = dict(
                    mode=im.mode, width=im.size[0], height=im.size[1], dtype=np.dtype(dtype),
                    channels=channels, has_alpha=has_alpha,
                    orientation=orientation,
                    icc=bool(im.info.get("icc_profile")), exif=len(exif) > 0,
                )
            finally:
                im.close()
    width, height = facts.pop("width"), facts.pop("height")
    if facts["orientation"] in (5, 6, 7, 8):
        width, height = height, width
    dtype = facts.pop("dtype")
    return {
        "path": str(path),
        "format": fmt,
        "width": width,
        "height": height,
        "mode": facts["mode"],
        "dtype": dtype.name,
        "bit_depth": 1 if dtype == np.bool_ else dtype.itemsize * 8,
        "channels": facts["channels"],
        "has_alpha": facts["has_alpha"],
        "orientation": facts["orientation"],
        "icc": facts["icc"],
        "exif": facts["exif"],
        "megapixels": round(width * height / 1e6, 3),
        "file_size": path.stat().st_size,
    }


def _describe_tifffile(fh, path, tp: _TiffPage) -> dict:
    img_extras = len(tuple(tp.page.extrasamples or ()))
    info = _tifffile_metadata(fh, tp.page)
    dtype = np.dtype(np.float32) if tp.dtype == np.float16 else tp.dtype
    base = {1: "L", 3: "RGB", 4: "CMYK"}.get(tp.samples - img_extras, "?")
    return dict(
        mode=base + ("A" if img_extras else "") + _DTYPE_SUFFIX.get(dtype, f";{tp.bits}"),
        width=tp.width, height=tp.height, dtype=dtype, channels=tp.samples,
        has_alpha=img_extras > 0, orientation=info["orientation"],
        icc=info["icc_profile"] is not None, exif=info["exif"] is not None,
    )


# -- writing ------------------------------------------------------------------------------------

# What each format holds: dtype -> allowed (channels, has_alpha) layouts.
_GREY, _GREY_A, _RGB, _RGBA, _CMYK = (1, False), (2, True), (3, False), (4, True), (4, False)
_CAPS = {
    "JPEG": {np.dtype(np.bool_): {_GREY}, np.dtype(np.uint8): {_GREY, _GREY_A, _RGB, _RGBA, _CMYK}},
    "PNG": {np.dtype(np.bool_): {_GREY}, np.dtype(np.uint8): {_GREY, _GREY_A, _RGB, _RGBA},
            np.dtype(np.uint16): {_GREY}},
    "BMP": {np.dtype(np.bool_): {_GREY}, np.dtype(np.uint8): {_GREY, _RGB}},
    "WEBP": {np.dtype(np.uint8): {_GREY, _GREY_A, _RGB, _RGBA}},
}
_CAPS_TEXT = {
    "JPEG": "8-bit grey, RGB or CMYK (alpha is dropped) and bilevel",
    "PNG": "bilevel, 8-bit grey/grey+alpha/RGB/RGBA and 16-bit grey",
    "BMP": "bilevel, 8-bit grey and RGB (Pillow cannot write BMP alpha)",
    "WEBP": "8-bit grey, RGB and RGBA",
}
_TIFF_DTYPES = tuple(np.dtype(t) for t in (np.bool_, np.uint8, np.int8, np.uint16, np.int16,
                                             np.uint32, np.int32, np.float32, np.float64))


def _layout_name(dtype, channels, has_alpha) -> str:
    kind = {1: "grey", 2: "grey + alpha", 3: "RGB", 4: "RGBA" if has_alpha else "CMYK"}[channels]
    return f"{dtype.name} {kind}"


def _check_writable(path: Path, fmt: str, data: np.ndarray, has_alpha: bool) -> None:
    channels = 1 if data.ndim == 2 else data.shape[2]
    if fmt == "TIFF":
        ok = data.dtype in _TIFF_DTYPES and not (data.dtype == np.bool_ and channels > 1)
        hint = "TIFF holds bool (grey only), (u)int8/16/32, float32 and float64"
    else:
        ok = (channels, has_alpha) in _CAPS[fmt].get(data.dtype, ())
        png_ok = (channels, has_alpha) in _CAPS["PNG"].get(data.dtype, ())
        better = "PNG or TIFF" if png_ok and fmt != "PNG" else "TIFF"
        hint = f"{fmt} holds {_CAPS_TEXT[fmt]}; use {better}"
    if not ok:
        raise UnsupportedImageError(
            f"cannot write a {_layout_name(data.dtype, channels, has_alpha)} image to {fmt} "
            f"file {str(path)!r}: {hint}"
        )


def _resolve_format(path: Path, format, meta: Image | None) -> str:
    if format is not None:
        return _check_format(format)
    by_ext = EXTENSION_FORMATS.get(path.suffix.lower())
    if by_ext is not None:
        return by_ext
    if meta is not None and meta.format in SUPPORTED_FORMATS:
        return meta.format
    raise InvalidParameterError(
        f"cannot tell the output format of {str(path)!r}: give format= (one of "
        f"{', '.join(SUPPORTED_FORMATS)}) or an extension ({', '.join(sorted(IMAGE_EXTENSIONS))})"
    )


def write_image(
    path,
    image,
    *,
    format: str | None = None,
    quality: int = 95,
    like: Image | None = None,
    durable: bool = True,
) -> Path:
    """Encode ``image`` to ``path`` atomically, keeping the source's metadata.

    Parameters
    ----------
    path : str or Path
        Output file; parent folders are created. An existing file is replaced only once
        the new one is completely written.
    image : Image or ndarray
        Pixels (and metadata when an :class:`Image`). For a bare array a last axis of 2 or
        4 channels is taken as grey + alpha / RGBA, unless ``like`` says it has no alpha
        (CMYK).
    format : str, optional
        ``JPEG``, ``PNG``, ``TIFF``, ``BMP`` or ``WEBP`` (``jpg``/``tif`` accepted). Default:
        from the extension of ``path``, else the source's format (``like`` or ``image``).
    quality : int
        1..100, for JPEG and lossy WebP (a lossless WebP source is written lossless).
    like : Image, optional
        The image whose metadata to keep (ICC profile, EXIF with orientation 1, dpi, XMP,
        JPEG chroma subsampling and progressive mode, TIFF compression, WebP losslessness).
        Defaults to ``image`` itself when it is an :class:`Image`.
    durable : bool
        Wait until the file is on disk before returning (see :func:`atomic_write`).

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    UnsupportedImageError
        The format cannot hold the dtype or layout (e.g. uint16 to JPEG, float32 to PNG);
        the message says which format would.
    InvalidParameterError
        Unknown format or bad quality.

    Notes
    -----
    JPEG has no alpha channel: writing an image with alpha to JPEG drops the alpha.
    BMP holds no alpha (Pillow reads its own 32-bit BMPs back as RGB) and no ICC/EXIF; PNG and TIFF keep no XMP; TIFFs written with tifffile (16-bit or
    float colour, and dtypes Pillow cannot hold) keep the ICC profile and resolution but
    only the plain-text EXIF tags of the first IFD (make, model, date, ...).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     p = write_image(Path(tmp) / "sub" / "x.jpg", rgba)
    ...     read_image(p).data.shape  # alpha dropped: JPEG has none
    (2, 2, 3)
    """
    path = Path(path)
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise InvalidParameterError(f"quality must be an integer from 1 to 100, got {quality!r}")
    if isinstance(image, Image):
        data, has_alpha = np.asarray(image.data), image.has_alpha
        meta = like if like is not None else image
    else:
        data = np.asarray(image)
        meta = like
        channels = data.shape[2] if data.ndim == 3 else 1
        if meta is not None and channels == meta.channels:
            has_alpha = meta.has_alpha
        else:
            has_alpha = channels in (2, 4)
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3) or data.size == 0 or (data.ndim == 3 and data.shape[2] > 4):
        raise InvalidImageError(
            f"cannot write an array of shape {data.shape!r} to {str(path)!r}: need H x W or "
            f"H x W x C with 1 to 4 channels"
        )
    if data.ndim == 3 and not has_alpha and data.shape[2] == 2:
        has_alpha = True  # two channels can only be grey + alpha
    fmt = _resolve_format(path, format, meta)
    if fmt == "JPEG" and has_alpha:
        data = data[..., 0] if data.shape[2] == 2 else data[..., :-1]  # JPEG has no alpha
        has_alpha = False
    _check_writable(path, fmt, data, has_alpha)
    info = dict(meta.info) if meta is not None else {}
    same_format = meta is not None and meta.format == fmt

    turbo = _turbo_encoder(data, has_alpha, info, quality) if fmt == "JPEG" else None
    if turbo is not None:
        encode = turbo
    elif fmt == "TIFF" and not _pillow_tiff_ok(data):
        encode = _tifffile_encoder(data, has_alpha, info)
    else:
        pil = _to_pillow(data, has_alpha)
        params = _save_params(fmt, pil.mode, info, quality, same_format)
        if fmt == "WEBP":
            _pil_class("WEBP")  # a clear error if Pillow lacks WebP

        def encode(fh):
            pil.save(fh, format=fmt, **params)

    atomic_write(path, encode, durable=durable)
    return path


#: JPEG chroma subsampling as Pillow numbers it (``info["subsampling"]``) -> simplejpeg's name.
_SUBSAMPLING_NAMES = {-1: "420", 0: "444", 1: "422", 2: "420"}
_ICC_CHUNK = 65519  # an APP2 segment's payload limit, less the 14-byte ICC_PROFILE header


def _turbo_encoder(data: np.ndarray, has_alpha: bool, info: dict, quality: int):
    """Encode an 8-bit RGB or grey image with libjpeg-turbo (simplejpeg), or None to leave
    it to Pillow (progressive output, dpi, metadata too large for one segment). Same
    quantisation tables for the same quality, same chroma subsampling as Pillow would write;
    the ICC profile, EXIF and XMP go into the usual APP1/APP2 segments."""
    grey = data.ndim == 2
    if data.dtype != np.uint8 or has_alpha or not (grey or data.shape[2] == 3):
        return None
    if info.get("progressive") or info.get("dpi"):
        return None
    segments = []
    if info.get("exif"):
        segments.append((0xE1, bytes(info["exif"])))
    if info.get("xmp"):
        segments.append((0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + bytes(info["xmp"])))
    icc = info.get("icc_profile")
    if icc:
        chunks = [icc[i : i + _ICC_CHUNK] for i in range(0, len(icc), _ICC_CHUNK)]
        if len(chunks) > 255:
            return None
        for n, chunk in enumerate(chunks, 1):
            segments.append((0xE2, b"ICC_PROFILE\x00" + bytes([n, len(chunks)]) + bytes(chunk)))
    if any(len(payload) > 0xFFFF - 2 for _, payload in segments):
        return None
    sub = "Gray" if grey else _SUBSAMPLING_NAMES.get(info.get("subsampling", -1), "420")
    pixels = np.ascontiguousarray(data[..., None] if grey else data)

    def encode(fh):
        jpeg = simplejpeg.encode_jpeg(pixels, quality=quality, colorspace="GRAY" if grey else "RGB",
                                      colorsubsampling=sub)
        # The metadata segments go after SOI and the JFIF APP0 segment libjpeg writes first.
        at = 2
        if jpeg[2:4] == b"\xff\xe0":
            at = 4 + int.from_bytes(jpeg[4:6], "big")
        view = memoryview(jpeg)  # slices of it are not copies (a 24 MP photo's JPEG is ~10 MB)
        fh.write(view[:at])
        for marker, payload in segments:
            fh.write(bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload)
        fh.write(view[at:])

    return encode


def _pillow_tiff_ok(data: np.ndarray) -> bool:
    if data.dtype in (np.bool_, np.uint8):
        return True
    return data.ndim == 2 and data.dtype in (np.uint16, np.int32, np.float32)


def _to_pillow(data: np.ndarray, has_alpha: bool):
    if data.ndim == 3 and data.shape[2] == 4 and not has_alpha:
        data = np.ascontiguousarray(data)
        h, w = data.shape[:2]
        return PILImage.frombuffer("CMYK", (w, h), data, "raw", "CMYK", 0, 1)
    if data.dtype == np.uint16 and data.dtype.byteorder not in ("<", "=", "|"):
        data = data.astype("<u2")
    return PILImage.fromarray(data)


def _save_params(fmt: str, mode: str, info: dict, quality: int, same_format: bool) -> dict:
    params: dict = {}
    icc, exif, dpi, xmp = info.get("icc_profile"), info.get("exif"), info.get("dpi"), info.get("xmp")
    if fmt != "BMP":
        if icc:
            params["icc_profile"] = icc
        if exif and fmt == "TIFF":
            exif = _exif_for_tiff(exif)
        if exif:
            params["exif"] = exif
    if dpi and fmt != "WEBP":
        params["dpi"] = tuple(dpi)
    if xmp and fmt in ("JPEG", "WEBP"):
        params["xmp"] = xmp
    if fmt == "JPEG":
        params["quality"] = quality
        sub = info.get("subsampling", -1)
        if mode == "RGB" and sub in (0, 1, 2):
            params["subsampling"] = sub
        if info.get("progressive"):
            params["progressive"] = True
    elif fmt == "WEBP":
        if same_format and info.get("lossless"):
            params.update(lossless=True, exact=True)  # exact: keep RGB under alpha 0
        else:
            params["quality"] = quality
    elif fmt == "TIFF":
        comp = _tiff_compression(info.get("compression") if same_format else None, mode)
        if comp:
            params["compression"] = comp
    elif fmt == "PNG":
        t = info.get("transparency")
        if t is not None and (
            (mode == "RGB" and isinstance(t, tuple) and len(t) == 3)
            or (mode in ("L", *_I16_MODES) and isinstance(t, int))
        ):
            params["transparency"] = t
    return params


def _tiff_compression(comp, mode: str):
    if comp in (None, "raw"):
        return None
    if comp in ("group3", "group4", "tiff_ccitt") and mode != "1":
        return "tiff_adobe_deflate"
    if comp in ("jpeg", "tiff_jpeg") and mode not in ("L", "RGB", "CMYK"):
        return "tiff_adobe_deflate"
    if comp in ("tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits", "jpeg", "tiff_jpeg",
                "group3", "group4", "tiff_ccitt", "lzma", "zstd", "webp"):
        return comp
    return "tiff_adobe_deflate"  # a compression libtiff reads but cannot write: stay lossless


def _exif_for_tiff(exif: bytes) -> bytes | None:
    ex = PILImage.Exif()
    ex.load(exif)
    for tag in (_EXIF_IFD, _GPS_IFD):
        if tag in ex:
            ex.get_ifd(tag)
    for tag in [t for t in ex if t in _TIFF_OWN_TAGS]:
        del ex[tag]
    return ex.tobytes() if len(ex) else None


def _tifffile_encoder(data: np.ndarray, has_alpha: bool, info: dict):
    import tifffile

    channels = 1 if data.ndim == 2 else data.shape[2]
    kwargs: dict = {"metadata": None, "photometric": "minisblack", "software": False}
    if channels >= 3:
        kwargs["photometric"] = "rgb" if (channels == 3 or has_alpha) else "separated"
    if channels > 1:
        kwargs["planarconfig"] = "contig"
    if has_alpha:
        kwargs["extrasamples"] = ["unassalpha"]
    if info.get("compression") not in (None, "raw"):
        kwargs["compression"] = "zlib"  # built into tifffile and lossless
    if info.get("icc_profile"):
        kwargs["iccprofile"] = info["icc_profile"]
    if info.get("dpi"):
        kwargs["resolution"] = tuple(float(v) for v in info["dpi"])
        kwargs["resolutionunit"] = "INCH"
    extratags = []
    if info.get("exif"):
        ex = PILImage.Exif()
        ex.load(info["exif"])
        for code in (270, 271, 272, 305, 306, 315, 33432):  # plain-text IFD0 tags
            value = ex.get(code)
            if isinstance(value, str) and value:
                if code == 305:
                    kwargs["software"] = value
                else:
                    extratags.append((code, "s", 0, value, True))
    if extratags:
        kwargs["extratags"] = extratags
    if data.dtype.byteorder == ">":
        data = data.astype(data.dtype.newbyteorder("="))

    def encode(fh):
        tifffile.imwrite(fh, data, **kwargs)

    return encode


def atomic_write(path, encode, *, durable: bool = True) -> None:
    """Run ``encode(fileobj)`` into a hidden temporary file, fsync it, rename it onto ``path``.

    The one way pixelmill writes any file: readers never see half of it, and a failure (or a
    kill) leaves at most a hidden ``.NAME.XXXX.tmp`` beside it, never a partial ``path``.

    ``durable=False`` starts the disk write but does not wait for it (no fsync): still atomic
    for every reader and after a crash of this process, but a power loss may leave the file
    empty. Batches write so and call :func:`make_durable` on their outputs at the end, so
    waiting for the disk does not stall the workers image after image.
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = folder / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            # "x": created here, exclusively; permissions as any new file (0o666 - umask)
            fh = open(tmp, "xb")
            break
        except FileExistsError:
            continue
    try:
        with fh:
            encode(fh)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
            elif hasattr(os, "posix_fadvise"):
                # Linux starts writing the dirty pages back now, asynchronously (and drops them
                # from the cache once written): the final fsync then finds little left to do.
                os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        _fsync_dir(folder)


def make_durable(paths) -> None:
    """fsync each file of ``paths`` and each folder holding them, once: what
    :func:`atomic_write` skips with ``durable=False``. Files that are gone are skipped."""
    folders = {Path(path).parent for path in paths if _fsync(path)}
    for folder in folders:
        _fsync_dir(folder)


@contextmanager
def durable_in_background():
    """Yield ``add(path)``: each file handed over is fsync'ed on a background thread while
    the caller goes on, and when the block ends, the thread is waited for and the folders of
    those files are fsync'ed: :func:`make_durable`'s work, overlapped with the work that
    writes the files instead of after it. A block left by an exception drops what is left.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder, durable_in_background() as add:
    ...     for name in ("a.bin", "b.bin"):
    ...         atomic_write(Path(folder) / name, lambda fh: fh.write(b"x"), durable=False)
    ...         add(Path(folder) / name)
    """
    import queue

    # A 200-photo batch spent 0.1 s (5% of it) in fsyncs after its last image; here the
    # thread mostly waits for the disk (os.fsync releases the GIL) while the workers encode.
    pending: queue.SimpleQueue = queue.SimpleQueue()
    folders: set[Path] = set()
    stop, abandoned = object(), threading.Event()

    def sync_each():
        while (path := pending.get()) is not stop:
            if not abandoned.is_set() and _fsync(path):
                folders.add(Path(path).parent)

    thread = threading.Thread(target=sync_each, name="pixelmill-fsync", daemon=True)
    thread.start()
    try:
        yield pending.put
    except BaseException:
        abandoned.set()  # what is left is not worth the wait
        raise
    finally:
        pending.put(stop)
    thread.join()
    for folder in folders:
        _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable (POSIX); not possible on Windows, and not fatal.
    _fsync(folder)


def _fsync(path) -> bool:
    """fsync a file or folder by path; False when it cannot be opened (gone, or Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
    return True

