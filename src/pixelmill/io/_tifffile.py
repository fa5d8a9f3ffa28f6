"""The tifffile backend: the TIFFs Pillow would truncate or cannot open (16-bit or float
colour, int16, uint32, float64, ...), read and written."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from ..engines import usable_cores
from ..errors import InvalidImageError, UnsupportedImageError
from ._formats import _one_line
from ._image import Image
from ._metadata import _clean_exif, _orient, _orientation, _strip_xmp_orientation


@dataclass
class _TiffPage:
    page: object
    width: int
    height: int
    dtype: np.dtype | None
    samples: int
    bits: int
    pillow_ok: bool


def _tiff_peek(fh, path: Path) -> _TiffPage | None:
    """First-page facts from tifffile (header only), or None if tifffile cannot parse it."""
    import tifffile

    fh.seek(0)
    try:
        tf = tifffile.TiffFile(fh)
        page = tf.pages.first
        width, height = int(page.imagewidth), int(page.imagelength)
        dtype = page.dtype
        samples, bits = int(page.samplesperpixel), int(page.bitspersample)
        associated = 1 in tuple(page.extrasamples or ())
    except Exception:  # tifffile is stricter than libtiff on odd files: let Pillow try
        return None
    dtype = None if dtype is None else np.dtype(dtype)
    # Pillow holds these exactly; anything else it would truncate to 8 bits or refuse.
    # Premultiplied (associated) alpha: tifffile gives the stored samples and the flag.
    pillow_ok = not associated and (
        bits == 1
        or dtype == np.uint8
        or (samples == 1 and dtype in (np.dtype(np.uint16), np.dtype(np.float32), np.dtype(np.int32)))
    )
    return _TiffPage(page, width, height, dtype, samples, bits, pillow_ok)


_DTYPE_SUFFIX = {
    np.dtype(np.uint8): "", np.dtype(np.int8): ";8S", np.dtype(np.uint16): ";16",
    np.dtype(np.int16): ";16S", np.dtype(np.uint32): ";32", np.dtype(np.int32): ";32S",
    np.dtype(np.float32): ";32F", np.dtype(np.float64): ";64F",
}


def _read_tifffile(fh, path: Path, tp: _TiffPage, *, pages: bool = True) -> Image:
    """The first page of ``tp`` (and, with ``pages``, every other page as a frame)."""
    image = _read_tifffile_page(fh, path, tp)
    if not pages:
        return image
    try:
        others = list(tp.page.parent.pages)[1:]
    except Exception as exc:
        raise InvalidImageError(
            f"TIFF file {str(path)!r} is corrupt after its first page (tifffile: {_one_line(exc)})"
        ) from None
    frames = []
    for page in others:
        dtype = None if page.dtype is None else np.dtype(page.dtype)
        sub = _TiffPage(page, int(page.imagewidth), int(page.imagelength), dtype,
                        int(page.samplesperpixel), int(page.bitspersample), False)
        frames.append(_read_tifffile_page(fh, path, sub))
    return image.with_frames(frames) if frames else image


def _read_tifffile_page(fh, path: Path, tp: _TiffPage) -> Image:
    from tifffile import PHOTOMETRIC

    page = tp.page
    photometric = page.photometric
    extras = tuple(page.extrasamples or ())
    ncolor = tp.samples - len(extras)
    base = {
        (PHOTOMETRIC.MINISBLACK, 1): "L",
        (PHOTOMETRIC.RGB, 3): "RGB",
        (PHOTOMETRIC.SEPARATED, 4): "CMYK",
    }.get((photometric, ncolor))
    dtype = tp.dtype
    if dtype == np.float16:
        dtype = np.dtype(np.float32)  # exact widening: float16 is not a pixelmill dtype
    if base is None or len(extras) > 1 or (base == "CMYK" and extras) or dtype not in _DTYPE_SUFFIX:
        name = getattr(photometric, "name", photometric)
        raise UnsupportedImageError(
            f"TIFF file {str(path)!r} has {tp.samples} {tp.bits}-bit samples of type "
            f"{tp.dtype} with photometric {name}; pixelmill reads grey, grey + alpha, RGB, RGBA "
            f"and CMYK TIFFs"
        )
    has_alpha = bool(extras)
    mode = base + ("A" if has_alpha else "") + _DTYPE_SUFFIX[dtype]
    _check_tiff_extent(fh, path, page)
    try:
        data = page.asarray()
    except KeyError as exc:  # tifffile: "<COMPRESSION.LZW: 5> requires the 'imagecodecs' package"
        raise UnsupportedImageError(
            f"cannot decode TIFF file {str(path)!r}: {_one_line(exc).strip(chr(34))} "
            f"(pip install imagecodecs)"
        ) from None
    except Exception as exc:
        raise InvalidImageError(
            f"TIFF image file {str(path)!r} is truncated or corrupt: its pixel data cannot be "
            f"decoded (tifffile: {_one_line(exc)})"
        ) from None
    axes = page.axes
    if "S" in axes and axes.index("S") < axes.index("Y"):  # planar: S x H x W
        data = np.moveaxis(data, axes.index("S"), -1)
    data = data.reshape((tp.height, tp.width) if tp.samples == 1 else (tp.height, tp.width, tp.samples))
    if data.dtype != dtype:
        data = data.astype(dtype)  # float16 -> float32, big-endian -> native
    info = _tifffile_metadata(fh, page)
    if extras and extras[0] == 1:
        # The stored samples stay premultiplied (that is what the file holds, exactly); the
        # batch computes on straight colour and write_image says so, or un-premultiplies.
        info["premultiplied"] = True
    data = _orient(data, info["orientation"])
    if info["orientation"] in (5, 6, 7, 8) and info.get("dpi"):
        info["dpi"] = info["dpi"][::-1]
    return Image(data=data, has_alpha=has_alpha, mode=mode, format="TIFF", info=info, path=path)


def _check_tiff_extent(fh, path: Path, page) -> None:
    """Fail on a truncated TIFF (tifffile would otherwise return zeros or garbage)."""
    size = os.fstat(fh.fileno()).st_size
    ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts)]
    if ends and max(ends) > size:
        raise InvalidImageError(
            f"cannot decode TIFF image file {str(path)!r}: image file is truncated "
            f"({max(ends) - size} bytes missing)"
        )


def _tifffile_metadata(fh, page) -> dict:
    from PIL.TiffImagePlugin import COMPRESSION_INFO

    tags = page.tags

    def tag(code):
        t = tags.get(code)
        return None if t is None else t.value

    orientation = _orientation(tag(274))
    icc = tag(34675)
    info = {
        "icc_profile": bytes(icc) if icc else None,
        "exif": None,
        "orientation": orientation,
        "compression": COMPRESSION_INFO.get(int(page.compression), "raw"),
    }
    xres, yres, unit = tag(282), tag(283), tag(296)
    if xres and yres and unit in (2, 3):
        scale = 2.54 if unit == 3 else 1.0
        info["dpi"] = tuple(float(r[0]) / float(r[1]) * scale if r[1] else 0.0 for r in (xres, yres))
    iptc = tag(33723)
    if iptc is not None:
        try:
            info["iptc"] = iptc.tobytes() if hasattr(iptc, "tobytes") else bytes(iptc)
        except Exception:
            pass
    xmp = tag(700)
    if xmp:
        xmp = bytes(xmp)
        if orientation != 1:
            xmp = _strip_xmp_orientation(xmp)
        info["xmp"] = xmp
    try:  # Pillow's EXIF reader handles nested IFDs; tifffile's values are not re-encodable
        exif = PILImage.Exif()
        fh.seek(0)
        exif.load_from_fp(fh)
        info["exif"] = _clean_exif(exif, None)
    except Exception as exc:
        from ._warnings import note

        note(f"EXIF cannot be read and is not kept (Pillow: {_one_line(exc)})")
        info["exif"] = None
    return info


def _describe_tifffile(fh, path, tp: _TiffPage) -> dict:
    img_extras = len(tuple(tp.page.extrasamples or ()))
    info = _tifffile_metadata(fh, tp.page)
    dtype = np.dtype(np.float32) if tp.dtype == np.float16 else tp.dtype
    base = {1: "L", 3: "RGB", 4: "CMYK"}.get(tp.samples - img_extras, "?")
    return dict(
        mode=base + ("A" if img_extras else "") + _DTYPE_SUFFIX.get(dtype, f";{tp.bits}"),
        width=tp.width, height=tp.height, dtype=dtype, channels=tp.samples,
        has_alpha=img_extras > 0, orientation=info["orientation"],
        icc=info["icc_profile"] is not None, exif=info["exif"] is not None,
    )


def _tifffile_kwargs(data: np.ndarray, has_alpha: bool, info: dict) -> dict:
    """tifffile.imwrite / TiffWriter.write arguments for one page."""
    channels = 1 if data.ndim == 2 else data.shape[2]
    kwargs: dict = {"metadata": None, "photometric": "minisblack", "software": False}
    if channels >= 3:
        kwargs["photometric"] = "rgb" if (channels == 3 or has_alpha) else "separated"
    if channels > 1:
        kwargs["planarconfig"] = "contig"
    if has_alpha:
        kwargs["extrasamples"] = ["assocalpha" if info.get("premultiplied") else "unassalpha"]
    if info.get("compression") not in (None, "raw"):
        kwargs["compression"] = "zlib"  # built into tifffile and lossless
    if info.get("icc_profile"):
        kwargs["iccprofile"] = info["icc_profile"]
    if info.get("dpi"):
        kwargs["resolution"] = tuple(float(v) for v in info["dpi"])
        kwargs["resolutionunit"] = "INCH"
    extratags = []
    if info.get("exif"):
        ex = PILImage.Exif()
        try:
            ex.load(info["exif"])
        except Exception:
            ex = {}
        for code in (270, 271, 272, 305, 306, 315, 33432):  # plain-text IFD0 tags
            value = ex.get(code)
            if isinstance(value, str) and value:
                if code == 305:
                    kwargs["software"] = value
                else:
                    extratags.append((code, "s", 0, value, True))
    if info.get("xmp"):
        extratags.append((700, "B", len(info["xmp"]), bytes(info["xmp"]), True))
    if info.get("iptc"):
        extratags.append((33723, "B", len(info["iptc"]), bytes(info["iptc"]), True))
    if extratags:
        kwargs["extratags"] = extratags
    return kwargs


def _native(data: np.ndarray) -> np.ndarray:
    return data.astype(data.dtype.newbyteorder("=")) if data.dtype.byteorder == ">" else data


def _tifffile_encoder(data: np.ndarray, has_alpha: bool, info: dict, quality: int = 95):
    import tifffile

    kwargs = _tifffile_kwargs(data, has_alpha, info)
    data = _native(data)

    def encode(fh):
        tifffile.imwrite(fh, data, **kwargs)

    return encode


def _tifffile_pages_encoder(pages: list, info: dict):
    """A multi-page TIFF: ``pages`` is ``[(data, has_alpha, page info)]``; the image's
    metadata goes on the first page."""
    import tifffile

    jobs = [(_native(d), _tifffile_kwargs(d, a, info if i == 0 else dict(fi, premultiplied=info.get("premultiplied"))))
            for i, (d, a, fi) in enumerate(pages)]

    def encode(fh):
        with tifffile.TiffWriter(fh) as tw:
            for data, kwargs in jobs:
                tw.write(data, **kwargs)

    return encode


# -- TIFFs larger than memory: a lazily decoded source, a sink written tile row by tile row -------


#: Tile of a streamed TIFF written from a strip-based source (tifffile streams tiles only).
STREAM_TILE = (256, 256)
#: Above this many bytes of pixels a streamed TIFF is written as BigTIFF (classic TIFF offsets
#: are 32-bit; the margin leaves room for the tile tables and tags).
BIGTIFF_BYTES = (1 << 32) - (1 << 28)


@dataclass
class TiffSource:
    """The first page of a TIFF as an array decoded chunk by chunk (tiles, or bands of strips),
    and what a streamed output keeps of it. Close it when done."""

    array: object
    tile: tuple[int, int] | None
    kwargs: dict
    _tif: object

    def close(self) -> None:
        close = getattr(self.array, "close", None)
        if close is not None:
            close()
        self._tif.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _zarr():
    try:
        import zarr
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError(
            "streaming a TIFF or zarr image larger than memory needs zarr: pip install 'pixelmill[huge]'"
        ) from None
    return zarr


def open_tiff_source(path) -> TiffSource:
    """A TIFF's first page for streaming (:class:`TiffSource`); the writer arguments that keep
    its tiling, compression, predictor, photometric, extra samples, resolution, ICC profile
    and description (an OME-TIFF's OME-XML) are in ``kwargs``."""
    import tifffile

    zarr = _zarr()
    tif = tifffile.TiffFile(path)
    try:
        page = tif.pages.first
        if int(page.planarconfig) == 2 and int(page.samplesperpixel) > 1:
            raise UnsupportedImageError(f"TIFF file {str(path)!r} is planar (one plane per sample); "
                                        "streaming reads interleaved (contig) samples")
        if _orientation((page.tags.get(274).value if page.tags.get(274) else 1)) != 1:
            raise UnsupportedImageError(f"TIFF file {str(path)!r} has an EXIF orientation; streaming keeps "
                                        "stored pixels and cannot rotate them")
        array = zarr.open_array(page.aszarr(), mode="r")
        if TiffRows.reads(page, array):
            array = TiffRows(path, page, array)
        tile = (int(page.tilelength), int(page.tilewidth)) if page.is_tiled else None
        extras = tuple(int(e) for e in (page.extrasamples or ()))
        kwargs: dict = {
            "photometric": page.photometric,
            "compression": page.compression if int(page.compression) != 1 else None,
            "metadata": None,
            "software": False,
        }
        if int(page.predictor) != 1:
            kwargs["predictor"] = page.predictor
        if int(page.samplesperpixel) > 1:
            kwargs["planarconfig"] = "contig"
        if extras:
            kwargs["extrasamples"] = extras
        if page.description:
            kwargs["description"] = page.description  # an OME-TIFF's OME-XML, kept as it is
        for code, name in ((34675, "iccprofile"),):
            tag = page.tags.get(code)
            if tag is not None:
                kwargs[name] = bytes(tag.value)
        xres, yres, unit = (page.tags.get(c) for c in (282, 283, 296))
        if xres is not None and yres is not None:
            kwargs["resolution"] = (xres.value, yres.value)
            if unit is not None:
                kwargs["resolutionunit"] = unit.value
        return TiffSource(array, tile, kwargs, tif)
    except BaseException:
        tif.close()
        raise


class TiffRows:
    """Rows of a TIFF page (tiled, or in strips) decoded in the thread that asks for them.

    tifffile's zarr store decodes every chunk on zarr's one event-loop thread, so readers in
    several threads would still decode one chunk at a time; here each read takes its chunks'
    bytes with ``os.pread`` (no shared file position, no lock) and decodes them with the
    page's own decoder (the compression, predictor and byte order tifffile reads), which
    releases the GIL: readers decode on every core. Slicing the first axis is what streaming
    asks for; any other key reads those rows first and indexes them."""

    def __init__(self, path, page, array):
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        self.chunks = tuple(array.chunks)
        self.ndim = len(self.shape)
        self._offsets = tuple(int(o) for o in page.dataoffsets)
        self._counts = tuple(int(c) for c in page.databytecounts)
        self._decode = page.decode
        self._args = {"_fullsize": True}
        if page.jpegtables is not None:
            self._args["jpegtables"] = page.jpegtables
        if page.keyframe.jpegheader is not None:
            self._args["jpegheader"] = page.keyframe.jpegheader
        self._grid = page.chunked[:2]
        self._fd = os.open(path, os.O_RDONLY)

    @staticmethod
    def reads(page, array) -> bool:
        """True for a page whose chunks this reader places: one image plane (no depth, no
        separate sample planes), each chunk a tile or strip of the zarr array's chunk shape."""
        return (int(page.imagedepth) == 1 and len(page.chunked) == len(array.shape)
                and tuple(array.chunks) == tuple(page.chunks) and np.dtype(array.dtype).isnative)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, slice) and key.step in (None, 1):
            r0, r1, _ = key.indices(self.shape[0])
            return self._rows(r0, max(r0, r1))
        rest = ()
        if isinstance(key, tuple) and key and isinstance(key[0], slice) and key[0].step in (None, 1):
            key, rest = key[0], key[1:]
            r0, r1, _ = key.indices(self.shape[0])
            return self._rows(r0, max(r0, r1))[(slice(None),) + rest]
        return self._rows(0, self.shape[0])[key]

    def _rows(self, r0: int, r1: int) -> np.ndarray:
        out = np.empty((r1 - r0,) + self.shape[1:], dtype=self.dtype)
        if r1 <= r0:
            return out
        th, tw = self.chunks[:2]
        w = self.shape[1]
        ny, nx = self._grid
        for ty in range(r0 // th, (r1 - 1) // th + 1):
            a, b = max(r0, ty * th), min(r1, (ty + 1) * th)
            for tx in range(nx):
                index = ty * nx + tx
                c0, c1 = tx * tw, min(w, (tx + 1) * tw)
                offset, count = self._offsets[index], self._counts[index]
                if not offset or not count:
                    out[a - r0 : b - r0, c0:c1] = 0  # an empty chunk: the fill value
                    continue
                data = os.pread(self._fd, count, offset)
                if len(data) != count:
                    raise InvalidImageError(f"TIFF chunk {index} is truncated ({len(data)} of {count} bytes)")
                chunk = self._decode(data, index, **self._args)[0].reshape(self.chunks)
                out[a - r0 : b - r0, c0:c1] = chunk[a - ty * th : b - ty * th, : c1 - c0]
        return out


def tiff_tile_rows(bands, shape, tile):
    """Rows of tiles (``tile[0]`` image rows each, the last one shorter) in file order, from
    ``bands`` (``(r0, r1, rows)`` in order): rows are buffered up to one tile row, so bands need
    not follow the tiles."""
    h = shape[0]
    th = tile[0]
    pending: list[np.ndarray] = []
    held = 0
    for _, r1, rows in bands:
        pending.append(rows)
        held += len(rows)
        while held >= th or (r1 == h and held):
            block = np.concatenate(pending) if len(pending) > 1 else pending[0]
            row, rest = block[:th], block[th:]
            pending, held = ([rest] if len(rest) else []), len(rest)
            yield row


def tiff_tiles(bands, shape, tile):
    """The tiles of a tiled TIFF in file order, from ``bands`` (see :func:`tiff_tile_rows`)."""
    tw = tile[1]
    for row in tiff_tile_rows(bands, shape, tile):
        for c0 in range(0, shape[1], tw):
            yield row[:, c0 : c0 + tw]  # tifffile zero-pads the incomplete edge tiles


#: Compressions whose tiles tifffile encodes with the compressor alone (after the predictor),
#: each tile on its own: LZW, Adobe Deflate, Deflate, Zstandard.
_TILE_COMPRESSIONS = frozenset({5, 8, 32946, 50000})


def _tile_encoder(options: dict, tile, samples: int):
    """The function that turns one tile (at most ``tile`` rows x columns x ``samples``) into the
    bytes tifffile writes for it with ``options``: zero-padded to the whole tile, the predictor,
    the compressor, as ``TiffWriter.write`` does. None when tifffile encodes these options some
    other way (no compression, JPEG, PackBits, compression arguments): tifffile then encodes."""
    from tifffile import COMPRESSION, PREDICTOR, TIFF

    compression, predictor = options.get("compression"), options.get("predictor") or 1
    if not compression or options.get("compressionargs") or isinstance(predictor, (bool, str)):
        return None
    try:
        if isinstance(compression, str):
            compression = 8 if compression.upper() == "ZLIB" else COMPRESSION[compression.upper()]
        ctag, ptag = int(COMPRESSION(compression)), int(PREDICTOR(predictor))
    except (KeyError, ValueError):
        return None
    dtype = np.dtype(options["dtype"])
    if ctag not in _TILE_COMPRESSIONS or ptag not in (1, 2, 3) or dtype.kind == "b":
        return None
    compress = TIFF.COMPRESSORS[ctag]
    predict = TIFF.PREDICTORS[ptag] if ptag > 1 else None
    shape = tuple(tile) + (samples,)

    def encode(data: np.ndarray) -> bytes:
        data = np.ascontiguousarray(data, dtype).reshape(data.shape[:2] + (samples,))
        if data.shape != shape:
            data = np.pad(data, [(0, full - part) for full, part in zip(shape, data.shape)])
        if predict is not None:
            data = predict(data, axis=-2)  # along each row, per sample (the tile is contiguous)
        return compress(data)

    return encode


def _encoded_tiles(bands, shape, tile, encode, workers: int):
    """The encoded tiles in file order: each tile row is encoded by one of ``workers`` threads
    (the codecs release the GIL) while the next rows are computed; at most two rows a thread
    wait, so the rows held stay a few tile rows whatever the image's height."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    tw = tile[1]

    def row_bytes(row: np.ndarray) -> list[bytes]:
        return [encode(row[:, c0 : c0 + tw]) for c0 in range(0, shape[1], tw)]

    pending: deque = deque()
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="pixelmill-encode") as pool:
        try:
            for row in tiff_tile_rows(bands, shape, tile):
                pending.append(pool.submit(row_bytes, row))
                del row
                while len(pending) > 2 * max(1, workers):
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def tile_rows_held_bytes(shape, dtype, tile=None, workers: int | None = None) -> int:
    """What :func:`write_tiff_tiles` holds besides its bands, at most: the tile row being
    assembled and up to ``2 * workers + 1`` rows waiting or being encoded (see
    :func:`_encoded_tiles`), each raw and encoded (a tile compresses to at most about its raw
    size), part of the memory budget of a streamed image."""
    th = tuple(tile or STREAM_TILE)[0]
    workers = usable_cores() if workers is None else max(1, int(workers))
    row = th * int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
    return (2 * (2 * workers + 1) + 1) * row


def write_tiff_tiles(path, bands, shape, dtype, kwargs: dict, tile=None, *, durable: bool = True,
                     workers: int | None = None) -> None:
    """A tiled (Big)TIFF of ``shape`` / ``dtype`` written tile row by tile row from ``bands``
    into a temporary file renamed onto ``path`` when it is complete (:func:`atomic_write`).
    ``workers`` threads (default: the usable cores) encode the tiles; the file is the one
    tifffile writes from the same tiles, byte for byte."""
    import tifffile

    from .._files import atomic_write

    tile = tuple(tile or STREAM_TILE)
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    options = dict(kwargs, tile=tile, bigtiff=nbytes > BIGTIFF_BYTES, shape=tuple(shape), dtype=np.dtype(dtype))
    if np.dtype(dtype).kind == "f" and options.get("predictor") is not None and int(options["predictor"]) == 2:
        options["predictor"] = 3  # a float result of an integer image: the float predictor
    if np.dtype(dtype).kind != "f" and options.get("predictor") is not None and int(options["predictor"]) == 3:
        options["predictor"] = 2
    workers = usable_cores() if workers is None else max(1, int(workers))
    encode = _tile_encoder(options, tile, shape[2] if len(shape) == 3 else 1)

    def write(fh):
        if encode is None:
            tifffile.imwrite(fh, tiff_tiles(bands, shape, tile), maxworkers=workers, **options)
        else:  # the tiles' bytes, encoded as tifffile would, on every worker
            tifffile.imwrite(fh, _encoded_tiles(bands, shape, tile, encode, workers), **options)

    atomic_write(path, write, durable=durable)
