"""read_image, describe, read_thumbnail and write_image: each file to the backend that
holds it exactly (tifffile for the TIFFs Pillow would truncate, libjpeg-turbo for 8-bit RGB
and grey JPEGs, Pillow for the rest); writes go through :func:`pixelmill._files.atomic_write`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._files import atomic_write
from .._validation import check_quality
from ..errors import InvalidImageError, InvalidParameterError, PixelmillError, UnsupportedImageError
from ._formats import _one_line
from ._warnings import note
from ._formats import (
    DEFAULT_MAX_PIXELS,
    _check_max_pixels,
    _check_size,
    _check_writable,
    _resolve_format,
    _sniff_file,
)
from ._image import Image, unpremultiply
from ._jpeg import _turbo_decode, _turbo_encoder
from ._pillow import (
    _describe_pillow,
    _pil_open,
    _pillow_encoder,
    _pillow_thumbnail,
    _pillow_tiff_ok,
    MULTI_FRAME_FORMATS,
    _pil_metadata,
    _pillow_frames_encoder,
    _read_pillow,
    _read_pillow_frames,
)
from ._heif import heif_encoder, read_heif
from ._imagecodecs import (
    _avif_depth,
    _avif_encoder,
    _jpeg2k_encoder,
    _jpeg2k_layout,
    _read_jpeg2k_deep,
    _read_avif_deep,
    _bmp_encoder,
    _describe_png,
    _jpegxl_encoder,
    _png_encoder,
    _png_metadata_encoder,
    _read_jpegxl,
    _read_png,
)
from ._tifffile import (
    _describe_tifffile,
    _read_tifffile,
    _tiff_peek,
    _tifffile_encoder,
    _tifffile_pages_encoder,
)


def _input_path(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise InvalidImageError(f"image file {str(p)!r} does not exist")
    if not p.is_file():
        raise InvalidImageError(f"image path {str(p)!r} is not a file")
    return p


def read_image(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image:
    """Decode an image file into an upright array plus the metadata to write it back.

    Parameters
    ----------
    path : str or Path
        An image in any format of :data:`~pixelmill.io.FORMATS` that reads (JPEG, PNG and
        APNG, TIFF, BMP, WebP, GIF, TGA, PNM, PFM, PSD, ICO, CUR, ICNS, JPEG 2000, QOI,
        AVIF, JPEG XL). The content decides the format, not the extension. The file is only
        read. Animations and multi-page TIFFs come with every frame (``Image.frames``).
    max_pixels : int or None
        Refuse images with more pixels than this, checked from the header before any
        decoding (decompression-bomb guard). None disables the check.

    Returns
    -------
    Image
        See :mod:`pixelmill.io` for the array each source mode gives.

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
    return _decode(path, max_pixels, _read_exactly, _read_tifffile)


def _read_exactly(fh, path, fmt, im) -> Image:
    if fmt == "AVIF":
        fh.seek(0)
        depth = _avif_depth(fh.read(1 << 12))
        if depth is not None and depth > 8:  # Pillow would give 8 bits of it
            return _read_avif_deep(fh, path, depth)
    if fmt == "JPEG2000":
        fh.seek(0)
        layout = _jpeg2k_layout(fh.read(1 << 12))
        if layout is not None and layout[1] > 8 and layout[0] > 1:  # Pillow: 8 bits of colour
            return _read_jpeg2k_deep(fh, path, layout[1])
    if fmt == "PNG":  # libpng: every depth, colour keys as alpha, CRCs checked
        return _read_png(fh, path, im, lambda exif: _pil_metadata(fh, im, fmt, exif, im.mode))
    image = _read_pillow(fh, path, fmt, im, fast_decode=_turbo_decode)
    if fmt in MULTI_FRAME_FORMATS:
        image = _read_pillow_frames(fh, path, fmt, im, image)
    return image


def _decode(path, max_pixels, read_pillow, read_tifffile, finish=None) -> Image:
    """Sniff, check the size, and hand the open file to the backend that reads it exactly:
    ``read_tifffile(fh, path, tiff_page)`` or ``read_pillow(fh, path, fmt, pil_image)``."""
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
                    return read_tifffile(fh, path, tp)
        if fmt in ("JXL", "HEIF"):  # no Pillow plugin: decoded whole, then size-checked
            image = _read_jpegxl(fh, path) if fmt == "JXL" else read_heif(fh, path)
            _check_size(path, image.width, image.height, limit)
            return finish(image) if finish is not None else image
        try:
            im = _pil_open(fh, path, fmt)
        except InvalidImageError:
            if tp is None:
                raise
            return read_tifffile(fh, path, tp)  # a TIFF layout Pillow does not know
        try:
            _check_size(path, im.size[0], im.size[1], limit)
            return read_pillow(fh, path, fmt, im)
        finally:
            im.close()


