"""Suite ``huge``: images larger than memory, every step a whole program (opt-in).

A gigapixel RGB uint8 tiled TIFF (``huge_gp`` GP, 256 x 256 tiles, Adobe Deflate with the
horizontal predictor, a smooth pattern plus uniform noise so that it compresses as photographs
and scans do, about 0.7 of its raw size) is generated tile row by tile row, never held whole,
and every method reads that one file. ``pixelmill run FILE --op gaussian:size=5,sigma=1
--memory-limit 1GB`` and the same with ``--op sobel`` run as a user runs them (the default
engine, one untimed run on a small TIFF first so numba's kernels are compiled on disk). pyvips
runs the same jobs as its users write them: ``convsep`` with an integer mask of the same
Gaussian (``precision="integer"``, the 1-D weights times 1024, scale 1024), and the Sobel
magnitude from two integer ``conv`` of the Sobel masks (on ``short``), ``hypot`` in float,
rounded, written as a tiled TIFF with the same codec; libvips' own ``sobel()`` is timed beside
it, though on 8-bit images it computes about ``|Gx| + |Gy|``, not the magnitude. Each pyvips
output is read back band by band and held to within 1 grey level of pixelmill's in the
interior; pixelmill's outputs are checked on sampled bands against ``scipy.ndimage`` in
float64. dask-image (when installed) runs the Gaussian on a zarr copy of the image
(``da.from_zarr``, ``ndfilters.gaussian_filter`` in float32, rounded, ``to_zarr``). A 10x
image (a grey uint8 zarr of ``10 * huge_gp`` GP, 256 x 4096 chunks, zarr's default zstd codec)
is generated chunk row by chunk row and filtered through the array API into a zarr ``out=``
(``pixelmill.convolve(src, gaussian, policy="clip", out=out, engine="numba",
memory_limit="1GB")``). Last, the 1 GP Gaussian runs on a ``distributed.LocalCluster`` on
127.0.0.1 (two worker processes of one thread and 1 GB each) through the API with
``engine="dask"`` from the zarr copy into a zarr: its output must equal the local ``pixelmill
run`` output exactly; the scheduler's task stream and the workers' transfer counters say how
many tasks ran and how many bytes moved between workers.

Each step is a fresh program measured from outside (:func:`._harness.run_process`): wall time
from start to exit (the interpreter's start-up included, as its user pays it) and the peak
resident memory of its process tree, one timed run each (a step takes minutes at full size).
Below 1 GP the memory limit is lowered to 9 bytes per sample, so ``pixelmill run`` still
streams the TIFF (it streams when 10 bytes per sample exceed the limit). The inputs are
generated into the run's work folder, once per run, and shared by every method.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
import sys
from pathlib import Path

import numpy as np

from ._harness import Group, run_job, run_process, worker_env
from ._records import Record
from ._targets import Target, ok_records

NAME = "huge"
TITLE = "Images larger than memory: a gigapixel TIFF, a 10x zarr, a dask cluster"
#: Makes its own inputs (no library, no calibration).
STANDALONE = True
ENTRY_POINT = "pixelmill.bench._huge:run_step"
TILE = (256, 256)
#: The TIFF codec every writer uses: tifffile's name, libvips' name, and the predictor.
CODEC = {"tifffile": "zlib", "pyvips": "deflate", "predictor": "horizontal"}
CODEC_TEXT = "Adobe Deflate (zlib, default level) with the horizontal predictor"
#: Zarr chunks: rows x columns (x the channels, whole).
ZARR_CHUNKS = (256, 4096)
MEMORY_LIMIT = 10**9  # "1GB"
#: Below full size the limit is this many bytes per sample: under the 10 above which
#: ``pixelmill run`` streams a TIFF, so a small run streams as the full one does.
SMALL_LIMIT_BYTES_PER_SAMPLE = 9
#: Side of the small TIFF the untimed first ``pixelmill run`` streams (numba compiles its
#: kernels to disk once; the timed run then loads them, as a user's later runs do). An image
#: no larger is run without it: its time is mostly start-up anyway.
WARMUP_SIDE = 2048
#: Classic TIFF offsets are 32-bit: above this many raw bytes the generated TIFF is BigTIFF.
BIGTIFF_BYTES = (1 << 32) - (1 << 28)
PYVIPS_TOLERANCE = 1.0   # the integer mask's rounding against pixelmill's float32 sums
ORACLE_TOLERANCE = 1.0   # float64 against float32 sums, both rounded
#: Bands of an output recomputed with scipy.ndimage (the first, the last and this many between).
ORACLE_BANDS = 3
CLUSTER_WORKERS = 2
CLUSTER_WORKER_MEMORY = "1GB"
#: Seconds one measured program may run before it is killed (within the group's own timeout).
STEP_TIMEOUT_S = 1700.0
#: Seconds the cluster's workers wait for their scheduler before giving up.
CLUSTER_START_S = 60
#: What each step is, for the table: (method, case) -> text.
STEPS = {
    ("generate", "tiff"): "the RGB tiled TIFF, generated tile row by tile row",
    ("pixelmill", "gaussian"): "pixelmill run --op gaussian:size=5,sigma=1 --memory-limit 1GB",
    ("pixelmill", "sobel"): "pixelmill run --op sobel --memory-limit 1GB",
    ("pyvips", "gaussian"): "pyvips convsep, integer mask, tiled TIFF out",
    ("pyvips", "sobel"): "pyvips 2 integer conv + hypot (Sobel magnitude), tiled TIFF out",
    ("pyvips", "sobel-builtin"): "pyvips Image.sobel() (about |Gx|+|Gy| on uchar), tiled TIFF out",
    ("generate", "zarr-copy"): "zarr copy of the TIFF, band by band",
    ("dask-image", "gaussian"): "dask-image gaussian_filter, zarr to zarr",
    ("dask-cluster", "gaussian"): "pixelmill.convolve(engine='dask') on a LocalCluster, zarr to zarr",
    ("generate", "zarr-10x"): "the 10x grey zarr, generated chunk row by chunk row",
    ("pixelmill-api", "gaussian-10x"): "pixelmill.convolve(zarr, out=zarr, engine='numba', memory_limit='1GB')",
}


# -- sizes and files -----------------------------------------------------------------------------------


def side_for(gp: float) -> int:
    """The side of a square image of about ``gp`` gigapixels, a whole number of tiles."""
    return max(TILE[0], int(round(math.sqrt(gp * 1e9) / TILE[0])) * TILE[0])


def stream_limit(samples: int) -> int:
    """The memory limit of a run over ``samples`` samples: 1 GB, or less for a small image so
    that it is streamed as the full-size one is (see :data:`SMALL_LIMIT_BYTES_PER_SAMPLE`)."""
    return int(min(MEMORY_LIMIT, samples * SMALL_LIMIT_BYTES_PER_SAMPLE))


def gaussian_spec(opts) -> str:
    return f"gaussian:size={opts['gaussian_size']},sigma={opts['sigma']:g}"


def _files(root: Path) -> dict:
    out = root / "out"
    return {
        "root": str(root), "tiff": str(root / "image.tif"), "warmup_tiff": str(root / "warmup.tif"),
        "zarr": str(root / "image.zarr"), "big": str(root / "big.zarr"), "warmup_zarr": str(root / "warmup.zarr"),
        "out": str(out),
        "pixelmill": {case: str(out / f"pixelmill-{case}") for case in ("gaussian", "sobel")},
        "pyvips": {case: str(out / f"pyvips-{case}.tif") for case in ("gaussian", "sobel", "sobel-builtin")},
        "dask-image": str(out / "dask-image-gaussian.zarr"), "cluster": str(out / "cluster-gaussian.zarr"),
        "big_out": str(out / "big-gaussian.zarr"), "warmup_big_out": str(out / "warmup-big.zarr"),
    }


def plan(ctx) -> list[Group]:
    o = ctx.opts
    gp = o["huge_gp"]
    side = side_for(gp)
    big_side = side_for(10 * gp)
    files = _files(ctx.workdir / "huge")
    samples = side * side * 3
    spec = {
        "suite": NAME, "kind": "engine", "files": files, "gp": gp, "shape": [side, side, 3],
        "big_shape": [big_side, big_side], "seed": o["seed"], "gaussian": gaussian_spec(o),
        "size": o["gaussian_size"], "sigma": o["sigma"], "limit": stream_limit(samples),
        "warmup_limit": stream_limit(WARMUP_SIDE ** 2 * 3), "big_limit": MEMORY_LIMIT,
        "timeout": STEP_TIMEOUT_S,
    }
    ctx.inputs[NAME] = (
        f"a {side} x {side} RGB uint8 tiled TIFF ({side * side / 1e9:.2f} GP, {TILE[0]} x {TILE[1]} tiles, "
        f"{CODEC_TEXT}; smooth pattern plus uniform noise in [-8, 7]); its zarr copy and the 10x image "
        f"({big_side} x {big_side} grey uint8, {big_side * big_side / 1e9:.2f} GP) in {ZARR_CHUNKS[0]} x "
        f"{ZARR_CHUNKS[1]} chunks, zarr's default codec; memory limit {spec['limit'] / 1e9:g} GB for the TIFF runs, "
        f"1 GB for the 10x run"
    )
    steps = [("generate", "baseline", "tiff"), ("pixelmill", "engine", "gaussian"), ("pixelmill", "engine", "sobel"),
             ("pyvips", "peer", "gaussian"), ("pyvips", "peer", "sobel"), ("pyvips", "peer", "sobel-builtin"),
             ("generate", "baseline", "zarr-copy"), ("dask-image", "peer", "gaussian"),
             ("dask-cluster", "engine", "gaussian"), ("generate", "baseline", "zarr-10x"),
             ("pixelmill-api", "engine", "gaussian-10x"), ("cleanup", "baseline", "cleanup")]
    return [Group(NAME, method, kind, ENTRY_POINT, dict(spec, method=method, kind=kind, case=case))
            for method, kind, case in steps]


# -- the generated pattern -------------------------------------------------------------------------------


def pattern(r0: int, r1: int, width: int, channels: int, seed: int) -> np.ndarray:
    """Rows ``r0:r1`` of the test image (``width`` columns, ``channels`` channels, uint8): a
    smooth pattern (the sum of a row and a column profile, sines of a few hundred pixels'
    period, different per channel) plus uniform noise in [-8, 7], the noise seeded by
    ``(seed, r0)``: the same call gives the same band. Integer arithmetic on 1-D profiles:
    a 10 GP image is generated in minutes."""
    rows = r1 - r0
    x = np.arange(width, dtype=np.float64)
    y = np.arange(r0, r1, dtype=np.float64)
    rng = np.random.default_rng([seed, r0])
    out = np.empty((rows, width, channels), dtype=np.uint8)
    band = np.empty((rows, width), dtype=np.int16)
    for c in range(channels):
        across = np.rint(60 * np.sin(x / (211 + 37 * c) + c) + 20 * np.sin(x / (59 + 13 * c))).astype(np.int16)
        # 128 - 8: the noise is added as 0..15, so it is -8..7 around the profiles
        down = np.rint(120 + 60 * np.cos(y / (173 + 29 * c)) + 20 * np.sin(y / (67 + 11 * c))).astype(np.int16)
        noise = np.frombuffer(rng.bytes(rows * width), dtype=np.uint8).reshape(rows, width) & 15
        np.add(down[:, None], across[None, :], out=band)
        band += noise
        np.clip(band, 0, 255, out=band)
        out[..., c] = band
    return out if channels > 1 else out[..., 0]


def _write_tiff(path: str, side: int, seed: int) -> dict:
    import tifffile

    shape = (side, side, 3)
    th, tw = TILE

    def tiles():
        for r0 in range(0, side, th):
            row = pattern(r0, min(r0 + th, side), side, 3, seed)
            for c0 in range(0, side, tw):
                yield row[:, c0 : c0 + tw]

    raw = side * side * 3
    tifffile.imwrite(path, tiles(), shape=shape, dtype=np.uint8, tile=TILE, photometric="rgb",
                     planarconfig="contig", compression=CODEC["tifffile"], predictor=CODEC["predictor"],
                     bigtiff=raw > BIGTIFF_BYTES, metadata=None)
    return {"shape": list(shape), "bytes": Path(path).stat().st_size, "raw_bytes": raw}


def _create_zarr(path: str, shape, dtype=np.uint8):
    import zarr

    chunks = ZARR_CHUNKS + tuple(shape[2:])
    return zarr.create_array(store=path, shape=tuple(shape), chunks=chunks, dtype=dtype, overwrite=True)


def _folder_bytes(path) -> int:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


# -- jobs: each runs in its own process (python -m pixelmill.bench._worker), measured from outside -----------------


def job_generate_tiff(spec: dict) -> list[dict]:
    f = spec["files"]
    Path(f["root"]).mkdir(parents=True, exist_ok=True)
    side = spec["shape"][0]
    return [dict(_write_tiff(f["tiff"], side, spec["seed"]), codec=CODEC_TEXT)]


def job_zarr_copy(spec: dict) -> list[dict]:
    """The TIFF into a zarr array, one chunk row at a time (what a user converting it would do)."""
    import tifffile
    import zarr

    f = spec["files"]
    with tifffile.TiffFile(f["tiff"]) as tif:
        src = zarr.open_array(tif.pages.first.aszarr(), mode="r")
        out = _create_zarr(f["zarr"], src.shape)
        rows = ZARR_CHUNKS[0]
        for r0 in range(0, src.shape[0], rows):
            out[r0 : r0 + rows] = src[r0 : r0 + rows]
    return [{"bytes": _folder_bytes(f["zarr"]), "codec": _zarr_codec(out)}]


def _zarr_codec(arr) -> str:
    try:
        return ", ".join(type(c).__name__ + (f"(level={c.level})" if hasattr(c, "level") else "")
                         for c in arr.compressors) or "none"
    except Exception:  # noqa: BLE001 - only a description
        return "zarr's default"


def job_generate_big(spec: dict) -> list[dict]:
    f = spec["files"]
    h, w = spec["big_shape"]
    out = _create_zarr(f["big"], (h, w))
    rows = ZARR_CHUNKS[0]
    for r0 in range(0, h, rows):
        out[r0 : r0 + rows] = pattern(r0, min(r0 + rows, h), w, 1, spec["seed"] + 1)
    return [{"shape": [h, w], "bytes": _folder_bytes(f["big"]), "raw_bytes": h * w, "codec": _zarr_codec(out)}]


def _gaussian_kernel(spec):
    from .. import kernels

    return kernels.gaussian(spec["size"], spec["sigma"])


def job_api_stream(spec: dict) -> list[dict]:
    """The array API streaming a zarr into a zarr ``out=`` (the 10x image, or its warm-up)."""
    import zarr

    import pixelmill
    from ..engines import is_complete

    src = zarr.open_array(spec["src"], mode="r")
    out = _create_zarr(spec["dst"], src.shape, src.dtype)
    pixelmill.convolve(src, _gaussian_kernel(spec), policy="clip", out=out, engine="numba",
                       memory_limit=spec["big_limit"])
    return [{"complete": is_complete(out), "bytes": _folder_bytes(spec["dst"])}]


def job_cluster_client(spec: dict) -> list[dict]:
    """The client's side of the cluster run: the API with the dask engine, one task per band."""
    import zarr

    import pixelmill
    from ..engines import is_complete

    f = spec["files"]
    src = zarr.open_array(f["zarr"], mode="r")
    out = _create_zarr(f["cluster"], src.shape, src.dtype)
    pixelmill.convolve(src, _gaussian_kernel(spec), policy="clip", out=out, engine="dask",
                       scheduler=spec["address"], memory_limit=spec["limit"])
    return [{"complete": is_complete(out)}]


