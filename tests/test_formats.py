"""Every image a real library holds: read, processed and written back with nothing lost.

Fixtures are made here with real encoders (Pillow, imagecodecs, tifffile); the oracles are
what those libraries decode on their own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from pixelmill._opspec import parse_op
from pixelmill.batch import RunSettings, run_batch
from pixelmill.errors import InvalidImageError, UnsupportedImageError
from pixelmill.io import FORMATS, describe, read_image, write_image

H, W = 11, 14


@pytest.fixture
def rng():
    return np.random.default_rng(21)


def run(inputs, outdir, *ops, **kw):
    settings = RunSettings(ops=tuple(parse_op(op) for op in ops or ("invert",)), engine="numpy",
                           workers=1, **kw)
    result = run_batch([str(p) for p in inputs] if isinstance(inputs, list) else [str(inputs)],
                       str(outdir), settings)
    manifest = json.loads((Path(outdir) / "manifest.json").read_text())
    return result, {Path(it["input"]).name: it for it in manifest["items"]}


def invert(x):
    if x.dtype == np.bool_:
        return ~x
    if x.dtype.kind == "f":
        return 1 - x
    return np.iinfo(x.dtype).max - x


# -- (1) wrong pixels -----------------------------------------------------------------------


def _keyed_sources(tmp_path, rng):
    """PNGs with a tRNS colour key (RGB, grey, 16-bit grey, 16-bit RGB, 1-bit), each with the
    key colour at (0, 0); written by Pillow or libpng, never by pixelmill."""
    out = {}
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    rgb[0, 0] = (10, 20, 30)
    rgb[rgb.sum(-1) == 60] += 1
    rgb[0, 0] = (10, 20, 30)
    PILImage.fromarray(rgb).save(tmp_path / "rgb.png", transparency=(10, 20, 30))
    out["rgb.png"] = (rgb, np.all(rgb == (10, 20, 30), axis=-1))
    grey = rng.integers(0, 256, (H, W), dtype=np.uint8)
    grey[0, 0] = 7
    PILImage.fromarray(grey).save(tmp_path / "grey.png", transparency=7)
    out["grey.png"] = (grey, grey == 7)
    g16 = rng.integers(0, 65536, (H, W), dtype=np.uint16)
    g16[0, 0] = 1234
    PILImage.fromarray(g16).save(tmp_path / "g16.png", transparency=1234)
    out["g16.png"] = (g16, g16 == 1234)
    bits = rng.random((H, W)) > 0.5
    bits[0, 0] = False
    PILImage.fromarray(bits).save(tmp_path / "bits.png", transparency=0)
    out["bits.png"] = (bits.astype(np.uint8) * 255, ~bits)
    return out


def test_colour_keys_are_alpha_and_survive_inversion(tmp_path, rng):
    src = tmp_path / "in"
    src.mkdir()
    sources = _keyed_sources(src, rng)
    _, items = run(src, tmp_path / "out")
    for name, (color, keyed) in sources.items():
        assert items[name]["status"] == "done", items[name]
        img = read_image(src / name)
        assert img.has_alpha, name
        np.testing.assert_array_equal(img.alpha == 0, keyed, err_msg=name)
        out = np.asarray(imagecodecs.png_decode((tmp_path / "out" / name).read_bytes()))
        np.testing.assert_array_equal(out[..., -1] == 0, keyed, err_msg=name)  # alpha untouched
        np.testing.assert_array_equal(out[..., :-1].squeeze(-1) if out.shape[-1] == 2 else out[..., :-1],
                                      invert(color), err_msg=name)


def _premultiplied(rng, dtype=np.uint16):
    top = np.iinfo(dtype).max
    straight = rng.integers(0, top + 1, (H, W, 3)).astype(np.float64)
    alpha = rng.integers(0, top + 1, (H, W)).astype(np.float64)
    alpha[0, 0], alpha[0, 1] = 0, top
    stored = np.rint(straight * alpha[..., None] / top)
    return np.dstack([stored, alpha]).astype(dtype)


def test_premultiplied_16bit_tiff_inverted_and_filtered_as_straight_colour(tmp_path, rng):
    src = tmp_path / "in"
    src.mkdir()
    stored = _premultiplied(rng)
    tifffile.imwrite(src / "pm.tif", stored, photometric="rgb", extrasamples=["assocalpha"])
    _, items = run(src, tmp_path / "inv")
    assert items["pm.tif"]["status"] == "done"
    with tifffile.TiffFile(tmp_path / "inv" / "pm.tif") as tf:
        assert tuple(tf.pages.first.extrasamples) == (1,)  # still says associated alpha
        got = tf.asarray()
    a = stored[..., 3:].astype(np.int64)
    np.testing.assert_array_equal(got[..., 3], stored[..., 3])  # alpha untouched
    # straight (max - c), premultiplied again: a - stored, exactly
    np.testing.assert_array_equal(got[..., :3], a - stored[..., :3])
    _, items = run(tmp_path / "inv", tmp_path / "back")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "back" / "pm.tif"), stored)

    # a filter on straight colour: un-premultiply, blur, premultiply
    _, items = run(src, tmp_path / "blur", "gaussian:size=3,sigma=1")
    import pixelmill
    from conftest import scipy_filter

    top = 65535.0
    alpha = stored[..., 3].astype(np.float64)
    straight = np.where(alpha[..., None] > 0, stored[..., :3] * top / np.maximum(alpha, 1)[..., None], 0)
    weights = pixelmill.kernels.gaussian(3, 1.0).weights
    blurred = np.clip(scipy_filter(np.rint(np.clip(straight, 0, top)), weights), 0, top)
    expected = np.rint(np.rint(blurred) * alpha[..., None] / top)
    got = tifffile.imread(tmp_path / "blur" / "pm.tif")
    assert np.abs(got[..., :3].astype(np.float64) - expected).max() <= 1
    np.testing.assert_array_equal(got[..., 3], stored[..., 3])


def test_premultiplied_tiff_to_png_is_written_straight(tmp_path, rng):
    stored = _premultiplied(rng)
    tifffile.imwrite(tmp_path / "pm.tif", stored, photometric="rgb", extrasamples=["assocalpha"])
    img = read_image(tmp_path / "pm.tif")
    assert img.info["premultiplied"] and np.array_equal(img.data, stored)
    write_image(tmp_path / "straight.png", img)
    got = imagecodecs.png_decode((tmp_path / "straight.png").read_bytes()).astype(np.float64)
    a = stored[..., 3:].astype(np.float64)
    expected = np.where(a > 0, stored[..., :3].astype(np.float64) * 65535 / np.maximum(a, 1), 0)
    assert np.abs(got[..., :3] - np.clip(expected, 0, 65535)).max() <= 0.51  # rounded (float32 steps)


def test_float_tiff_outside_unit_range_is_never_clipped(tmp_path, rng):
    src = tmp_path / "in"
    src.mkdir()
    data = (rng.integers(-804, 805, (H, W)) / 256).astype(np.float32)  # -3.14..3.14, exact
    tifffile.imwrite(src / "f.tif", data)
    rgb = (rng.integers(-804, 805, (H, W, 3)) / 256).astype(np.float64)
    tifffile.imwrite(src / "f64.tif", rgb, photometric="rgb")
    _, items = run(src, tmp_path / "inv")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "inv" / "f.tif"), 1 - data)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "inv" / "f64.tif"), 1 - rgb)
    run(tmp_path / "inv", tmp_path / "back")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "back" / "f.tif"), data)
    _, items = run(src, tmp_path / "blur", "gaussian:size=5,sigma=1")
    from conftest import scipy_filter
    import pixelmill

    expected = scipy_filter(data, pixelmill.kernels.gaussian(5, 1.0).weights)
    got = tifffile.imread(tmp_path / "blur" / "f.tif")
    assert got.dtype == np.float32 and got.min() < -1 and got.max() > 1  # was clipped to [0, 1]
    np.testing.assert_allclose(got, expected, atol=1e-5)


# -- (2) 16-bit PNG, JPEG-TIFF quality, BMP alpha, corrupt PNG ------------------------------


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16bit_colour_and_grey_alpha_png_round_trip(tmp_path, rng, channels):
    data = rng.integers(0, 65536, (H, W, channels), dtype=np.uint16)
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(imagecodecs.png_encode(data))
    img = read_image(src / "a.png")
    assert img.data.dtype == np.uint16 and img.has_alpha == (channels != 3)
    np.testing.assert_array_equal(img.data, data)
    assert describe(src / "a.png")["dtype"] == "uint16"
    _, items = run(src, tmp_path / "out")
    assert items["a.png"]["status"] == "done"
    out = imagecodecs.png_decode((tmp_path / "out" / "a.png").read_bytes())
    expected = data.copy()
    ncolor = channels - 1 if channels != 3 else 3
    expected[..., :ncolor] = 65535 - data[..., :ncolor]
    np.testing.assert_array_equal(out, expected)
    with PILImage.open(tmp_path / "out" / "a.png") as im:  # an independent reader agrees on the layout
        assert im.size == (W, H)


def test_quality_honoured_for_jpeg_compressed_tiffs(tmp_path, rng):
    y, x = np.mgrid[0:64, 0:64]
    rgb = np.clip(np.dstack([128 + 60 * np.sin(x / 3 + k) for k in range(3)]) + rng.normal(0, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
    src = tmp_path / "in"
    src.mkdir()
    PILImage.fromarray(rgb).save(src / "j.tif", compression="jpeg", quality=95)
    sizes = {}
    for q in (20, 95):
        _, items = run(src, tmp_path / f"q{q}", quality=q)
        assert items["j.tif"]["quality"] == q
        with PILImage.open(tmp_path / f"q{q}" / "j.tif") as im:
            assert im.info["compression"] == "jpeg"
        sizes[q] = (tmp_path / f"q{q}" / "j.tif").stat().st_size
    assert sizes[20] < 0.6 * sizes[95]


def test_bmp_with_alpha_written_with_alpha(tmp_path, rng):
    rgba = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.bmp").write_bytes(imagecodecs.bmp_encode(rgba))
    _, items = run(src, tmp_path / "out")
    assert items["a.bmp"]["status"] == "done"
    with PILImage.open(tmp_path / "out" / "a.bmp") as im:
        assert im.mode == "RGBA"
        got = np.asarray(im)
    np.testing.assert_array_equal(got[..., 3], rgba[..., 3])
    np.testing.assert_array_equal(got[..., :3], 255 - rgba[..., :3])


def test_png_with_bad_idat_crc_is_a_failure(tmp_path, rng):
    src = tmp_path / "in"
    src.mkdir()
    PILImage.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(src / "bad.png")
    raw = bytearray((src / "bad.png").read_bytes())
    i = raw.index(b"IDAT")
    length = int.from_bytes(raw[i - 4:i], "big")
    raw[i + 4 + length] ^= 0xFF  # the CRC's first byte: the data itself is intact
    (src / "bad.png").write_bytes(bytes(raw))
    with pytest.raises(InvalidImageError, match="corrupt") as err:
        read_image(src / "bad.png")
    assert "CRC" in str(err.value)
    _, items = run(src, tmp_path / "out")
    assert items["bad.png"]["status"] == "failed" and "corrupt" in items["bad.png"]["error"]
    assert not (tmp_path / "out" / "bad.png").exists()


# -- (3) formats by content, `pixelmill formats`, the README's table ------------------------


def _mixed_library(root: Path, rng) -> dict[str, np.ndarray]:
    """One file per readable format and mode, each written by its own encoder; name -> the
    pixels read_image must give (checked against those encoders' inputs)."""
    root.mkdir(parents=True, exist_ok=True)
    u8 = lambda *c: rng.integers(0, 256, (H, W, *c), dtype=np.uint8)  # noqa: E731
    u16 = lambda *c: rng.integers(0, 65536, (H, W, *c), dtype=np.uint16)  # noqa: E731
    files = {}

    def pil(name, arr, mode=None, **kw):
        PILImage.fromarray(arr, mode).save(root / name, **kw) if mode else PILImage.fromarray(arr).save(root / name, **kw)
        files[name] = arr

    bits = rng.random((H, W)) > 0.5
    for ext in ("png", "tif", "bmp", "pbm"):
        pil(f"bits.{ext}", bits)
    for name in ("grey.png", "grey.tif", "grey.bmp", "grey.pgm", "grey.tga", "grey.jp2"):
        pil(name, u8())
    for name in ("la.png", "la.tga", "la.webp"):
        arr = u8(2)
        PILImage.fromarray(arr, "LA").save(root / name, **({"lossless": True} if name.endswith("webp") else {}))
        files[name] = arr if not name.endswith("webp") else None
    for name in ("rgb.png", "rgb.tif", "rgb.bmp", "rgb.ppm", "rgb.tga", "rgb.jp2", "rgb.qoi"):
        pil(name, u8(3))
    pil("rgb.webp", u8(3), lossless=True)
    for name in ("rgba.png", "rgba.tif", "rgba.tga", "rgba.qoi"):
        pil(name, u8(4))
    pil("rgba.webp", u8(4), lossless=True, exact=True)
    few = rng.integers(0, 256, (40, 3), dtype=np.uint8)[rng.integers(0, 40, (H, W))]
    pil("palette.gif", few)
    pil("palette.png", few, mode=None)
    g16 = u16()
    pil("g16.png", g16)
    pil("g16.tif", g16)
    PILImage.fromarray(g16).save(root / "g16.pgm")
    files["g16.pgm"] = g16
    for c in (2, 3, 4):
        arr = u16(c)
        (root / f"c16_{c}.png").write_bytes(imagecodecs.png_encode(arr))
        files[f"c16_{c}.png"] = arr
        tifffile.imwrite(root / f"c16_{c}.tif", arr, photometric="minisblack" if c == 2 else "rgb",
                         extrasamples=["unassalpha"] if c != 3 else None, planarconfig="contig")
        files[f"c16_{c}.tif"] = arr
        (root / f"c16_{c}.jxl").write_bytes(imagecodecs.jpegxl_encode(arr, lossless=True))
        files[f"c16_{c}.jxl"] = arr
    arr = u8(3)
    (root / "rgb.jxl").write_bytes(imagecodecs.jpegxl_encode(arr, lossless=True))
    files["rgb.jxl"] = arr
    f32 = (rng.integers(-804, 805, (H, W)) / 256).astype(np.float32)
    PILImage.fromarray(f32, "F").save(root / "f.pfm")
    files["f.pfm"] = f32
    tifffile.imwrite(root / "f.tif", f32)
    files["f.tif"] = f32
    (root / "rgba.bmp").write_bytes(imagecodecs.bmp_encode(arr4 := u8(4)))
    files["rgba.bmp"] = arr4
    return files


def test_mixed_library_read_by_content_and_inverted_twice_exactly(tmp_path, rng):
    src = tmp_path / "in"
    files = _mixed_library(src, rng)
    # the content decides the format: a PNG named .dat is found and read as PNG
    (src / "renamed.dat").write_bytes((src / "rgb.png").read_bytes())
    files["renamed.dat"] = files["rgb.png"]
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    for name, expected in files.items():
        img = read_image(src / name)
        assert describe(src / name)["format"] == img.format, name
        if expected is not None:
            np.testing.assert_array_equal(img.data, expected, err_msg=name)
    _, items = run(src, tmp_path / "once")
    assert {n: it["status"] for n, it in items.items()} == {n: "done" for n in before}
    _, items = run(tmp_path / "once", tmp_path / "twice")
    assert all(it["status"] == "done" for it in items.values()), items
    for name in before:
        first = read_image(tmp_path / "once" / name)
        again = read_image(tmp_path / "twice" / name)
        orig = read_image(src / name)
        assert again.format == orig.format and again.data.dtype == orig.data.dtype, name
        np.testing.assert_array_equal(again.data, orig.data, err_msg=name)
        if orig.has_alpha:
            np.testing.assert_array_equal(first.alpha, orig.alpha, err_msg=name)
        np.testing.assert_array_equal(first.color, invert(orig.color), err_msg=name)
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # inputs untouched
    assert not [p for p in (tmp_path / "twice").rglob("*.tmp")]  # nothing half-written


def test_read_only_formats_say_which_format_to_use_before_any_work(tmp_path, rng):
    src = tmp_path / "in"
    src.mkdir()
    rgba = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    PILImage.fromarray(rgba).save(src / "icon.ico", sizes=[(16, 16)])
    img = read_image(src / "icon.ico")
    assert img.format == "ICO"
    np.testing.assert_array_equal(img.data, rgba)
    _, items = run(src, tmp_path / "out")
    assert items["icon.ico"]["status"] == "failed"
    assert "--format" in items["icon.ico"]["error"] and "ICO" in items["icon.ico"]["error"]
    assert items["icon.ico"]["timings"] == {}  # refused before any work
    _, items = run(src, tmp_path / "png", format="PNG")
    assert items["icon.ico"]["status"] == "done"
    out = read_image(tmp_path / "png" / "icon.png")
    np.testing.assert_array_equal(out.color, 255 - rgba[..., :3])


def _heic(path, data, **save):
    pillow_heif = pytest.importorskip("pillow_heif", reason="HEIF needs the heif extra (pillow-heif)")
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[data.ndim if data.ndim == 2 else data.shape[2]]
    if data.dtype == np.uint16:
        mode += ";16"
    heif = pillow_heif.from_bytes(mode, (data.shape[1], data.shape[0]), np.ascontiguousarray(data).tobytes())
    if "icc_profile" in save:
        heif.info["icc_profile"] = save.pop("icc_profile")
    heif.save(path, **save)
    return path


def _smooth_rgb(h, w, channels=3):
    y, x = np.mgrid[0:h, 0:w]
    return np.dstack([(120 + 100 * np.sin(x / 9 + k) * np.cos(y / 7)).astype(np.uint8) for k in range(channels)])


def test_heic_read_inverted_and_written_back_with_its_metadata(tmp_path):
    from PIL import ImageCms

    rgb = _smooth_rgb(64, 96)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = PILImage.Exif()
    exif[0x010F] = "PhoneMaker"
    src = tmp_path / "in"
    src.mkdir()
    _heic(src / "photo.heic", rgb, quality=95, exif=exif.tobytes(), icc_profile=icc)
    img = read_image(src / "photo.heic")
    assert (img.format, img.data.dtype, img.data.shape) == ("HEIF", np.dtype(np.uint8), (64, 96, 3))
    assert np.abs(img.data.astype(int) - rgb).mean() < 3  # lossy, at quality 95
    assert img.info["icc_profile"] == icc
    _, items = run(src, tmp_path / "out", quality=95)
    assert items["photo.heic"]["status"] == "done" and items["photo.heic"]["quality"] == 95
    out = read_image(tmp_path / "out" / "photo.heic")
    assert out.format == "HEIF" and out.info["icc_profile"] == icc
    again = PILImage.Exif()
    again.load(out.info["exif"])
    assert again.get(0x010F) == "PhoneMaker"
    assert np.abs(out.data.astype(int) - (255 - img.data.astype(int))).mean() < 3


def test_heic_alpha_and_ten_bit_keep_their_layout(tmp_path):
    rgba = np.dstack([_smooth_rgb(40, 56), np.tile(np.arange(56, dtype=np.uint8) * 4, (40, 1))])
    p = _heic(tmp_path / "a.heic", rgba, quality=-1)
    img = read_image(p)
    assert img.has_alpha and img.data.shape == (40, 56, 4)
    assert np.abs(img.alpha.astype(int) - rgba[..., 3]).max() <= 2
    raw = _smooth_rgb(40, 56).astype(np.uint16) * 4 + np.arange(56, dtype=np.uint16)[None, :, None] % 4
    deep = raw << 6  # 10-bit samples, libheif's way
    p = _heic(tmp_path / "deep.heic", deep, quality=-1, chroma=444)
    img = read_image(p)
    assert img.data.dtype == np.uint16 and img.mode == "RGB;10"
    # Scaled onto uint16 from all 10 bits (an 8-bit decode would be off by up to 3 levels).
    levels = img.data.astype(float) * (1023 / 65535)
    assert np.abs(levels - raw).mean() < 0.5
    smooth = read_image(_heic(tmp_path / "smooth.heic", (_smooth_rgb(40, 56).astype(np.uint16) * 4) << 6, quality=-1))
    write_image(tmp_path / "deep-out.heic", smooth)
    back = read_image(tmp_path / "deep-out.heic")
    assert back.data.dtype == np.uint16 and back.mode == "RGB;10"
    assert np.abs(back.data.astype(int) - smooth.data.astype(int)).mean() < 4 * 64  # lossy, at quality 95


def test_a_broken_heic_is_a_clear_failure(tmp_path):
    pytest.importorskip("pillow_heif", reason="HEIF needs the heif extra (pillow-heif)")
    p = tmp_path / "photo.heic"
    p.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    with pytest.raises(InvalidImageError, match="HEIF file") as err:
        read_image(p)
    assert str(p) in str(err.value) and "libheif" in str(err.value)


def test_heic_without_the_extra_names_it(tmp_path):
    p = tmp_path / "photo.heic"
    p.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    code = ("import sys; sys.modules['pillow_heif'] = None\n"
            "import pixelmill\n"
            "try:\n    pixelmill.read_image(sys.argv[1])\n"
            "except pixelmill.MissingDependencyError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=120)
    assert "pip install 'pixelmill[heif]'" in done.stdout, done.stdout + done.stderr


def test_lossy_writers_honour_quality(tmp_path, rng):
    y, x = np.mgrid[0:48, 0:48]
    rgb = np.clip(np.dstack([128 + 60 * np.sin(x / 3 + k) for k in range(3)]) + rng.normal(0, 25, (48, 48, 3)), 0, 255).astype(np.uint8)
    src = tmp_path / "in"
    src.mkdir()
    PILImage.fromarray(rgb).save(src / "a.avif", quality=90)
    PILImage.fromarray(rgb).save(src / "a.jpg", quality=90)
    sizes = {}
    for q in (15, 95):
        _, items = run(src, tmp_path / f"q{q}", quality=q)
        for name in ("a.avif", "a.jpg"):
            assert items[name]["status"] == "done" and items[name]["quality"] == q
            sizes[name, q] = (tmp_path / f"q{q}" / name).stat().st_size
        # JPEG XL from a lossy source is lossy, at the quality asked for
        write_image(tmp_path / f"q{q}.jxl", read_image(src / "a.jpg"), quality=q)
        sizes["jxl", q] = (tmp_path / f"q{q}.jxl").stat().st_size
    for name in ("a.avif", "a.jpg", "jxl"):
        assert sizes[name, 15] < sizes[name, 95], name


def test_formats_command_lists_the_table_and_the_readme_matches(tmp_path):
    from click.testing import CliRunner

    from pixelmill.cli import main

    res = CliRunner().invoke(main, ["formats", "--json"])
    assert res.exit_code == 0
    rows = json.loads(res.output)
    assert [r["format"] for r in rows] == list(FORMATS)
    heif = next(r for r in rows if r["format"] == "HEIF")
    assert heif["read"] and heif["write"] and "GPL" in heif["package"] and "heif" in heif["install"]
    res = CliRunner().invoke(main, ["formats"])
    assert res.exit_code == 0
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("<!-- formats: generated by `pixelmill formats` -->\n")
    end = readme.index("<!-- /formats -->")
    table = readme[start:end].split("\n", 1)[1].strip()
    assert table == res.output.strip(), "README's format table is stale: paste `pixelmill formats`"


# -- (4) multi-frame files ------------------------------------------------------------------


def _frames_of(path):
    img = read_image(path)
    return img, [img, *img.frames]


def _animations(root: Path, rng):
    root.mkdir(parents=True, exist_ok=True)
    durations = [80, 120, 200]

    def few():
        palette = rng.integers(0, 256, (30, 3), dtype=np.uint8)
        return palette[rng.integers(0, 30, (H, W))]

    gif = []
    for i in range(3):
        rgba = np.dstack([few(), np.full((H, W), 255, np.uint8)])
        rgba[i, :, 3] = 0  # a transparent row, different in every frame
        rgba[rgba[..., 3] == 0, :3] = 0
        gif.append(PILImage.fromarray(rgba))
    gif[0].save(root / "anim.gif", save_all=True, append_images=gif[1:], duration=durations, loop=3,
                disposal=2)
    rgba = [PILImage.fromarray(rng.integers(0, 256, (H, W, 4), dtype=np.uint8)) for _ in range(3)]
    rgba[0].save(root / "anim.png", save_all=True, append_images=rgba[1:], duration=durations, loop=0,
                 disposal=[0, 1, 0], blend=[0, 0, 0])
    rgb = [PILImage.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)) for _ in range(3)]
    rgb[0].save(root / "anim.webp", save_all=True, append_images=rgb[1:], duration=durations, loop=5,
                lossless=True)
    pages16 = [rng.integers(0, 65536, (H, W, 3), dtype=np.uint16) for _ in range(3)]
    with tifffile.TiffWriter(root / "pages16.tif") as tw:
        for p in pages16:
            tw.write(p, photometric="rgb")
    grey = [PILImage.fromarray(rng.integers(0, 256, (H + i, W, ), dtype=np.uint8)) for i in range(3)]
    grey[0].save(root / "pages8.tif", save_all=True, append_images=grey[1:])
    return durations


