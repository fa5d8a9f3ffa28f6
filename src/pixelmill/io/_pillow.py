"""The Pillow backend: every format and layout Pillow holds exactly, read and written."""

from __future__ import annotations

import os
import struct
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFile

from ..errors import ImageTooLargeError, InvalidImageError, UnsupportedImageError
from ._formats import _one_line
from ._image import Image
from ._metadata import (
    _ORIENTATION,
    _clean_exif,
    _exif_for_tiff,
    _orient,
    _orientation,
    _strip_xmp_orientation,
)
from ._warnings import c_stderr_captured, note


def _libtiff_quiet(fmt: str):
    """libtiff's C-level warnings kept with the image (see _warnings.c_stderr_captured)."""
    import contextlib

    return c_stderr_captured() if fmt == "TIFF" else contextlib.nullcontext()

# Pillow's guards, PIL.Image.MAX_IMAGE_PIXELS and PIL.ImageFile.LOAD_TRUNCATED_IMAGES, are
# process-wide switches: while _pillow_strict holds them, every Pillow decode in the process
# (the caller's own too, on any thread) runs with pixelmill's values. Ours: Pillow's bomb
# limit is lifted (our own size check, with its own limit, has already run when we decode)
# and truncated files always fail. The switches are only touched when a decode needs it, and
# reference-counted so that concurrent reads in threads restore the caller's values once,
# when the last of them ends.
_GUARD_LOCK = threading.Lock()
_guard_depth = 0
_guard_saved: tuple = ()


@contextmanager
def _pillow_strict(pixels: int):
    global _guard_depth, _guard_saved
    with _GUARD_LOCK:
        # Decided under the lock: while another decode holds the switches (limit None), this
        # one must hold them too, or their restoring would catch it mid-decode.
        limit = PILImage.MAX_IMAGE_PIXELS
        needed = _guard_depth > 0 or ImageFile.LOAD_TRUNCATED_IMAGES or (limit is not None and pixels > limit)
        if needed:
            if _guard_depth == 0:
                _guard_saved = (ImageFile.LOAD_TRUNCATED_IMAGES, PILImage.MAX_IMAGE_PIXELS)
                ImageFile.LOAD_TRUNCATED_IMAGES = False
                PILImage.MAX_IMAGE_PIXELS = None
            _guard_depth += 1
    if not needed:
        yield
        return
    try:
        yield
    finally:
        with _GUARD_LOCK:
            _guard_depth -= 1
            if _guard_depth == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES, PILImage.MAX_IMAGE_PIXELS = _guard_saved


_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError,
                  struct.error, ZeroDivisionError)


#: pixelmill's format name -> Pillow's, where they differ.
_PIL_NAMES = {"PFM": "PPM"}


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

        feature = {"WEBP": "webp", "AVIF": "avif", "JPEG2000": "jpg_2000"}.get(fmt)
        if feature and not features.check(feature):
            raise UnsupportedImageError(f"this Pillow was built without {fmt} support")
        PILImage.init()
        name = _PIL_NAMES.get(fmt, fmt)
        if name not in PILImage.OPEN:
            raise UnsupportedImageError(f"this Pillow cannot read {fmt} images")
        cls = PILImage.OPEN[name][0]
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
            f"{fmt} file {str(path)!r} is corrupt or not a valid {fmt} image "
            f"(Pillow: {_one_line(exc)})"
        ) from None


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
    "I;16S": (np.int16, 1, False, None),
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
    if mode == "I" and fmt in ("PNG", "PPM"):  # 16-bit grey PNG (older Pillow) and PGM open as "I"
        return np.uint16, 1, False, None
    try:
        return _PIL_LAYOUT[mode]
    except KeyError:
        raise UnsupportedImageError(
            f"image file {str(path)!r} has mode {mode!r}, which pixelmill does not support; "
            f"supported: 1, L, LA, P, RGB, RGBA, CMYK, I;16, I, F"
        ) from None