def _int_gaussian_row(spec) -> tuple[list[int], int]:
    from ._ops import int_gaussian_row

    return int_gaussian_row(_gaussian_kernel(spec))


def _sobel_masks():
    from .. import kernels

    sx = np.asarray(kernels.get("sobel-x").weights)
    # vips correlates: given the flipped kernels (the magnitude does not see the sign anyway).
    return sx[::-1, ::-1].astype(int).tolist(), sx.T[::-1, ::-1].astype(int).tolist()


def job_pyvips(spec: dict) -> list[dict]:
    import pyvips

    f = spec["files"]
    case = spec["case"]
    dst = f["pyvips"][case]
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    im = pyvips.Image.new_from_file(f["tiff"], access="sequential")
    if case == "gaussian":
        ints, scale = _int_gaussian_row(spec)
        out = im.convsep(pyvips.Image.new_from_array(ints, scale=scale), precision="integer")
    elif case == "sobel":
        mx, my = (pyvips.Image.new_from_array(m) for m in _sobel_masks())
        s = im.cast("short")
        gx, gy = s.conv(mx, precision="integer"), s.conv(my, precision="integer")
        out = ((gx * gx + gy * gy) ** 0.5).rint().cast("uchar")
    else:
        out = im.sobel()
    raw = im.width * im.height * im.bands
    out.tiffsave(dst, tile=True, tile_width=TILE[1], tile_height=TILE[0], compression=CODEC["pyvips"],
                 predictor=CODEC["predictor"], bigtiff=raw > BIGTIFF_BYTES)
    return [{"bytes": Path(dst).stat().st_size, "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}"}]


