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
    """One file format: its name (Pillow's where Pillow has it), its file extensions (the
    first is the one pixelmill gives the files it writes), what pixelmill does with it and
    which package provides it.

    ``writes``: whether pixelmill writes it (otherwise a run needs ``--format``, said before
    any work); ``depths``, ``alpha``, ``frames``, ``metadata``: what is read and written back;
    ``package``: the Python package that decodes it; ``extra``: the pixelmill extra that
    installs that package (None: a core dependency); ``note``: why a format is not handled.
    """

    name: str
    extensions: tuple[str, ...]
    reads: bool = True
    writes: bool = True
    depths: str = "8"
    alpha: bool = True
    frames: bool = False
    metadata: str = ""
    package: str = "pillow"
    extra: str | None = None
    note: str = ""

    @property
    def suffix(self) -> str:
        """The extension of files written in this format (lower case, with the dot)."""
        return self.extensions[0]


#: Every format pixelmill knows, by name: the one table every list of formats comes from
#: (the CLI's choices, ``pixelmill formats``, the README's table, the folder walk).
FORMATS = {
    spec.name: spec
    for spec in (
        FormatSpec("JPEG", (".jpg", ".jpeg", ".jpe", ".jfif"), depths="8", alpha=False,
                   metadata="ICC, EXIF, XMP", package="simplejpeg, pillow"),
        FormatSpec("PNG", (".png", ".apng"), depths="1, 2, 4, 8, 16", metadata=(
            "ICC, EXIF, gAMA, cHRM, sRGB, sBIT, bKGD, pHYs, text"), package="imagecodecs (libpng), pillow", frames=True),
        FormatSpec("TIFF", (".tif", ".tiff"), depths="1, 8, 16, 32, 32F, 64F",
                   metadata="ICC, EXIF, XMP, IPTC, resolution", package="tifffile, imagecodecs, pillow",
                   frames=True),
        FormatSpec("BMP", (".bmp", ".dib"), depths="1, 8", metadata="resolution",
                   package="pillow, imagecodecs (32-bit with alpha)"),
        FormatSpec("WEBP", (".webp",), metadata="ICC, EXIF, XMP", frames=True),
        FormatSpec("GIF", (".gif",), alpha=True, metadata="", depths="8 (256 colours)", frames=True),
        FormatSpec("TGA", (".tga", ".icb", ".vda", ".vst")),
        FormatSpec("PPM", (".ppm", ".pgm", ".pbm", ".pnm"), depths="1, 8, 16", alpha=False),
        FormatSpec("PFM", (".pfm",), depths="32F", alpha=False, metadata=""),
        FormatSpec("PSD", (".psd",), writes=False),
        FormatSpec("ICO", (".ico",), writes=False),
        FormatSpec("CUR", (".cur",), writes=False),
        FormatSpec("ICNS", (".icns",), writes=False),
        FormatSpec("JPEG2000", (".jp2", ".j2k", ".jpx", ".jpf", ".j2c"), depths="8, 12, 16",
                   package="pillow (OpenJPEG), imagecodecs (deep colour)"),
        FormatSpec("QOI", (".qoi",)),
        FormatSpec("AVIF", (".avif",), depths="8, 10, 12", metadata="ICC, EXIF, XMP (8-bit)",
                   package="pillow (libavif), imagecodecs (10/12-bit)"),
        FormatSpec("JXL", (".jxl",), depths="8, 16, 32F", package="imagecodecs (libjxl)"),
        FormatSpec("HEIF", (".heic", ".heif", ".hif"), depths="8, 10, 12 (written as 10)", alpha=True,
                   metadata="ICC, EXIF, XMP", package="pillow-heif (libheif, x265: GPL)", extra="heif"),
    )
}

#: Formats pixelmill reads (Pillow's names).
READ_FORMATS = tuple(name for name, spec in FORMATS.items() if spec.reads)

#: Formats pixelmill writes (Pillow's names): the choices of ``--format``.
SUPPORTED_FORMATS = tuple(name for name, spec in FORMATS.items() if spec.writes)

#: File extension (lower case, with the dot) -> format.
EXTENSION_FORMATS = {ext: spec.name for spec in FORMATS.values() for ext in spec.extensions
                     if spec.reads}

#: Format -> extension of the files written in it (when the format changes a file's name).
FORMAT_SUFFIX = {name: spec.suffix for name, spec in FORMATS.items()}