def test_every_frame_processed_and_written_back_with_timing(tmp_path, rng):
    src = tmp_path / "in"
    durations = _animations(src, rng)
    _, items = run(src, tmp_path / "once")
    assert all(it["status"] == "done" for it in items.values()), items
    _, items = run(tmp_path / "once", tmp_path / "twice")
    assert all(it["status"] == "done" for it in items.values()), items
    for name in ("anim.gif", "anim.png", "anim.webp", "pages16.tif", "pages8.tif"):
        orig, orig_frames = _frames_of(src / name)
        once, once_frames = _frames_of(tmp_path / "once" / name)
        back, back_frames = _frames_of(tmp_path / "twice" / name)
        assert orig.n_frames == 3 and once.n_frames == 3 and back.n_frames == 3, name
        for o, f, b in zip(orig_frames, once_frames, back_frames):
            seen = o.alpha != 0 if name.endswith(".gif") else Ellipsis  # GIF keeps no colour under a key
            np.testing.assert_array_equal(f.color[seen], invert(o.color)[seen], err_msg=name)
            if o.has_alpha:
                np.testing.assert_array_equal(f.alpha, o.alpha, err_msg=name)
            np.testing.assert_array_equal(b.data, o.data, err_msg=name)
        if name.startswith("anim"):
            for img in (once, back):
                assert [round(float(f.info["duration"])) for f in [img, *img.frames]] == durations, name
                assert img.info["loop"] == orig.info["loop"], name
        if name == "anim.gif":
            assert [f.info["disposal"] for f in back_frames] == [2, 2, 2]
        if name == "anim.png":
            assert [f.info["disposal"] for f in back_frames] == [0, 1, 0]