def job_dask_image(spec: dict) -> list[dict]:
    from importlib import metadata

    import dask.array as da
    from dask_image import ndfilters

    f = spec["files"]
    x = da.from_zarr(f["zarr"])
    sigma = float(spec["sigma"])
    radius = spec["size"] // 2
    y = ndfilters.gaussian_filter(x.astype(np.float32), sigma=(sigma, sigma, 0), truncate=radius / sigma,
                                  mode="nearest")
    da.clip(da.round(y), 0, 255).astype(np.uint8).to_zarr(f["dask-image"], overwrite=True)
    return [{"bytes": _folder_bytes(f["dask-image"]), "dask_image": metadata.version("dask-image")}]


# -- checks: outputs read back band by band, never whole ------------------------------------------------------


class _Reader:
    """An image on disk (a TIFF through tifffile's ``aszarr``, or a zarr folder) read by bands of
    rows; each thread has its own open file."""

    def __init__(self, path):
        import threading

        self.path = str(path)
        self._local = threading.local()
        self._opened = []
        self.shape = tuple(self._array().shape)

    def _array(self):
        arr = getattr(self._local, "array", None)
        if arr is None:
            import zarr

            if self.path.endswith((".tif", ".tiff")):
                import tifffile

                tif = tifffile.TiffFile(self.path)
                self._opened.append(tif)
                arr = zarr.open_array(tif.pages.first.aszarr(), mode="r")
            else:
                arr = zarr.open_array(self.path, mode="r")
            self._local.array = arr
        return arr

    def rows(self, r0: int, r1: int) -> np.ndarray:
        return np.asarray(self._array()[r0:r1])

    def close(self):
        for tif in self._opened:
            tif.close()