@contextmanager
def _decoding(path: Path, fmt: str, im):
    """The block that makes Pillow decode ``im``: under :func:`_pillow_strict`, with Pillow's
    errors raised as pixelmill's."""
    try:
        with _pillow_strict(im.size[0] * im.size[1]):
            yield
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image file {str(path)!r}: {_one_line(exc)}") from None
    except _DECODE_ERRORS as exc:
        raise InvalidImageError(
            f"{fmt} image file {str(path)!r} is truncated or corrupt: its pixel data cannot be "
            f"decoded (Pillow: {_one_line(exc)})"
        ) from None


def _read_pillow(fh, path: Path, fmt: str, im, fast_decode=None) -> Image:
    """Decode ``im`` (opened by :func:`_pil_open`). ``fast_decode(fh, im, fmt)``, when given,
    may decode the pixels instead of Pillow: it returns the array, or None to leave it to Pillow."""
    dtype, _, has_alpha, convert_to = _pil_layout(im, fmt, path)
    mode = im.mode
    with _decoding(path, fmt, im):
        data = fast_decode(fh, im, fmt) if fast_decode is not None and convert_to is None else None
        if data is None:
            with _libtiff_quiet(fmt):
                im.load()
    exif = _read_exif(im, path)
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



def _read_exif(im, path: Path):
    """The file's EXIF, or an empty one when it cannot be parsed (said in the record: the
    picture is still read)."""
    try:
        exif = im.getexif()
        exif.get(_ORIENTATION)
        return exif
    except Exception as exc:
        note(f"EXIF of {str(path)!r} cannot be read and is not kept (Pillow: {_one_line(exc)})")
        return PILImage.Exif()


def _pil_metadata(fh, im, fmt: str, exif, mode: str) -> dict:
    src = im.info
    orientation = _orientation(exif.get(_ORIENTATION))
    try:
        clean = _clean_exif(exif, src.get("exif"))
    except Exception as exc:
        note(f"EXIF of {im.filename!r} cannot be rewritten and is not kept (Pillow: {_one_line(exc)})")
        clean = None
    info = {
        "icc_profile": src.get("icc_profile") or None,
        "exif": clean,
        "orientation": orientation,
    }
    if src.get("dpi"):
        dpi = tuple(float(v) for v in src["dpi"])
        if all(np.isfinite(v) and v > 0 for v in dpi):
            info["dpi"] = dpi
        else:  # e.g. a resolution of 72/0: no writer takes it back
            note(f"resolution {src['dpi']!r} of {im.filename!r} is not a number of dots per inch; not kept")
    xmp = src.get("xmp") or src.get("XML:com.adobe.xmp")
    if xmp:
        xmp = xmp.encode() if isinstance(xmp, str) else bytes(xmp)
        if orientation != 1:
            xmp = _strip_xmp_orientation(xmp)
        info["xmp"] = xmp
    if fmt == "JPEG":
        from PIL import JpegImagePlugin

        info["subsampling"] = JpegImagePlugin.get_sampling(im)
        app13 = [bytes(d) for m, d in getattr(im, "applist", ()) if m == "APP13"]
        if app13:
            info["app13"] = app13  # IPTC (Photoshop resources), kept as is
        info["progressive"] = bool(src.get("progressive") or src.get("progression"))
    elif fmt == "TIFF":
        info["compression"] = src.get("compression", "raw")
        iptc = getattr(im, "tag_v2", {}).get(33723)
        if iptc:
            info["iptc"] = bytes(iptc) if isinstance(iptc, (bytes, bytearray)) else _iptc_bytes(iptc)
    elif fmt == "WEBP":
        info["lossless"] = _webp_is_lossless(fh)
    elif fmt == "PNG" and mode in ("L", "RGB", *_I16_MODES) and "transparency" in src:
        info["transparency"] = src["transparency"]
    return info



