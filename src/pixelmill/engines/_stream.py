"""Streaming: an image that is not in memory, from storage to storage in bands of rows.

A *source* is any array-like with ``shape`` (H x W or H x W x C), ``dtype`` and slicing
``source[r0:r1]`` that returns a NumPy array (a NumPy memmap, a zarr array, tifffile's
``aszarr`` store opened with zarr, an h5py dataset); a *sink* has the same shape and
``sink[r0:r1] = band`` (or is None: :func:`iter_bands` hands each band to the caller).

Each band of output rows reads its window (the band plus the operation's halo) from the
source: the rows it needs are :func:`~pixelmill.tiling.window_indices` of the *whole* image
(so ``wrap`` and ``reflect`` read their far-away rows, never wrapping around a band), fetched
as contiguous runs (:func:`~pixelmill.tiling.index_runs`); the columns are padded by the same
rule (:func:`~pixelmill.tiling.pad`). The band is then computed by the engine's own kernels
(:meth:`Engine.execute`), so every output pixel runs the arithmetic of the in-memory result:
the streamed result equals it bit for bit.

Bands run in a bounded thread pool; the memory budget caps the bands in flight for all
workers together, and a budget that cannot hold one band is an error before anything is read.
This module imports no io and no batch: codecs and files are the layers above.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np

from .. import tiling
from ..errors import EngineError, ImageTooLargeError, InvalidImageError, InvalidParameterError, PixelmillError
from ..ops import Operation
from ._base import Engine

__all__ = ["is_complete", "COMPLETE_ATTRIBUTE", "StreamPlan", "plan_stream", "iter_bands", "stream_apply", "is_array_like", "default_memory_limit",
           "SCRATCH_BYTES"]

#: Work arrays one compute thread keeps besides its band (the numpy flavour's ~1 MB strips
#: converted to float and their results; the numba kernels' row buffers).
SCRATCH_BYTES = 16 << 20
#: Output bytes of one band when neither ``tile_shape`` nor the storage's chunks say: large
#: enough that a band amortises the reads of its halo rows, small enough to keep several in flight.
TARGET_BAND_BYTES = 16 << 20


def is_array_like(x) -> bool:
    """True for an image that is not (yet) in memory: an array-like of at least two dimensions
    with ``shape``, ``dtype`` and ``__getitem__`` that is not a NumPy array or scalar, or a
    NumPy memmap. Anything smaller is read with ``np.asarray`` like any other input."""
    if isinstance(x, np.memmap):
        return True
    return (not isinstance(x, (np.ndarray, np.generic)) and hasattr(x, "__getitem__")
            and len(getattr(x, "shape", ())) >= 2 and hasattr(x, "dtype"))


def default_memory_limit() -> int:
    """A quarter of the machine's memory (or of the cgroup's limit, when lower): what a
    streamed image may hold, for all its workers together, by default."""
    total = 0
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and (not total or int(text) < total):
            total = int(text)
    return max(256 << 20, (total or 4 << 30) // 4)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.1f} kB"


@dataclass(frozen=True)
class StreamPlan:
    """How an image is streamed: ``rows`` output rows per band, at most ``in_flight`` bands
    held at once (each about ``band_bytes``), computed by ``threads`` threads."""

    shape: tuple[int, ...]
    rows: int
    cols: int
    in_flight: int
    threads: int
    band_bytes: int
    pad_dtype: np.dtype
    out_dtype: np.dtype

    @property
    def bands(self) -> list[tuple[int, int]]:
        return tiling.stream_bands(self.shape[0], self.rows)


def _check_source(source) -> tuple[tuple[int, ...], np.dtype]:
    shape = tuple(int(n) for n in source.shape)
    dtype = np.dtype(source.dtype)
    if len(shape) not in (2, 3):
        raise InvalidImageError(
            f"a streamed image must be H x W or H x W x C (channels last), got shape {shape!r}"
        )
    if not dtype.isnative:
        raise InvalidImageError(f"a streamed image must be in native byte order, got dtype {dtype.str!r}")
    return shape, dtype


def _chunk_rows(arr) -> int | None:
    """Rows of one stored chunk (a shard, for a sharded zarr array) of ``arr``, if it says."""
    for name in ("shards", "chunks"):
        chunks = getattr(arr, name, None)
        if isinstance(chunks, tuple) and chunks and isinstance(chunks[0], (int, np.integer)):
            return int(chunks[0])
    return None


def plan_stream(
    op: Operation, source, sink=None, *, flavour: str = "numpy", parallel: bool = False, workers: int = 1,
    border: str = "nearest", cval: float = 0.0, tile_shape=None, memory_limit: int | None = None,
    reserved: int = 0,
) -> StreamPlan:
    """The bands and how many run at once within ``memory_limit`` bytes: what the stream holds,
    its bands in flight and every worker's work arrays together (not what the process held
    before: a long-lived process would otherwise get less room for the same limit). Raises :class:`~pixelmill.errors.ImageTooLargeError`
    when even one band of the smallest height (one row, or one chunk of the sink) does not fit.
    ``reserved``: bytes of the same budget the caller holds besides the stream (a writer's
    rows waiting to be encoded), counted with the work arrays."""
    shape, dtype = _check_source(source)
    h, w = shape[:2]
    channels = shape[2] if len(shape) == 3 else 1
    top, bottom, left, right = op.halo
    pad_dtype = tiling.pad_dtype(dtype, op.work_dtype(dtype, flavour), border, cval)
    out_dtype = op.out_dtype(dtype)
    limit = default_memory_limit() if memory_limit is None else int(memory_limit)
    threads = max(1, int(workers)) if not parallel else 1
    scratch = SCRATCH_BYTES * (max(1, int(workers)) if parallel or flavour == "numba" else threads)
    scratch += max(0, int(reserved))
    budget = limit - scratch

    def band_bytes(rows: int) -> int:
        rows_in = rows + top + bottom
        # The rows read (pad dtype, and each run as the source gives it), the band padded by
        # its columns, and the result.
        read = rows_in * w * channels * (dtype.itemsize + pad_dtype.itemsize)
        padded = rows_in * (w + left + right) * channels * pad_dtype.itemsize
        return read + padded + rows * w * channels * out_dtype.itemsize

    chunk = _chunk_rows(sink) if sink is not None else None
    if tile_shape is not None:
        rows = max(1, int(tile_shape[0]))
        cols = max(1, int(tile_shape[1]))
    else:
        cols = w
        row_bytes = max(1, w * channels * max(out_dtype.itemsize, pad_dtype.itemsize))
        want = max(1, TARGET_BAND_BYTES // row_bytes)
        # Several bands per worker in flight, and every band within the budget.
        per_band = max(1, budget // (2 * threads + 2)) if budget > 0 else 1
        while want > 1 and band_bytes(want) > per_band:
            want //= 2
        base = chunk or _chunk_rows(source) or 1
        rows = tiling.aligned_rows(want, base, h)
    smallest = rows if tile_shape is not None else (chunk or 1)
    if band_bytes(smallest) > budget:
        need = band_bytes(smallest) + scratch
        raise ImageTooLargeError(
            f"memory limit {_mb(limit)} (--memory-limit / memory_limit=) cannot hold one band of "
            f"{smallest} output row(s) of this {w} x {h} image ({channels} channel(s), {dtype.name}): "
            f"the band needs {_mb(band_bytes(smallest))} and the work arrays"
            f"{' and the writer' if reserved else ''} {_mb(scratch)}; "
            f"give at least {_mb(need)}"
        )
    while rows > smallest and band_bytes(rows) > budget:
        rows = max(smallest, rows // 2)
    in_flight = int(max(1, min(budget // band_bytes(rows), 2 * threads + 2)))
    return StreamPlan(shape, rows, cols, in_flight, min(threads + (2 if parallel else 0), in_flight) or 1,
                      band_bytes(rows), pad_dtype, out_dtype)


def _read_rows(source, rows: np.ndarray, shape, dtype: np.dtype, cval: float) -> np.ndarray:
    """``source`` gathered at ``rows`` (``-1``: ``cval``) as ``dtype``: each contiguous run of
    source rows is read once, then placed where the window needs it."""
    band = np.empty((len(rows),) + tuple(shape[1:]), dtype=dtype)
    for a, b in tiling.index_runs(rows):
        block = np.asarray(source[a:b])
        at = np.flatnonzero((rows >= a) & (rows < b))
        if len(at) == b - a and at[-1] - at[0] == b - a - 1 and rows[at[0]] == a and np.all(np.diff(rows[at]) == 1):
            band[at[0] : at[-1] + 1] = block  # the common case: the run is in place
        else:
            band[at] = block[rows[at] - a]
    if (rows < 0).any():
        band[rows < 0] = cval
    return band


def iter_bands(
    op: Operation, source, sink=None, *, engine: Engine, border: str = "nearest", cval: float = 0.0,
    tile_shape=None, memory_limit: int | None = None, first_band: int = 0, plan: StreamPlan | None = None,
    reserved: int = 0,
):
    """Yield ``(r0, r1, band)`` for each band of output rows, in order, from band number
    ``first_band`` on; ``band`` is the result (None when it was written into ``sink``).

    Serial engines (``numpy``, ``loops``) compute ``engine.workers`` bands at once; a parallel
    engine computes one band at a time with all its workers while the pool reads the next
    bands and writes the last ones. Closing the generator cancels the bands not started.
    ``reserved`` is :func:`plan_stream`'s.
    """
    if plan is None:
        plan = plan_stream(op, source, sink, flavour=engine.flavour, parallel=engine.parallel,
                           workers=engine.workers, border=border, cval=cval, tile_shape=tile_shape,
                           memory_limit=memory_limit, reserved=reserved)
    shape = plan.shape
    h = shape[0]
    top, bottom, left, right = op.halo
    chunk = _chunk_rows(sink) if sink is not None else None
    compute_lock = threading.Lock() if engine.parallel else None
    write_lock = threading.Lock()
    rows = plan.rows
    bands = tiling.stream_bands(h, rows, first_band)
    # Each band of source rows (a "core": the band's own rows, chunk-aligned) is read once and
    # shared with the neighbours whose halos reach into it; a band's other rows (the far edge
    # that wrap and reflect read, or halos taller than a band) are read on their own.
    windows = {r0 // rows: tiling.window_indices(h, r0, r1, top, bottom, border) for r0, r1 in bands}
    users: dict[int, int] = {}
    for k, idx in windows.items():
        for j in _near_cores(idx, k, rows):
            users[j] = users.get(j, 0) + 1
    cores: dict[int, object] = {}
    cores_lock = threading.Lock()

    def core(j: int):
        with cores_lock:
            future = cores.get(j)
            if future is None:
                future = cores[j] = readers.submit(lambda: np.asarray(source[j * rows : min((j + 1) * rows, h)]))
            return future

    def release(k: int) -> None:
        with cores_lock:
            for j in _near_cores(windows[k], k, rows):
                users[j] -= 1
                if not users[j]:
                    cores.pop(j, None)

    buffers = _Buffers()
    w = shape[1]

    def one(k: int, r0: int, r1: int):
        idx = windows[k]
        # The window is gathered straight into its padded array (the columns between the
        # margins), then the margins are filled by the border rule: one copy of the rows.
        padded = buffers.get((len(idx), w + left + right) + tuple(shape[2:]), plan.pad_dtype)
        band = padded[:, left : left + w]
        near = np.zeros(len(idx), dtype=bool)
        for j in _near_cores(idx, k, rows):
            at = np.flatnonzero((idx >= j * rows) & (idx < (j + 1) * rows))
            near[at] = True
            _place(band, at, core(j).result(), idx[at] - j * rows)
        far = ~near & (idx >= 0)
        if far.any():
            at = np.flatnonzero(far)
            band[at] = _read_rows(source, idx[at], shape, plan.pad_dtype, cval)
        if (idx < 0).any():
            band[idx < 0] = cval
        release(k)
        tiling.fill_columns(padded, left, right, border, cval)
        del band
        shape_out = (r1 - r0,) + tuple(shape[1:])
        out = np.empty(shape_out, dtype=plan.out_dtype) if sink is None else buffers.get(shape_out, plan.out_dtype)
        if compute_lock is None:
            _execute(engine, op, padded, out, plan.cols)
        else:
            with compute_lock:
                _execute(engine, op, padded, out, plan.cols)
        buffers.put(padded)
        if sink is None:
            return r0, r1, out
        aligned = chunk is None or (r0 % chunk == 0 and (r1 % chunk == 0 or r1 == h))
        if aligned:
            sink[r0:r1] = out
        else:  # bands sharing a stored chunk would read-modify-write it at once
            with write_lock:
                sink[r0:r1] = out
        buffers.put(out)
        return r0, r1, None

    pending: deque = deque()
    readers = ThreadPoolExecutor(READERS, thread_name_prefix="pixelmill-read")
    try:
        with ThreadPoolExecutor(plan.threads, thread_name_prefix="pixelmill-stream") as pool:
            try:
                for r0, r1 in bands:
                    k = r0 // rows
                    while len(pending) >= plan.in_flight:
                        yield pending.popleft().result()
                    for j in _near_cores(windows[k], k, rows):
                        core(j)  # reads start in order, ahead of the compute
                    pending.append(pool.submit(one, k, r0, r1))
                while pending:
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()
    finally:
        readers.shutdown(wait=True, cancel_futures=True)


class _Buffers:
    """Band arrays reused band after band: a fresh 10-50 MB array per band is a fresh mmap
    whose pages fault in again (seconds of system time per gigapixel)."""

    def __init__(self):
        self._free: dict[tuple, list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def get(self, shape, dtype) -> np.ndarray:
        key = (tuple(shape), np.dtype(dtype))
        with self._lock:
            free = self._free.get(key)
            if free:
                return free.pop()
        return np.empty(shape, dtype=dtype)

    def put(self, arr: np.ndarray) -> None:
        with self._lock:
            self._free.setdefault((arr.shape, arr.dtype), []).append(arr)


#: Threads reading (and decoding) source bands ahead of the compute.
READERS = 2


def _near_cores(idx: np.ndarray, k: int, rows: int) -> list[int]:
    """The source bands ``k - 1 .. k + 1`` that band ``k``'s window reads rows of."""
    valid = idx[idx >= 0]
    if not len(valid):
        return []
    lo, hi = int(valid.min()) // rows, int(valid.max()) // rows
    return [j for j in (k - 1, k, k + 1) if j >= 0 and _reads_core(valid, j, rows) and lo <= j <= hi]