def _band_starts(h: int, rows: int, which=None) -> list[int]:
    starts = list(range(0, h, rows))
    if which is None:
        return starts
    return [starts[k] for k in which if -len(starts) <= k < len(starts)]


def compare(a_path, b_path, *, margin: int = 0, rows: int = 256, bands=None) -> dict:
    """Largest and mean absolute difference of two images on disk, band by band (two threads),
    leaving out ``margin`` pixels at the image's edges; ``bands``: only these band numbers."""
    from concurrent.futures import ThreadPoolExecutor

    a, b = _Reader(a_path), _Reader(b_path)
    try:
        if a.shape != b.shape:
            return {"max": float("inf"), "mean": float("inf"), "pixels": 0,
                    "note": f"shapes differ: {a.shape} and {b.shape}"}
        h, w = a.shape[:2]

        def one(r0):
            r1 = min(r0 + rows, h)
            lo, hi = max(r0, margin), min(r1, h - margin)
            if hi <= lo:
                return 0, 0, 0
            x = a.rows(lo, hi)[:, margin : w - margin].astype(np.int16)
            y = b.rows(lo, hi)[:, margin : w - margin].astype(np.int16)
            d = np.abs(x - y)
            return int(d.max()) if d.size else 0, float(d.sum(dtype=np.float64)), d.size

        with ThreadPoolExecutor(2) as pool:
            got = list(pool.map(one, _band_starts(h, rows, bands)))
    finally:
        a.close()
        b.close()
    n = sum(g[2] for g in got)
    return {"max": float(max((g[0] for g in got), default=0)), "mean": sum(g[1] for g in got) / n if n else 0.0,
            "pixels": n}


def oracle_check(src_path, out_path, op: str, spec, *, rows: int = 256) -> dict:
    """Sampled bands of a pixelmill output (the first, the last and :data:`ORACLE_BANDS`
    between) recomputed from the source with ``scipy.ndimage`` in float64 (nearest border),
    rounded and clipped: the largest and mean absolute difference."""
    import scipy.ndimage as ndi

    from .. import kernels

    src, out = _Reader(src_path), _Reader(out_path)
    try:
        h = src.shape[0]
        n = len(range(0, h, rows))
        picks = sorted({0, n - 1, *(int(k) for k in np.linspace(0, n - 1, ORACLE_BANDS + 2)[1:-1])})
        if op == "sobel":
            masks = [np.asarray(kernels.get("sobel-x").weights), np.asarray(kernels.get("sobel-x").weights).T]
        else:
            masks = [np.asarray(_gaussian_kernel(spec).weights)]
        halo = max(m.shape[0] for m in masks) // 2
        worst, total, count = 0.0, 0.0, 0
        for r0 in _band_starts(h, rows, picks):
            r1 = min(r0 + rows, h)
            lo, hi = max(0, r0 - halo), min(h, r1 + halo)
            window = src.rows(lo, hi).astype(np.float64)
            # Rows beyond the image repeat its edge rows (the nearest border), as pixelmill's do.
            window = np.pad(window, [(halo - (r0 - lo), halo - (hi - r1))] + [(0, 0)] * (window.ndim - 1), mode="edge")

            def filt(m):
                m = m if window.ndim == 2 else m[:, :, None]
                return ndi.convolve(window, m, mode="nearest")[halo : halo + (r1 - r0)]

            if op == "sobel":
                ref = np.hypot(filt(masks[0]), filt(masks[1]))
            else:
                ref = filt(masks[0])
            ref = np.clip(np.rint(ref), 0, 255)
            d = np.abs(out.rows(r0, r1).astype(np.float64) - ref)
            worst = max(worst, float(d.max()))
            total += float(d.sum())
            count += d.size
    finally:
        src.close()
        out.close()
    return {"max": worst, "mean": total / count if count else 0.0, "bands": len(picks), "of": n}


# -- steps: one group each ----------------------------------------------------------------------------------------


def _record(spec, *, mp: float, workers=None) -> Record:
    return Record(suite=NAME, method=spec["method"], kind=spec["kind"], case=spec["case"], size=round(mp, 3),
                  size_unit="MP", workers=workers)


def _measured(rec: Record, run, mp: float) -> Record:
    """``rec`` with one whole-program run's time and memory, or an error when it failed."""
    if run.failed or _job_error(run):
        rec.status = "error"
        why = _job_error(run) or ("timed out" if run.timed_out else f"exited with code {run.returncode}")
        rec.notes = f"{why}: {run.stderr_tail}"[-2000:]
        return rec
    rec.set_times([run.seconds], megapixels=mp)
    rec.peak_rss_mb = run.peak_mb
    rec.figures["processes"] = run.processes
    return rec


def _job_error(run) -> str:
    """The error a job function raised (the worker returns it as an error record), or ''."""
    first = (run.result or [{}])[0]
    if isinstance(first, dict) and first.get("status") == "error":
        return (first.get("notes") or "the job failed").strip().splitlines()[-1][:500]
    return ""


def _job(spec, target: str, extra: dict | None = None, name: str | None = None):
    return run_job(f"pixelmill.bench._huge:{target}", dict(spec, **(extra or {})),
                   workdir=Path(spec["files"]["root"]), name=name or f"huge-{spec['method']}-{spec['case']}",
                   timeout=spec["timeout"])


def run_step(spec: dict) -> list[Record]:
    Path(spec["files"]["root"]).mkdir(parents=True, exist_ok=True)
    Path(spec["files"]["out"]).mkdir(parents=True, exist_ok=True)
    step = {"generate": _step_generate, "pixelmill": _step_pixelmill, "pyvips": _step_pyvips,
            "dask-image": _step_dask_image, "dask-cluster": _step_cluster, "pixelmill-api": _step_big,
            "cleanup": _step_cleanup}[spec["method"]]
    return step(spec)


