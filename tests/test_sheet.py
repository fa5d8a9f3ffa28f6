"""Contact sheet: layout from the manifest, PNG geometry, cell contents, truncation, errors.

Every OUTDIR here is built by hand (inputs and "outputs" written with Pillow / numpy, and a
manifest.json in the batch layer's format), so the sheet is tested without the batch layer.
Cell contents are checked by sampling the sheet's pixels at the thumbnail centres that the
layout says, against colours computed independently with numpy.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from pixelmill.errors import InvalidParameterError, PixelmillError
from pixelmill.tools.sheet import (
    SheetGeometry,
    _load_thumb,
    sheet_geometry,
    sheet_layout,
    write_contact_sheet,
)

THUMB = 64  # small thumbnails keep the tests fast


def _item(src, op, output, status="done", error=None):
    return {"input": str(src), "op": op, "output": output, "status": status, "error": error,
            "timings": {"read": 0.0, "compute": 0.0, "write": 0.0}}


def _write_manifest(outdir, ops, items):
    summary = {k: sum(1 for it in items if it["status"] == k) for k in ("done", "skipped", "failed")}
    manifest = {"version": 1, "outdir": str(outdir), "ops": ops, "summary": summary, "items": items}
    (outdir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return manifest


def _solid(shape, colour, dtype=np.uint8):
    return np.broadcast_to(np.asarray(colour, dtype=dtype), shape).copy()


def _pixel(sheet, box):
    x0, y0, x1, y1 = box
    return tuple(int(v) for v in sheet.getpixel(((x0 + x1) // 2, (y0 + y1) // 2)))


def _runs(values, predicate):
    """Number of maximal runs of consecutive values for which predicate holds."""
    runs, inside = 0, False
    for v in values:
        hit = predicate(v)
        runs += hit and not inside
        inside = hit
    return runs


@pytest.fixture
def library(tmp_path):
    """OUTDIR with 3 inputs x 2 ops: solid colours, a 16-bit output, a float TIFF, one failed item."""
    src_dir = tmp_path / "in"
    out = tmp_path / "out"
    for d in (src_dir, out / "invert", out / "dim"):
        d.mkdir(parents=True)
    rng = np.random.default_rng(7)
    colours = [tuple(int(v) for v in rng.integers(20, 236, 3)) for _ in range(3)]
    shapes = [(24, 40, 3), (30, 30, 3), (50, 20, 3)]  # landscape, square, portrait
    expected = {}  # (row, column) -> RGB the centre of the thumbnail must show
    items = []
    for r, (colour, shape) in enumerate(zip(colours, shapes)):
        src = src_dir / f"img{r}.png"
        original = _solid(shape, colour)
        Image.fromarray(original).save(src)
        expected[r, 0] = colour
        inv = 255 - original
        Image.fromarray(inv).save(out / "invert" / src.name)
        items.append(_item(src, "invert", f"invert/{src.name}"))
        expected[r, 1] = tuple(int(v) for v in inv[0, 0])
        if r == 0:
            # 16-bit grey output: shown scaled to 8 bits
            value = 40000
            Image.fromarray(_solid(shape[:2], value, np.uint16)).save(out / "dim" / "img0-16.png")
            items.append(_item(src, "dim", "dim/img0-16.png"))
            grey = int(np.round(value * 255 / 65535))
            expected[r, 2] = (grey, grey, grey)
        elif r == 1:
            items.append(_item(src, "dim", None, "failed", "InvalidImageError: cannot decode 'img1.png'"))
        else:
            # float32 output in 0..1 (the float32 policy): clipped and scaled to 0..255
            import tifffile

            tifffile.imwrite(out / "dim" / "img2.tif", _solid(shape, 0.25, np.float32), photometric="rgb")
            items.append(_item(src, "dim", "dim/img2.tif", "skipped"))
            grey = int(np.round(0.25 * 255))
            expected[r, 2] = (grey, grey, grey)
    manifest = _write_manifest(out, ["invert", "dim"], items)
    return out, manifest, expected


# --------------------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------------------


def test_layout_orders_columns_and_rows():
    items = [
        _item("/in/b.png", "blur", "blur/b.png"),
        _item("/in/a.png", "invert", "invert/a.png"),
        _item("/in/b.png", "invert", None, "failed", "boom"),
        _item("/in/a.png", "sharpen", "sharpen/a.png"),  # op missing from the manifest's list
        _item("/in/b.png", "invert", "invert/b.png"),  # a later entry (resume) replaces the earlier one
    ]
    manifest = {"version": 1, "ops": ["invert", "blur"], "items": items}
    headers, rows = sheet_layout(manifest)
    assert headers == ["original", "invert", "blur", "sharpen"]
    assert [inp for inp, _ in rows] == ["/in/b.png", "/in/a.png"]
    b, a = rows[0][1], rows[1][1]
    assert [c["column"] for c in b] == headers
    assert [c["status"] for c in b] == ["original", "done", "done", "missing"]
    assert b[0]["path"] == "/in/b.png" and b[0]["op"] is None
    assert b[1]["path"] == "invert/b.png" and b[1]["error"] is None
    assert [c["status"] for c in a] == ["original", "done", "missing", "done"]


def test_layout_without_ops_list_uses_first_seen_order():
    items = [_item("/x.png", op, f"{op}/x.png") for op in ("zeta", "alpha", "mid")]
    headers, rows = sheet_layout({"version": 1, "items": items})
    assert headers == ["original", "zeta", "alpha", "mid"]
    assert len(rows) == 1


def test_layout_max_rows():
    items = [_item(f"/in/{i}.png", "invert", f"invert/{i}.png") for i in range(7)]
    manifest = {"version": 1, "ops": ["invert"], "items": items}
    assert len(sheet_layout(manifest, max_rows=3)[1]) == 3
    assert len(sheet_layout(manifest, max_rows=None)[1]) == 7
    assert len(sheet_layout(manifest, max_rows=100)[1]) == 7
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(InvalidParameterError, match="max_rows"):
            sheet_layout(manifest, max_rows=bad)


@pytest.mark.parametrize("manifest", [[], {"version": 1}, {"version": 1, "items": [{"op": "x"}]},
                                      {"version": 9, "items": []}])
def test_layout_rejects_malformed_manifest(manifest):
    with pytest.raises(InvalidParameterError):
        sheet_layout(manifest)


def test_geometry_adds_up():
    g = sheet_geometry(4, 3, thumb_size=100)
    assert isinstance(g, SheetGeometry)
    w, h = g.size
    # cells tile the grid without overlap, and the last cell ends a margin before the edge
    assert g.cell_box(0, 3)[2] == w - g.margin
    assert g.cell_box(2, 0)[3] == h - g.margin
    assert g.cell_box(0, 1)[0] - g.cell_box(0, 0)[2] == g.gap
    assert g.cell_box(1, 0)[1] - g.cell_box(0, 0)[3] == g.gap
    x0, y0, x1, y1 = g.thumb_box(1, 2)
    assert (x1 - x0, y1 - y0) == (100, 100)
    # wrapping 4 cells at 3 per line: two lines per image row, narrower sheet, taller rows
    wrapped = sheet_geometry(4, 3, thumb_size=100, columns_per_row=3)
    assert wrapped.lines_per_row == 2
    assert wrapped.size[0] < w and wrapped.size[1] > h
    assert wrapped.cell_box(0, 3)[:2] == (wrapped.cell_box(0, 0)[0], wrapped.cell_box(0, 0)[3] + wrapped.gap)
    # a truncated sheet reserves a footer
    assert sheet_geometry(4, 3, thumb_size=100, truncated=True).size[1] > h
    with pytest.raises(InvalidParameterError, match="thumb_size"):
        sheet_geometry(2, 2, thumb_size=8)


# --------------------------------------------------------------------------------------
# the PNG
# --------------------------------------------------------------------------------------


def test_sheet_size_cells_and_colours(library):
    out, manifest, expected = library
    path = write_contact_sheet(out, thumb_size=THUMB)
    assert path == out / "contact-sheet.png"
    headers, rows = sheet_layout(manifest)
    geo = sheet_geometry(len(headers), len(rows), thumb_size=THUMB)
    with Image.open(path) as sheet:
        assert sheet.format == "PNG"
        sheet = sheet.convert("RGB")
    assert sheet.size == geo.size

    # count the cells independently of the layout: white runs across the first row's top
    # padding, and down the first column
    y = geo.cell_box(0, 0)[1] + 2
    row_pixels = [sheet.getpixel((x, y)) for x in range(sheet.width)]
    assert _runs(row_pixels, lambda p: p == (255, 255, 255)) == len(headers) == 3
    x = geo.cell_box(0, 0)[0] + 2
    col_pixels = [sheet.getpixel((x, yy)) for yy in range(geo.grid_top, sheet.height)]
    assert _runs(col_pixels, lambda p: p == (255, 255, 255)) == len(rows) == 3

    # every thumbnail shows its image's colour at its centre (16-bit scaled, float clipped)
    for (r, c), colour in expected.items():
        got = _pixel(sheet, geo.thumb_box(r, c))
        assert max(abs(a - b) for a, b in zip(got, colour)) <= 1, (r, c, got, colour)

    # the failed item shows a tinted message box (not a thumbnail, not a blank cell)
    x0, y0, x1, y1 = geo.thumb_box(1, 2)
    corner = sheet.getpixel((x1 - 3, y1 - 3))
    assert corner[0] > corner[1] and corner[0] > corner[2] and corner != (255, 255, 255)
    # ... and it holds text: dark pixels inside the box
    box = np.asarray(sheet.crop((x0, y0, x1, y1)))
    assert (box.min(axis=-1) < 150).sum() > 20

    # written atomically: no temporary file left behind
    assert sorted(p.name for p in out.iterdir()) == ["contact-sheet.png", "dim", "invert", "manifest.json"]


def test_header_names_columns(library):
    out, manifest, _ = library
    path = write_contact_sheet(out, thumb_size=THUMB)
    geo = sheet_geometry(3, 3, thumb_size=THUMB)
    sheet = np.asarray(Image.open(path).convert("L"))
    for c in range(3):
        x0, y0, x1, y1 = geo.header_box(c)
        assert (sheet[y0:y1, x0:x1] < 100).sum() > 10  # a label is written over every column


def test_max_rows_footer(tmp_path):
    out = tmp_path / "out"
    (out / "invert").mkdir(parents=True)
    items = []
    for i in range(5):
        src = tmp_path / f"{i}.png"
        Image.fromarray(_solid((8, 8, 3), (10 * i, 100, 200))).save(src)
        Image.fromarray(_solid((8, 8, 3), (255 - 10 * i, 155, 55))).save(out / "invert" / src.name)
        items.append(_item(src, "invert", f"invert/{src.name}"))
    _write_manifest(out, ["invert"], items)

    full = Image.open(write_contact_sheet(out, path=tmp_path / "full.png", thumb_size=THUMB, max_rows=None))
    cut = Image.open(write_contact_sheet(out, path=tmp_path / "cut.png", thumb_size=THUMB, max_rows=2))
    geo_full = sheet_geometry(2, 5, thumb_size=THUMB)
    geo_cut = sheet_geometry(2, 2, thumb_size=THUMB, truncated=True)
    assert full.size == geo_full.size
    assert cut.size == geo_cut.size
    assert geo_cut.footer_height > 0
    # the footer strip below the last row holds text ("... and 3 more images")
    footer = np.asarray(cut.convert("L"))[geo_cut.cell_box(1, 0)[3] + geo_cut.gap:-geo_cut.margin // 2]
    assert (footer < 150).sum() > 20
    # the untruncated sheet has no footer: below its last row is plain background
    below = np.asarray(full.convert("L"))[geo_full.cell_box(4, 0)[3] + 1:]
    assert below.min() == below.max()


def test_wrapped_rows(library):
    out, manifest, expected = library
    path = write_contact_sheet(out, thumb_size=THUMB, columns_per_row=2)
    geo = sheet_geometry(3, 3, thumb_size=THUMB, columns_per_row=2)
    sheet = Image.open(path).convert("RGB")
    assert sheet.size == geo.size
    for (r, c), colour in expected.items():
        got = _pixel(sheet, geo.thumb_box(r, c))
        assert max(abs(a - b) for a, b in zip(got, colour)) <= 1


def test_unreadable_and_missing_files_do_not_crash(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    src = tmp_path / "a.png"
    Image.fromarray(_solid((10, 10, 3), (0, 200, 0))).save(src)
    (out / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    items = [
        _item(src, "invert", "garbage.png"),
        _item(src, "blur", "gone.png"),  # the manifest says done but the file was deleted
        _item(tmp_path / "deleted-input.png", "invert", None, "failed", "FileNotFoundError: no such file"),
    ]
    _write_manifest(out, ["invert", "blur"], items)
    path = write_contact_sheet(out, thumb_size=THUMB)
    geo = sheet_geometry(3, 2, thumb_size=THUMB)
    sheet = Image.open(path).convert("RGB")
    assert sheet.size == geo.size
    assert _pixel(sheet, geo.thumb_box(0, 0)) == (0, 200, 0)
    for r, c in [(0, 1), (0, 2), (1, 0)]:
        x0, y0, x1, y1 = geo.thumb_box(r, c)
        box = np.asarray(sheet.crop((x0, y0, x1, y1)))
        assert (box.min(axis=-1) < 150).sum() > 20, (r, c)  # a message is written there

    assert "cannot read image" in _load_thumb(out / "garbage.png", THUMB).error
    assert "cannot read" in _load_thumb(out / "gone.png", THUMB).error


def test_missing_manifest(tmp_path):
    with pytest.raises(InvalidParameterError) as info:
        write_contact_sheet(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "manifest.json") in message
    assert "pixelmill run" in message
    assert isinstance(info.value, (PixelmillError, ValueError))
    assert not (tmp_path / "contact-sheet.png").exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(InvalidParameterError, match="not a folder"):
        write_contact_sheet(tmp_path / "nope")
    (tmp_path / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(InvalidParameterError, match="manifest"):
        write_contact_sheet(tmp_path)
    _write_manifest(tmp_path, [], [])
    with pytest.raises(InvalidParameterError, match="thumb_size"):
        write_contact_sheet(tmp_path, thumb_size=5)
    with pytest.raises(InvalidParameterError, match="columns_per_row"):
        write_contact_sheet(tmp_path, columns_per_row=0)
    with pytest.raises(InvalidParameterError, match="folder"):
        write_contact_sheet(tmp_path, path=tmp_path / "no" / "sheet.png")


def test_empty_manifest_still_draws(tmp_path):
    _write_manifest(tmp_path, ["invert"], [])
    path = write_contact_sheet(tmp_path, thumb_size=THUMB)
    assert Image.open(path).size == sheet_geometry(2, 0, thumb_size=THUMB).size


# --------------------------------------------------------------------------------------
# thumbnails of awkward images
# --------------------------------------------------------------------------------------


def _centre(thumb):
    im = thumb.image.convert("RGB")
    return im.getpixel((im.width // 2, im.height // 2))


def test_thumbnail_modes(tmp_path):
    # 1-bit
    Image.fromarray(np.ones((20, 30), bool)).save(tmp_path / "bit.png")
    t = _load_thumb(tmp_path / "bit.png", THUMB)
    assert _centre(t) == (255, 255, 255) and t.tag == "1-bit" and (t.width, t.height) == (30, 20)
    # CMYK: the oracle is Pillow's own CMYK -> RGB conversion of the same pixel
    cmyk = Image.new("CMYK", (30, 20), (0, 200, 255, 30))
    cmyk.save(tmp_path / "cmyk.tif")
    assert _centre(_load_thumb(tmp_path / "cmyk.tif", THUMB)) == cmyk.convert("RGB").getpixel((0, 0))
    # opaque RGBA shows its colour; transparent shows the checkerboard (not black)
    Image.new("RGBA", (30, 20), (10, 20, 30, 255)).save(tmp_path / "opaque.png")
    assert _centre(_load_thumb(tmp_path / "opaque.png", THUMB)) == (10, 20, 30)
    # 16-bit RGB TIFF and float outside 0..1 (stretched), and an .npy output
    import tifffile

    rgb16 = np.zeros((20, 30, 3), np.uint16)
    rgb16[..., 0] = 65535
    rgb16[..., 2] = 30000
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb")
    got = _centre(_load_thumb(tmp_path / "rgb16.tif", THUMB))
    assert abs(got[0] - 255) <= 1 and got[1] == 0 and abs(got[2] - 30000 * 255 / 65535) <= 1
    ramp = np.tile(np.linspace(-50.0, 300.0, 64, dtype=np.float32), (16, 1))
    np.save(tmp_path / "ramp.npy", ramp)
    t = _load_thumb(tmp_path / "ramp.npy", THUMB)
    arr = np.asarray(t.image)
    assert t.tag == "float" and arr.min() == 0 and arr.max() == 255  # stretched min..max
    assert (t.width, t.height) == (64, 16)


def test_thumbnail_big_jpeg_and_orientation(tmp_path):
    # a large JPEG is decoded in draft mode but still reports its full size
    big = _solid((1200, 1800, 3), (200, 60, 30))
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=95)
    t = _load_thumb(tmp_path / "big.jpg", THUMB)
    assert (t.width, t.height) == (1800, 1200)
    assert max(t.image.size) == THUMB
    assert max(abs(a - b) for a, b in zip(_centre(t), (200, 60, 30))) <= 4  # JPEG is lossy
    # EXIF orientation 6 (rotate 90 CW to view): shown upright, size reported upright
    im = Image.fromarray(_solid((20, 40, 3), (0, 0, 255)))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(tmp_path / "rot.jpg", exif=exif)
    t = _load_thumb(tmp_path / "rot.jpg", THUMB)
    assert (t.width, t.height) == (20, 40)
    assert t.image.height > t.image.width


# --------------------------------------------------------------------------------------
# a real-looking sheet
# --------------------------------------------------------------------------------------


def test_photo_sheet_inverted_cells_are_inverted(tmp_path):
    """Photos from skimage.data inverted with numpy: each invert thumbnail is the inverse of
    its original's thumbnail (resampling is linear, so it commutes with 255 - x)."""
    data = pytest.importorskip("skimage.data")
    out = tmp_path / "out"
    (out / "invert").mkdir(parents=True)
    items = []
    for name in ("astronaut", "coffee", "chelsea"):
        photo = getattr(data, name)()[::4, ::4]  # small: fast
        src = tmp_path / f"{name}.png"
        Image.fromarray(photo).save(src)
        Image.fromarray(255 - photo).save(out / "invert" / src.name)
        items.append(_item(src, "invert", f"invert/{src.name}"))
    _write_manifest(out, ["invert"], items)
    path = write_contact_sheet(out, thumb_size=96)
    geo = sheet_geometry(2, 3, thumb_size=96)
    sheet = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert sheet.shape[:2] == geo.size[::-1]
    for r in range(3):
        ox0, oy0, ox1, oy1 = geo.thumb_box(r, 0)
        ix0, iy0, ix1, iy1 = geo.thumb_box(r, 1)
        # central patch of both thumbnails (away from the letterbox)
        cy, cx = (oy1 - oy0) // 2, (ox1 - ox0) // 2
        orig = sheet[oy0 + cy - 10:oy0 + cy + 10, ox0 + cx - 10:ox0 + cx + 10]
        inv = sheet[iy0 + cy - 10:iy0 + cy + 10, ix0 + cx - 10:ix0 + cx + 10]
        assert np.abs((255 - orig) - inv).max() <= 2
        assert orig.std() > 5  # a photo, not a flat box
    assert not any(name.endswith(".tmp") for name in os.listdir(out))


@pytest.mark.parametrize(
    "values, expected",
    [
        (np.array([0, 32768, 65535], np.uint16), np.round(np.array([0, 32768, 65535]) * 255 / 65535)),
        (np.array([0.0, 0.25, 1.0], np.float32), np.round(np.array([0.0, 0.25, 1.0]) * 255)),
        (np.array([-2.0, 0.0, 2.0], np.float64), np.array([0, 127.5, 255])),  # outside 0..1: stretched
        (np.array([-100, 0, 100], np.int16), np.array([0, 127.5, 255])),  # signed: stretched
        (np.array([True, False]), np.array([255, 0])),
    ],
)
def test_display_scaling(values, expected):
    from pixelmill.tools.sheet import _scale_to_uint8

    got = _scale_to_uint8(values)
    assert got.dtype == np.uint8
    assert np.abs(got.astype(float) - expected).max() <= 0.5