def _reads_core(valid: np.ndarray, j: int, rows: int) -> bool:
    return bool(((valid >= j * rows) & (valid < (j + 1) * rows)).any())


def _place(band: np.ndarray, at: np.ndarray, data: np.ndarray, src: np.ndarray) -> None:
    """``band[at] = data[src]``, as one slice copy when both are contiguous runs (the usual case)."""
    n = len(at)
    if n and at[-1] - at[0] == n - 1 and src[-1] - src[0] == n - 1 and (n < 3 or np.all(np.diff(src) == 1)):
        band[at[0] : at[0] + n] = data[src[0] : src[0] + n]
    else:
        band[at] = data[src]


def _execute(engine: Engine, op: Operation, padded: np.ndarray, out: np.ndarray, cols: int) -> None:
    """One band: the engine's kernels, in tiles of ``cols`` columns when narrower than the band."""
    w = out.shape[1]
    if cols >= w:
        engine.execute(op, padded, out)
        return
    _, _, left, right = op.halo
    for c0 in range(0, w, cols):
        c1 = min(c0 + cols, w)
        engine.execute(op, padded[:, c0 : c1 + left + right], out[:, c0:c1])


def stream_apply(
    op: Operation, source, sink=None, *, engine: Engine, border: str = "nearest", cval: float = 0.0,
    tile_shape=None, memory_limit: int | None = None, first_band: int = 0, progress=None, journal=None,
):
    """``op`` over ``source`` band by band into ``sink`` (returned); with no sink, into a new
    NumPy array when the whole result fits ``memory_limit``.

    ``progress(r1)`` is called, in order, after each band up to output row ``r1`` is written.
    ``journal`` (a file path) makes a persistent sink (a zarr folder, a memmap) resumable: the
    rows finished in order are recorded there after each band, and a run that finds a journal
    of the same operation, image and bands (a killed one) starts at its first unfinished band;
    the journal is removed when the image is complete. Raises
    :class:`~pixelmill.errors.ImageTooLargeError` when one band does not fit the budget, or with
    no sink when the result does not.
    """
    if journal is not None:
        return _resumable(op, source, sink, engine=engine, border=border, cval=cval, tile_shape=tile_shape,
                          memory_limit=memory_limit, progress=progress, journal=journal)
    shape, _ = _check_source(source)
    if sink is not None and tuple(sink.shape) != shape:
        raise InvalidParameterError(f"out must have the image's shape {shape!r}, got {tuple(sink.shape)!r}")
    if sink is None and engine.streams_by_task:
        raise InvalidParameterError(
            f"engine {engine.name!r} streams by tasks that write their bands into out= themselves; give out "
            "(a zarr array on storage every worker reads)"
        )
    if sink is None:
        out_dtype = op.out_dtype(np.dtype(source.dtype))
        need = int(np.prod(shape, dtype=np.int64)) * out_dtype.itemsize
        limit = default_memory_limit() if memory_limit is None else int(memory_limit)
        if need > limit // 2:
            raise ImageTooLargeError(
                f"the result of this {shape[1]} x {shape[0]} image ({_mb(need)} of {out_dtype.name}) does not fit "
                f"half the memory limit {_mb(limit)}; pass out= an array-like to write it into "
                "(a zarr array, a NumPy memmap)"
            )
        sink = np.empty(shape, dtype=out_dtype)
        memory_limit = limit - need
    _mark_complete(sink, False)
    if engine.streams_by_task:
        bands = _bands_by_task(op, source, sink, engine=engine, border=border, cval=cval, tile_shape=tile_shape,
                               memory_limit=memory_limit, first_band=first_band)
    else:
        bands = (r1 for _, r1, _ in iter_bands(op, source, sink, engine=engine, border=border, cval=cval,
                                               tile_shape=tile_shape, memory_limit=memory_limit,
                                               first_band=first_band))
    for r1 in bands:
        if progress is not None:
            progress(r1)
    _mark_complete(sink, True)
    return sink