def _mp(shape) -> float:
    return shape[0] * shape[1] / 1e6


def _step_generate(spec: dict) -> list[Record]:
    f = spec["files"]
    target = {"tiff": "job_generate_tiff", "zarr-copy": "job_zarr_copy", "zarr-10x": "job_generate_big"}[spec["case"]]
    shape = spec["big_shape"] if spec["case"] == "zarr-10x" else spec["shape"]
    mp = _mp(shape)
    if spec["case"] == "tiff" and _warms_up(spec):
        # The small TIFF the untimed first `pixelmill run` streams.
        _write_tiff(f["warmup_tiff"], WARMUP_SIDE, spec["seed"])
    run = _job(spec, target)
    rec = _measured(_record(spec, mp=mp), run, mp)
    if rec.status == "ok":
        info = run.result[0]
        rec.figures.update(info)
        ratio = info["bytes"] / (int(np.prod(shape)) or 1)
        rec.notes = f"{STEPS[('generate', spec['case'])]}: {' x '.join(map(str, shape))}, {info['bytes'] / 1e9:.2f} GB " \
                    f"on disk ({ratio:.2f} of raw), {info.get('codec', '')}"
        rec.set_check(None, tolerance=0, reference="an input: nothing to compare it with")
    return [rec]


def _pixelmill_argv(src: str, outdir: str, op: str, limit: int) -> list[str]:
    return [sys.executable, "-m", "pixelmill", "run", src, "-o", outdir, "--op", op, "--memory-limit", str(limit),
            "-q", "--json"]


def _run_cli(spec, src: str, outdir: str, op: str, limit: int, name: str):
    shutil.rmtree(outdir, ignore_errors=True)
    err = Path(spec["files"]["root"]) / "jobs" / f"{name}.stderr.txt"
    err.parent.mkdir(parents=True, exist_ok=True)
    return run_process(_pixelmill_argv(src, outdir, op, limit), stderr_path=err, env=worker_env(),
                       timeout=spec["timeout"], capture_stdout=True)