def _iptc_bytes(value) -> bytes | None:
    try:
        if isinstance(value, (tuple, list)):
            return b"".join(v.to_bytes(4, "big") if isinstance(v, int) else bytes(v) for v in value)
        return bytes(value)
    except Exception:
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
            if tag == b"ANMF":  # an animation frame: its bitstream chunk follows its header
                fh.seek(16, os.SEEK_CUR)
                continue
            fh.seek(size + (size & 1), os.SEEK_CUR)
    finally:
        fh.seek(pos)


def _describe_pillow(fh, path: Path, fmt: str) -> dict:
    """Header facts from Pillow, without decoding the pixels (see :func:`describe`)."""
    im = _pil_open(fh, path, fmt)
    try:
        dtype, channels, has_alpha, _ = _pil_layout(im, fmt, path)
        try:
            exif = im.getexif()
        except _DECODE_ERRORS:
            exif = {}
        orientation = _orientation(exif.get(_ORIENTATION))
        return dict(
            mode=im.mode, width=im.size[0], height=im.size[1], dtype=np.dtype(dtype),
            channels=channels, has_alpha=has_alpha,
            orientation=orientation,
            icc=bool(im.info.get("icc_profile")), exif=len(exif) > 0,
        )
    finally:
        im.close()


# Modes Pillow converts cheaply to one it can shrink (8-bit grey, grey + alpha, RGB, RGBA).
_THUMB_MODES = {"1": "L", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB",
                "HSV": "RGB", "La": "LA", "RGBa": "RGBA", "RGBX": "RGB"}


def _pillow_thumbnail(fh, path: Path, fmt: str, im, size: int) -> Image | None:
    """``im`` decoded, shrunk to fit in ``size`` x ``size`` and made upright, as uint8 grey,
    grey + alpha, RGB or RGBA (see :func:`read_thumbnail`); None for the 16-bit, 32-bit and
    float modes, which Pillow cannot shrink."""
    mode = im.mode
    if mode.startswith("I") or mode == "F":
        return None
    width, height = im.size
    with _decoding(path, fmt, im):
        if fmt == "JPEG":
            # libjpeg decodes at 1/2, 1/4 or 1/8 scale: a large photo costs a fraction of a decode.
            im.draft("RGB" if mode == "RGB" else None, (size, size))
        im.load()
    try:
        orientation = _orientation(im.getexif().get(_ORIENTATION))
    except Exception:  # a broken EXIF block must not hide the picture
        orientation = 1
    if mode == "P":  # keep transparency if any
        target = "RGBA" if "transparency" in im.info else "RGB"
    elif mode in ("L", "LA", "RGB", "RGBA"):
        target = None
    else:
        target = _THUMB_MODES.get(mode, "RGBA" if "A" in mode else "RGB")
    thumb = im.convert(target) if target else im.copy()
    # Shrunk before it is turned upright, so the pixels are those of the file's own layout.
    thumb.thumbnail((size, size))
    data = _orient(np.asarray(thumb), orientation)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    info = {"orientation": orientation, "full_size": (width, height)}
    return Image(data=data, has_alpha=thumb.mode in ("LA", "RGBA"), mode=mode, format=fmt,
                 info=info, path=path)