def test_frames_into_a_single_image_format_refused_before_work(tmp_path, rng):
    src = tmp_path / "in"
    _animations(src, rng)
    _, items = run(src / "anim.gif", tmp_path / "out", format="JPEG")
    it = items["anim.gif"]
    assert it["status"] == "failed" and "3 frames" in it["error"] and "GIF" in it["error"]
    assert it["timings"] == {}


# -- (5) metadata that stays true is kept ---------------------------------------------------


def _chunk(ctype: bytes, data: bytes) -> bytes:
    import zlib

    return len(data).to_bytes(4, "big") + ctype + data + zlib.crc32(ctype + data).to_bytes(4, "big")


def _png_with_chunks(rng, depth=8) -> tuple[bytes, dict]:
    """A PNG made by libpng with ancillary chunks spliced in after IHDR."""
    import zlib

    if depth == 8:
        arr = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        bkgd = (1).to_bytes(2, "big") * 3
    else:
        arr = rng.integers(0, 65536, (H, W, 3), dtype=np.uint16)
        bkgd = (513).to_bytes(2, "big") * 3
    png = bytes(imagecodecs.png_encode(arr))
    icc = PILImage.core.__dict__.get("dummy") or b"\x00" * 128  # an opaque profile: kept as bytes
    chunks = {
        b"gAMA": (45455).to_bytes(4, "big"),
        b"cHRM": b"".join(v.to_bytes(4, "big") for v in (31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)),
        b"sBIT": bytes([depth - 2] * 3),
        b"bKGD": bkgd,
        b"iCCP": b"test\x00\x00" + zlib.compress(icc),
        b"tEXt": b"Author\x00pixelmill tests",
        b"zTXt": b"Comment\x00\x00" + zlib.compress(b"squeezed"),
        b"iTXt": b"Title\x00\x00\x00en\x00Titel\x00caf\xc3\xa9",
        b"tIME": bytes([7, 234, 1, 2, 3, 4, 5]),
    }
    end = 8 + 12 + 13
    png = png[:end] + b"".join(_chunk(t, d) for t, d in chunks.items()) + png[end:]
    return png, chunks