def _streamed_done(outdir: str) -> tuple[bool, str]:
    """Whether `pixelmill run` wrote its one output and streamed it (its manifest says)."""
    import json

    try:
        manifest = json.loads((Path(outdir) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return False, f"no manifest: {exc}"
    items = manifest.get("items") or manifest.get("records") or []
    done = [i for i in items if i.get("status") == "done"]
    if len(done) != 1:
        return False, f"{len(done)} outputs done: {[i.get('error') for i in items][:2]}"
    return bool(done[0].get("streamed")), "" if done[0].get("streamed") else "the output was not streamed"


def _pixelmill_output(spec, case: str) -> str:
    return str(Path(spec["files"]["pixelmill"][case]) / Path(spec["files"]["tiff"]).name)


def _warms_up(spec) -> bool:
    return spec["shape"][0] > WARMUP_SIDE


def _step_pixelmill(spec: dict) -> list[Record]:
    f, case = spec["files"], spec["case"]
    op = spec["gaussian"] if case == "gaussian" else "sobel"
    mp = _mp(spec["shape"])
    warm = None
    if _warms_up(spec):
        warm_out = str(Path(f["out"]) / f"warmup-{case}")
        warm = _run_cli(spec, f["warmup_tiff"], warm_out, op, spec["warmup_limit"], f"huge-warmup-{case}")
        warm_ok, warm_why = _streamed_done(warm_out) if not warm.failed else (False, warm.stderr_tail)
        shutil.rmtree(warm_out, ignore_errors=True)
    run = _run_cli(spec, f["tiff"], f["pixelmill"][case], op, spec["limit"], f"huge-pixelmill-{case}")
    rec = _measured(_record(spec, mp=mp), run, mp)
    rec.warmup_s = warm.seconds if warm is not None and warm_ok else None
    if rec.status != "ok":
        return [rec]
    streamed, why = _streamed_done(f["pixelmill"][case])
    out = _pixelmill_output(spec, case)
    rec.figures.update(bytes=Path(out).stat().st_size if Path(out).exists() else None, memory_limit=spec["limit"])
    rec.notes = (f"`pixelmill run image.tif -o OUT --op {op} --memory-limit {spec['limit']}` (the default engine), "
                 + (f"one timed run after one untimed run on a {WARMUP_SIDE} x {WARMUP_SIDE} TIFF"
                    + ("" if rec.warmup_s is not None else f" (which failed: {warm_why[:200]})")
                    if warm is not None else "one run (no warm-up at this size)"))
    if not streamed:
        rec.status = "error"
        rec.notes += f"; {why}"
        return [rec]
    c = oracle_check(f["tiff"], out, case, spec)
    rec.set_check((c["max"], c["mean"]), tolerance=ORACLE_TOLERANCE,
                  reference=f"scipy.ndimage.convolve in float64 (nearest border), rounded, on {c['bands']} of "
                            f"{c['of']} bands (the first, the last and between)")
    return [rec]


def _missing(module: str) -> str:
    try:
        return "" if importlib.util.find_spec(module) is not None else f"{module} is not installed"
    except (ImportError, ValueError) as exc:
        return f"{module} cannot be imported: {exc}"


def _step_pyvips(spec: dict) -> list[Record]:
    f, case = spec["files"], spec["case"]
    mp = _mp(spec["shape"])
    rec = _record(spec, mp=mp)
    why = _missing("pyvips")
    if why:
        rec.status, rec.notes = "not installed", why
        return [rec]
    run = _job(spec, "job_pyvips")
    rec = _measured(rec, run, mp)
    if rec.status != "ok":
        return [rec]
    rec.figures.update(run.result[0])
    dst = f["pyvips"][case]
    mine = _pixelmill_output(spec, "sobel" if case.startswith("sobel") else "gaussian")
    if not Path(mine).exists():
        rec.notes = f"{STEPS[('pyvips', case)]}; pixelmill's output is missing, so it is not compared"
        Path(dst).unlink(missing_ok=True)
        return [rec]
    if case == "sobel-builtin":
        # Another quantity (about |Gx| + |Gy|): its difference is stated, on the first band only.
        c = compare(dst, mine, margin=2, bands=[0])
        rec.set_check(None, tolerance=PYVIPS_TOLERANCE, reference="not the same operation")
        rec.notes = (f"Image.sobel(): on uchar images libvips computes about |Gx| + |Gy| (its fast integer path), "
                     f"not the magnitude; it differs from pixelmill's Sobel by up to {c['max']:.0f} grey levels "
                     f"(mean {c['mean']:.1f}) on the first band, so it is timed but not held to a tolerance")
    else:
        c = compare(dst, mine, margin=2)
        rec.set_check((c["max"], c["mean"]), tolerance=PYVIPS_TOLERANCE,
                      reference="pixelmill run's output, read back band by band; the interior (2 pixels in)")
        if case == "gaussian":
            ints, scale = _int_gaussian_row(spec)
            rec.notes = (f"Image.new_from_file(access='sequential').convsep(mask {ints} scale {scale}, "
                         f"precision='integer').tiffsave(tile 256 x 256, compression='deflate', "
                         f"predictor='horizontal'); libvips threads = cores")
        else:
            rec.notes = ("im.cast('short'), conv with the integer Sobel masks (precision='integer'), "
                         "((gx*gx + gy*gy) ** 0.5).rint().cast('uchar'), tiffsave as for the Gaussian; "
                         "libvips threads = cores")
    Path(dst).unlink(missing_ok=True)
    return [rec]


def _step_dask_image(spec: dict) -> list[Record]:
    f = spec["files"]
    mp = _mp(spec["shape"])
    rec = _record(spec, mp=mp)
    why = _missing("dask_image")
    if why:
        rec.status, rec.notes = "not installed", why + " (pip install dask-image)"
        return [rec]
    run = _job(spec, "job_dask_image")
    rec = _measured(rec, run, mp)
    if rec.status != "ok":
        return [rec]
    rec.figures.update(run.result[0])
    c = compare(f["dask-image"], _pixelmill_output(spec, "gaussian"), margin=2)
    rec.set_check((c["max"], c["mean"]), tolerance=PYVIPS_TOLERANCE,
                  reference="pixelmill run's Gaussian output, read back band by band; the interior (2 pixels in)")
    rec.notes = ("da.from_zarr(the zarr copy) -> astype(float32) -> dask_image.ndfilters.gaussian_filter(sigma=(s, s, 0), "
                 "truncate=radius/s, mode='nearest') -> round, clip, uint8 -> to_zarr; dask's threads, all cores")
    shutil.rmtree(f["dask-image"], ignore_errors=True)
    return [rec]


def _transfer_counters(dask_worker) -> dict:
    return {"outgoing_bytes": int(dask_worker.transfer_outgoing_bytes_total),
            "incoming_count": int(dask_worker.state.transfer_incoming_count_total),
            "incoming_bytes": int(sum(d.get("total", 0) for d in dask_worker.transfer_incoming_log))}


def _step_cluster(spec: dict) -> list[Record]:
    import logging

    f = spec["files"]
    mp = _mp(spec["shape"])
    rec = _record(spec, mp=mp, workers=CLUSTER_WORKERS)
    why = _missing("distributed") or _missing("zarr")
    if why:
        rec.status, rec.notes = "not installed", why
        return [rec]
    from contextlib import ExitStack

    import dask
    from distributed import Client, LocalCluster

    env = {"PYTHONPATH": worker_env()["PYTHONPATH"]}
    with ExitStack() as stack:
        # Bounded: a cluster that cannot start and connect in time is an error record, not a hang.
        stack.enter_context(dask.config.set({"distributed.comm.timeouts.connect": f"{CLUSTER_START_S}s"}))
        cluster = stack.enter_context(LocalCluster(
            n_workers=CLUSTER_WORKERS, threads_per_worker=1, processes=True, memory_limit=CLUSTER_WORKER_MEMORY,
            host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR, env=env,
            death_timeout=CLUSTER_START_S))
        client = stack.enter_context(Client(cluster))
        client.wait_for_workers(CLUSTER_WORKERS, timeout=CLUSTER_START_S)
        start = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.get_task_stream_index())
        before = client.run(_transfer_counters)
        run = _job(spec, "job_cluster_client", {"address": cluster.scheduler_address})
        stream = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.get_task_stream(start_index=start))
        after = client.run(_transfer_counters)
    rec = _measured(rec, run, mp)
    if rec.status != "ok":
        return [rec]
    delta = {k: sum(after[w][k] - before.get(w, {}).get(k, 0) for w in after) for k in next(iter(after.values()))}
    transfers = sum(1 for t in stream for s in t.get("startstops", ()) if s.get("action") == "transfer")
    rec.figures.update(tasks=len(stream), transfers=transfers, bytes_between_workers=delta["outgoing_bytes"],
                       incoming_transfers=delta["incoming_count"], incoming_bytes=delta["incoming_bytes"],
                       complete=bool(run.result[0].get("complete")), workers=CLUSTER_WORKERS,
                       worker_memory=CLUSTER_WORKER_MEMORY)
    local = _pixelmill_output(spec, "gaussian")
    if Path(local).exists():
        c = compare(f["cluster"], local, margin=0)
        rec.set_check((c["max"], c["mean"]), tolerance=0.0,
                      reference="the local `pixelmill run` Gaussian output (numba), every pixel, band by band")
    rec.notes = (f"LocalCluster(n_workers={CLUSTER_WORKERS}, threads_per_worker=1, memory_limit={CLUSTER_WORKER_MEMORY!r}, "
                 f"host='127.0.0.1'); the client: pixelmill.convolve(the zarr copy, gaussian, policy='clip', out=zarr, "
                 f"engine='dask', scheduler=address); peak RSS is the client's process alone; {len(stream)} tasks, "
                 f"{transfers} transfers between workers ({delta['outgoing_bytes']:,} bytes, the workers' own counters)"
                 + ("" if rec.figures["complete"] else "; the output is NOT marked complete"))
    if not rec.figures["complete"]:
        rec.match = False
    shutil.rmtree(f["cluster"], ignore_errors=True)
    return [rec]


