"""One task of a batch: one input file decoded once, every operation run on it (a filter bank),
each result encoded atomically. A task never raises: it records ``done`` or ``failed`` (with a
one-line reason) for each (input, operation) pair, so one bad file never stops a batch."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engines import default_memory_limit, iter_bands, make_engine
from ..errors import InvalidImageError, PixelmillError
from ..io import EXTENSION_FORMATS, check_writable, premultiply, read_image, unpremultiply, write_image
from ..io import open_tiff_source, tile_rows_held_bytes, write_tiff_tiles
from ..io import collecting_warnings as collecting
from .._opspec import Chain, steps_of
from ..ops import Invert, Operation, fuse_policy, to_dtype
from ._manifest import record as _record
from ._settings import RunSettings

__all__ = ["Step", "Task", "run_task", "close_inner_engines", "prepare_kernels"]


@dataclass(frozen=True)
class Step:
    """One operation on one input, and where its output goes (``output``; ``rel_output``:
    the same, relative to the output folder, as the manifest and journal name it)."""

    op: Operation
    output: str
    key: str
    rel_output: str


@dataclass(frozen=True)
class Task:
    """One input file and its steps; picklable, so any engine can ship it to a worker."""

    input: str
    steps: tuple[Step, ...]
    settings: RunSettings
    inner_engine: str
    inner_workers: int




def run_task(task: Task) -> list[dict]:
    """Decode once, run each step, encode each output atomically. Never raises. What the
    codec libraries warn about meanwhile goes into each record's ``warnings``."""
    with collecting() as messages:
        records = _run_task(task)
    for rec in records:
        rec["warnings"] = list(messages)
    return records


def _run_task(task: Task) -> list[dict]:
    s = task.settings
    records = []
    t0 = time.perf_counter()
    streamed = _run_streamed(task)
    if streamed is not None:
        return streamed
    try:
        image = read_image(task.input, max_pixels=s.max_pixels)
        suffix = Path(task.input).suffix.lower()
        promised = EXTENSION_FORMATS.get(suffix)
        if promised and image.format != promised:
            raise InvalidImageError(
                f"{task.input!r}: the extension {suffix!r} says {promised} but the content is {image.format}"
            )
        for step in task.steps:  # an output the format cannot hold fails before any work
            check_writable(step.output, image, format=s.format)
    except Exception as exc:  # one bad file never stops a batch
        reason = _one_line(exc)
        return [_record(task.input, st, "failed", reason) for st in task.steps]
    decode = time.perf_counter() - t0
    pixels = sum(int(f.data.shape[0] * f.data.shape[1]) for f in [image, *image.frames])
    ops = [step.op for step in task.steps]
    t1 = time.perf_counter()
    try:
        # The filter bank: every op reads the one decoded image; parallel engines run them at once.
        engine = _inner_engine(task.inner_engine, task.inner_workers, s)
        results = _apply_bank(engine, ops, image, s)
        # Every frame or page of a multi-frame file, each with its own duration/disposal.
        per_frame = [_apply_bank(engine, ops, frame, s) for frame in image.frames]
        if per_frame:
            results = [r.with_frames([f[i] for f in per_frame]) for i, r in enumerate(results)]
    except Exception as exc:
        reason = _one_line(exc)
        return [_record(task.input, st, "failed", reason) for st in task.steps]
    compute = (time.perf_counter() - t1) / len(ops)  # the bank's time, shared evenly
    for step, result in zip(task.steps, results):
        timings = {"decode": round(decode, 6), "compute": round(compute, 6)}
        decode = 0.0  # the decode is shared: charge it to the first output only
        try:
            t2 = time.perf_counter()
            fmt = s.format or EXTENSION_FORMATS.get(Path(step.output).suffix.lower())
            # Durable at the end of the batch (run_batch), not file by file.
            write_image(step.output, result, format=fmt, quality=s.quality, like=image, durable=False)
            timings["encode"] = round(time.perf_counter() - t2, 6)
            rec = _record(task.input, step, "done", None, timings=timings, pixels=pixels)
            rec["size"] = os.stat(step.output).st_size
            rec["format"] = fmt or image.format
            if rec["format"] in _LOSSY and (
                rec["format"] != "TIFF" or image.info.get("compression") in ("jpeg", "tiff_jpeg")
            ):
                rec["quality"] = s.quality
        except Exception as exc:
            rec = _record(task.input, step, "failed", _one_line(exc), timings=timings)
        records.append(rec)
    return records


#: A TIFF whose pixels, times this many bytes each (what the in-memory path holds: the image,
#: its result, float work arrays), exceed the memory limit is streamed instead.
IN_MEMORY_BYTES_PER_SAMPLE = 10


