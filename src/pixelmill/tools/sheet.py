"""Contact sheet: one PNG showing every input beside its outputs, with captions.

``pixelmill sheet OUTDIR`` (and ``pixelmill run --sheet``) reads ``OUTDIR/manifest.json``,
written by the batch layer, and draws a before/after grid:
one row per input image (the original, then one cell per operation), a header row naming
the columns, each cell a thumbnail with its file name, WxH, file size and operation label.
Failed items show their error text instead of a thumbnail.

It is drawn with Pillow alone (no matplotlib) so that hundreds of images stay fast: the
thumbnails come from :func:`pixelmill.io.read_thumbnail` (JPEGs decoded at reduced scale,
deep images subsampled, every picture upright), and large arrays are subsampled before they
are scaled, so a large input never costs a full-size conversion.
Images that cannot be shown as they are become displayable: 16-bit is scaled to 8-bit,
float is clipped to 0..1 (or stretched when it lies outside), CMYK and palettes become RGB,
1-bit becomes grey and alpha is shown over a checkerboard.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

import numpy as np

from .._files import atomic_write
from ..errors import InvalidParameterError
from ..batch import check_manifest, read_manifest
from ..io import read_thumbnail

__all__ = ["write_contact_sheet", "sheet_layout", "sheet_geometry", "SheetGeometry"]

#: Default file name of the sheet inside OUTDIR.
SHEET_NAME = "contact-sheet.png"

# Colours (RGB). The thumbnail boxes of cells without a picture have a flat tint, so that
# a glance down a column finds the failures.
_BG = (236, 236, 232)
_BAND = (226, 226, 221)  # every other image row, so wrapped rows read as one
_CELL = (255, 255, 255)
_CELL_EDGE = (205, 205, 200)
_TEXT = (34, 34, 34)
_DIM = (110, 110, 110)
_HEADER = (20, 20, 20)
_FAILED_BOX = (251, 232, 232)
_FAILED_TEXT = (170, 20, 30)
_UNREADABLE_BOX = (238, 238, 238)
_MISSING_BOX = (246, 246, 246)
_SKIPPED_TEXT = (140, 100, 0)
_CHECKER = ((204, 204, 204), (255, 255, 255))

_STATUS_COLOURS = {"failed": _FAILED_TEXT, "skipped": _SKIPPED_TEXT, "missing": _DIM}


# --------------------------------------------------------------------------------------
# manifest -> rows
# --------------------------------------------------------------------------------------


def _all_rows(manifest) -> tuple[list[str], list[tuple[str, list[dict]]]]:
    """Column headers and every row (not truncated)."""
    items = check_manifest(manifest)
    # Column order: the manifest's "ops" list, then any op only seen in items (first-seen order).
    ops: list[str] = []
    declared = manifest.get("ops")
    if isinstance(declared, list):
        ops = [str(op) for op in declared]
    by_input: dict[str, dict[str, dict]] = {}
    for item in items:
        op = str(item.get("op"))
        if op not in ops:
            ops.append(op)
        # A later entry for the same (input, op) -- e.g. a resumed run -- replaces the earlier one.
        by_input.setdefault(item["input"], {})[op] = item

    rows = []
    for input_path, per_op in by_input.items():
        cells = [
            {
                "column": "original",
                "input": input_path,
                "op": None,
                "status": "original",
                "path": input_path,
                "error": None,
            }
        ]
        for op in ops:
            item = per_op.get(op)
            if item is None:
                cells.append(
                    {"column": op, "input": input_path, "op": op, "status": "missing",
                     "path": None, "error": None}
                )
                continue
            error = item.get("error")
            cells.append(
                {
                    "column": op,
                    "input": input_path,
                    "op": op,
                    "status": str(item.get("status") or "done"),
                    "path": item.get("output") or None,
                    "error": None if error is None else str(error),
                }
            )
        rows.append((input_path, cells))
    return ["original", *ops], rows


def _check_max_rows(max_rows):
    if max_rows is None:
        return None
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise InvalidParameterError(
            f"max_rows must be a positive integer or None (all rows), got {max_rows!r}"
        )
    return max_rows


def sheet_layout(manifest: dict, *, max_rows: int | None = 48) -> tuple[list[str], list[tuple[str, list[dict]]]]:
    """The columns and rows of the contact sheet of ``manifest``.

    Parameters
    ----------
    manifest : dict
        The parsed ``manifest.json`` of an output folder.
    max_rows : int or None
        Keep only the first ``max_rows`` input images (None: all).

    Returns
    -------
    headers : list of str
        ``["original", op1, op2, ...]``: operations in the order of the manifest's ``ops``
        list, followed by any operation only found in the items.
    rows : list of (str, list of dict)
        One ``(input path, cells)`` per input image, in first-seen order. ``cells`` has one
        dict per header with keys ``column``, ``input``, ``op`` (None for the original),
        ``status`` (``original``, ``done``, ``skipped``, ``failed``, or ``missing`` when the
        manifest has no item for that operation), ``path`` (the input path for the original,
        else the output path relative to OUTDIR, or None) and ``error``.

    Raises
    ------
    InvalidParameterError
        If the manifest is not shaped as ``pixelmill run`` writes it, or ``max_rows`` is not
        a positive integer or None.

    Examples
    --------
    >>> m = {"version": 1, "ops": ["invert"], "items": [
    ...     {"input": "/in/a.png", "op": "invert", "output": "a.png", "status": "done", "error": None}]}
    >>> headers, rows = sheet_layout(m)
    >>> headers
    ['original', 'invert']
    >>> [(c["column"], c["status"], c["path"]) for c in rows[0][1]]
    [('original', 'original', '/in/a.png'), ('invert', 'done', 'a.png')]
    """
    max_rows = _check_max_rows(max_rows)
    headers, rows = _all_rows(manifest)
    return headers, rows if max_rows is None else rows[:max_rows]


# --------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _font(size: int):
    from PIL import ImageFont

    try:
        # Pillow >= 10.1 bundles a scalable font (needs FreeType).
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError, AttributeError):  # pragma: no cover - old/odd Pillow
        return ImageFont.load_default()


def _line_height(font) -> int:
    try:
        ascent, descent = font.getmetrics()
        return int(ascent + descent)
    except AttributeError:  # pragma: no cover - bitmap fallback font
        return int(font.getbbox("Ag|")[3]) + 2


@dataclass(frozen=True)
class SheetGeometry:
    """Where everything sits on a contact sheet (pixels; boxes are ``(x0, y0, x1, y1)``, x1/y1 exclusive).

    Build it with :func:`sheet_geometry`. An image row takes ``lines_per_row`` lines of at most
    ``columns_per_line`` cells each (more than one only when ``columns_per_row`` wraps it).
    """

    thumb_size: int
    n_columns: int
    n_rows: int
    columns_per_line: int
    lines_per_row: int
    truncated: bool
    font_size: int
    header_font_size: int
    title_font_size: int
    pad: int
    gap: int
    margin: int
    line_height: int
    header_line_height: int
    title_height: int
    header_height: int
    footer_height: int
    caption_lines: int = 3

    @property
    def cell_width(self) -> int:
        return self.thumb_size + 2 * self.pad

    @property
    def cell_height(self) -> int:
        return self.pad + self.thumb_size + self.pad // 2 + self.caption_lines * self.line_height + self.pad

    @property
    def row_height(self) -> int:
        """Height of one image row (all its wrapped lines)."""
        return self.lines_per_row * self.cell_height + (self.lines_per_row - 1) * self.gap

    @property
    def grid_top(self) -> int:
        return self.margin + self.title_height + self.header_height

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the sheet."""
        c = self.columns_per_line
        width = 2 * self.margin + c * self.cell_width + (c - 1) * self.gap
        rows = self.n_rows * self.row_height + max(self.n_rows - 1, 0) * self.gap
        height = self.grid_top + rows + self.footer_height + self.margin
        return width, height

    def row_box(self, row: int) -> tuple[int, int, int, int]:
        """Band behind image row ``row`` (all its wrapped lines), spanning the grid width."""
        y0 = self.grid_top + row * (self.row_height + self.gap)
        return (self.margin - self.gap // 2, y0 - self.gap // 2,
                self.size[0] - self.margin + self.gap // 2, y0 + self.row_height + self.gap // 2)

    def _line_col(self, column: int) -> tuple[int, int]:
        return divmod(column, self.columns_per_line)

    def header_box(self, column: int) -> tuple[int, int, int, int]:
        """Where the label of ``column`` is written in the header."""
        line, col = self._line_col(column)
        x0 = self.margin + col * (self.cell_width + self.gap)
        y0 = self.margin + self.title_height + line * self.header_line_height
        return x0, y0, x0 + self.cell_width, y0 + self.header_line_height

    def cell_box(self, row: int, column: int) -> tuple[int, int, int, int]:
        """The cell of image row ``row`` and ``column`` (0 is the original)."""
        line, col = self._line_col(column)
        x0 = self.margin + col * (self.cell_width + self.gap)
        y0 = self.grid_top + row * (self.row_height + self.gap) + line * (self.cell_height + self.gap)
        return x0, y0, x0 + self.cell_width, y0 + self.cell_height

    def thumb_box(self, row: int, column: int) -> tuple[int, int, int, int]:
        """The square a thumbnail is centred in."""
        x0, y0, _, _ = self.cell_box(row, column)
        return x0 + self.pad, y0 + self.pad, x0 + self.pad + self.thumb_size, y0 + self.pad + self.thumb_size

    def caption_origin(self, row: int, column: int) -> tuple[int, int]:
        x0, y0, _, _ = self.thumb_box(row, column)
        return x0, y0 + self.thumb_size + self.pad // 2

    def footer_origin(self) -> tuple[int, int]:
        height = self.size[1]
        return self.margin, height - self.margin - self.footer_height + self.pad // 2


def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidParameterError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return value


def sheet_geometry(
    n_columns: int, n_rows: int, *, thumb_size: int = 192, columns_per_row: int | None = None,
    truncated: bool = False,
) -> SheetGeometry:
    """Layout of a sheet of ``n_rows`` images by ``n_columns`` cells (original + one per operation).

    Parameters
    ----------
    n_columns : int
        Cells per image row, including the original.
    n_rows : int
        Image rows drawn.
    thumb_size : int
        Side of the square each thumbnail fits in, 32 to 1024 pixels.
    columns_per_row : int or None
        Wrap an image row after this many cells (None: never wrap).
    truncated : bool
        Reserve a footer line for "... and N more images".

    Returns
    -------
    SheetGeometry

    Examples
    --------
    >>> g = sheet_geometry(3, 2, thumb_size=100)
    >>> g.size[0] == 2 * g.margin + 3 * g.cell_width + 2 * g.gap
    True
    """
    thumb_size = _check_int("thumb_size", thumb_size, 32, 1024)
    n_columns = _check_int("n_columns", n_columns, 1, 10_000)
    n_rows = _check_int("n_rows", n_rows, 0, 1_000_000)
    if columns_per_row is None:
        per_line = n_columns
    else:
        per_line = min(_check_int("columns_per_row", columns_per_row, 1, 10_000), n_columns)
    lines = math.ceil(n_columns / per_line)

    font_size = min(max(10, round(thumb_size / 16)), 18)
    header_font_size = font_size + 2
    title_font_size = font_size + 4
    pad = max(6, thumb_size // 24)
    gap = max(4, pad // 2 + 2)
    margin = 2 * pad
    line_height = _line_height(_font(font_size)) + 1
    header_line_height = _line_height(_font(header_font_size)) + pad
    title_height = 2 * (_line_height(_font(title_font_size)) + 2) + pad
    header_height = lines * header_line_height + pad // 2
    footer_height = (_line_height(_font(header_font_size)) + pad) if truncated else 0
    return SheetGeometry(
        thumb_size=thumb_size, n_columns=n_columns, n_rows=n_rows, columns_per_line=per_line,
        lines_per_row=lines, truncated=bool(truncated), font_size=font_size,
        header_font_size=header_font_size, title_font_size=title_font_size, pad=pad, gap=gap,
        margin=margin, line_height=line_height, header_line_height=header_line_height,
        title_height=title_height, header_height=header_height, footer_height=footer_height,
    )


# --------------------------------------------------------------------------------------
# thumbnails
# --------------------------------------------------------------------------------------


@dataclass
class _Thumb:
    image: object = None  # PIL RGB/RGBA image, at most thumb_size on its longer side
    width: int | None = None  # size of the full picture (upright)
    height: int | None = None
    nbytes: int | None = None
    tag: str = ""  # "16-bit", "float", ... when the picture is not plain 8-bit
    error: str | None = None


_TAGS = {"1": "1-bit", "CMYK": "CMYK", "F": "float", "I": "32-bit"}


def _scale_to_uint8(a: np.ndarray, *, stretch_ok: bool = True) -> np.ndarray:
    """Map an array of any dtype onto 0..255 for display."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if a.dtype.kind == "u":
        return (a.astype(np.float64) * (255.0 / np.iinfo(a.dtype).max) + 0.5).astype(np.uint8)
    is_float = a.dtype.kind == "f"
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if a.size == 0:
        return a.astype(np.uint8)
    lo, hi = float(a.min()), float(a.max())
    if not stretch_ok or (is_float and lo >= 0.0 and hi <= 1.0):
        # float data in 0..1, and alpha: clip
        return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    # signed integers, and floats outside 0..1 (e.g. a float32 result of 8-bit data): stretch.
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return ((a - lo) * (255.0 / (hi - lo)) + 0.5).astype(np.uint8)


def _array_thumb(arr: np.ndarray, thumb_size: int) -> tuple[object, int, int, str]:
    """Thumbnail of an array of any dtype: (image, full width, full height, tag)."""
    from PIL import Image

    arr = np.asanyarray(arr)  # keeps an .npy memmap lazy until subsampled
    while arr.ndim > 3:  # stacks / pages: first plane
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[0] in (1, 2, 3, 4) and arr.shape[-1] not in (1, 2, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # channel-first
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] > 4:
        arr = arr[..., :3]
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise ValueError(f"cannot show an array of shape {arr.shape!r}")
    height, width = arr.shape[:2]
    # Subsample before any conversion so that a huge image costs about a thumbnail's work.
    step = max(1, max(height, width) // (2 * thumb_size))
    small = np.ascontiguousarray(arr[::step, ::step])
    tag = {"u": "", "i": "signed", "f": "float", "b": "1-bit"}.get(small.dtype.kind, "")
    if small.dtype.kind == "u" and small.dtype.itemsize > 1:
        tag = f"{8 * small.dtype.itemsize}-bit"
    if small.ndim == 3 and small.shape[-1] in (2, 4):
        colour = _scale_to_uint8(small[..., :-1])
        alpha = _scale_to_uint8(small[..., -1:], stretch_ok=False)
        small = np.concatenate([colour, alpha], axis=-1)
    else:
        small = _scale_to_uint8(small)
    if small.ndim == 3 and small.shape[-1] == 2:
        small = np.concatenate([np.repeat(small[..., :1], 3, axis=-1), small[..., 1:]], axis=-1)
    image = Image.fromarray(small)
    image.thumbnail((thumb_size, thumb_size))
    return image, int(width), int(height), tag


def _file_thumb(path: Path, thumb_size: int) -> tuple[object, int, int, str]:
    """Thumbnail of an image file: (image, full width, full height, tag)."""
    from PIL import Image

    thumb = read_thumbnail(path, thumb_size)
    width, height = thumb.info["full_size"]
    tag = _TAGS.get(thumb.mode, "16-bit" if thumb.mode.startswith("I;16") else "")
    if thumb.data.dtype == np.uint8 and max(thumb.data.shape[:2]) <= thumb_size:
        return Image.fromarray(thumb.data), width, height, tag
    # Deeper samples come back subsampled, not shrunk: mapped onto 8 bits here, for display.
    image, _, _, array_tag = _array_thumb(thumb.data, thumb_size)
    return image, width, height, tag or array_tag


def _load_thumb(path: Path, thumb_size: int) -> _Thumb:
    """Thumbnail and facts of one file; any failure becomes ``error`` (never raises)."""
    try:
        nbytes = path.stat().st_size
    except OSError as exc:
        return _Thumb(error=f"cannot read: {exc.strerror or exc}")
    try:
        suffix = path.suffix.lower()
        if suffix == ".npy":
            image, w, h, tag = _array_thumb(np.load(path, mmap_mode="r", allow_pickle=False), thumb_size)
        else:
            image, w, h, tag = _file_thumb(path, thumb_size)
    except Exception as exc:  # never crash the sheet on one file
        message = str(exc).strip() or type(exc).__name__
        return _Thumb(nbytes=nbytes, error=f"cannot read image: {message}")
    return _Thumb(image=image, width=w, height=h, nbytes=nbytes, tag=tag)


def _checkerboard(size: tuple[int, int], square: int) -> object:
    from PIL import Image

    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    mask = ((yy // square + xx // square) % 2).astype(bool)
    board = np.empty((h, w, 3), np.uint8)
    board[~mask] = _CHECKER[0]
    board[mask] = _CHECKER[1]
    return Image.fromarray(board)


def _displayable(image) -> object:
    """RGB image; alpha is shown over a checkerboard."""
    if image.mode in ("RGBA", "LA"):
        rgba = image.convert("RGBA")
        board = _checkerboard(rgba.size, max(4, max(rgba.size) // 16))
        board.paste(rgba, (0, 0), rgba)
        return board
    return image.convert("RGB") if image.mode != "RGB" else image


# --------------------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------------------


def _fit(text: str, font, width: int, *, middle: bool = True) -> str:
    """``text`` shortened with an ellipsis (in the middle, to keep the extension) to fit ``width``."""
    if font.getlength(text) <= width:
        return text
    ell = "\u2026"
    lo, hi = 0, len(text)
    while lo < hi:  # longest kept length that fits
        mid = (lo + hi + 1) // 2
        if middle:
            head = (mid + 1) // 2
            candidate = text[:head] + ell + text[len(text) - (mid - head):]
        else:
            candidate = text[:mid] + ell
        if font.getlength(candidate) <= width:
            lo = mid
        else:
            hi = mid - 1
    if middle:
        head = (lo + 1) // 2
        return text[:head] + ell + text[len(text) - (lo - head):] if lo else ell
    return text[:lo] + ell


def _wrap(text: str, font, width: int, max_lines: int) -> list[str]:
    """Word-wrap ``text`` to ``width`` pixels; long words (paths) break anywhere; at most ``max_lines``."""
    lines: list[str] = []
    current = ""
    for word in " ".join(text.split()).split(" "):
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
            current = ""
        while font.getlength(word) > width:  # break a long word (a path) by characters
            cut = 1
            while cut < len(word) and font.getlength(word[: cut + 1]) <= width:
                cut += 1
            lines.append(word[:cut])
            word = word[cut:]
        current = word
        if len(lines) > max_lines:
            break
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = _fit(lines[-1] + " \u2026", font, width, middle=False)
        if not lines[-1].endswith("\u2026"):
            lines[-1] = _fit(lines[-1] + "\u2026", font, width, middle=False)
    return lines


def _human_bytes(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}" if n < 10 else f"{n:.0f} {unit}"
        n /= 1024
    return ""  # pragma: no cover


# --------------------------------------------------------------------------------------
# drawing
# --------------------------------------------------------------------------------------


def _display_names(rows) -> dict[str, str]:
    """Short names for inputs: paths relative to their common folder, so sub-folders stay visible
    (just the file name when the inputs share no folder but the filesystem root)."""
    inputs = [inp for inp, _ in rows]
    try:
        root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in inputs]) if inputs else ""
    except ValueError:  # different drives
        root = ""
    if root and Path(root).anchor == str(Path(root)):
        root = ""
    names = {}
    for inp in inputs:
        name = os.path.relpath(os.path.abspath(inp), root) if root else os.path.basename(inp)
        names[inp] = name.replace(os.sep, "/")
    return names


def _resolve(outdir: Path, cell: dict) -> Path | None:
    path = cell["path"]
    if not path:
        return None
    if cell["op"] is None:
        return Path(path)
    rel = PurePosixPath(path)
    return Path(path) if rel.is_absolute() else outdir.joinpath(*rel.parts)


def _summary_text(manifest: dict, n_inputs: int, n_ops: int) -> str:
    summary = manifest.get("summary") if isinstance(manifest.get("summary"), dict) else {}
    counts = {}
    for key in ("done", "skipped", "failed"):
        if isinstance(summary.get(key), int):
            counts[key] = summary[key]
        else:
            counts[key] = sum(1 for it in manifest["items"] if it.get("status") == key)
    images = f"{n_inputs} image{'s' if n_inputs != 1 else ''}"
    ops = f"{n_ops} operation{'s' if n_ops != 1 else ''}"
    return f"{images} \u00b7 {ops} \u00b7 {counts['done']} done \u00b7 {counts['skipped']} skipped \u00b7 {counts['failed']} failed"


def _draw_cell(canvas, draw, geo: SheetGeometry, r: int, c: int, cell: dict, thumb: _Thumb | None,
               name: str):
    from PIL import Image

    font = _font(geo.font_size)
    draw.rectangle(geo.cell_box(r, c), fill=_CELL, outline=_CELL_EDGE)
    x0, y0, x1, y1 = geo.thumb_box(r, c)
    inner = geo.thumb_size - 2 * max(4, geo.pad // 2)
    status = cell["status"]

    def message_box(fill, title, body, colour):
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
        lh = geo.line_height
        max_lines = max(1, (geo.thumb_size - 2 * geo.pad) // lh - 1)
        lines = _wrap(body, font, inner, max_lines) if body else []
        block = (1 + len(lines)) * lh
        ty = y0 + max(geo.pad, (geo.thumb_size - block) // 2)
        tx = x0 + (geo.thumb_size - inner) // 2
        draw.text((tx, ty), _fit(title, font, inner, middle=False), font=font, fill=colour)
        for i, line in enumerate(lines, start=1):
            draw.text((tx, ty + i * lh), line, font=font, fill=_TEXT)

    if thumb is not None and thumb.image is not None:
        image = thumb.image
        factor = geo.thumb_size // max(image.size)
        if factor >= 2:  # tiny images: enlarge by a whole factor, pixels stay crisp squares
            image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
        image = _displayable(image)
        px = x0 + (geo.thumb_size - image.width) // 2
        py = y0 + (geo.thumb_size - image.height) // 2
        canvas.paste(image, (px, py))
        draw.rectangle((px - 1, py - 1, px + image.width, py + image.height), outline=_CELL_EDGE)
    elif status == "failed":
        message_box(_FAILED_BOX, "failed", cell["error"] or "no error text in the manifest", _FAILED_TEXT)
    elif thumb is not None and thumb.error:
        message_box(_UNREADABLE_BOX, "cannot show this image", thumb.error.removeprefix("cannot read image: "),
                    _DIM)
    elif status == "missing":
        message_box(_MISSING_BOX, "no output", "not in the manifest", _DIM)
    else:  # e.g. skipped without an output
        message_box(_MISSING_BOX, status, cell["error"] or "no output file", _STATUS_COLOURS.get(status, _DIM))

    # Caption: file name / WxH, depth, bytes / op label (and status when not plainly done).
    cx, cy = geo.caption_origin(r, c)
    width = geo.thumb_size
    if cell["op"] is None or not cell["path"]:
        line1 = name  # the original, or the input whose output is missing
    else:
        line1 = str(cell["path"])
    facts = []  # plain ASCII: the bundled font has no multiplication sign or dashes
    if thumb is not None and thumb.width is not None:
        facts.append(f"{thumb.width}x{thumb.height}")
    if thumb is not None and thumb.tag:
        facts.append(thumb.tag)
    if thumb is not None and thumb.nbytes is not None:
        facts.append(_human_bytes(thumb.nbytes))
    if not facts:
        facts.append("unreadable" if thumb is not None else "no output written")
    line2 = "  \u00b7  ".join(facts)
    if font.getlength(line2) > width:
        line2 = " \u00b7 ".join(facts)
    label = cell["op"] or "original"
    line3 = label if status in ("done", "original") else f"{label} \u00b7 {status}"
    colour3 = _STATUS_COLOURS.get(status, _DIM)
    lh = geo.line_height
    draw.text((cx, cy), _fit(line1, font, width), font=font, fill=_TEXT)
    draw.text((cx, cy + lh), _fit(line2, font, width, middle=False), font=font, fill=_DIM)
    draw.text((cx, cy + 2 * lh), _fit(line3, font, width), font=font, fill=colour3)


def _render(manifest: dict, outdir: Path, *, max_rows, thumb_size, columns_per_row):
    from PIL import Image, ImageDraw

    headers, all_rows = _all_rows(manifest)
    rows = all_rows if max_rows is None else all_rows[:max_rows]
    hidden = len(all_rows) - len(rows)
    geo = sheet_geometry(len(headers), len(rows), thumb_size=thumb_size,
                         columns_per_row=columns_per_row, truncated=hidden > 0)

    # Decode thumbnails in a few threads: Pillow and libjpeg release the GIL while decoding.
    jobs = {}
    for r, (_, cells) in enumerate(rows):
        for c, cell in enumerate(cells):
            path = _resolve(outdir, cell)
            # A failed item's output path may name a stale file from an earlier run: show the error.
            if path is not None and cell["status"] != "failed":
                jobs[(r, c)] = path
    workers = max(1, min(4, os.cpu_count() or 1, len(jobs)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        thumbs = dict(zip(jobs, pool.map(lambda p: _load_thumb(p, geo.thumb_size), jobs.values())))

    canvas = Image.new("RGB", geo.size, _BG)
    draw = ImageDraw.Draw(canvas)

    # Title: what this is, and the run's summary.
    tfont, sfont = _font(geo.title_font_size), _font(geo.font_size + 1)
    grid_width = geo.size[0] - 2 * geo.margin
    prefix = "pixelmill contact sheet: "
    room = max(0, int(grid_width - tfont.getlength(prefix)))
    draw.text((geo.margin, geo.margin), prefix + _fit(str(outdir), tfont, room), font=tfont, fill=_HEADER)
    draw.text((geo.margin, geo.margin + _line_height(tfont) + 4),
              _fit(_summary_text(manifest, len(all_rows), len(headers) - 1), sfont, grid_width),
              font=sfont, fill=_DIM)

    # Header: column names centred over their cells, a rule under them.
    hfont = _font(geo.header_font_size)
    for c, header in enumerate(headers):
        x0, y0, x1, y1 = geo.header_box(c)
        text = _fit(header, hfont, geo.cell_width - geo.pad)
        draw.text(((x0 + x1) / 2, y1 - geo.pad // 2), text, font=hfont, fill=_HEADER, anchor="md")
    rule_y = geo.grid_top - geo.gap
    draw.line((geo.margin, rule_y, geo.size[0] - geo.margin, rule_y), fill=_CELL_EDGE, width=1)

    names = _display_names(rows)
    for r, (inp, cells) in enumerate(rows):
        if r % 2 == 1:  # alternate bands, so that the wrapped lines of one image read as one row
            draw.rectangle(geo.row_box(r), fill=_BAND)
        for c, cell in enumerate(cells):
            _draw_cell(canvas, draw, geo, r, c, cell, thumbs.get((r, c)), names[inp])

    if hidden:
        fx, fy = geo.footer_origin()
        more = f"... and {hidden} more image{'s' if hidden != 1 else ''}"
        draw.text((fx, fy), f"{more} (raise max_rows to show them)", font=hfont, fill=_DIM)
    return canvas


def write_contact_sheet(outdir, *, path=None, max_rows: int | None = 48, thumb_size: int = 192,
                        columns_per_row: int | None = None) -> Path:
    """Draw the contact sheet of an output folder: each input beside its outputs.

    Reads ``OUTDIR/manifest.json`` (written by ``pixelmill run``) and writes a PNG with a
    header row naming the columns (``original``, then one per operation) and one row per
    input image. Each cell is a thumbnail with its file name, WxH, file size and operation
    label; a failed item shows its error instead, and a file that cannot be read says so.

    Parameters
    ----------
    outdir : str or Path
        The output folder of a ``pixelmill run``.
    path : str or Path, optional
        Where to write the PNG; default ``OUTDIR/contact-sheet.png``. Written atomically
        (a temporary file in the same folder, then renamed).
    max_rows : int or None
        Show at most this many input images; a footer says how many more there are. None: all.
    thumb_size : int
        Side of the square each thumbnail fits in (32 to 1024 pixels).
    columns_per_row : int or None
        Wrap an image row after this many cells, for runs with many operations. None: one line per image.

    Returns
    -------
    Path
        The written PNG.

    Raises
    ------
    InvalidParameterError
        If OUTDIR is not a folder, has no ``manifest.json`` (run ``pixelmill run`` first), the
        manifest is malformed, an option is out of range, or the folder of ``path`` does not exist.

    Examples
    --------
    >>> write_contact_sheet("/nonexistent/out")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pixelmill.errors.InvalidParameterError: outdir '/nonexistent/out' is not a folder; ...
    """
    outdir = Path(outdir)
    if not outdir.is_dir():
        raise InvalidParameterError(
            f"outdir {str(outdir)!r} is not a folder; give the output folder of a `pixelmill run`"
        )
    max_rows = _check_max_rows(max_rows)
    _check_int("thumb_size", thumb_size, 32, 1024)
    if columns_per_row is not None:
        _check_int("columns_per_row", columns_per_row, 1, 10_000)
    target = outdir / SHEET_NAME if path is None else Path(path)
    if not target.parent.is_dir():
        raise InvalidParameterError(
            f"path {str(target)!r}: its folder does not exist; give a path in an existing folder"
        )
    manifest = read_manifest(outdir)
    canvas = _render(manifest, outdir, max_rows=max_rows, thumb_size=thumb_size,
                     columns_per_row=columns_per_row)

    # compress_level 3: photos barely compress further, and level 6+ is slow on big sheets.
    atomic_write(target, lambda fh: canvas.save(fh, format="PNG", compress_level=3))
    return target