def _step_big(spec: dict) -> list[Record]:
    f = spec["files"]
    mp = _mp(spec["big_shape"])
    rec = _record(spec, mp=mp)
    why = _missing("zarr")
    if why:
        rec.status, rec.notes = "not installed", why
        return [rec]
    warm = None
    if spec["big_shape"][0] > WARMUP_SIDE:
        # The untimed first run, on a small zarr: numba compiles the grey kernels to disk once.
        warm_src = _create_zarr(f["warmup_zarr"], (WARMUP_SIDE, WARMUP_SIDE))
        warm_src[:] = pattern(0, WARMUP_SIDE, WARMUP_SIDE, 1, spec["seed"])
        warm = _job(spec, "job_api_stream", {"src": f["warmup_zarr"], "dst": f["warmup_big_out"]},
                    name="huge-api-warmup")
    run = _job(spec, "job_api_stream", {"src": f["big"], "dst": f["big_out"]})
    rec = _measured(rec, run, mp)
    rec.warmup_s = None if warm is None or warm.failed or _job_error(warm) else warm.seconds
    for path in (f["warmup_zarr"], f["warmup_big_out"]):
        shutil.rmtree(path, ignore_errors=True)
    if rec.status == "ok":
        rec.figures.update(run.result[0], memory_limit=spec["big_limit"], shape=spec["big_shape"])
        c = oracle_check(f["big"], f["big_out"], "gaussian", spec)
        rec.set_check((c["max"], c["mean"]), tolerance=ORACLE_TOLERANCE,
                      reference=f"scipy.ndimage.convolve in float64 (nearest border), rounded, on {c['bands']} of "
                                f"{c['of']} bands")
        rec.notes = (f"pixelmill.convolve(zarr {spec['big_shape'][0]} x {spec['big_shape'][1]} uint8, gaussian, "
                     f"policy='clip', out=zarr, engine='numba', memory_limit={spec['big_limit']}) in a fresh Python "
                     + ("process, after one untimed run on a {0} x {0} zarr".format(WARMUP_SIDE) if warm is not None
                        else "process (no warm-up at this size)")
                     + ("" if run.result[0].get("complete") else "; the output is NOT marked complete"))
        if not run.result[0].get("complete"):
            rec.match = False
    for path in (f["big"], f["big_out"]):
        shutil.rmtree(path, ignore_errors=True)
    return [rec]


def _step_cleanup(spec: dict) -> list[Record]:
    """Frees the disk the inputs and the kept outputs took (tens of GB at full size); no record."""
    shutil.rmtree(spec["files"]["root"], ignore_errors=True)
    return []


# -- analysis ------------------------------------------------------------------------------------------------------


def _get(records, method, case) -> Record | None:
    return next((r for r in ok_records(records, suite=NAME, method=method, case=case)), None)


def _ratio(records, case: str, peer_case: str | None = None):
    mine, theirs = _get(records, "pixelmill", case), _get(records, "pyvips", peer_case or case)
    if mine is None or theirs is None:
        return None
    return mine.median_s / theirs.median_s, mine, theirs


def _gib(rec: Record | None) -> float | None:
    return None if rec is None or rec.peak_rss_mb is None else rec.peak_rss_mb / 1024


def analyse(records: list[Record], opts: dict) -> dict:
    out: dict = {"conclusions": [], "ratios": {}}
    gp = next((r.size / 1e3 for r in records if r.suite == NAME and r.method == "pixelmill" and r.size), None)
    for case, label in (("gaussian", "the Gaussian"), ("sobel", "the Sobel magnitude")):
        got = _ratio(records, case)
        mine = _get(records, "pixelmill", case)
        if got:
            ratio, m, t = got
            out["ratios"][case] = ratio
            out["conclusions"].append(
                f"{label} on {m.size / 1e3:.3g} GP: `pixelmill run` {m.median_s:.0f} s and {m.peak_rss_mb:.0f} MB "
                f"peak RSS, pyvips {t.median_s:.0f} s and {t.peak_rss_mb:.0f} MB: {ratio:.2f}x pyvips' time.")
        elif mine:
            out["conclusions"].append(f"{label} on {mine.size / 1e3:.3g} GP: `pixelmill run` {mine.median_s:.0f} s, "
                                      f"{mine.peak_rss_mb:.0f} MB peak RSS (pyvips not measured).")
    builtin, mag = _get(records, "pyvips", "sobel-builtin"), _get(records, "pyvips", "sobel")
    sob = _get(records, "pixelmill", "sobel")
    if builtin and sob:
        out["ratios"]["sobel-builtin"] = sob.median_s / builtin.median_s
        out["conclusions"].append(
            f"libvips' own Image.sobel() took {builtin.median_s:.0f} s ({sob.median_s / builtin.median_s:.2f}x for "
            f"pixelmill), but computes about |Gx| + |Gy| on 8-bit images, not the magnitude"
            + (f"; its magnitude took {mag.median_s:.0f} s" if mag else "") + ".")
    di = _get(records, "dask-image", "gaussian")
    if di:
        mine = _get(records, "pixelmill", "gaussian")
        out["conclusions"].append(f"dask-image's Gaussian (zarr to zarr) took {di.median_s:.0f} s and "
                                  f"{di.peak_rss_mb:.0f} MB" + (f" ({di.median_s / mine.median_s:.1f}x pixelmill's time)"
                                                                 if mine else "") + ".")
    big = _get(records, "pixelmill-api", "gaussian-10x")
    if big:
        out["conclusions"].append(f"The {big.size / 1e3:.3g} GP zarr through the array API: {big.median_s:.0f} s "
                                  f"({big.mp_per_s:.0f} MP/s), {big.peak_rss_mb:.0f} MB peak RSS with memory_limit 1 GB.")
    cl = _get(records, "dask-cluster", "gaussian")
    if cl:
        fig = cl.figures
        same = "identical to" if cl.checked and cl.max_abs_err == 0 else "NOT identical to"
        out["conclusions"].append(
            f"On a 2-worker LocalCluster: {cl.median_s:.0f} s, output {same} the local run, the client's peak RSS "
            f"{cl.peak_rss_mb:.0f} MB; {fig.get('tasks')} tasks, {fig.get('transfers')} transfers and "
            f"{fig.get('bytes_between_workers', 0):,} bytes between workers.")
    out["gp"] = gp
    return out