@pytest.mark.parametrize("depth", [8, 16])
def test_png_ancillary_chunks_kept_and_time_reset(tmp_path, rng, depth):
    from pixelmill.io._imagecodecs import _png_chunks

    src = tmp_path / "in"
    src.mkdir()
    png, chunks = _png_with_chunks(rng, depth)
    (src / "c.png").write_bytes(png)
    _, items = run(src, tmp_path / "out")
    assert items["c.png"]["status"] == "done", items["c.png"]
    got = dict(_png_chunks((tmp_path / "out" / "c.png").read_bytes()))
    for ctype in (b"gAMA", b"cHRM", b"sBIT", b"bKGD", b"tEXt", b"zTXt", b"iTXt"):
        assert got.get(ctype) == chunks[ctype], ctype
    import zlib

    assert zlib.decompress(got[b"iCCP"].split(b"\x00", 2)[2]) == zlib.decompress(chunks[b"iCCP"][6:])
    assert b"tIME" not in got  # the file is new
    with PILImage.open(tmp_path / "out" / "c.png") as im:  # an independent reader agrees
        assert im.info["gamma"] == pytest.approx(0.45455) and im.text["Author"] == "pixelmill tests"
        assert im.text["Title"] == "café"


def test_xmp_and_iptc_kept_in_jpeg_and_tiff(tmp_path, rng):
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    iptc = b"\x1c\x02\x00\x00\x02\x00\x04\x1c\x02\x05\x00\x05Title"
    app13 = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00" + len(iptc).to_bytes(4, "big") + iptc + b"\x00"
    src = tmp_path / "in"
    src.mkdir()
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    PILImage.fromarray(rgb).save(src / "a.jpg", xmp=xmp, quality=95)
    raw = (src / "a.jpg").read_bytes()
    (src / "a.jpg").write_bytes(raw[:2] + b"\xff\xed" + (len(app13) + 2).to_bytes(2, "big") + app13 + raw[2:])
    PILImage.fromarray(rgb).save(src / "a.tif", tiffinfo={700: xmp, 33723: iptc})
    tifffile.imwrite(src / "deep.tif", rng.integers(0, 65536, (H, W, 3), dtype=np.uint16), photometric="rgb",
                     extratags=[(700, "B", len(xmp), xmp, True), (33723, "B", len(iptc), iptc, True)])
    _, items = run(src, tmp_path / "out")
    assert all(it["status"] == "done" for it in items.values()), items
    with PILImage.open(tmp_path / "out" / "a.jpg") as im:
        assert xmp in (im.info.get("xmp") or b"")
        assert [d for m, d in im.applist if m == "APP13"] == [app13]
    for name in ("a.tif", "deep.tif"):
        with tifffile.TiffFile(tmp_path / "out" / name) as tf:
            tags = tf.pages.first.tags
            assert bytes(tags[700].value) == xmp, name
            value = tags[33723].value
            assert (value.tobytes() if hasattr(value, "tobytes") else bytes(value)) == iptc, name