# -- writing with Pillow -------------------------------------------------------------------


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
    if fmt in ("JPEG", "PNG", "TIFF", "WEBP", "AVIF", "JPEG2000"):
        if icc:
            params["icc_profile"] = icc
        if exif and fmt == "TIFF":
            exif = _exif_for_tiff(exif)
        if exif and fmt != "JPEG2000":
            params["exif"] = exif
    if dpi and fmt in ("JPEG", "PNG", "TIFF", "BMP"):
        params["dpi"] = tuple(dpi)
    if xmp and fmt in ("JPEG", "WEBP", "AVIF"):
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
        if comp in ("jpeg", "tiff_jpeg", "webp"):
            params["quality"] = quality  # every lossy writer honours --quality
        tiffinfo = {}
        if xmp:
            tiffinfo[700] = bytes(xmp)
        if info.get("iptc"):
            tiffinfo[33723] = bytes(info["iptc"])
        if tiffinfo:
            params["tiffinfo"] = tiffinfo
    elif fmt == "AVIF":
        params["quality"] = quality
    elif fmt == "GIF":
        params["optimize"] = False  # keep the palette as built: exact colours
    elif fmt == "PNG":
        t = info.get("transparency")
        if t is not None and (
            (mode == "RGB" and isinstance(t, tuple) and len(t) == 3)
            or (mode in ("L", *_I16_MODES) and isinstance(t, int))
        ):
            params["transparency"] = t
    return params


def _gif_palette(data: np.ndarray, has_alpha: bool):
    """A palette image with exactly ``data``'s colours (GIF holds 256, alpha on or off);
    refused, with the format that holds it, when it has more (quantising would change
    pixels)."""
    if data.dtype == np.bool_:
        data = data.astype(np.uint8) * 255
    h, w = data.shape[:2]
    planes = data.reshape(h * w, -1)
    if has_alpha:
        alpha = planes[:, -1]
        if not np.isin(alpha, (0, 255)).all():
            raise UnsupportedImageError("GIF holds on/off transparency only; this image has partial alpha: use PNG")
        planes = planes[:, :-1].copy()
        planes[alpha == 0] = 0
    colours, index = np.unique(planes, axis=0, return_inverse=True)
    index = index.reshape(-1)
    key = None
    if has_alpha and (alpha == 0).any():
        key = len(colours)
        index = np.where(alpha == 0, key, index)
    if len(colours) + (key is not None) > 256:
        raise UnsupportedImageError(
            f"GIF holds 256 colours; this image has {len(colours)}: use PNG (--format png)"
        )
    rgb = np.repeat(colours, 3, axis=1) if colours.shape[1] == 1 else colours
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(rgb)] = rgb
    pil = PILImage.fromarray(index.astype(np.uint8).reshape(h, w), "P")
    pil.putpalette(palette.tobytes())
    if key is not None:
        pil.info["transparency"] = key
    return pil


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


def _pillow_encoder(data: np.ndarray, has_alpha: bool, fmt: str, info: dict, quality: int,
                    same_format: bool):
    """``encode(fileobj)`` writing ``data`` with Pillow's ``fmt`` writer."""
    pil = _gif_palette(data, has_alpha) if fmt == "GIF" else _to_pillow(data, has_alpha)
    params = _save_params(fmt, pil.mode, info, quality, same_format)
    if fmt in ("WEBP", "AVIF", "JPEG2000"):
        _pil_class(fmt)  # a clear error if Pillow lacks the codec
    if fmt == "GIF" and "transparency" in pil.info:
        params["transparency"] = pil.info["transparency"]
    fmt = _PIL_NAMES.get(fmt, fmt)

    app13 = info.get("app13") if fmt == "JPEG" else None

    def encode(fh):
        if fmt == "TIFF":
            import io

            buf = io.BytesIO()
            with _libtiff_quiet(fmt):
                pil.save(buf, format=fmt, **params)
            fh.write(buf.getbuffer())
        elif app13:
            import io

            from ._jpeg import _jpeg_with_segments

            buf = io.BytesIO()
            pil.save(buf, format=fmt, **params)
            _jpeg_with_segments(fh, buf.getvalue(), [(0xED, d) for d in app13])
        else:
            pil.save(fh, format=fmt, **params)

    return encode


# -- frames and pages ------------------------------------------------------------------------

#: Formats whose files hold several frames (animations) or pages, which pixelmill writes back.
MULTI_FRAME_FORMATS = ("GIF", "PNG", "WEBP", "TIFF")


