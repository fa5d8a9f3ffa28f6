"""The imagecodecs backend: libpng for every PNG's pixels (all bit depths, colour keys as
alpha, libpng's CRC and stream checks), 16-bit colour / grey + alpha PNG writing, BMP with
alpha, and JPEG XL (libjxl), read and written. Pillow still parses the PNG headers and
holds their metadata."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import InvalidImageError, UnsupportedImageError
from ._formats import _one_line
from ._image import Image, from_u16, to_u16
from ._metadata import _clean_exif, _orient


def _codecs():
    try:
        import imagecodecs
    except ImportError:  # pragma: no cover - a core dependency
        raise UnsupportedImageError("imagecodecs is needed for this format: pip install imagecodecs") from None
    return imagecodecs


# -- PNG chunks (the container, not the codec: libpng and Pillow encode and decode) ----------

#: Ancillary PNG chunks that stay true after an operation on the colour: kept on rewrite.
#: (tIME is dropped: the file is new; tRNS becomes alpha; bKGD/sBIT/hIST/sPLT/PLTE refer to
#: the source's colour type and bit depth, so they are kept only when those are unchanged.)
_PNG_KEEP = (b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"tEXt", b"zTXt", b"iTXt", b"pHYs")
_PNG_SAME_LAYOUT = (b"sBIT", b"bKGD")


def _png_chunks(raw: bytes) -> list[tuple[bytes, bytes]]:
    """``[(type, data)]`` of a PNG's chunks (the CRCs are libpng's to check)."""
    out, pos = [], 8
    while pos + 8 <= len(raw):
        length, ctype = struct.unpack(">I4s", raw[pos:pos + 8])
        out.append((ctype, raw[pos + 8:pos + 8 + length]))
        pos += 12 + length
        if ctype == b"IEND":
            break
    return out


def _png_layout(chunks) -> tuple[int, int] | None:
    """(bit depth, colour type) from IHDR."""
    for ctype, data in chunks:
        if ctype == b"IHDR" and len(data) >= 10:
            return data[8], data[9]
    return None


def _png_splice(encoded: bytes, chunks: list[tuple[bytes, bytes]]) -> bytes:
    """``encoded`` with ``chunks`` inserted after IHDR, except types the encoder wrote itself."""
    own = {ctype for ctype, _ in _png_chunks(encoded)}
    extra = [(t, d) for t, d in chunks if t not in own]
    if not extra:
        return encoded
    ihdr_end = 8 + 12 + struct.unpack(">I", encoded[8:12])[0]
    body = b"".join(
        struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
        for t, d in extra
    )
    return encoded[:ihdr_end] + body + encoded[ihdr_end:]


def _png_kept_chunks(info: dict, data: np.ndarray, has_alpha: bool) -> list[tuple[bytes, bytes]]:
    """The source's ancillary chunks that are still true of ``data`` (see :data:`_PNG_KEEP`)."""
    chunks = info.get("png_chunks") or ()
    layout = info.get("png_layout")
    same = layout is not None and layout == _layout_of(data, has_alpha)
    return [(t, d) for t, d in chunks if t in _PNG_KEEP or (same and t in _PNG_SAME_LAYOUT)]


def _layout_of(data: np.ndarray, has_alpha: bool) -> tuple[int, int]:
    channels = 1 if data.ndim == 2 else data.shape[2]
    depth = 1 if data.dtype == np.bool_ else data.dtype.itemsize * 8
    return depth, {1: 0, 2: 4, 3: 2, 4: 6}[channels]


# -- PNG reading ----------------------------------------------------------------------------