# -- (6) unclear failures and library warnings ----------------------------------------------


def _exif_with(tag: int, kind: int, value: bytes) -> bytes:
    import struct

    head = struct.pack("<2sHI", b"II", 42, 8)
    entry = struct.pack("<H", 1) + struct.pack("<HHI", tag, kind, 1) + struct.pack("<I", 26) + struct.pack("<I", 0)
    return b"Exif\x00\x00" + head + entry + value


def _nan_resolution_tiff(path: Path, rgb: np.ndarray) -> None:
    """A deflate TIFF whose XResolution is 72/0 (libtiff refuses to write that back)."""
    tifffile.imwrite(path, rgb, photometric="rgb", compression="adobe_deflate",
                     resolution=((72, 1), (72, 1)), resolutionunit=2)
    with tifffile.TiffFile(path) as tf:
        offset = tf.pages.first.tags[282].valueoffset
    raw = bytearray(path.read_bytes())
    raw[offset + 4:offset + 8] = bytes(4)
    path.write_bytes(bytes(raw))


def test_unreadable_metadata_is_dropped_and_said_not_a_failure(tmp_path, rng):
    src = tmp_path / "in"
    src.mkdir()
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    # an EXIF whose IFD points past its end: Pillow cannot parse it
    PILImage.fromarray(rgb).save(src / "broken.jpg", exif=b"Exif\x00\x00II*\x00\xff\xff\x00\x00", quality=95)
    _nan_resolution_tiff(src / "nan.tif", rgb)
    _, items = run(src, tmp_path / "out")
    for name in ("broken.jpg", "nan.tif"):
        assert items[name]["status"] == "done", items[name]
    assert any("resolution" in w and "not kept" in w for w in items["nan.tif"]["warnings"])
    out = read_image(tmp_path / "out" / "nan.tif")
    np.testing.assert_array_equal(out.data, 255 - rgb)
    # the writer's own refusal (here forced: the dpi given as it was read) is said, not a failure
    with pytest.warns(UserWarning, match="resolution"):  # outside a batch: a Python warning
        img = read_image(src / "nan.tif")
    img.info["dpi"] = (float("nan"), 72.0)
    from pixelmill.io._warnings import collecting

    with collecting() as said:
        write_image(tmp_path / "forced.tif", img)
    assert any("not kept" in w and "Error setting from dictionary" in w for w in said), said
    np.testing.assert_array_equal(read_image(tmp_path / "forced.tif").data, rgb)
    assert not list(tmp_path.glob(".*.tmp"))


