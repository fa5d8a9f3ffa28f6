"""The libjpeg-turbo backend (simplejpeg): 8-bit RGB and grey JPEGs decoded straight into
NumPy arrays and encoded from them. Pillow still parses the headers and holds the metadata;
anything else (CMYK, progressive output, dpi, oversized metadata) is left to Pillow."""

from __future__ import annotations

import numpy as np
import simplejpeg


def max_jpeg_bytes(pixels: int) -> int:
    """A generous bound on the bytes of a JPEG of ``pixels`` pixels (all its metadata included):
    64 bytes a pixel and 16 MB."""
    return 64 * pixels + (16 << 20)


def _turbo_decode(fh, im, fmt: str) -> np.ndarray | None:
    """An 8-bit RGB or grey JPEG decoded by libjpeg-turbo straight into a NumPy array
    (simplejpeg), or None for Pillow to decode. Same library, same settings (accurate DCT,
    fancy upsampling), same pixels as Pillow's decoder, without Pillow's 4-bytes-per-pixel
    buffer and the copy out of it. Metadata still comes from Pillow, which parsed the
    header."""
    if fmt != "JPEG" or im.mode not in ("RGB", "L"):
        return None
    fh.seek(0)
    # Never more than the image could need: a JPEG with a long tail is decoded from its
    # first bytes (the decoder stops at the end-of-image marker), not read whole.
    raw = fh.read(max_jpeg_bytes(im.size[0] * im.size[1]))
    try:
        data = simplejpeg.decode_jpeg(raw, colorspace="RGB" if im.mode == "RGB" else "GRAY")
    except ValueError:
        # Strict mode raises on any libjpeg warning (e.g. extraneous bytes before a marker,
        # common in camera files); Pillow decides those cases as it always has.
        return None
    if data.shape[:2] != im.size[::-1]:
        return None
    return data[..., 0] if im.mode == "L" else data


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
    for app13 in info.get("app13") or ():
        segments.append((0xED, bytes(app13)))  # IPTC
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
        _jpeg_with_segments(fh, jpeg, segments)

    return encode


def _jpeg_with_segments(fh, jpeg: bytes, segments) -> None:
    """Write ``jpeg`` with the ``(marker, payload)`` segments after SOI and the JFIF APP0
    segment (the container, not the codec)."""
    at = 2
    if jpeg[2:4] == b"\xff\xe0":
        at = 4 + int.from_bytes(jpeg[4:6], "big")
    view = memoryview(jpeg)  # slices of it are not copies: a photo's JPEG is megabytes
    fh.write(view[:at])
    for marker, payload in segments:
        fh.write(bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload)
    fh.write(view[at:])
