"""Tiles, halos and borders: the one place where halo and border arithmetic lives.

An operation that needs ``halo = (top, bottom, left, right)`` pixels of context is computed on a
*padded* image: the border rule is applied once to the whole image (so ``wrap`` and ``reflect``
see the whole image, never a tile), then each output tile reads the block of the padded image
that covers it plus its halo. Every tile runs the same arithmetic per pixel as the untiled
computation, so the stitched result is bit-identical to the untiled one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BORDER_MODES",
    "band_rows",
    "bands_over_image",
    "edge_maps",
    "overlap_chunks",
    "readable_in_place",
    "redirect_overwritten",
    "Tile",
    "border_indices",
    "pad",
    "plan_tiles",
    "auto_tile_shape",
    "pad_dtype",
    "bank_layout",
    "window",
    "window_indices",
    "index_runs",
    "stream_bands",
    "aligned_rows",
    "fill_columns",
]

#: SciPy's border-mode names, in the order the docs list them.
BORDER_MODES = ("reflect", "mirror", "nearest", "constant", "wrap")

Halo = tuple[int, int, int, int]


def border_indices(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """Source index for each position ``-before .. n + after - 1`` of an axis of length ``n``.

    ``constant`` positions outside the axis get ``-1``. Matches ``scipy.ndimage`` semantics:
    ``reflect`` repeats the edge sample (d c b a | a b c d | d c b a), ``mirror`` does not
    (d c b | a b c d | c b a), ``nearest`` replicates the edge, ``wrap`` is periodic.
    """
    return _source_of(np.arange(-before, n + after, dtype=np.int64), n, mode)


def _source_of(i: np.ndarray, n: int, mode: str) -> np.ndarray:
    """The border rule on positions ``i`` (any integers) of an axis of length ``n``."""
    if mode == "nearest":
        return np.clip(i, 0, n - 1)
    if mode == "wrap":
        return np.mod(i, n)
    if mode == "reflect":
        m = np.mod(i, 2 * n)
        return np.where(m < n, m, 2 * n - 1 - m)
    if mode == "mirror":
        if n == 1:
            return np.zeros_like(i)
        period = 2 * n - 2
        m = np.mod(i, period)
        return np.where(m < n, m, period - m)
    if mode == "constant":
        return np.where((i >= 0) & (i < n), i, -1)
    raise ValueError(f"unknown border mode {mode!r}")


def pad_dtype(image_dtype, work_dtype, border: str, cval: float) -> np.dtype:
    """The dtype to hold a padded image in: the image's own (a quarter of float32's memory
    for 8-bit photos; operations convert tile by tile), unless ``constant`` border's ``cval``
    does not fit in it, then the operation's float work dtype.
    """
    image_dtype = np.dtype(image_dtype)
    if border != "constant" or _representable(cval, image_dtype):
        return image_dtype
    return np.dtype(work_dtype)


def _representable(value: float, dtype: np.dtype) -> bool:
    if dtype == np.bool_:
        return value in (0.0, 1.0)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return float(value).is_integer() and info.min <= value <= info.max
    return float(dtype.type(value)) == float(value)


def pad(image: np.ndarray, halo: Halo, border: str, cval: float = 0.0, dtype=None) -> np.ndarray:
    """``image`` (H x W or H x W x C) extended by ``halo`` with the border rule, as ``dtype``.

    ``dtype`` defaults to the image's; with ``border="constant"`` pass a dtype that can hold
    ``cval`` (the caller's work dtype).
    """
    top, bottom, left, right = halo
    dtype = np.dtype(dtype or image.dtype)
    h, w = image.shape[:2]
    if not any(halo):
        return image.astype(dtype, copy=False)
    # Copy the image once into the centre, then fill only the border strips: a gather of the
    # whole image through index arrays costs ten times more on a 24 MP photo.
    out = np.empty((h + top + bottom, w + left + right) + image.shape[2:], dtype=dtype)
    out[top : top + h, left : left + w] = image
    if border == "constant":
        out[:top] = cval
        out[top + h :] = cval
        out[:, :left] = cval
        out[:, left + w :] = cval
        return out
    rows = border_indices(h, top, bottom, border)
    if top:
        out[:top, left : left + w] = image[rows[:top]]
    if bottom:
        out[top + h :, left : left + w] = image[rows[top + h :]]
    # Full height, so the corners take the row rule then the column rule.
    fill_columns(out, left, right, border, cval)
    return out


def fill_columns(out: np.ndarray, left: int, right: int, border: str, cval: float = 0.0) -> None:
    """Fill the ``left`` and ``right`` margin columns of ``out`` (rows already in place in the
    columns between) by the border rule of its inner ``W`` columns, in place: the column part
    of :func:`pad`, for a band of rows that a stream gathered itself."""
    w = out.shape[1] - left - right
    if not (left or right):
        return
    if border == "constant":
        out[:, :left] = cval
        out[:, left + w :] = cval
        return
    cols = border_indices(w, left, right, border) + left  # columns of `out`
    if left:
        out[:, :left] = out[:, cols[:left]]
    if right:
        out[:, left + w :] = out[:, cols[left + w :]]


@dataclass(frozen=True)
class Tile:
    """One output tile: rows ``[r0, r1)`` and columns ``[c0, c1)`` of the result.

    Its input is ``padded[r0 : r1 + top + bottom, c0 : c1 + left + right]``.
    """

    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def out(self) -> tuple[slice, slice]:
        return slice(self.r0, self.r1), slice(self.c0, self.c1)

    def source(self, halo: Halo) -> tuple[slice, slice]:
        top, bottom, left, right = halo
        return slice(self.r0, self.r1 + top + bottom), slice(self.c0, self.c1 + left + right)

    @property
    def pixels(self) -> int:
        return (self.r1 - self.r0) * (self.c1 - self.c0)


def plan_tiles(shape: tuple[int, ...], tile_shape: tuple[int, int]) -> list[Tile]:
    """Tiles covering an ``H x W`` output in row-major order; edge tiles may be smaller."""
    h, w = shape[:2]
    th, tw = max(1, int(tile_shape[0])), max(1, int(tile_shape[1]))
    return [
        Tile(r, min(r + th, h), c, min(c + tw, w))
        for r in range(0, h, th)
        for c in range(0, w, tw)
    ]


#: Target bytes of one tile's output: large enough to amortise scheduling, small enough that a
#: tile's float work arrays stay in a core's cache across the kernel's rows, and several tiles per
#: worker balance the load.
TARGET_TILE_BYTES = 1 << 20


def auto_tile_shape(
    shape: tuple[int, ...], workers: int, itemsize: int = 4, *, target_bytes: int = TARGET_TILE_BYTES
) -> tuple[int, int]:
    """Full-width row strips: at least ``4 * workers`` of them when the image allows, about
    ``target_bytes`` of output each."""
    h, w = shape[:2]
    channels = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
    row_bytes = max(1, w * channels * itemsize)
    rows_by_bytes = max(1, target_bytes // row_bytes)
    rows_by_workers = max(1, math.ceil(h / (4 * max(1, workers))))
    return min(h, rows_by_bytes, rows_by_workers) or 1, w


def bank_layout(
    ops: list, image: np.ndarray, border: str, cval: float, flavour: str
) -> tuple[list[np.ndarray], list[tuple[int, int, int]]]:
    """Pad ``image`` once per work dtype for a filter bank.

    Returns the padded inputs and, per operation, ``(input index, row offset, column offset)``:
    the operation's own padded input is the window of that input starting at the offset (see
    :func:`window`).

    Why one pad serves every operation: :func:`pad` places image row ``i`` at padded row
    ``i + top`` and fills the margin from :func:`border_indices`, whose value at a
    position does not depend on how wide the margin is. Padding with the union of the halos
    and skipping ``union_top - top`` rows (``union_left - left`` columns) therefore gives
    exactly the array that padding with the operation's own halo gives.
    """
    groups: dict[np.dtype, list[int]] = {}
    for k, op in enumerate(ops):
        dtype = pad_dtype(image.dtype, op.work_dtype(image.dtype, flavour), border, cval)
        groups.setdefault(dtype, []).append(k)
    inputs: list[np.ndarray] = []
    placements: list[tuple[int, int, int]] = [(0, 0, 0)] * len(ops)
    for dtype, members in groups.items():
        halos = [ops[k].halo for k in members]
        union = tuple(max(h[i] for h in halos) for i in range(4))
        inputs.append(pad(image, union, border, cval, dtype=dtype))
        for k in members:
            top, _, left, _ = ops[k].halo
            placements[k] = (len(inputs) - 1, union[0] - top, union[2] - left)
    return inputs, placements


def window(padded: np.ndarray, dr: int, dc: int, halo, shape: tuple[int, ...]) -> np.ndarray:
    """The view of a bank input that is the padded input of one operation (no copy)."""
    top, bottom, left, right = halo
    return padded[dr : dr + shape[0] + top + bottom, dc : dc + shape[1] + left + right]


# -- chunks of an array library (dask) that overlap by the halo -----------------------------------


def overlap_chunks(n: int, tile: int, before: int, after: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Output chunks of an axis of length ``n`` and the padded-input chunks that line up with them.

    Input chunk ``j`` holds the padded samples of output chunk ``j``; the first also holds the
    ``before`` leading halo samples and the last the ``after`` trailing ones. ``map_overlap``
    with ``depth=(before, after)`` and ``boundary="none"`` then hands block ``j`` exactly its
    output chunk plus its halo. dask takes an overlap from the *adjacent* block only, so every
    input chunk must hold at least ``max(before, after)`` samples: tiles are never smaller than
    the halo, and a too-short last tile is merged into the one before it.
    """
    need = max(before, after)
    size = max(int(tile), need, 1)
    out = [size] * (n // size) + ([n % size] if n % size else [])
    if len(out) > 1 and out[-1] + after < need:
        last = out.pop()
        out[-1] += last
    if len(out) == 1:
        return tuple(out), (before + n + after,)
    return tuple(out), (before + out[0], *out[1:-1], out[-1] + after)


# -- results written over their own image --------------------------------------------------------

def bands_over_image(h: int, halo: Halo, border: str, rows: int):
    """Bands of ``rows`` output rows for writing a result over its own ``h``-row image: yields
    ``(first, n, taken)`` per band, ``taken`` being the image row behind each padded row of the
    band (-1: ``cval``, for ``constant``).

    A band is computed from a copy of its rows and halo, and its result may be copied over the
    image only once the next band, the last to read those rows, has taken its copy: the caller
    keeps one band's result pending. Rows a mirrored border reads lie within a halo of the
    edges, so they are still the input when read. ``wrap``'s last bands read the first rows,
    so it cannot go band by band: nothing is yielded for it, nor when the image is one band or
    the halo has no rows.

    >>> [(first, n, taken.tolist()) for first, n, taken in bands_over_image(5, (1, 1, 0, 0), "nearest", 3)]
    [(0, 3, [0, 0, 1, 2, 3]), (3, 2, [2, 3, 4, 4])]
    """
    top, bottom = halo[0], halo[1]
    if not (top or bottom) or border == "wrap" or h <= rows:
        return
    source = border_indices(h, top, bottom, border)
    for first in range(0, h, rows):
        n = min(rows, h - first)
        yield first, n, source[first : first + n + top + bottom]


def band_rows(row_bytes: int, halo: Halo, band_bytes: int) -> int:
    """Output rows per band: about ``band_bytes`` of padded rows, never fewer than the halo needs."""
    return max(halo[0] + halo[1] + 1, band_bytes // max(1, row_bytes))


def readable_in_place(image: np.ndarray, halo: Halo, border: str, cval: float) -> bool:
    """True when a kernel can read ``image``'s border by the rule (:func:`edge_maps`) instead
    of a padded copy: wider than the halo, and ``cval`` exact in the image's own dtype."""
    top, bottom, left, right = halo
    return image.shape[1] > left + right and pad_dtype(image.dtype, np.float32, border, cval) == image.dtype


# -- reading the border in place (kernels that take the unpadded image) -------------------------


def edge_maps(src: np.ndarray, channels: int, border, kh: int = 1, in_place_strips: int = 0) -> tuple:
    """How the numba kernels (``_ring_row``) find padded row ``r``, column sample ``p`` in ``src`` (2-D, rows x
    samples): ``(rows_map, const_row, left_map, right_map, lpad, rpad, cval, saved)``.

    ``rows_map[r]`` is a row of ``src``, or -1: ``const_row`` (all ``cval``), or ``-2 - k``:
    ``saved[k]``; the first ``lpad`` and last ``rpad`` output samples of a row read their taps
    through ``left_map`` / ``right_map`` (a sample of the row, or -1: ``cval``). A padded
    ``src`` (``border`` None) is read as it is: every row is its own, no border samples.

    ``in_place_strips``: the result is written over ``src`` by that many strips (one chunk
    the width of the row, so a row is read whole before its output row is written). A strip
    reads padded row ``r`` just before writing output row ``r - kh + 1`` (its first rows at
    its start); the image row behind it is still the input then only if the same strip
    writes it, and not earlier. The other rows (halos shared with the next strip, mirrored
    and wrapped rows) are read from ``saved``, copied beforehand: a few rows per strip."""
    samples = np.empty(0, dtype=np.int64)
    none_saved = src[:0]
    if border is None:
        rows = np.arange(src.shape[0], dtype=np.int64)
        return rows, src[0, :0], samples, samples, 0, 0, src.dtype.type(0), none_saved
    (top, bottom, left, right), mode, cval = border
    h, n = src.shape
    w = n // channels
    if w <= left + right:
        raise ValueError(f"an unpadded block needs more columns than the halo's {left + right}, not {w}")
    rows = border_indices(h, top, bottom, mode)
    saved = none_saved
    if in_place_strips:
        rows, saved = redirect_overwritten(src, rows, kh, in_place_strips)
    cols = border_indices(w, left, right, mode)
    # Per sample: column index * channels + channel, or -1 (constant) for every channel.
    by_sample = np.where(cols[:, None] >= 0, cols[:, None] * channels + np.arange(channels), -1).ravel()
    # cval is read by the constant border only (another border's may not fit the dtype).
    cval = src.dtype.type(cval if mode == "constant" else 0)
    const_row = np.full(n if mode == "constant" else 0, cval, dtype=src.dtype)
    lpad, rpad = left * channels, right * channels
    left_map = by_sample[: 2 * lpad + rpad]
    right_map = by_sample[(w - right) * channels :]
    return rows, const_row, left_map, right_map, lpad, rpad, cval, saved


def redirect_overwritten(src, rows, kh, n_strips):
    """``rows`` (padded row -> image row) with every row that may be overwritten before some
    strip reads it sent to a saved copy (see :func:`edge_maps`); and that copy."""
    h = src.shape[0]
    bounds = [s * h // n_strips for s in range(n_strips + 1)]
    owner = np.repeat(np.arange(n_strips), np.diff(bounds))
    unsafe = np.zeros(len(rows), dtype=bool)
    for s in range(n_strips):
        r0, r1 = bounds[s], bounds[s + 1]
        p = np.arange(r0, r1 + kh - 1)
        q = rows[p]
        read_at = np.maximum(r0, p - (kh - 1))
        # Safe: the row is this strip's, and its output row is written at the read or later.
        safe = (q < 0) | ((owner[np.maximum(q, 0)] == s) & (q >= read_at))
        unsafe[p[~safe]] = True
    moved = np.flatnonzero(unsafe)
    saved = src[rows[moved]]
    rows = rows.copy()
    rows[moved] = -2 - np.arange(len(moved))
    return rows, saved


# -- streamed images: windows read from storage, band by band ------------------------------------


def window_indices(n: int, start: int, stop: int, before: int, after: int, mode: str) -> np.ndarray:
    """Source index of each padded position an output range ``[start, stop)`` of an axis of
    length ``n`` reads: positions ``start - before .. stop + after - 1``, mapped by the border
    rule of the *whole* axis (``-1``: ``cval``). The same values as
    ``border_indices(n, before, after, mode)[start : stop + before + after]``, without the
    whole axis: a streamed window of ``wrap`` or ``reflect`` reads its far-away rows through it.

    >>> window_indices(6, 0, 2, 2, 1, "wrap").tolist()
    [4, 5, 0, 1, 2]
    >>> window_indices(6, 4, 6, 1, 2, "reflect").tolist()
    [3, 4, 5, 5, 4]
    """
    return _source_of(np.arange(start - before, stop + after, dtype=np.int64), n, mode)


def index_runs(indices: np.ndarray) -> list[tuple[int, int]]:
    """The distinct source indices (``>= 0``) of ``indices`` as ascending contiguous runs
    ``[a, b)``: the bands of rows a window read fetches from storage (a wrapped window's first
    rows are a run at the far end of the image, read on their own).

    >>> index_runs(np.array([4, 5, 0, 1, 2, -1]))
    [(0, 3), (4, 6)]
    """
    valid = np.unique(indices[indices >= 0])
    if not len(valid):
        return []
    breaks = np.flatnonzero(np.diff(valid) != 1) + 1
    starts = np.concatenate(([0], breaks))
    stops = np.concatenate((breaks, [len(valid)]))
    return [(int(valid[a]), int(valid[b - 1]) + 1) for a, b in zip(starts, stops)]


def stream_bands(h: int, rows: int, first: int = 0) -> list[tuple[int, int]]:
    """Output row bands ``[r0, r1)`` of ``rows`` rows each (the last may be shorter) over an
    ``h``-row image, from band number ``first`` on (a resumed run).

    >>> stream_bands(10, 4)
    [(0, 4), (4, 8), (8, 10)]
    """
    rows = max(1, int(rows))
    return [(r, min(r + rows, h)) for r in range(first * rows, h, rows)]


def aligned_rows(target: int, chunk: int, h: int) -> int:
    """``target`` rows rounded down to a multiple of ``chunk`` (at least one chunk, at most the
    image): bands that start and end on a chunk boundary never share a chunk of the output."""
    chunk = max(1, int(chunk))
    return max(chunk, min(int(target), h) // chunk * chunk)
