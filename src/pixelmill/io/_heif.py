"""The HEIF / HEIC backend: pillow-heif (libheif with libde265 and x265), read and write.

An optional extra (``pip install 'pixelmill[heif]'``): pillow-heif's wheels bundle the x265
HEVC encoder, which is GPL-licensed, so pixelmill does not install it unless asked.

Samples: 8-bit images as uint8; 10- and 12-bit ones as uint16 scaled exactly onto its range
(``round(x * 65535 / (2**depth - 1))``, as the deep AVIF reader does); uint16 is written as
10-bit HEIC.
libheif applies the file's rotation and mirroring on decode, so the pixels are upright and the
orientation is 1. ICC, EXIF and XMP are kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InvalidImageError, MissingDependencyError, UnsupportedImageError
from ._formats import _one_line
from ._image import Image, from_u16, to_u16
from ._metadata import _clean_exif

__all__ = ["read_heif", "heif_encoder"]

_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def _pillow_heif():
    try:
        import pillow_heif
    except ImportError:
        raise MissingDependencyError(
            "HEIF/HEIC images need pillow-heif (its wheels bundle the GPL-licensed x265 encoder): "
            "pip install 'pixelmill[heif]'"
        ) from None
    return pillow_heif


def _exif(raw: bytes | None) -> bytes | None:
    """The file's EXIF with orientation 1 (libheif has turned the pixels upright), or None."""
    if not raw:
        return None
    from PIL import Image as PILImage

    exif = PILImage.Exif()
    try:
        exif.load(bytes(raw))
        return _clean_exif(exif, bytes(raw))
    except Exception:  # unparseable EXIF is dropped, as by the other readers
        return None


def read_heif(fh, path: Path) -> Image:
    """The primary image of a HEIF/HEIC file, upright, at its full depth."""
    ph = _pillow_heif()
    fh.seek(0)
    try:
        heif = ph.open_heif(fh, convert_hdr_to_8bit=False)
        data = np.asarray(heif)
    except Exception as exc:
        raise InvalidImageError(
            f"HEIF file {str(path)!r} is corrupt, truncated or uses a coding libheif cannot decode "
            f"(libheif: {_one_line(exc)})"
        ) from None
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    channels = 1 if data.ndim == 2 else data.shape[2]
    if channels not in _MODES:
        raise UnsupportedImageError(f"HEIF file {str(path)!r} has {channels} channels; pixelmill reads grey, RGB, RGBA")
    depth = int(heif.info.get("bit_depth") or 8)
    mode = _MODES[channels]
    if data.dtype == np.uint16:
        # libheif's 16-bit samples carry the depth's bits at the top: take the raw value back.
        data = to_u16(data >> (16 - depth), depth)
        mode += f";{depth}"
    info = {
        "icc_profile": heif.info.get("icc_profile") or None,
        "exif": _exif(heif.info.get("exif")),
        "orientation": 1,
        "heif_depth": depth,
    }
    if heif.info.get("xmp"):
        info["xmp"] = bytes(heif.info["xmp"])
    return Image(data=np.ascontiguousarray(data), has_alpha=channels == 4, mode=mode, format="HEIF",
                 info=info, path=path)


def heif_encoder(data: np.ndarray, has_alpha: bool, info: dict, quality: int):
    """``encode(fileobj)`` writing ``data`` as HEIC at ``quality`` (uint16 as 10-bit), with the
    ICC profile, EXIF and XMP of ``info``."""
    ph = _pillow_heif()
    data = np.ascontiguousarray(data)
    channels = 1 if data.ndim == 2 else data.shape[2]
    mode = _MODES[channels]
    if data.dtype == np.uint16:
        data = np.ascontiguousarray(from_u16(data, 10) << 6)
        mode += ";16"
    meta = {k: info[k] for k in ("exif", "xmp") if info.get(k)}

    def encode(fh):
        heif = ph.from_bytes(mode, (data.shape[1], data.shape[0]), data.tobytes())
        if info.get("icc_profile"):
            heif.info["icc_profile"] = info["icc_profile"]
        heif.save(fh, quality=quality, **meta)

    return encode
