"""EXIF, ICC, XMP and orientation: what a file says about its picture, kept across a
rewrite with the orientation made 1 (the pixels are upright once read)."""

from __future__ import annotations

import re
import struct

import numpy as np
from PIL import Image as PILImage

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


def _strip_xmp_orientation(xmp: bytes) -> bytes:
    """``xmp`` without its orientation (as exif_transpose: the pixels are upright now)."""
    for pattern in _XMP_ORIENTATION:
        xmp = re.sub(pattern, b"", xmp)
    return xmp


def _exif_for_tiff(exif: bytes) -> bytes | None:
    ex = PILImage.Exif()
    ex.load(exif)
    for tag in (_EXIF_IFD, _GPS_IFD):
        if tag in ex:
            ex.get_ifd(tag)
    for tag in [t for t in ex if t in _TIFF_OWN_TAGS]:
        del ex[tag]
    return ex.tobytes() if len(ex) else None
