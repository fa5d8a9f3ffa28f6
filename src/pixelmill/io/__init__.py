"""Reading and writing image files: mode, bit depth, alpha, orientation, ICC/EXIF.

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

PNG pixels come from libpng (imagecodecs): every bit depth (16-bit colour and grey + alpha
too), palettes expanded to RGB, a colour key (tRNS) carried as an alpha channel, CRCs checked.
Premultiplied (associated-alpha) TIFFs keep their stored samples with ``info["premultiplied"]``;
the batch computes on straight colour. JPEG has no alpha (dropped on write); TIFF holds every
layout above. The format table (:data:`FORMATS`) says what each format holds.

The EXIF orientation is applied on read (as :func:`PIL.ImageOps.exif_transpose` does), so
``data`` is upright; the EXIF kept in ``Image.info`` says orientation 1. Only the first

Writes are atomic (:func:`pixelmill._files.atomic_write`): a reader never sees a
half-written image under the final name.

The package, one module per concept: ``_formats`` (the format table, content sniffing, size
guards, what each format holds), ``_image`` (the :class:`Image` value), ``_metadata``
(EXIF, ICC, XMP, orientation), one module per backend (``_pillow``, ``_tifffile``,
``_jpeg`` for libjpeg-turbo) and ``_api`` (the public functions, which dispatch to them).
"""

# Re-exported for callers not yet moved to pixelmill._files, the home of atomic writes.
from .._files import atomic_write, durable_in_background, make_durable  # noqa: F401
from ._formats import (
    DEFAULT_MAX_PIXELS,
    EXTENSION_FORMATS,
    FORMAT_SUFFIX,
    FORMATS,
    IMAGE_EXTENSIONS,
    READ_FORMATS,
    SUPPORTED_FORMATS,
    FormatSpec,
    format_rows,
    formats_table,
    is_image_path,
)
from ._image import Image, premultiply, unpremultiply
from ._warnings import collecting as collecting_warnings

__all__ = [
    "Image",
    "premultiply",
    "unpremultiply",
    "collecting_warnings",
    "read_image",
    "read_thumbnail",
    "write_image",
    "describe",
    "check_writable",
    "READ_FORMATS",
    "is_image_path",
    "SUPPORTED_FORMATS",
    "IMAGE_EXTENSIONS",
    "EXTENSION_FORMATS",
    "FORMAT_SUFFIX",
    "FORMATS",
    "FormatSpec",
    "format_rows",
    "formats_table",
    "DEFAULT_MAX_PIXELS",
    "atomic_write",
    "open_tiff_source",
    "write_tiff_tiles",
    "tile_rows_held_bytes",
    "TiffSource",
]


def __getattr__(name):
    # The functions pull in Pillow and simplejpeg: loaded on first use, so that the format
    # table (the CLI's choices) and the Image value come without them.
    if name in ("describe", "read_image", "read_thumbnail", "write_image", "check_writable"):
        from . import _api

        return getattr(_api, name)
    if name in ("open_tiff_source", "write_tiff_tiles", "tile_rows_held_bytes", "TiffSource"):  # streamed TIFFs (tifffile, zarr)
        from . import _tifffile

        return getattr(_tifffile, name)
    raise AttributeError(f"module 'pixelmill.io' has no attribute {name!r}")