#: The attribute a streamed zarr output carries: ``{"complete": false}`` while it is written,
#: ``{"complete": true}`` once every band is. An object store (S3) has no atomic rename, so this
#: marker, one write of the array's metadata after its last chunk, is what makes it complete.
COMPLETE_ATTRIBUTE = "pixelmill"


def _mark_complete(sink, complete: bool) -> None:
    attrs = getattr(sink, "attrs", None)
    if attrs is None or isinstance(sink, np.ndarray) or not hasattr(attrs, "update"):
        return
    attrs.update({COMPLETE_ATTRIBUTE: {"complete": bool(complete)}})


def is_complete(array) -> bool:
    """True when a streamed zarr output was written to its end (see :data:`COMPLETE_ATTRIBUTE`)."""
    attrs = getattr(array, "attrs", None) or {}
    return bool(dict(attrs).get(COMPLETE_ATTRIBUTE, {}).get("complete"))


def _bands_by_task(op, source, sink, *, engine, border, cval, tile_shape, memory_limit, first_band):
    """One task per band, each reading its own window from ``source`` and writing its result into
    ``sink`` (shared storage: a zarr folder, an object store), run by ``engine.map`` (a dask
    cluster's workers); yields each band's last row in order, as the bands before it are done."""
    plan = plan_stream(op, source, sink, flavour=engine.flavour, parallel=False, workers=1, border=border,
                       cval=cval, tile_shape=tile_shape, memory_limit=memory_limit)
    fn = partial(compute_band, op, source, sink, border, float(cval), engine.flavour, plan.pad_dtype, plan.out_dtype)
    bands = tiling.stream_bands(plan.shape[0], plan.rows, first_band)
    done: set[int] = set()
    nxt = 0
    results = engine.map(fn, bands)
    while True:
        try:
            r1 = next(results)
        except StopIteration:
            return
        except PixelmillError:
            raise
        except Exception as exc:
            # A worker killed by its nanny (KilledWorker), a lost connection: the image failed,
            # with one line that says so (the batch records it), never a bare traceback.
            text = str(exc).strip().splitlines()
            raise EngineError(
                f"engine {engine.name!r} lost a band of this {plan.shape[1]} x {plan.shape[0]} image after "
                f"{nxt} of {len(bands)} bands were done ({type(exc).__name__}: {text[0][:200] if text else ''}); "
                "the bands written are kept and journal= resumes after them"
            ) from exc
        done.add(r1)
        while nxt < len(bands) and bands[nxt][1] in done:
            yield bands[nxt][1]
            nxt += 1