def _n_frames(im) -> int:
    try:
        return max(1, int(getattr(im, "n_frames", 1) or 1))
    except Exception:
        return 1


def _frame_info(im) -> dict:
    info = {"duration": im.info.get("duration")}
    disposal = getattr(im, "disposal_method", None)
    if disposal is None:
        disposal = im.info.get("disposal")
    if disposal is not None:
        info["disposal"] = int(disposal)
    if im.info.get("blend") is not None:
        info["blend"] = int(im.info["blend"])
    return info


def _read_pillow_frames(fh, path: Path, fmt: str, im, first: Image) -> Image:
    """``first`` (frame 0) with the frames after it: the pages of a TIFF, each read as
    :func:`_read_pillow` reads one; the frames of an animation (GIF, WebP) as the composited
    canvases a viewer shows, RGB, or RGBA when any frame has transparency."""
    n = _n_frames(im)
    if n == 1:
        return first
    if fmt == "TIFF":
        pages = []
        for i in range(1, n):
            with _decoding(path, fmt, im):
                im.seek(i)
            pages.append(_read_pillow(fh, path, fmt, im))
        return first.with_frames(pages)
    canvases, infos = [], []
    with _decoding(path, fmt, im):
        for i in range(n):
            im.seek(i)
            im.load()
            canvases.append(np.asarray(im.convert("RGBA")))
            infos.append(_frame_info(im))
    alpha = any((c[..., 3] != 255).any() for c in canvases)
    if not alpha:
        canvases = [c[..., :3] for c in canvases]
    orientation = first.info.get("orientation", 1)
    frames = [
        Image(data=_orient(c, orientation), has_alpha=alpha, mode=first.mode, format=fmt,
              info=dict(fi), path=path)
        for c, fi in zip(canvases, infos)
    ]
    info = dict(first.info, **infos[0])
    if im.info.get("loop") is not None:
        info["loop"] = int(im.info["loop"])
    head = frames[0]
    return Image(data=head.data, has_alpha=alpha, mode=first.mode, format=fmt, info=info,
                 path=path, frames=frames[1:])


def _pillow_frames_encoder(frames: list, fmt: str, info: dict, quality: int, same_format: bool):
    """``encode(fileobj)`` writing every frame: ``frames`` is ``[(data, has_alpha, info)]``,
    the first frame's ``info`` being the image's. Durations, loop count, disposal and (APNG)
    blending are the source's."""
    pils = [_gif_palette(d, a) if fmt == "GIF" else _to_pillow(d, a) for d, a, _ in frames]
    params = _save_params(fmt, pils[0].mode, info, quality, same_format)
    if fmt in ("WEBP", "AVIF"):
        _pil_class(fmt)
    params.pop("transparency", None)
    params.update(save_all=True, append_images=pils[1:])
    if fmt != "TIFF":
        durations = [fi.get("duration") for _, _, fi in frames]
        if all(d is not None for d in durations):
            params["duration"] = [int(round(float(d))) for d in durations]
        if info.get("loop") is not None:
            params["loop"] = int(info["loop"])
    if fmt in ("GIF", "PNG"):
        disposal = [fi.get("disposal") for _, _, fi in frames]
        if all(d is not None for d in disposal):
            params["disposal"] = disposal
    if fmt == "PNG":
        blend = [fi.get("blend") for _, _, fi in frames]
        if all(b is not None for b in blend):
            params["blend"] = blend
        params["default_image"] = False
    # GIF: each frame's own key (its palette's transparent index) is in its pil.info.
    if fmt == "WEBP" and params.get("lossless"):
        params["exact"] = True

    def encode(fh):
        if fmt == "TIFF":  # Pillow's page appender reads back what it wrote: a seekable buffer
            import io

            buf = io.BytesIO()
            pils[0].save(buf, format=fmt, **params)
            fh.write(buf.getbuffer())
        else:
            pils[0].save(fh, format=fmt, **params)

    return encode
