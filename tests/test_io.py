"""pixelmill.io: modes, bit depths, alpha, orientation, ICC/EXIF, atomic writes, errors.

Input files are written by Pillow or tifffile directly (not by pixelmill), and results are
checked against what Pillow / tifffile decode on their own.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tifffile
from PIL import ExifTags, ImageCms, ImageFile, ImageOps, JpegImagePlugin
from PIL import Image as PILImage

from pixelmill import io as pio
from pixelmill.errors import (
    ImageTooLargeError,
    InvalidImageError,
    InvalidParameterError,
    PixelmillError,
    UnsupportedImageError,
)
from pixelmill.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    SUPPORTED_FORMATS,
    Image,
    describe,
    is_image_path,
    read_image,
    write_image,
)

H, W = 13, 17  # odd, non-square: orientation mistakes show


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def u8(rng, *shape):
    return rng.integers(0, 256, (H, W, *shape), dtype=np.uint8)


def smooth_rgb(rng, channels=3):
    """A smooth picture (compresses well, so lossy codecs stay close)."""
    y, x = np.mgrid[0:H, 0:W]
    planes = [(128 + 100 * np.sin(x / 5 + k) * np.cos(y / 7 - k)) for k in range(channels)]
    return np.clip(np.stack(planes, -1) + rng.normal(0, 2, (H, W, channels)), 0, 255).astype(np.uint8)


def pil_array(path, convert=None):
    with PILImage.open(path) as im:
        if convert:
            im = im.convert(convert)
        return np.asarray(im)


def pil_mode(path):
    with PILImage.open(path) as im:
        return im.mode


def pil_format(path):
    with PILImage.open(path) as im:
        return im.format


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# -- lossless round trips, every mode and bit depth ---------------------------------------------

# name -> (array maker, Pillow mode to write the source with, expected dtype, has_alpha)
PIL_SOURCES = {
    "1": (lambda r: r.random((H, W)) > 0.5, np.bool_, False),
    "L": (lambda r: u8(r), np.uint8, False),
    "LA": (lambda r: u8(r, 2), np.uint8, True),
    "RGB": (lambda r: u8(r, 3), np.uint8, False),
    "RGBA": (lambda r: u8(r, 4), np.uint8, True),
    "I;16": (lambda r: r.integers(0, 65536, (H, W), dtype=np.uint16), np.uint16, False),
    "I": (lambda r: r.integers(-(2**31), 2**31, (H, W), dtype=np.int32), np.int32, False),
    "F": (lambda r: r.normal(0, 1, (H, W)).astype(np.float32), np.float32, False),
}
LOSSLESS = [
    ("PNG", ".png", ["1", "L", "LA", "RGB", "RGBA", "I;16"]),
    ("TIFF", ".tif", ["1", "L", "LA", "RGB", "RGBA", "I;16", "I", "F"]),
    ("BMP", ".bmp", ["1", "L", "RGB"]),
]
CASES = [(fmt, ext, mode) for fmt, ext, modes in LOSSLESS for mode in modes]


@pytest.mark.parametrize("fmt,ext,mode", CASES, ids=[f"{f}-{m}" for f, _, m in CASES])
def test_lossless_round_trip_pillow_sources(tmp_path, rng, fmt, ext, mode):
    make, dtype, has_alpha = PIL_SOURCES[mode]
    arr = make(rng)
    src = tmp_path / f"in{ext}"
    PILImage.fromarray(arr).save(src, format=fmt)
    assert pil_mode(src) in (mode, "I;16B", "I") or mode == "I;16"

    img = read_image(src)
    assert img.format == fmt and img.path == src
    assert img.data.dtype == dtype and img.has_alpha is has_alpha
    np.testing.assert_array_equal(img.data, arr)
    if mode == "I;16":
        assert img.data.max() > 32767  # the top bit survives (not read as signed)
        assert img.mode in ("I;16", "I;16B", "I")

    out = write_image(tmp_path / "out" / f"o{ext}", img)
    assert pil_format(out) == fmt
    assert pil_mode(out) == pil_mode(src)
    np.testing.assert_array_equal(pil_array(out), arr)
    np.testing.assert_array_equal(read_image(out).data, arr)


def test_bilevel_written_as_mode_1_without_dithering(tmp_path, rng):
    arr = rng.random((H, W)) > 0.5
    src = tmp_path / "b.png"
    PILImage.fromarray(arr).save(src)
    img = read_image(src)
    assert img.mode == "1" and img.data.dtype == np.bool_ and img.bit_depth == 1
    inverted = img.with_color(~img.color)
    for ext in (".png", ".tif", ".bmp"):
        out = write_image(tmp_path / f"o{ext}", inverted)
        assert pil_mode(out) == "1"
        np.testing.assert_array_equal(pil_array(out), ~arr)


# tifffile writes the sources Pillow cannot represent; tifffile reads the oracle back.
TIFFFILE_SOURCES = {
    "RGB;16": (lambda r: r.integers(0, 65536, (H, W, 3), dtype=np.uint16), {"photometric": "rgb"}, False),
    "RGBA;16": (
        lambda r: r.integers(0, 65536, (H, W, 4), dtype=np.uint16),
        {"photometric": "rgb", "extrasamples": ["unassalpha"]},
        True,
    ),
    "LA;16": (
        lambda r: r.integers(0, 65536, (H, W, 2), dtype=np.uint16),
        {"photometric": "minisblack", "extrasamples": ["unassalpha"], "planarconfig": "contig"},
        True,
    ),
    "RGB;32F": (lambda r: r.random((H, W, 3), dtype=np.float32), {"photometric": "rgb"}, False),
    "L;16S": (lambda r: r.integers(-(2**15), 2**15, (H, W), dtype=np.int16), {}, False),
    "L;64F": (lambda r: r.normal(0, 1, (H, W)), {}, False),
    "RGB;16-planar": (
        lambda r: r.integers(0, 65536, (3, H, W), dtype=np.uint16),
        {"photometric": "rgb", "planarconfig": "separate"},
        False,
    ),
    "RGB;16-zlib": (
        lambda r: r.integers(0, 65536, (H, W, 3), dtype=np.uint16),
        {"photometric": "rgb", "compression": "zlib"},
        False,
    ),
}


@pytest.mark.parametrize("name", list(TIFFFILE_SOURCES))
def test_lossless_round_trip_tifffile_sources(tmp_path, rng, name):
    make, kwargs, has_alpha = TIFFFILE_SOURCES[name]
    arr = make(rng)
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, arr, **kwargs)
    expected = np.moveaxis(arr, 0, -1) if kwargs.get("planarconfig") == "separate" else arr

    img = read_image(src)
    assert img.format == "TIFF" and img.mode == name.split("-")[0]
    assert img.has_alpha is has_alpha and img.data.dtype == expected.dtype
    np.testing.assert_array_equal(img.data, expected)

    out = write_image(tmp_path / "o.tiff", img)
    back = tifffile.imread(out)
    assert back.dtype == expected.dtype
    np.testing.assert_array_equal(back, expected)
    with tifffile.TiffFile(out) as tf:
        page = tf.pages.first
        assert bool(page.extrasamples) is has_alpha
        if name.endswith("zlib"):
            assert page.compression != 1  # the source was compressed: so is the output


def test_16bit_big_endian_tiff_becomes_native_uint16(tmp_path, rng):
    arr = rng.integers(0, 65536, (H, W), dtype=np.uint16)
    src = tmp_path / "be.tif"
    tifffile.imwrite(src, arr, byteorder=">")
    img = read_image(src)
    assert img.data.dtype == np.dtype(np.uint16) and img.data.dtype.isnative
    np.testing.assert_array_equal(img.data, arr)


@pytest.mark.parametrize("transparency", [False, True])
def test_palette_images_become_rgb_or_rgba(tmp_path, rng, transparency):
    pal = PILImage.fromarray(u8(rng, 3)).quantize(16)
    src = tmp_path / "p.png"
    pal.save(src, **({"transparency": 3} if transparency else {}))
    assert pil_mode(src) == "P"
    img = read_image(src)
    oracle = pil_array(src, "RGBA" if transparency else "RGB")
    assert img.mode == "P" and img.has_alpha is transparency
    np.testing.assert_array_equal(img.data, oracle)
    if transparency:
        assert (img.alpha == 0).any() and (img.alpha == 255).any()
    out = write_image(tmp_path / "o.png", img)
    assert pil_mode(out) == ("RGBA" if transparency else "RGB")
    np.testing.assert_array_equal(pil_array(out), oracle)


@pytest.mark.parametrize("fmt,ext", [("JPEG", ".jpg"), ("TIFF", ".tif")])
def test_cmyk_read_and_written_back_as_cmyk(tmp_path, rng, fmt, ext):
    cmyk = np.ascontiguousarray(smooth_rgb(rng, 4))
    src = tmp_path / f"c{ext}"
    PILImage.frombuffer("CMYK", (W, H), cmyk, "raw", "CMYK", 0, 1).save(src, format=fmt, quality=95)
    img = read_image(src)
    assert img.mode == "CMYK" and not img.has_alpha and img.data.shape == (H, W, 4)
    np.testing.assert_array_equal(img.data, pil_array(src))
    assert img.color is img.data and img.alpha is None
    out = write_image(tmp_path / f"o{ext}", img)
    assert pil_mode(out) == "CMYK"
    if fmt == "TIFF":
        np.testing.assert_array_equal(pil_array(out), cmyk)
    else:
        assert np.abs(pil_array(out).astype(int) - img.data).mean() < 3
    # CMYK is not an RGBA picture: formats without CMYK refuse it
    with pytest.raises(UnsupportedImageError, match="CMYK"):
        write_image(tmp_path / "o.png", img)


# -- lossy formats --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_jpeg_decode_matches_pillow_and_reencode_is_close(tmp_path, rng, mode):
    arr = smooth_rgb(rng)
    arr = arr[..., 0] if mode == "L" else arr
    src = tmp_path / "in.jpg"
    PILImage.fromarray(arr).save(src, quality=95)
    img = read_image(src)
    assert img.mode == mode and img.format == "JPEG"
    np.testing.assert_array_equal(img.data, pil_array(src))  # same decoder, exact
    out = write_image(tmp_path / "o.jpg", img)
    assert pil_mode(out) == mode
    assert np.abs(pil_array(out).astype(int) - img.data).mean() < 3


@pytest.mark.parametrize("has_alpha", [False, True])
def test_webp_lossy_close_and_lossless_exact(tmp_path, rng, has_alpha):
    arr = smooth_rgb(rng, 4 if has_alpha else 3)
    if has_alpha:
        arr[:3, :, 3] = 0  # fully transparent rows: lossless WebP must keep their RGB too
    lossy, lossless = tmp_path / "lossy.webp", tmp_path / "lossless.webp"
    PILImage.fromarray(arr).save(lossy, quality=90)
    PILImage.fromarray(arr).save(lossless, lossless=True, exact=True)

    img = read_image(lossy)
    assert img.format == "WEBP" and img.info["lossless"] is False and img.has_alpha is has_alpha
    np.testing.assert_array_equal(img.data, pil_array(lossy))
    out = write_image(tmp_path / "o1.webp", img)
    assert np.abs(pil_array(out).astype(int) - arr).mean() < 6

    img = read_image(lossless)
    assert img.info["lossless"] is True
    np.testing.assert_array_equal(img.data, arr)
    out = write_image(tmp_path / "o2.webp", img)
    np.testing.assert_array_equal(pil_array(out), arr)


# -- orientation, ICC, EXIF, subsampling ----------------------------------------------------------


def _exif(orientation):
    exif = PILImage.Exif()
    exif[ExifTags.Base.Make] = "PixelCam"
    exif[ExifTags.Base.Orientation] = orientation
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "2021:02:03 04:05:06"
    return exif


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_and_reset_on_write(tmp_path, rng, orientation):
    src = tmp_path / "o.jpg"
    PILImage.fromarray(smooth_rgb(rng)).save(src, quality=95, exif=_exif(orientation), dpi=(300, 72))
    with PILImage.open(src) as im:
        raw = im.info["exif"]
        oracle = np.asarray(ImageOps.exif_transpose(im))
    img = read_image(src)
    assert img.info["orientation"] == orientation
    # the EXIF block is kept byte for byte except the orientation value (maker notes survive)
    diff = [i for i, (a, b) in enumerate(zip(raw, img.info["exif"])) if a != b]
    assert len(img.info["exif"]) == len(raw) and len(diff) == (orientation != 1)
    np.testing.assert_array_equal(img.data, oracle)
    if orientation >= 5:
        assert img.data.shape[:2] == (W, H)
        assert img.info["dpi"] == (72.0, 300.0)  # the axes swapped, so did the resolution

    out = write_image(tmp_path / "out.jpg", img)
    with PILImage.open(out) as im:
        exif = im.getexif()
        assert exif.get(ExifTags.Base.Orientation, 1) == 1
        assert exif[ExifTags.Base.Make] == "PixelCam"
        assert exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] == "2021:02:03 04:05:06"
        assert im.size == (img.width, img.height)
    # reading the output again does not rotate a second time
    np.testing.assert_array_equal(read_image(out).data.shape, img.data.shape)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_of_tifffile_read_tiffs(tmp_path, rng, orientation):
    arr = rng.integers(0, 65536, (H, W, 3), dtype=np.uint16)
    src = tmp_path / "o.tif"
    tifffile.imwrite(src, arr, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    img = read_image(src)
    assert img.mode == "RGB;16" and img.info["orientation"] == orientation
    planes = []
    for c in range(3):  # Pillow's exif_transpose per 16-bit plane is the oracle
        plane = PILImage.fromarray(arr[..., c])
        plane.getexif()[ExifTags.Base.Orientation] = orientation
        planes.append(np.asarray(ImageOps.exif_transpose(plane)))
    np.testing.assert_array_equal(img.data, np.stack(planes, -1))
    out = write_image(tmp_path / "out.tif", img)
    with tifffile.TiffFile(out) as tf:
        tag = tf.pages.first.tags.get(274)
        assert tag is None or tag.value == 1


@pytest.mark.parametrize("fmt,ext", [("JPEG", ".jpg"), ("PNG", ".png"), ("TIFF", ".tif"), ("WEBP", ".webp")])
def test_icc_profile_and_exif_kept(tmp_path, rng, fmt, ext):
    icc = srgb_icc()
    src = tmp_path / f"in{ext}"
    PILImage.fromarray(smooth_rgb(rng)).save(src, format=fmt, icc_profile=icc, exif=_exif(1))
    img = read_image(src)
    assert img.info["icc_profile"] == icc
    assert img.info["exif"]
    out = write_image(tmp_path / f"o{ext}", img)
    with PILImage.open(out) as im:
        assert im.info.get("icc_profile") == icc
        assert im.getexif()[ExifTags.Base.Make] == "PixelCam"
    d = describe(out)
    assert d["icc"] is True and d["exif"] is True


@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_jpeg_fast_codec_path_matches_pillow(tmp_path, rng, subsampling):
    # RGB and grey JPEGs are decoded and encoded with libjpeg-turbo directly (simplejpeg):
    # the pixels must be Pillow's, and the file must carry what Pillow would write.
    big_icc = srgb_icc() + bytes(rng.integers(0, 256, 150_000, dtype=np.uint8))  # > 2 APP2 segments
    src = tmp_path / "in.jpg"
    PILImage.fromarray(smooth_rgb(rng)).save(src, quality=90, subsampling=subsampling, icc_profile=big_icc,
                                             exif=_exif(1), xmp=b"<x:xmpmeta>pixelmill</x:xmpmeta>")
    img = read_image(src)
    np.testing.assert_array_equal(img.data, pil_array(src))
    out = write_image(tmp_path / "out.jpg", img, quality=93)
    with PILImage.open(out) as im:
        assert im.info["icc_profile"] == big_icc
        assert im.getexif()[ExifTags.Base.Make] == "PixelCam"
        assert b"pixelmill" in im.info["xmp"]
        assert JpegImagePlugin.get_sampling(im) == subsampling
        assert not im.info.get("progressive")
    # Same quality tables as Pillow's encoder at the same quality.
    pil_out = tmp_path / "pil.jpg"
    PILImage.fromarray(img.data).save(pil_out, quality=93, subsampling=subsampling)
    with PILImage.open(out) as ours, PILImage.open(pil_out) as theirs:
        assert ours.quantization == theirs.quantization
    grey = tmp_path / "grey.jpg"
    PILImage.fromarray(smooth_rgb(rng)[..., 0]).save(grey)
    g = read_image(grey)
    np.testing.assert_array_equal(g.data, pil_array(grey))
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "g.jpg", g)).data.shape, g.data.shape)


def test_jpeg_with_libjpeg_warnings_still_reads_like_pillow(tmp_path, rng):
    # Extraneous bytes before a marker: libjpeg warns, Pillow decodes. The fast path must not
    # turn such (common) camera files into failures.
    src = tmp_path / "in.jpg"
    PILImage.fromarray(smooth_rgb(rng)).save(src, quality=90)
    data = src.read_bytes()
    sos = data.index(b"\xff\xda")
    src.write_bytes(data[:sos] + b"\x00\x00\x00" + data[sos:])
    np.testing.assert_array_equal(read_image(src).data, pil_array(src))


def test_icc_profile_kept_by_tifffile_writes(tmp_path, rng):
    icc = srgb_icc()
    arr = rng.integers(0, 65536, (H, W, 3), dtype=np.uint16)
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, arr, photometric="rgb", iccprofile=icc, resolution=(300, 300), resolutionunit="INCH")
    img = read_image(src)
    assert img.info["icc_profile"] == icc and img.info["dpi"] == (300.0, 300.0)
    out = write_image(tmp_path / "o.tif", img)
    with tifffile.TiffFile(out) as tf:
        assert tf.pages.first.iccprofile == icc
    assert read_image(out).info["dpi"] == (300.0, 300.0)


def test_exif_across_formats_keeps_tags_not_layout(tmp_path, rng):
    src = tmp_path / "in.jpg"
    exif = _exif(6)
    exif[256] = 999  # a stale ImageWidth in the camera's EXIF must not reach a TIFF header
    PILImage.fromarray(smooth_rgb(rng)).save(src, exif=exif)
    img = read_image(src)
    tif = write_image(tmp_path / "o.tif", img)
    with PILImage.open(tif) as im:
        assert im.size == (H, W)  # rotated, and the real width
        ex = im.getexif()
        assert ex[ExifTags.Base.Make] == "PixelCam" and ex.get(ExifTags.Base.Orientation, 1) == 1
        assert ex.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] == "2021:02:03 04:05:06"
    back = read_image(tif)
    assert back.info["orientation"] == 1
    jpg = write_image(tmp_path / "o.jpg", back)  # TIFF -> JPEG: no strip offsets etc. in its EXIF
    with PILImage.open(jpg) as im:
        ex = im.getexif()
        assert ex[ExifTags.Base.Make] == "PixelCam"
        assert not {256, 257, 273, 279} & set(ex)


@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_jpeg_subsampling_kept(tmp_path, rng, subsampling):
    src = tmp_path / "in.jpg"
    PILImage.fromarray(smooth_rgb(rng)).save(src, quality=90, subsampling=subsampling)
    with PILImage.open(src) as im:
        assert JpegImagePlugin.get_sampling(im) == subsampling
    img = read_image(src)
    assert img.info["subsampling"] == subsampling
    out = write_image(tmp_path / "out.jpg", img.with_color(255 - img.color), quality=80)
    with PILImage.open(out) as im:
        assert JpegImagePlugin.get_sampling(im) == subsampling


def test_jpeg_quality_is_used(tmp_path, rng):
    img = read_image(write_image(tmp_path / "in.png", u8(rng, 3)))
    small = write_image(tmp_path / "q10.jpg", img, quality=10)
    large = write_image(tmp_path / "q95.jpg", img)  # default 95
    assert small.stat().st_size < large.stat().st_size
    for bad in (0, 101, 9.5, "95", True):
        with pytest.raises(InvalidParameterError, match="quality"):
            write_image(tmp_path / "x.jpg", img, quality=bad)


def test_tiff_compression_and_dpi_kept(tmp_path, rng):
    src = tmp_path / "in.tif"
    PILImage.fromarray(u8(rng, 3)).save(src, compression="tiff_lzw", dpi=(200, 100))
    img = read_image(src)
    out = write_image(tmp_path / "o.tif", img)
    with PILImage.open(out) as im:
        assert im.info["compression"] == "tiff_lzw"
        assert tuple(round(float(v)) for v in im.info["dpi"]) == (200, 100)
        np.testing.assert_array_equal(np.asarray(im), img.data)


# -- alpha ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["LA", "RGBA", "P"])
def test_alpha_carried_untouched(tmp_path, rng, kind):
    src = tmp_path / "a.png"
    if kind == "P":
        PILImage.fromarray(u8(rng, 3)).quantize(8).save(src, transparency=2)
        oracle = pil_array(src, "RGBA")
    else:
        oracle = u8(rng, 2 if kind == "LA" else 4)
        PILImage.fromarray(oracle).save(src)
    img = read_image(src)
    assert img.has_alpha
    np.testing.assert_array_equal(img.alpha, oracle[..., -1])
    assert np.shares_memory(img.color, img.data) and np.shares_memory(img.alpha, img.data)
    assert img.color.ndim == (2 if kind == "LA" else 3)

    out = write_image(tmp_path / "o.png", img.with_color(255 - img.color))
    back = pil_array(out)
    np.testing.assert_array_equal(back[..., -1], oracle[..., -1])
    np.testing.assert_array_equal(back[..., :-1], 255 - oracle[..., :-1])


def test_with_color_rescales_alpha_to_a_new_dtype(rng):
    data = u8(rng, 4)
    img = Image(data, has_alpha=True, mode="RGBA", format="PNG", info={"icc_profile": b"x"})
    as_float = img.with_color(img.color.astype(np.float32) / 255)
    assert as_float.data.dtype == np.float32 and as_float.info == img.info and as_float.info is not img.info
    np.testing.assert_allclose(as_float.alpha, data[..., 3] / 255, rtol=1e-6)
    as_u16 = img.with_color(img.color.astype(np.uint16) * 257)
    np.testing.assert_array_equal(as_u16.alpha, data[..., 3].astype(np.uint16) * 257)
    with pytest.raises(InvalidImageError, match="13 x 17"):
        img.with_color(np.zeros((3, 3, 3), np.uint8))


def test_jpeg_output_drops_alpha(tmp_path, rng):
    rgba = smooth_rgb(rng, 4)
    src = tmp_path / "a.png"
    PILImage.fromarray(rgba).save(src)
    out = write_image(tmp_path / "a.jpg", read_image(src))
    assert pil_mode(out) == "RGB"
    assert np.abs(pil_array(out).astype(int) - rgba[..., :3]).mean() < 4
    la = read_image(write_image(tmp_path / "la.png", u8(rng, 2)))
    assert pil_mode(write_image(tmp_path / "la.jpg", la)) == "L"


def test_image_helpers(rng):
    la = Image(u8(rng, 2), has_alpha=True, mode="LA", format="PNG", info={})
    assert la.color.shape == (H, W) and la.alpha.shape == (H, W)
    assert np.asarray(la) is la.data
    assert la.bit_depth == 8 and la.channels == 2 and (la.height, la.width) == (H, W)
    assert la.megapixels == pytest.approx(H * W / 1e6)
    f = Image(np.zeros((4, 5), np.float32), has_alpha=False, mode="F", format="TIFF", info={})
    assert f.bit_depth == 32 and f.alpha is None and f.color is f.data
    assert np.asarray(f, dtype=np.float64).dtype == np.float64
    assert "4" in repr(f) and "TIFF" in repr(f)


# -- output format ------------------------------------------------------------------------------------


def test_output_format_resolution(tmp_path, rng):
    img = read_image(write_image(tmp_path / "in.jpg", smooth_rgb(rng)))
    assert img.format == "JPEG"
    # explicit format wins over the extension
    out = write_image(tmp_path / "forced.png", img, format="tiff")
    assert pil_format(out) == "TIFF" and read_image(out).format == "TIFF"
    # otherwise the extension decides
    assert pil_format(write_image(tmp_path / "x.webp", img)) == "WEBP"
    assert pil_format(write_image(tmp_path / "x.TIF", img)) == "TIFF"
    # an unknown extension follows the source (like=) format
    assert pil_format(write_image(tmp_path / "x.out", img.data, like=img)) == "JPEG"
    assert pil_format(write_image(tmp_path / "y.out", img)) == "JPEG"
    with pytest.raises(InvalidParameterError, match="format"):
        write_image(tmp_path / "z.out", img.data)
    with pytest.raises(InvalidParameterError, match="'PSD'"):
        write_image(tmp_path / "z.psd", img, format="PSD")  # read-only
    assert {"JPEG", "PNG", "TIFF", "BMP", "WEBP", "GIF", "JXL"} <= set(SUPPORTED_FORMATS)
    assert "PSD" not in SUPPORTED_FORMATS


def test_bare_array_with_like_metadata(tmp_path, rng):
    icc = srgb_icc()
    src = tmp_path / "in.png"
    PILImage.fromarray(u8(rng, 3)).save(src, icc_profile=icc)
    img = read_image(src)
    out = write_image(tmp_path / "o.png", 255 - img.data, like=img)
    with PILImage.open(out) as im:
        assert im.info["icc_profile"] == icc
        np.testing.assert_array_equal(np.asarray(im), 255 - img.data)


@pytest.mark.parametrize(
    "dtype,channels,fmt,ext",
    [
        (np.uint16, 1, "JPEG", ".jpg"),
        (np.float32, 1, "PNG", ".png"),
        (np.float32, 3, "WEBP", ".webp"),
        (np.uint16, 1, "BMP", ".bmp"),
        (np.int32, 1, "JPEG", ".jpeg"),
    ],
)
def test_unwritable_dtype_names_path_format_dtype_and_alternative(tmp_path, dtype, channels, fmt, ext):
    data = np.zeros((H, W, channels) if channels > 1 else (H, W), dtype)
    target = tmp_path / f"bad{ext}"
    with pytest.raises(UnsupportedImageError) as err:
        write_image(target, data)
    msg = str(err.value)
    assert str(target) in msg and fmt in msg and np.dtype(dtype).name in msg and "TIFF" in msg
    assert list(tmp_path.iterdir()) == []  # nothing written, no temp file
    write_image(tmp_path / "ok.tif", data)  # and the suggestion works
    np.testing.assert_array_equal(read_image(tmp_path / "ok.tif").data, data)


# -- atomic writes ------------------------------------------------------------------------------------


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("existing", [False, True])
def test_failed_pillow_encode_leaves_nothing_behind(tmp_path, rng, monkeypatch, existing):
    folder = tmp_path / "out"
    target = folder / "x.png"
    if existing:
        folder.mkdir()
        PILImage.fromarray(u8(rng, 3)).save(target)
        before = sha(target)
    seen = []

    def broken_save(im, fp, filename):
        fp.write(b"\x89PNG\r\n\x1a\n half an image")
        seen.extend(_listing(folder))
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(PILImage.SAVE, "PNG", broken_save)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_image(target, u8(rng, 3))
    tmp_names = [n for n in seen if n != "x.png"]
    assert len(tmp_names) == 1 and tmp_names[0].startswith(".pixelmill-") and tmp_names[0].endswith(".tmp")
    assert _listing(folder) == (["x.png"] if existing else [])
    if existing:
        assert sha(target) == before


def test_failed_tifffile_encode_leaves_nothing_behind(tmp_path, rng, monkeypatch):
    target = tmp_path / "x.tif"
    target.write_bytes(b"old content")

    def broken_imwrite(fh, data, **kwargs):
        fh.write(b"II*\x00 partial")
        raise OSError("no space left")

    monkeypatch.setattr(tifffile, "imwrite", broken_imwrite)
    with pytest.raises(OSError, match="no space"):
        write_image(target, rng.random((H, W, 3)).astype(np.float32))
    assert _listing(tmp_path) == ["x.tif"] and target.read_bytes() == b"old content"


def test_write_replaces_existing_and_creates_folders_with_normal_permissions(tmp_path, rng):
    target = tmp_path / "a" / "b" / "x.png"
    first, second = u8(rng, 3), u8(rng, 3)
    assert write_image(target, first) == target
    write_image(target, second)
    np.testing.assert_array_equal(pil_array(target), second)
    assert _listing(target.parent) == ["x.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


# -- errors ------------------------------------------------------------------------------------------


def test_missing_and_empty_files(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(InvalidImageError, match=f"'{missing}' does not exist"):
        read_image(missing)
    with pytest.raises(InvalidImageError, match="does not exist"):
        describe(missing)
    empty = tmp_path / "empty.png"
    empty.touch()
    with pytest.raises(InvalidImageError, match="empty") as err:
        read_image(empty)
    assert str(empty) in str(err.value)
    with pytest.raises(InvalidImageError, match="not a file"):
        read_image(tmp_path)


@pytest.mark.parametrize("fmt,ext", [("JPEG", ".jpg"), ("PNG", ".png"), ("TIFF", ".tif"), ("BMP", ".bmp"), ("WEBP", ".webp")])
def test_truncated_files_are_invalid(tmp_path, rng, fmt, ext):
    full = tmp_path / f"full{ext}"
    PILImage.fromarray(u8(rng, 3)).save(full, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(InvalidImageError) as err:
        read_image(cut)
    assert not isinstance(err.value, (UnsupportedImageError, ImageTooLargeError))
    msg = str(err.value)
    assert str(cut) in msg and "\n" not in msg


def test_truncated_tifffile_tiff_is_invalid(tmp_path, rng):
    full = tmp_path / "full.tif"
    tifffile.imwrite(full, rng.integers(0, 65536, (H, W, 3), dtype=np.uint16), photometric="rgb")
    cut = tmp_path / "cut.tif"
    cut.write_bytes(full.read_bytes()[:-100])
    with pytest.raises(InvalidImageError, match="truncated") as err:
        read_image(cut)
    assert str(cut) in str(err.value)


def test_truncated_detected_even_if_pillow_is_told_to_load_truncated(tmp_path, rng, monkeypatch):
    full = tmp_path / "full.jpg"
    PILImage.fromarray(u8(rng, 3)).save(full)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[:-200])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(InvalidImageError, match="truncated"):
        read_image(cut)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored


def test_corrupt_and_lying_files(tmp_path, rng):
    text = tmp_path / "notes.png"
    text.write_text("definitely not a picture\n")
    with pytest.raises(InvalidImageError, match="not an image pixelmill knows") as err:
        read_image(text)
    assert str(text) in str(err.value)

    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff\xe0" + bytes(rng.integers(0, 256, 300, dtype=np.uint8)))
    with pytest.raises(InvalidImageError) as err:
        read_image(garbage)
    assert str(garbage) in str(err.value)

    # a JPEG named .png decodes fine: the content decides the format
    liar = tmp_path / "really_a_jpeg.png"
    PILImage.fromarray(smooth_rgb(rng)).save(liar, format="JPEG")
    img = read_image(liar)
    assert img.format == "JPEG"
    np.testing.assert_array_equal(img.data, pil_array(liar))

    gif = tmp_path / "a.gif.png"  # a GIF named .png is read as the GIF it is
    PILImage.fromarray(u8(rng)).save(gif, format="GIF")
    assert read_image(gif).format == "GIF"


def test_unsupported_mode(tmp_path):
    lab = tmp_path / "lab.tif"
    PILImage.new("LAB", (W, H)).save(lab)
    with pytest.raises(UnsupportedImageError, match="'LAB'") as err:
        read_image(lab)
    assert str(lab) in str(err.value)


def _png_bytes(arr: np.ndarray, color_type: int) -> bytes:
    """A PNG written by hand (zlib + CRC), independent of any imaging library."""
    import zlib

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    h, w = arr.shape[:2]
    ihdr = struct.pack(">IIBBBBB", w, h, arr.dtype.itemsize * 8, color_type, 0, 0, 0)
    rows = b"".join(b"\x00" + row.astype(">u2" if arr.dtype == np.uint16 else "u1").tobytes() for row in arr)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_16bit_colour_png_read_at_full_depth(tmp_path, rng):
    grey = rng.integers(0, 65536, (H, W), dtype=np.uint16)
    p = tmp_path / "g16.png"
    p.write_bytes(_png_bytes(grey, 0))
    np.testing.assert_array_equal(read_image(p).data, grey)  # the hand-made PNG is valid
    rgb = rng.integers(0, 65536, (H, W, 3), dtype=np.uint16)
    p = tmp_path / "rgb16.png"
    p.write_bytes(_png_bytes(rgb, 2))
    np.testing.assert_array_equal(read_image(p).data, rgb)
    d = describe(p)
    assert (d["mode"], d["dtype"], d["channels"]) == ("RGB;16", "uint16", 3)


def test_too_large_checked_from_header_before_decoding(tmp_path, rng, monkeypatch):
    src = tmp_path / "big.png"
    PILImage.fromarray(u8(rng, 3)).save(src)
    tif = tmp_path / "big.tif"
    tifffile.imwrite(tif, rng.integers(0, 65536, (H, W, 3), dtype=np.uint16), photometric="rgb")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded despite the size limit")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    monkeypatch.setattr(tifffile.TiffPage, "asarray", no_decoding)
    for path in (src, tif):
        with pytest.raises(ImageTooLargeError) as err:
            read_image(path, max_pixels=H * W - 1)
        msg = str(err.value)
        assert str(path) in msg and f"{H * W:,}" in msg and f"{H * W - 1:,}" in msg
    assert isinstance(err.value, InvalidImageError) and isinstance(err.value, PixelmillError)
    for bad in (0, -5, 1.5, "many"):
        with pytest.raises(InvalidParameterError, match="max_pixels"):
            read_image(src, max_pixels=bad)


def test_our_limit_rules_not_pillows_global_one(tmp_path, rng, monkeypatch):
    paths = []
    for ext in (".png", ".tif", ".jpg"):
        p = tmp_path / f"x{ext}"
        PILImage.fromarray(u8(rng, 3)).save(p)
        paths.append(p)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 10)  # far below H * W (and 2x it)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        for p in paths:
            assert read_image(p, max_pixels=None).data.shape == (H, W, 3)
            assert read_image(p).data.shape == (H, W, 3)
        # concurrent reads restore Pillow's setting exactly once
        with ThreadPoolExecutor(4) as pool:
            shapes = list(pool.map(lambda p: read_image(p).data.shape, paths * 6))
    assert shapes == [(H, W, 3)] * 18
    assert PILImage.MAX_IMAGE_PIXELS == 10 and DEFAULT_MAX_PIXELS >= 100_000_000
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# -- describe, paths, input untouched ------------------------------------------------------------------


def test_describe_fields(tmp_path, rng):
    jpg = tmp_path / "photo.jpg"
    PILImage.fromarray(smooth_rgb(rng)).save(jpg, exif=_exif(6), icc_profile=srgb_icc())
    d = describe(jpg)
    assert d == {
        "path": str(jpg), "format": "JPEG", "width": H, "height": W, "mode": "RGB", "dtype": "uint8",
        "bit_depth": 8, "channels": 3, "has_alpha": False, "orientation": 6, "icc": True, "exif": True,
        "megapixels": round(H * W / 1e6, 3), "file_size": jpg.stat().st_size,
    }
    img = read_image(jpg)
    assert (d["width"], d["height"]) == (img.width, img.height)

    png16 = tmp_path / "g.png"
    PILImage.fromarray(rng.integers(0, 65536, (H, W), dtype=np.uint16)).save(png16)
    d = describe(png16)
    assert (d["format"], d["bit_depth"], d["channels"], d["has_alpha"], d["icc"], d["exif"]) == (
        "PNG", 16, 1, False, False, False)
    assert (d["width"], d["height"], d["orientation"]) == (W, H, 1)

    pal = tmp_path / "p.png"
    PILImage.fromarray(u8(rng, 3)).quantize(4).save(pal, transparency=0)
    d = describe(pal)
    assert (d["mode"], d["channels"], d["has_alpha"]) == ("P", 4, True)
    assert d["channels"] == read_image(pal).channels

    tif = tmp_path / "f.tif"
    tifffile.imwrite(tif, rng.random((H, W, 3), dtype=np.float32), photometric="rgb")
    d = describe(tif)
    assert (d["mode"], d["dtype"], d["bit_depth"], d["channels"]) == ("RGB;32F", "float32", 32, 3)
    bilevel = tmp_path / "b.bmp"
    PILImage.fromarray(rng.random((H, W)) > 0.5).save(bilevel)
    assert describe(bilevel)["bit_depth"] == 1


def test_describe_ignores_the_size_limit_and_does_not_decode(tmp_path, rng, monkeypatch):
    src = tmp_path / "x.jpg"
    PILImage.fromarray(u8(rng, 3)).save(src)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda *a, **k: pytest.fail("decoded"))
    assert describe(src)["width"] == W


def test_image_extensions():
    for name in ("a.jpg", "a.JPEG", "b/c.Png", "x.tif", "x.TIFF", "y.bmp", "z.WebP"):
        assert is_image_path(name)
    for name in ("a.txt", ".x.png.1a2b.tmp", "png", "noext"):
        assert not is_image_path(name)
    assert {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".jxl", ".heic"} - {".heic"} <= set(IMAGE_EXTENSIONS)


@pytest.mark.parametrize("fmt,ext", [("JPEG", ".jpg"), ("PNG", ".png"), ("TIFF", ".tif"), ("BMP", ".bmp"), ("WEBP", ".webp")])
def test_input_file_never_modified(tmp_path, rng, fmt, ext):
    src = tmp_path / f"in{ext}"
    PILImage.fromarray(smooth_rgb(rng)).save(src, format=fmt, **({"exif": _exif(8)} if fmt != "BMP" else {}))
    before, mtime = sha(src), src.stat().st_mtime_ns
    img = read_image(src)
    describe(src)
    write_image(tmp_path / f"out{ext}", img.with_color(255 - img.color), like=img)
    assert sha(src) == before and src.stat().st_mtime_ns == mtime
    assert _listing(tmp_path) == sorted([src.name, f"out{ext}"])


def test_lazy_reexport_from_package():
    import pixelmill

    assert pixelmill.read_image is read_image and pixelmill.write_image is write_image
    assert pixelmill.Image is pio.Image