def test_library_warnings_go_to_the_record_not_stderr(tmp_path, rng, capfd):
    from click.testing import CliRunner

    from pixelmill.cli import main

    src = tmp_path / "in"
    src.mkdir()
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    import struct

    head = struct.pack("<2sHI", b"II", 42, 8)  # a description said to be 100 bytes, with 4 there
    exif = b"Exif\x00\x00" + head + struct.pack("<HHHII", 1, 270, 2, 100, 26) + bytes(4) + b"abcd"
    for i in range(3):  # Pillow warns on every read
        PILImage.fromarray(rgb).save(src / f"a{i}.jpg", exif=exif, quality=95)
    capfd.readouterr()
    for quiet in (["--quiet"], []):
        res = CliRunner().invoke(main, ["run", str(src), "-o", str(tmp_path / f"out{len(quiet)}"),
                                                        "--op", "invert", "--engine", "numpy", *quiet])
        assert res.exit_code == 0, res.output
        assert "Skipping tag" not in capfd.readouterr().err + res.output
    assert "3 with library warnings" in res.output
    manifest = json.loads((tmp_path / "out0" / "manifest.json").read_text())
    for it in manifest["items"]:
        assert any("Skipping tag 270" in w for w in it["warnings"]), it


def test_10bit_avif_read_at_full_depth_not_8(tmp_path, rng):
    ten = rng.integers(0, 1024, (16, 16, 3)).astype(np.uint16)
    src = tmp_path / "in"
    src.mkdir()
    (src / "deep.avif").write_bytes(imagecodecs.avif_encode(ten, level=100, bitspersample=10))
    decoded = imagecodecs.avif_decode((src / "deep.avif").read_bytes())  # libavif, the oracle
    img = read_image(src / "deep.avif")
    assert img.data.dtype == np.uint16 and img.mode == "RGB;10"
    assert describe(src / "deep.avif")["dtype"] == "uint16"
    np.testing.assert_array_equal(np.rint(img.data / (65535 / 1023)).astype(np.uint16), decoded)
    _, items = run(src, tmp_path / "out", quality=100)
    assert items["deep.avif"]["status"] == "done", items["deep.avif"]
    out = imagecodecs.avif_decode((tmp_path / "out" / "deep.avif").read_bytes())
    assert out.dtype == np.uint16 and out.max() <= 1023
    assert np.abs(out.astype(int) - (1023 - decoded.astype(int))).mean() < 8  # lossy, near


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_jpeg2000_read_at_full_depth_and_inverted_twice(tmp_path, rng, channels):
    deep = rng.integers(0, 65536, (H, W, channels), dtype=np.uint16)
    src = tmp_path / "in"
    src.mkdir()
    (src / "deep.jp2").write_bytes(imagecodecs.jpeg2k_encode(deep, level=0))  # lossless
    img = read_image(src / "deep.jp2")
    assert img.format == "JPEG2000"
    np.testing.assert_array_equal(img.data, imagecodecs.jpeg2k_decode((src / "deep.jp2").read_bytes()))
    np.testing.assert_array_equal(img.data, deep)
    run(src, tmp_path / "once")
    run(tmp_path / "once", tmp_path / "twice")
    once = imagecodecs.jpeg2k_decode((tmp_path / "once" / "deep.jp2").read_bytes())
    np.testing.assert_array_equal(once[..., :3], 65535 - deep[..., :3])
    np.testing.assert_array_equal(once[..., 3:], deep[..., 3:])
    np.testing.assert_array_equal(read_image(tmp_path / "twice" / "deep.jp2").data, deep)