def read_thumbnail(path, size: int, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image:
    """A small upright copy of an image file, for previews (a contact sheet, say).

    Parameters
    ----------
    path : str or Path
        An image file, as for :func:`read_image`.
    size : int
        The side of the square the thumbnail fits in, in pixels (1 or more).
    max_pixels : int or None
        As for :func:`read_image`.

    Returns
    -------
    Image
        8-bit and bilevel pictures come back shrunk to fit in ``size`` x ``size`` (Pillow's
        thumbnail; JPEGs decoded at 1/2, 1/4 or 1/8 scale first, through Pillow's draft) as
        uint8 grey, grey + alpha, RGB or RGBA: bilevel becomes grey, palette and CMYK become
        RGB (RGBA with transparency). Deeper samples (16-bit, 32-bit, float, the TIFFs
        tifffile reads) keep the dtype :func:`read_image` gives them, every n-th pixel in
        both directions so that they fit in ``2 * size``: how to show them is the caller's
        choice. Either way the picture is upright (EXIF orientation applied), ``mode`` and
        ``format`` are the file's, and ``info`` holds ``orientation`` and ``full_size``, the
        ``(width, height)`` of the whole upright picture; no metadata to write back.

    Raises
    ------
    InvalidImageError, UnsupportedImageError, ImageTooLargeError
        As :func:`read_image`; InvalidParameterError for a bad ``size``.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     p = write_image(Path(tmp) / "a.jpg", np.zeros((300, 200, 3), dtype=np.uint8))
    ...     thumb = read_thumbnail(p, 64)
    >>> thumb.data.shape, thumb.info["full_size"]
    ((64, 43, 3), (200, 300))
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise InvalidParameterError(f"size must be a positive integer, got {size!r}")
    size = int(size)

    def read_pillow(fh, path, fmt, im):
        thumb = _pillow_thumbnail(fh, path, fmt, im, size)
        return thumb if thumb is not None else _subsampled(_read_pillow(fh, path, fmt, im), size)

    def read_tifffile(fh, path, tp):
        return _subsampled(_read_tifffile(fh, path, tp, pages=False), size)

    return _decode(path, max_pixels, read_pillow, read_tifffile, finish=lambda image: _subsampled(image, size))


def _subsampled(image: Image, size: int) -> Image:
    """Every n-th pixel of ``image``: n the largest that keeps ``2 * size`` on the longer side."""
    height, width = image.data.shape[:2]
    step = max(1, max(height, width) // (2 * size))
    data = np.ascontiguousarray(image.data[::step, ::step])
    info = {"orientation": image.info["orientation"], "full_size": (width, height)}
    return Image(data=data, has_alpha=image.has_alpha, mode=image.mode, format=image.format,
                 info=info, path=image.path)


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
        if tp is not None and not tp.pillow_ok:
            facts = _describe_tifffile(fh, path, tp)
        elif fmt in ("JXL", "HEIF"):
            image = _read_jpegxl(fh, path) if fmt == "JXL" else read_heif(fh, path)
            facts = dict(mode=image.mode, width=image.width, height=image.height,
                         dtype=image.data.dtype, channels=image.channels, has_alpha=image.has_alpha,
                         orientation=1, icc=False, exif=False)
        else:
            head = fh.read(1 << 16) if fmt in ("PNG", "AVIF") else b""
            facts = _describe_pillow(fh, path, fmt)
            if fmt == "PNG":
                facts = _describe_png(head, facts)
            depth = _avif_depth(head) if fmt == "AVIF" else None
            if depth is not None and depth > 8:
                facts.update(dtype=np.dtype(np.uint16), mode=f"{facts['mode']};{depth}")
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



def check_writable(path, image: Image, *, format: str | None = None) -> str:
    """Raise before any work if ``image`` (its dtype and layout) cannot be written to
    ``path`` in ``format`` (default: from the extension, else the image's own format).

    Returns
    -------
    str
        The output format.

    Raises
    ------
    UnsupportedImageError
        The format cannot hold the image or pixelmill does not write it; the message says
        which format would (give it as ``format=`` / ``--format``).
    InvalidParameterError
        Unknown format.
    """
    path = Path(path)
    fmt = _resolve_format(path, format, image)
    data, has_alpha = image.data, image.has_alpha
    if fmt == "JPEG" and has_alpha:
        data = data[..., 0] if data.shape[2] == 2 else data[..., :-1]
        has_alpha = False
    _check_writable(path, fmt, data, has_alpha)
    _check_frames(path, fmt, image)
    return fmt


def _check_frames(path: Path, fmt: str, image) -> None:
    frames = image.frames if isinstance(image, Image) else []
    if not frames:
        return
    if fmt not in MULTI_FRAME_FORMATS:
        raise UnsupportedImageError(
            f"cannot write {1 + len(frames)} frames to {fmt} file {str(path)!r}: {fmt} holds one "
            f"image; use {', '.join(MULTI_FRAME_FORMATS)} (--format), which keep every frame"
        )
    for frame in frames:
        _check_writable(path, fmt, np.asarray(frame.data), frame.has_alpha)
    if fmt == "PNG" and any(np.asarray(f.data).dtype != np.uint8 for f in [image, *frames]):
        raise UnsupportedImageError(
            f"cannot write a 16-bit animated PNG {str(path)!r}: pixelmill writes animated PNGs "
            f"with 8-bit samples; use TIFF (--format tiff), which keeps every page at 16 bits"
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
        A format of :data:`~pixelmill.io.SUPPORTED_FORMATS` (extensions such as ``jpg``/``tif``
        accepted). Default:
        from the extension of ``path``, else the source's format (``like`` or ``image``).
    quality : int
        1..100, for JPEG and lossy WebP (a lossless WebP source is written lossless).
    like : Image, optional
        The image whose metadata to keep (ICC profile, EXIF with orientation 1, dpi, XMP,
        JPEG chroma subsampling and progressive mode, TIFF compression, WebP losslessness).
        Defaults to ``image`` itself when it is an :class:`Image`.
    durable : bool
        Wait until the file is on disk before returning (see :func:`pixelmill._files.atomic_write`).

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
    check_quality(quality)
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
    _check_frames(path, fmt, image)
    info = dict(meta.info) if meta is not None else {}
    if info.get("premultiplied") and has_alpha and not (fmt == "TIFF" and data.dtype.kind in "ui"):
        # Only TIFF says its alpha is associated: everywhere else alpha is straight.
        color = data[..., 0] if data.shape[2] == 2 else data[..., :-1]
        from ..ops._convert import to_dtype

        straight = unpremultiply(color, data[..., -1])
        straight = to_dtype(straight, data.dtype, policy="float32" if data.dtype.kind == "f" else "clip")
        data = np.concatenate([straight.reshape(*data.shape[:2], -1), data[..., -1:]], axis=-1)
        info["premultiplied"] = False
    same_format = meta is not None and meta.format == fmt

    frames = image.frames if isinstance(image, Image) else []
    source = meta.format if meta is not None else None

    def make(info):
        return _encoder(data, has_alpha, fmt, info, quality, same_format, frames, source)

    try:
        atomic_write(path, make(info), durable=durable)
    except PixelmillError:
        raise
    except Exception as exc:
        kept = [k for k in _DROPPABLE if info.get(k)]
        if not kept:
            raise
        # A writer that refuses the source's metadata (libtiff: "Error setting from
        # dictionary" on a tag it finds invalid) gets the pixels without it, and the record
        # says what was dropped and why. atomic_write left nothing behind.
        atomic_write(path, make({k: v for k, v in info.items() if k not in _DROPPABLE}), durable=durable)
        note(f"metadata ({', '.join(kept)}) not kept in {str(path)!r}: the {fmt} writer refused "
             f"it ({_one_line(exc)})")
    return path


#: Metadata write_image drops, saying so, when a writer refuses it.
_DROPPABLE = ("exif", "xmp", "iptc", "app13", "png_chunks", "icc_profile", "dpi")


def _encoder(data, has_alpha, fmt, info, quality, same_format, frames, source):
    """``encode(fileobj)`` for ``data`` in ``fmt``: the backend that writes it exactly."""
    turbo = _turbo_encoder(data, has_alpha, info, quality) if fmt == "JPEG" and not frames else None
    if frames:
        pages = [(data, has_alpha, info)] + [(np.asarray(f.data), f.has_alpha, dict(f.info)) for f in frames]
        if fmt == "TIFF" and (info.get("premultiplied") or not all(_pillow_tiff_ok(d) for d, _, _ in pages)):
            encode = _tifffile_pages_encoder(pages, info)
        else:
            encode = _pillow_frames_encoder(pages, fmt, info, quality, same_format)
    elif turbo is not None:
        encode = turbo
    elif fmt == "TIFF" and (not _pillow_tiff_ok(data) or info.get("premultiplied")):
        encode = _tifffile_encoder(data, has_alpha, info, quality)
    elif fmt == "PNG" and data.dtype == np.uint16 and data.ndim == 3:
        encode = _png_encoder(data, has_alpha, info)
    elif fmt == "BMP" and has_alpha:
        encode = _bmp_encoder(data)
    elif fmt == "JPEG2000" and data.dtype == np.uint16 and data.ndim == 3:
        encode = _jpeg2k_encoder(data, info)
    elif fmt == "AVIF" and data.dtype == np.uint16:
        encode = _avif_encoder(data, info, quality)
    elif fmt == "JXL":
        encode = _jpegxl_encoder(data, has_alpha, info, quality, source)
    elif fmt == "HEIF":
        encode = heif_encoder(data, has_alpha, info, quality)
    else:
        encode = _pillow_encoder(data, has_alpha, fmt, info, quality, same_format)
        if fmt == "PNG":
            encode = _png_metadata_encoder(encode, info, data, has_alpha)

    return encode
