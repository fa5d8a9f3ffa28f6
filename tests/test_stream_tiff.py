"""Streamed TIFFs (io/_tifffile.py's source and sink, batch/_task.py's streamed path): read
window by window (the rows tifffile's ``aszarr`` gives), written tile row by tile row (the
bytes tifffile writes), kept as the source was (tiling, compression, predictor, description,
resolution), equal to the in-memory result."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pixelmill import kernels
from pixelmill.engines import iter_bands, make_engine
from pixelmill.ops import Filter, SobelMagnitude

from conftest import random_image

pytest.importorskip("zarr")
tifffile = pytest.importorskip("tifffile")

OME = '<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"/>'


def _stream(src_path, out_path, op, border, engine="numba"):
    from pixelmill.io import open_tiff_source, write_tiff_tiles

    with open_tiff_source(src_path) as src, make_engine(engine, workers=2) as eng:
        bands = iter_bands(op, src.array, engine=eng, border=border)
        write_tiff_tiles(out_path, bands, src.array.shape, op.out_dtype(src.array.dtype), src.kwargs, src.tile)


@pytest.mark.parametrize("border", ["wrap", "reflect", "constant"])
def test_a_tiled_tiff_streams_to_a_tiled_tiff_like_it(tmp_path, rng, border):
    image = random_image(rng, (700, 500, 3), np.uint8)
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, image, tile=(128, 64), compression="zlib", predictor=2, photometric="rgb",
                     resolution=(300, 300), description=OME, metadata=None)
    op = Filter(kernels.gaussian(5, 1.0), policy="clip")
    _stream(src, tmp_path / "out.tif", op, border)
    with make_engine("numba") as eng:
        expected = eng.run(op, image, border=border)
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        page = tif.pages.first
        np.testing.assert_array_equal(page.asarray(), expected)
        assert (page.tilelength, page.tilewidth) == (128, 64)
        assert int(page.compression) == 8 and int(page.predictor) == 2
        assert page.description == OME  # an OME-TIFF keeps its OME-XML
        assert page.tags[282].value == (300, 1)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_a_strip_tiff_of_uint16_streams_in_row_bands(tmp_path, rng):
    image = random_image(rng, (333, 257), np.uint16)
    src = tmp_path / "strips.tif"
    tifffile.imwrite(src, image, rowsperstrip=16, compression="zlib", photometric="minisblack")
    op = SobelMagnitude(policy="clip")
    _stream(src, tmp_path / "out.tif", op, "mirror", engine="numpy")
    with make_engine("numpy") as eng:
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), eng.run(op, image, border="mirror"))


def _run(tmp_path, monkeypatch, image, *args):
    from click.testing import CliRunner

    from pixelmill.batch import _task
    from pixelmill.cli import main

    monkeypatch.setattr(_task, "IN_MEMORY_BYTES_PER_SAMPLE", 10**9)  # stream whatever the size
    lib = tmp_path / "lib"
    lib.mkdir(exist_ok=True)
    tifffile.imwrite(lib / "big.tif", image, tile=(256, 256), compression="zlib", photometric="rgb")
    out = tmp_path / "out"
    done = CliRunner().invoke(main, ["run", str(lib), "-o", str(out), "--engine", "numba", "--workers", "2",
                                     "--border", "reflect", "-q", "--json", *args])
    return done, out


def test_pixelmill_run_streams_a_big_tiled_tiff(tmp_path, monkeypatch, rng):
    import pixelmill

    image = random_image(rng, (3000, 2000, 3), np.uint8)
    done, out = _run(tmp_path, monkeypatch, image, "--op", "gaussian", "--op", "sobel")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["done"] == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(item.get("streamed") for item in manifest["items"]), manifest["items"]
    gauss = tifffile.imread(next(out.rglob("gaussian*/big.tif")))
    np.testing.assert_array_equal(gauss, pixelmill.convolve(image, "gaussian", border="reflect", policy="clip"))
    sobel = tifffile.imread(next(out.rglob("sobel*/big.tif")))
    np.testing.assert_array_equal(sobel, pixelmill.sobel(image, border="reflect", policy="clip"))


def test_pixelmill_run_says_when_the_memory_limit_is_too_small(tmp_path, monkeypatch, rng):
    image = random_image(rng, (600, 400, 3), np.uint8)
    done, out = _run(tmp_path, monkeypatch, image, "--op", "gaussian", "--memory-limit", "1MB")
    assert done.exit_code != 0
    item = json.loads((out / "manifest.json").read_text())["items"][0]
    assert item["status"] == "failed" and "--memory-limit" in item["error"] and "give at least" in item["error"]
    bad, _ = _run(tmp_path, monkeypatch, image, "--op", "gaussian", "--memory-limit", "lots")
    assert bad.exit_code != 0 and "--memory-limit" in bad.output


@pytest.mark.parametrize("shape, dtype, options, tile", [
    ((300, 200, 3), np.uint8, {"photometric": "rgb", "compression": "zlib", "predictor": 2}, (64, 48)),
    ((133, 157), np.uint16, {"photometric": "minisblack", "compression": 8, "predictor": 2}, None),
    ((100, 90), np.float32, {"compression": "zlib", "predictor": 3}, (32, 64)),
    ((100, 90, 3), np.uint8, {"photometric": "rgb", "compression": "lzw"}, (32, 32)),
    ((100, 90, 3), np.uint8, {"photometric": "rgb", "compression": "packbits"}, (32, 32)),
])
def test_the_tiles_encoded_on_every_worker_make_the_file_tifffile_writes(tmp_path, rng, shape, dtype, options, tile):
    from pixelmill.io._tifffile import STREAM_TILE, tiff_tiles, write_tiff_tiles

    image = random_image(rng, shape, dtype)
    options = dict(options, metadata=None)

    def bands():
        return ((r, min(r + 37, shape[0]), image[r : r + 37]) for r in range(0, shape[0], 37))

    write_tiff_tiles(tmp_path / "ours.tif", bands(), shape, dtype, options, tile, workers=2)
    tile = tile or STREAM_TILE
    tifffile.imwrite(tmp_path / "tifffile.tif", tiff_tiles(bands(), shape, tile), tile=tile, shape=shape,
                     dtype=dtype, **options)
    assert (tmp_path / "ours.tif").read_bytes() == (tmp_path / "tifffile.tif").read_bytes()


@pytest.mark.parametrize("options", [
    {"tile": (64, 48), "compression": "zlib", "predictor": 2, "photometric": "rgb"},
    {"rowsperstrip": 16, "compression": "lzw", "photometric": "rgb"},
    {"tile": (64, 64), "compression": "jpeg", "photometric": "rgb"},
    {"tile": (64, 64), "photometric": "rgb", "byteorder": ">"},
])
def test_the_source_decodes_the_rows_zarr_reads(tmp_path, rng, options):
    import zarr

    from pixelmill.io import open_tiff_source
    from pixelmill.io._tifffile import TiffRows

    image = random_image(rng, (300, 200, 3), np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", image, metadata=None, **options)
    with open_tiff_source(tmp_path / "in.tif") as src, tifffile.TiffFile(tmp_path / "in.tif") as tif:
        assert isinstance(src.array, TiffRows)
        ref = zarr.open_array(tif.pages.first.aszarr(), mode="r")
        assert (src.array.shape, src.array.dtype, src.array.chunks) == (ref.shape, ref.dtype, ref.chunks)
        for key in (slice(0, 10), slice(5, 130), slice(0, 300), slice(293, 400), slice(100, 100),
                    (slice(3, 9), slice(2, 5))):
            np.testing.assert_array_equal(src.array[key], ref[key])