def plot(records, analysis, path, opts) -> None:
    from ._plots import new_figure, save

    rows = [r for r in records if r.suite == NAME and r.status == "ok" and r.median_s]
    if not rows:
        raise ValueError("no huge records to plot")
    fig, (ax1, ax2) = new_figure(1, 2, width=14, height=6)
    labels = [f"{r.method} {r.case}" for r in rows]
    colors = {"engine": "#ff7f0e", "peer": "#637939", "baseline": "#7f7f7f"}
    y = np.arange(len(rows))
    ax1.barh(y, [r.median_s for r in rows], color=[colors.get(r.kind, "#1f77b4") for r in rows])
    for k, r in enumerate(rows):
        ax1.annotate(f"{r.median_s:.0f} s" if r.median_s >= 10 else f"{r.median_s:.1f} s", (r.median_s, k),
                     textcoords="offset points", xytext=(3, -3), fontsize=8)
    ax1.set_yticks(y)
    ax1.set_yticklabels(labels, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xlabel("wall time of the whole program (s, one run)")
    ax1.set_title("Time (lower is better)")
    peaks = [r.peak_rss_mb or 0 for r in rows]
    ax2.barh(y, peaks, color=[colors.get(r.kind, "#1f77b4") for r in rows])
    ax2.axvline(1024, color="red", linestyle="--", linewidth=1, label="1 GiB (the RSS targets)")
    ax2.axvline(300, color="purple", linestyle=":", linewidth=1, label="300 MB (the cluster client's target)")
    for k, v in enumerate(peaks):
        ax2.annotate(f"{v:.0f}", (v, k), textcoords="offset points", xytext=(3, -3), fontsize=8)
    ax2.set_yticks(y)
    ax2.set_yticklabels([])
    ax2.invert_yaxis()
    ax2.set_xlabel("peak RSS of the process tree (MB)")
    ax2.set_title("Memory")
    ax2.legend(fontsize=8, loc="lower right")
    gp = analysis.get("gp")
    fig.suptitle(f"huge: a {gp:.3g} GP RGB TIFF and a {10 * gp:.3g} GP zarr" if gp else "huge")
    save(fig, path)


def table(records, analysis, opts) -> str:
    from .._text import md_table

    rows = []
    for r in records:
        if r.suite != NAME:
            continue
        what = STEPS.get((r.method, r.case), f"{r.method} {r.case}")
        if r.status != "ok":
            rows.append([what, r.size, "", "", "", "", r.status])
            continue
        if r.checked:
            check = ("ok" if r.match else "MISMATCH") + f" (max {r.max_abs_err:.0f}, mean {r.mean_abs_err:.3f})"
        else:
            check = "not compared" if r.kind != "baseline" else "input"
        rows.append([what, f"{r.size:,.0f}", f"{r.median_s:.1f}", f"{r.mp_per_s:.0f}",
                     f"{r.peak_rss_mb:.0f}" if r.peak_rss_mb else "", r.figures.get("processes", ""), check])
    return md_table(["step", "MP", "wall s", "MP/s", "peak RSS MB", "processes", "check"], rows)


# -- targets ---------------------------------------------------------------------------------------------------------


def _rss_target(method, case):
    def measure(records, analyses, opts):
        rec = _get(records, method, case)
        if rec is None or rec.peak_rss_mb is None:
            return None
        return _gib(rec), f"{rec.peak_rss_mb:.0f} MB on {rec.size / 1e3:.3g} GP"
    return measure


def _vs_pyvips(case):
    def measure(records, analyses, opts):
        got = _ratio(records, case)
        if got is None:
            return None
        ratio, m, t = got
        detail = f"pixelmill {m.median_s:.1f} s vs pyvips {t.median_s:.1f} s on {m.size / 1e3:.3g} GP"
        if case == "sobel":
            b = _get(records, "pyvips", "sobel-builtin")
            if b:
                detail += (f"; against libvips' own Image.sobel() ({b.median_s:.1f} s, about |Gx|+|Gy|, not the "
                           f"magnitude) {m.median_s / b.median_s:.2f}")
        return ratio, detail
    return measure


def _client_rss(records, analyses, opts):
    rec = _get(records, "dask-cluster", "gaussian")
    if rec is None or rec.peak_rss_mb is None:
        return None
    return rec.peak_rss_mb, f"{rec.median_s:.0f} s, {rec.figures.get('tasks')} tasks"


def _identical(records, analyses, opts):
    rec = _get(records, "dask-cluster", "gaussian")
    if rec is None or not rec.checked:
        return None
    return rec.max_abs_err, ("every pixel equal to the local run's" if rec.max_abs_err == 0
                             else f"mean difference {rec.mean_abs_err:.3g}")


TARGETS = [
    Target("huge-gaussian-rss", "1 GP `pixelmill run --op gaussian --memory-limit 1GB`: peak RSS (GiB) <= 1", NAME,
           1.0, "<=", _rss_target("pixelmill", "gaussian")),
    Target("huge-sobel-rss", "1 GP `pixelmill run --op sobel --memory-limit 1GB`: peak RSS (GiB) <= 1", NAME,
           1.0, "<=", _rss_target("pixelmill", "sobel")),
    Target("huge-gaussian-vs-pyvips", "1 GP Gaussian: wall time <= 0.5x pyvips' (integer convsep)", NAME, 0.5, "<=",
           _vs_pyvips("gaussian")),
    Target("huge-sobel-vs-pyvips", "1 GP Sobel magnitude: wall time <= 0.5x pyvips' (integer conv + hypot)", NAME,
           0.5, "<=", _vs_pyvips("sobel")),
    Target("huge-10x-rss", "10 GP zarr through the array API, memory_limit 1GB: peak RSS (GiB) <= 1", NAME, 1.0, "<=",
           _rss_target("pixelmill-api", "gaussian-10x")),
    Target("huge-cluster-client-rss", "1 GP on a 2-worker LocalCluster: the client's peak RSS (MB) under 300", NAME,
           300.0, "<=", _client_rss),
    Target("huge-cluster-identical", "1 GP on a LocalCluster: largest difference from the local run = 0", NAME, 0.0,
           "<=", _identical),
]