#: Extensions recognised as images when walking a folder (compared case-insensitively).
IMAGE_EXTENSIONS = frozenset(EXTENSION_FORMATS)

#: Default decompression-bomb guard: images with more pixels are refused before decoding.
DEFAULT_MAX_PIXELS = 250_000_000

# Names _check_format accepts (upper case, no dot): the formats and their extensions.
_FORMAT_ALIASES = {ext.lstrip(".").upper(): spec.name for spec in FORMATS.values() for ext in spec.extensions}
_FORMAT_ALIASES.update({"JP2": "JPEG2000", "JPEGXL": "JXL", "JPEG-XL": "JXL", "HEIC": "HEIF",
                        "PNM": "PPM", "PGM": "PPM", "PBM": "PPM"})


def format_rows() -> list[dict]:
    """One row per format of :data:`FORMATS`, for ``pixelmill formats`` and the README:
    ``format``, ``extensions``, ``read``, ``write``, ``bit_depths``, ``alpha``, ``frames``,
    ``metadata``, ``package``, ``install`` and ``note``."""
    rows = []
    for spec in FORMATS.values():
        install = f"pip install 'pixelmill[{spec.extra}]'" if spec.extra else "core"
        if not spec.reads:
            install = "-"
        rows.append({
            "format": spec.name, "extensions": " ".join(spec.extensions), "read": spec.reads,
            "write": spec.writes, "bit_depths": spec.depths, "alpha": spec.alpha,
            "frames": spec.frames, "metadata": spec.metadata or "-", "package": spec.package,
            "install": install, "note": spec.note,
        })
    return rows