def _run_streamed(task: Task) -> list[dict] | None:
    """A large TIFF (tiled, or strips read in bands) read window by window and written tile row
    by tile row, within the memory limit: records for each step, or None when the input is not
    one (it then goes the in-memory way). Never raises."""
    s = task.settings
    if Path(task.input).suffix.lower() not in (".tif", ".tiff") or s.format not in (None, "TIFF"):
        return None
    if any(Path(st.output).suffix.lower() not in (".tif", ".tiff") for st in task.steps):
        return None
    limit = s.memory_limit or default_memory_limit()
    try:
        import tifffile

        with tifffile.TiffFile(task.input) as tif:
            page = tif.pages.first
            samples = int(page.imagelength) * int(page.imagewidth) * int(page.samplesperpixel)
            alpha = bool(page.extrasamples)
    except Exception:
        return None  # not for tifffile: the in-memory path says why
    if samples * IN_MEMORY_BYTES_PER_SAMPLE <= limit:
        return None
    records = []
    try:
        if alpha:
            raise InvalidImageError(
                f"{task.input!r} has an alpha channel, which the streamed path does not carry through yet; "
                f"it needs about {samples * IN_MEMORY_BYTES_PER_SAMPLE / 1e9:.1f} GB in memory (raise --memory-limit)"
            )
        source = open_tiff_source(task.input)
    except Exception as exc:
        return [_record(task.input, st, "failed", _one_line(exc)) for st in task.steps]
    with source:
        arr = source.array
        dtype = np.dtype(arr.dtype)
        name = task.inner_engine if task.inner_engine != "auto" else ("numba" if _has_numba() else "numpy")
        for step in task.steps:
            t0 = time.perf_counter()
            try:
                keep_float = dtype.kind == "f" and s.policy is None
                op, after = fuse_policy(step.op, None if keep_float else s.policy or step.op.default_policy, dtype)
                if after is not None or (keep_float and op.out_dtype(dtype) != dtype):
                    raise InvalidImageError(
                        f"policy {after or 'float32'!r} needs the whole result, which a streamed image is not "
                        "held for; use clip, abs or shift"
                    )
                engine = _inner_engine(name, task.inner_workers, s)
                held = tile_rows_held_bytes(arr.shape, op.out_dtype(dtype), source.tile, engine.workers)
                bands = iter_bands(op, arr, engine=engine, border=s.border, cval=s.cval, memory_limit=limit,
                                   reserved=held)
                write_tiff_tiles(step.output, bands, arr.shape, op.out_dtype(dtype), source.kwargs, source.tile,
                                 durable=False, workers=engine.workers)
                took = round(time.perf_counter() - t0, 6)
                rec = _record(task.input, step, "done", None, timings={"decode": 0.0, "compute": took, "encode": 0.0},
                              pixels=int(arr.shape[0] * arr.shape[1]))
                rec["size"] = os.stat(step.output).st_size
                rec["format"] = "TIFF"
                rec["streamed"] = True
            except Exception as exc:
                rec = _record(task.input, step, "failed", _one_line(exc))
            records.append(rec)
    return records


def _has_numba() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


#: Within-image engines, kept for the life of the process: a pool starts once per batch (or
#: per worker process), not once per image.
_INNER_ENGINES: dict[tuple, object] = {}


def _inner_engine(name: str, workers: int, s: RunSettings):
    key = (name, workers, s.tile_shape)
    if key not in _INNER_ENGINES:
        _INNER_ENGINES[key] = make_engine(name, workers, **engine_options(s, inner=True))
    return _INNER_ENGINES[key]


def close_inner_engines() -> None:
    """Close the cached within-image engines (pools, shared memory) of this process."""
    while _INNER_ENGINES:
        _, engine = _INNER_ENGINES.popitem()
        engine.close()


#: Output formats whose writer takes --quality (TIFF: when JPEG-compressed).
_LOSSY = frozenset({"JPEG", "WEBP", "AVIF", "JXL", "HEIF", "TIFF"})