def compute_band(op, source, sink, border, cval, flavour, pad_dtype, out_dtype, band) -> int:
    """Band ``(r0, r1)`` on its own (a task on any worker): its window read from ``source``,
    computed in ~1 MB strips, written into ``sink``; returns ``r1``."""
    from ._base import compute_tiles

    r0, r1 = band
    shape = tuple(int(n) for n in source.shape)
    h, w = shape[:2]
    top, bottom, left, right = op.halo
    idx = tiling.window_indices(h, r0, r1, top, bottom, border)
    padded = np.empty((len(idx), w + left + right) + shape[2:], dtype=pad_dtype)
    padded[:, left : left + w] = _read_rows(source, idx, shape, pad_dtype, cval)
    tiling.fill_columns(padded, left, right, border, cval)
    out = np.empty((r1 - r0,) + shape[1:], dtype=out_dtype)
    strips = tiling.plan_tiles(out.shape, tiling.auto_tile_shape(out.shape, 1, out.dtype.itemsize))
    compute_tiles(op, padded, out, strips, flavour)
    sink[r0:r1] = out
    return r1


def _resumable(op, source, sink, *, engine, border, cval, tile_shape, memory_limit, progress, journal):
    import json
    from pathlib import Path

    from .._files import atomic_write

    if sink is None:
        raise InvalidParameterError("journal= resumes a run into a persistent out=; give out")
    journal = Path(journal)
    shape, dtype = _check_source(source)
    key = repr((op, tuple(shape), dtype.str, border, float(cval)))
    done_rows, rows = 0, None
    try:
        state = json.loads(journal.read_text())
        if state.get("key") == key:
            done_rows, rows = int(state["rows_done"]), int(state["band_rows"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if rows is None:
        plan = plan_stream(op, source, sink, flavour=engine.flavour, parallel=engine.parallel,
                           workers=engine.workers, border=border, cval=cval, tile_shape=tile_shape,
                           memory_limit=memory_limit)
        rows = plan.rows
    cols = tile_shape[1] if tile_shape is not None else shape[1]

    def record(r1: int) -> None:
        text = json.dumps({"key": key, "band_rows": rows, "rows_done": r1})
        atomic_write(journal, lambda fh: fh.write(text.encode()), durable=False)
        if progress is not None:
            progress(r1)

    stream_apply(op, source, sink, engine=engine, border=border, cval=cval, tile_shape=(rows, cols),
                 memory_limit=memory_limit, first_band=done_rows // rows, progress=record)
    journal.unlink(missing_ok=True)
    return sink