def formats_table() -> str:
    """The formats as a Markdown table (``pixelmill formats`` prints it; the README holds it)."""
    yes = {True: "yes", False: "no"}
    head = ["format", "extensions", "read", "write", "bit depths", "alpha", "frames", "metadata kept",
            "package", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in format_rows():
        cells = [r["format"], r["extensions"], yes[r["read"]], yes[r["write"]], r["bit_depths"],
                 yes[r["alpha"]], yes[r["frames"]], r["metadata"],
                 r["package"] + (f" ({r['install']})" if r["install"] not in ("core", "-") else ""),
                 r["note"] or ("read only: write with --format" if r["read"] and not r["write"] else "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def is_image_path(path) -> bool:
    """Whether ``path`` is an image pixelmill reads: an image extension (see
    :data:`IMAGE_EXTENSIONS`), or, for an existing file with another name, content that
    starts like one (a JPEG saved as ``.dat`` is an image; the content decides).

    >>> is_image_path("holiday/IMG_001.JPG"), is_image_path("notes.txt")
    (True, False)
    """
    path = Path(path)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return False
    fmt = _sniff(head)
    return fmt is not None and FORMATS[fmt].reads


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
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] in (b"Pf", b"PF") and head[2:3].isspace():
        return "PFM"
    if head[:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        return "PPM"
    if head.startswith(b"8BPS"):
        return "PSD"
    # ICO/CUR: a count of images after the type (a TGA header can start with 00 00 02 00).
    if head[:4] == b"\x00\x00\x01\x00" and head[4:6] != b"\x00\x00":
        return "ICO"
    if head[:4] == b"\x00\x00\x02\x00" and head[4:6] != b"\x00\x00":
        return "CUR"
    if head.startswith(b"icns"):
        return "ICNS"
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xff\x4f\xff\x51"):
        return "JPEG2000"
    if head.startswith(b"qoif"):
        return "QOI"
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        return "JXL"
    if head[4:8] == b"ftyp":
        size = int.from_bytes(head[:4], "big")
        brands = {head[i:i + 4] for i in range(8, min(size, len(head)) - 3, 4)}
        if brands & {b"avif", b"avis"}:
            return "AVIF"
        if brands & {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}:
            return "HEIF"
    return None


#: Formats with no signature: recognised by their extension, then checked by their decoder.
_NO_MAGIC = {".tga": "TGA", ".icb": "TGA", ".vda": "TGA", ".vst": "TGA"}


def _sniff_file(fh, path: Path) -> str:
    head = fh.read(64)
    fh.seek(0)
    if not head:
        raise InvalidImageError(f"image file {str(path)!r} is empty (0 bytes)")
    fmt = _sniff(head)
    if fmt in (None, "ICO", "CUR") and path.suffix.lower() in _NO_MAGIC:
        fmt = _NO_MAGIC[path.suffix.lower()]
    if fmt is None and head[1:4].upper() in (b"PNG", b"QNG") and head[:1] in (b"\x89", b"\t"):
        raise InvalidImageError(
            f"PNG file {str(path)!r} has a damaged signature (corrupt, or copied as text, "
            f"which changes line endings): it starts with {head[:8]!r}"
        )
    if fmt is None:
        raise InvalidImageError(
            f"file {str(path)!r} is not an image pixelmill knows: its content matches none of "
            f"{', '.join(READ_FORMATS)} (it starts with {head[:8]!r})"
        )
    spec = FORMATS[fmt]
    if not spec.reads:
        raise UnsupportedImageError(f"image file {str(path)!r} is a {fmt} image, {spec.note}")
    return fmt


# What each format holds: dtype -> allowed (channels, has_alpha) layouts.
_GREY, _GREY_A, _RGB, _RGBA, _CMYK = (1, False), (2, True), (3, False), (4, True), (4, False)
_U8, _U16 = np.dtype(np.uint8), np.dtype(np.uint16)
_BOOL, _F32 = np.dtype(np.bool_), np.dtype(np.float32)
_ALL8 = {_GREY, _GREY_A, _RGB, _RGBA}
_CAPS = {
    "JPEG": {_BOOL: {_GREY}, _U8: {_GREY, _GREY_A, _RGB, _RGBA, _CMYK}},
    "PNG": {_BOOL: {_GREY}, _U8: _ALL8, _U16: _ALL8},
    "BMP": {_BOOL: {_GREY}, _U8: {_GREY, _RGB, _RGBA}},
    "WEBP": {_U8: _ALL8},
    "GIF": {_BOOL: {_GREY}, _U8: {_GREY, _RGB, _RGBA}},
    "TGA": {_BOOL: {_GREY}, _U8: _ALL8},
    "PPM": {_BOOL: {_GREY}, _U8: {_GREY, _RGB}, _U16: {_GREY}},
    "PFM": {_F32: {_GREY}},
    "JPEG2000": {_U8: _ALL8, _U16: _ALL8},
    "QOI": {_U8: {_RGB, _RGBA}},
    "AVIF": {_U8: {_RGB, _RGBA}, _U16: {_RGB, _RGBA}},
    "JXL": {_U8: _ALL8, _U16: _ALL8},
    "HEIF": {_U8: {_GREY, _RGB, _RGBA}, _U16: {_GREY, _RGB, _RGBA}},
}
_CAPS_TEXT = {
    "JPEG": "8-bit grey, RGB or CMYK (alpha is dropped) and bilevel",
    "PNG": "bilevel, 8- and 16-bit grey/grey+alpha/RGB/RGBA",
    "BMP": "bilevel, 8-bit grey, RGB and RGBA",
    "WEBP": "8-bit grey, RGB and RGBA",
    "GIF": "8-bit grey, RGB and RGBA with at most 256 colours and on/off alpha",
    "TGA": "bilevel, 8-bit grey/grey+alpha/RGB/RGBA",
    "PPM": "bilevel, 8-bit grey and RGB, 16-bit grey",
    "PFM": "float32 grey",
    "JPEG2000": "8- and 16-bit grey/grey+alpha/RGB/RGBA",
    "QOI": "8-bit RGB and RGBA",
    "AVIF": "8-bit RGB and RGBA, 10/12-bit RGB and RGBA (as uint16)",
    "JXL": "8- and 16-bit grey/grey+alpha/RGB/RGBA",
    "HEIF": "8-bit and (as 10-bit) 16-bit grey, RGB and RGBA",
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
        ok = (channels, has_alpha) in _CAPS.get(fmt, {}).get(data.dtype, ())
        png_ok = (channels, has_alpha) in _CAPS["PNG"].get(data.dtype, ())
        better = "PNG or TIFF" if png_ok and fmt != "PNG" else "TIFF"
        hint = f"{fmt} holds {_CAPS_TEXT.get(fmt, '')}; use {better}"
    if not ok:
        if not FORMATS[fmt].writes:
            hint = f"pixelmill does not write {fmt}: give --format (format=) {better}"
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