def _apply_bank(engine, ops: list[Operation], image, s: RunSettings):
    """Run ``ops`` on the colour channels; alpha is carried through untouched.

    Premultiplied (associated) alpha: the ops see straight colour, and their results are
    premultiplied again (inversion exactly: ``alpha - stored``). Float images keep float
    results at full range unless a policy is asked for."""
    color = image.color
    premultiplied = bool(image.info.get("premultiplied")) and image.has_alpha
    if premultiplied:
        straight = unpremultiply(color, image.alpha)
        color = straight.astype(color.dtype) if color.dtype.kind == "f" else to_dtype(straight, color.dtype)
    keep_float = color.dtype.kind == "f" and s.policy is None
    # The filter bank at once; each chain's steps one after another (_run_chain).
    chains = {i: op for i, op in enumerate(ops) if isinstance(op, Chain)}
    singles = [op for op in ops if not isinstance(op, Chain)]
    planned = [fuse_policy(op, None if keep_float else s.policy or op.default_policy, color.dtype) for op in singles]
    fused = [op for op, _ in planned]
    if not fused:
        bank = []
    elif len(ops) == 1 and _can_overwrite(color, fused[0].out_dtype(color.dtype)):
        # One op: write its result over the decoded pixels, which nothing else reads. The
        # image is then held once: engines write it band by band, or (numba) row by row.
        bank = [engine.run(fused[0], color, border=s.border, cval=s.cval, out=color)]
    else:
        bank = engine.run_many(fused, color, border=s.border, cval=s.cval)
    converted = iter([(op, after, result) for op, (_, after), result in zip(fused, planned, bank)])
    outputs = []
    for i in range(len(ops)):
        if i in chains:
            op, result = chains[i], _run_chain(engine, chains[i], color, s, keep_float)
        else:
            op, after, result = next(converted)
            if after is not None:
                result = to_dtype(result, color.dtype, policy=after)
            elif keep_float and result.dtype != color.dtype:
                result = result.astype(color.dtype)  # float in, float out: never clipped unless asked
        if premultiplied:
            alpha = image.alpha if color.ndim == 2 else image.alpha[..., None]
            if isinstance(op, Invert) and color.dtype.kind in "uf":
                # (max - c) * a / max = a - stored, exactly
                if color.dtype.kind == "u":
                    result = np.clip(alpha.astype(np.int64) - image.color, 0, None).astype(color.dtype)
                else:
                    result = alpha - image.color
            else:
                result = premultiply(result, image.alpha, color.dtype)
        outputs.append(image.with_color(result))
    return outputs


def _run_chain(engine, chain: Chain, color: np.ndarray, s: RunSettings, keep_float: bool) -> np.ndarray:
    """The chain's steps one after another, each result converted back to the image dtype with
    that step's policy before the next reads it (what calling the library's functions in turn
    does); float images stay float unless a policy is asked for, as a single op's."""
    current = color
    for step in chain.steps:
        op, after = fuse_policy(step, None if keep_float else s.policy or step.default_policy, current.dtype)
        result = engine.run(op, current, border=s.border, cval=s.cval)
        if after is not None:
            result = to_dtype(result, current.dtype, policy=after)
        elif keep_float and result.dtype != current.dtype:
            result = result.astype(current.dtype)
        current = result
    return current


def prepare_kernels(schedule, s: RunSettings, *, notify=None) -> float | None:
    """Load (or, the first time on a machine, compile) numba's kernels for this run's
    operations before the first image, when the schedule may run numba, so that one-time work
    is said and timed as such instead of hiding in the first image; the seconds it took, or
    None when numba is not used."""
    names = {schedule.across, schedule.within}
    uses_numba = "numba" in names
    if not uses_numba and "auto" in names:
        from ..engines import load_calibration
        from ..engines._auto import AutoEngine

        from ._schedule import work_classes

        probe = AutoEngine(workers=schedule.within_workers,
                           calibration=load_calibration(classes=work_classes(s.ops)))
        uses_numba = probe.choose([st for op in s.ops for st in steps_of(op)], (2000, 3000)).engine == "numba"
    if not uses_numba:
        return None
    import sys

    if notify:
        cold = "pixelmill.ops._numba" not in sys.modules
        notify("preparing numba's kernels for these operations (compiled once per machine and cached; "
               "loading them takes a second or two)" if cold else "numba's kernels: checking they are ready")
    t0 = time.perf_counter()
    # What most photographs are: 8-bit RGB, and 8-bit grey.
    with make_engine("numba", 1) as engine:
        for shape in ((16, 16, 3), (16, 16)):
            try:
                _apply_bank(engine, list(s.ops), _Pixels(np.zeros(shape, np.uint8)), s)
            except Exception:  # noqa: BLE001 - the images will say what is wrong, item by item
                break
    seconds = time.perf_counter() - t0
    if notify:
        notify(f"numba's kernels ready in {seconds:.1f} s")
    return seconds


class _Pixels:
    """An opaque 8-bit image without alpha, for :func:`prepare_kernels`."""

    def __init__(self, color):
        self.color, self.alpha, self.info, self.has_alpha = color, None, {}, False

    def with_color(self, result):
        return result


def _can_overwrite(pixels: np.ndarray, out_dtype) -> bool:
    return pixels.dtype == out_dtype and pixels.flags.writeable and pixels.flags.c_contiguous


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    if isinstance(exc, PixelmillError):
        return msg or type(exc).__name__
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def engine_options(s: RunSettings, *, inner: bool = False) -> dict:
    options = {}
    if s.tile_shape:
        options["tile_shape"] = s.tile_shape
    if s.scheduler and not inner:
        options["scheduler"] = s.scheduler
    return options
