"""The formats pixelmill reads and writes: the one table of them, content sniffing, the
size (decompression-bomb) guards and what each format can hold."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ImageTooLargeError, InvalidImageError, InvalidParameterError, UnsupportedImageError

if TYPE_CHECKING:
    from ._image import Image


@dataclass(frozen=True)
class FormatSpec:
    """One file format: its name (Pillow's) and its file extensions, the first of which is
    the one pixelmill gives the files it writes."""

    name: str
    extensions: tuple[str, ...]

    @property
    def suffix(self) -> str:
        """The extension of files written in this format (lower case, with the dot)."""
        return self.extensions[0]


#: Formats pixelmill reads and writes, by name: the one table every list of formats comes from.
FORMATS = {
    spec.name: spec
    for spec in (
        FormatSpec("JPEG", (".jpg", ".jpeg")),
        FormatSpec("PNG", (".png",)),
        FormatSpec("TIFF", (".tif", ".tiff")),
        FormatSpec("BMP", (".bmp",)),
        FormatSpec("WEBP", (".webp",)),
    )
}

#: Formats pixelmill reads and writes (Pillow's names).
SUPPORTED_FORMATS = tuple(FORMATS)

#: File extension (lower case, with the dot) -> format.
EXTENSION_FORMATS = {ext: spec.name for spec in FORMATS.values() for ext in spec.extensions}

#: Format -> extension of the files written in it (when the format changes a file's name).
FORMAT_SUFFIX = {name: spec.suffix for name, spec in FORMATS.items()}

#: Extensions recognised as images when walking a folder (compared case-insensitively).
IMAGE_EXTENSIONS = frozenset(EXTENSION_FORMATS)

#: Default decompression-bomb guard: images with more pixels are refused before decoding.
DEFAULT_MAX_PIXELS = 250_000_000

# Names _check_format accepts (upper case, no dot): the formats and their extensions.
_FORMAT_ALIASES = {ext.lstrip(".").upper(): spec.name for spec in FORMATS.values() for ext in spec.extensions}


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