def _read_png(fh, path: Path, im, metadata) -> Image:
    """Every PNG's pixels from libpng (imagecodecs): 1- to 16-bit, palette expanded to RGB,
    a colour key (tRNS) carried as alpha, CRCs checked. ``metadata(exif)`` gives the info
    dict from Pillow's parse of the header."""
    from PIL import Image as PILImage

    fh.seek(0)
    raw = fh.read()
    ic = _codecs()
    chunks = _png_chunks(raw)
    try:  # libpng's warnings reach the 'imagecodecs' logger: kept with the image
        data = ic.png_decode(raw)
    except Exception as exc:
        raise InvalidImageError(
            f"PNG file {str(path)!r} is corrupt or truncated (libpng: {_one_line(exc)})"
        ) from None
    exif = PILImage.Exif()
    raw_exif = next((d for t, d in chunks if t == b"eXIf"), None)
    if raw_exif:
        try:
            exif.load(raw_exif)
        except Exception:
            exif = PILImage.Exif()
            raw_exif = None
    info = metadata(exif)
    info["exif"] = _clean_exif(exif, raw_exif) if raw_exif else None
    info.pop("transparency", None)  # the key is alpha now
    info["png_chunks"] = [(t, d) for t, d in chunks if t in _PNG_KEEP + _PNG_SAME_LAYOUT]
    info["png_layout"] = _png_layout(chunks)
    depth, ctype = info["png_layout"] or (8, 2)
    if depth == 1 and ctype == 0 and data.ndim == 2:
        data = data > 0  # bilevel stays bool
    has_alpha = data.ndim == 3 and data.shape[2] in (2, 4)
    if depth == 16:
        mode = {1: "I;16", 2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[1 if data.ndim == 2 else data.shape[2]]
    else:
        mode = im.mode
    frames = _apng_frames(raw, chunks, ic, path, data, info) if any(t == b"acTL" for t, _ in chunks) else []
    data = _orient(data, info["orientation"])
    if info["orientation"] in (5, 6, 7, 8) and info.get("dpi"):
        info["dpi"] = info["dpi"][::-1]
    frames = [Image(data=_orient(f, info["orientation"]), has_alpha=has_alpha, mode=mode, format="PNG",
                    info=fi, path=path) for f, fi in frames]
    if frames:
        head = frames.pop(0)
        info.update(head.info)
    return Image(data=data, has_alpha=has_alpha, mode=mode, format="PNG", info=info, path=path,
                 frames=frames)


def _apng_frames(raw: bytes, chunks, ic, path: Path, first: np.ndarray, info: dict):
    """``[(canvas, frame info)]`` of an animated PNG (libpng's composited frames), with
    durations (ms), disposal and blend from its fcTL chunks and the loop count in ``info``;
    empty when the animation is one frame."""
    actl = next(d for t, d in chunks if t == b"acTL")
    nframes, plays = struct.unpack(">II", actl[:8])
    fctl = [d for t, d in chunks if t == b"fcTL"]
    if nframes < 2:
        return []
    try:
        canvases = ic.apng_decode(raw)
    except Exception as exc:
        raise InvalidImageError(
            f"animated PNG file {str(path)!r} is corrupt or truncated (libpng: {_one_line(exc)})"
        ) from None
    if canvases.ndim == first.ndim:  # one frame after all
        return []
    if canvases.shape[1:] != first.shape or len(fctl) < len(canvases):
        raise UnsupportedImageError(
            f"animated PNG file {str(path)!r}: its {nframes} frames do not decode to "
            f"{first.shape} canvases; convert it to GIF or WebP"
        )
    if len(fctl) > len(canvases):  # the default image is not part of the animation
        fctl = fctl[-len(canvases):]
    info["loop"] = int(plays)
    out = []
    for canvas, fc in zip(canvases, fctl):
        num, den = struct.unpack(">HH", fc[20:24])
        duration = 1000.0 * num / (den or 100)
        canvas = canvas > 0 if first.dtype == np.bool_ else canvas
        out.append((canvas, {"duration": duration, "disposal": fc[24], "blend": fc[25]}))
    return out


# -- writing --------------------------------------------------------------------------------


def _png_encoder(data: np.ndarray, has_alpha: bool, info: dict):
    """16-bit grey + alpha, RGB and RGBA PNGs (Pillow cannot write them), by libpng."""
    ic = _codecs()
    data = np.ascontiguousarray(data)
    extra = _png_kept_chunks(info, data, has_alpha)
    if info.get("icc_profile") and not any(t == b"iCCP" for t, _ in extra):
        extra.append((b"iCCP", b"icc\x00\x00" + zlib.compress(bytes(info["icc_profile"]))))
    if info.get("exif"):
        exif = bytes(info["exif"])
        extra.append((b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))

    def encode(fh):
        fh.write(_png_splice(bytes(ic.png_encode(data)), extra))

    return encode


def _bmp_encoder(data: np.ndarray):
    """32-bit BMP with alpha (BITMAPV4 header and bit fields), which Pillow cannot write."""
    ic = _codecs()
    data = np.ascontiguousarray(data)

    def encode(fh):
        fh.write(bytes(ic.bmp_encode(data)))

    return encode


def _read_jpegxl(fh, path: Path) -> Image:
    ic = _codecs()
    if not ic.JPEGXL.available:
        raise UnsupportedImageError(f"cannot read JPEG XL file {str(path)!r}: this imagecodecs has no libjxl")
    fh.seek(0)
    try:
        data = ic.jpegxl_decode(fh.read())
    except Exception as exc:
        raise InvalidImageError(
            f"JPEG XL file {str(path)!r} is corrupt or truncated (libjxl: {_one_line(exc)})"
        ) from None
    if data.ndim == 4:  # frames
        data = data[0]
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    channels = 1 if data.ndim == 2 else data.shape[2]
    has_alpha = channels in (2, 4)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    if data.dtype == np.uint16:
        mode += ";16"
    elif data.dtype.kind == "f":
        mode += ";32F"
    if data.dtype == np.float16:
        data = data.astype(np.float32)
    return Image(data=data, has_alpha=has_alpha, mode=mode, format="JXL",
                 info={"icc_profile": None, "exif": None, "orientation": 1}, path=path)


#: Sources whose pixels are already lossy: a JPEG XL written from them uses --quality.
_LOSSY_SOURCES = ("JPEG", "AVIF")


def _jpegxl_encoder(data: np.ndarray, has_alpha: bool, info: dict, quality: int, source: str | None):
    """Lossless unless the source was lossy (JPEG, AVIF, lossy WebP): then at ``quality``."""
    ic = _codecs()
    data = np.ascontiguousarray(data)
    lossless = not (source in _LOSSY_SOURCES or (source == "WEBP" and not info.get("lossless")))

    def encode(fh):
        if lossless:
            fh.write(bytes(ic.jpegxl_encode(data, lossless=True)))
        else:
            fh.write(bytes(ic.jpegxl_encode(data, level=quality)))

    return encode


def _describe_png(head: bytes, facts: dict) -> dict:
    """Pillow's header facts about a PNG (``head``: its first bytes), corrected to what
    :func:`_read_png` gives (full depth; a colour key is an alpha channel)."""
    chunks = _png_chunks(head)
    layout = _png_layout(chunks)
    if layout is None:
        return facts
    depth, ctype = layout
    key = any(t == b"tRNS" for t, _ in chunks)
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(ctype, facts["channels"]) + (1 if key and ctype in (0, 2, 3) else 0)
    facts = dict(facts, channels=channels, has_alpha=channels in (2, 4))
    if depth == 16:
        facts.update(dtype=np.dtype(np.uint16), mode={1: "I;16", 2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[channels])
    elif depth == 1 and ctype == 0 and not key:
        facts["dtype"] = np.dtype(np.bool_)
    else:
        facts["dtype"] = np.dtype(np.uint8)
    return facts


def _png_metadata_encoder(encode, info: dict, data: np.ndarray, has_alpha: bool):
    """``encode`` (Pillow's PNG writer) followed by the source's chunks still true of ``data``."""
    import io

    extra = _png_kept_chunks(info, data, has_alpha)
    if not extra:
        return encode

    def spliced(fh):
        buf = io.BytesIO()
        encode(buf)
        fh.write(_png_splice(buf.getvalue(), extra))

    return spliced


# -- AVIF deeper than 8 bits (Pillow decodes those to 8 bits) ------------------------------


def _avif_depth(head: bytes) -> int | None:
    """Bits per channel from the AVIF's 'pixi' property (the container, not the codec)."""
    at = head.find(b"pixi")
    if at < 0 or len(head) < at + 10:
        return None
    channels = head[at + 8]
    depths = set(head[at + 9:at + 9 + channels])
    return max(depths) if depths else None


def _read_avif_deep(fh, path: Path, depth: int) -> Image:
    """A 10- or 12-bit AVIF by libavif (imagecodecs), scaled exactly onto uint16's range
    (:func:`~._image.to_u16`, which :func:`_avif_encoder` undoes exactly), so
    that every operation's dtype rules hold."""
    return _read_deep(fh, path, depth, "AVIF", "libavif", _codecs().avif_decode, "avif_depth")


def _read_deep(fh, path: Path, depth: int, fmt: str, codec: str, decode, depth_key: str) -> Image:
    """``fmt`` samples of ``depth`` bits decoded whole by ``decode``, on uint16's range."""
    fh.seek(0)
    try:
        data = decode(fh.read())
    except Exception as exc:
        name = "JPEG 2000" if fmt == "JPEG2000" else fmt
        raise InvalidImageError(
            f"{name} file {str(path)!r} is corrupt or truncated ({codec}: {_one_line(exc)})"
        ) from None
    data = to_u16(data, depth)
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    channels = 1 if data.ndim == 2 else data.shape[2]
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels] + f";{depth}"
    return Image(data=data, has_alpha=channels in (2, 4), mode=mode, format=fmt,
                 info={"icc_profile": None, "exif": None, "orientation": 1, depth_key: depth},
                 path=path)


def _avif_encoder(data: np.ndarray, info: dict, quality: int):
    """16-bit samples to a 10- or 12-bit AVIF (the source's depth; 12 when unknown)."""
    ic = _codecs()
    depth = int(info.get("avif_depth") or 12)
    samples = from_u16(data, depth)

    def encode(fh):
        fh.write(bytes(ic.avif_encode(samples, level=quality, bitspersample=depth)))

    return encode


# -- JPEG 2000 colour deeper than 8 bits (Pillow decodes those to 8 bits) -------------------


def _jpeg2k_layout(head: bytes) -> tuple[int, int] | None:
    """(components, bits) from the codestream's SIZ marker segment (the container, not the
    codec)."""
    at = head.find(b"\xff\x51")
    if at < 0 or len(head) < at + 41:
        return None
    components = int.from_bytes(head[at + 38:at + 40], "big")
    sizes = head[at + 40:at + 40 + 3 * components:3]
    if not components or len(sizes) < components:
        return None
    return components, max((s & 0x7F) + 1 for s in sizes)


def _read_jpeg2k_deep(fh, path: Path, depth: int) -> Image:
    """A JPEG 2000 colour image of more than 8 bits by OpenJPEG (imagecodecs), at full depth."""
    return _read_deep(fh, path, depth, "JPEG2000", "OpenJPEG", _codecs().jpeg2k_decode, "j2k_depth")


def _jpeg2k_encoder(data: np.ndarray, info: dict):
    """16-bit colour JPEG 2000, lossless, at the source's depth (16 when unknown)."""
    ic = _codecs()
    depth = int(info.get("j2k_depth") or 16)
    samples = from_u16(data, depth)

    def encode(fh):
        fh.write(bytes(ic.jpeg2k_encode(samples, level=0, reversible=True, bitspersample=depth)))

    return encode
