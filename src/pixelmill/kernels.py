"""Kernels: named, generated (Gaussian), from a file, or from inline text.

A :class:`Kernel` is a frozen value holding 2-D float64 weights and a name. It knows the halo
it needs around each output pixel and whether it is separable (rank 1), which fast engines use.

Examples
--------
>>> from pixelmill import kernels
>>> kernels.get("sobel-x").weights
array([[ 1.,  0., -1.],
       [ 2.,  0., -2.],
       [ 1.,  0., -1.]])
>>> kernels.get("sobel-x").separable
True
>>> round(float(kernels.gaussian(5, 1.0).weights.sum()), 12)
1.0
>>> float(kernels.parse("1 2 1; 2 4 2; 1 2 1", normalize=True).weights[1, 1])
0.25
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import InvalidKernelError

__all__ = [
    "Kernel",
    "MAX_KERNEL_SIDE",
    "names",
    "get",
    "gaussian",
    "parse",
    "from_file",
    "from_array",
]

#: Largest accepted kernel side. Larger kernels are almost always a mistake (and an O(k^2) trap).
MAX_KERNEL_SIDE = 255


@dataclass(frozen=True, eq=False)
class Kernel:
    """A 2-D kernel: float64 weights (read-only) and a name.

    Build one with :func:`get`, :func:`gaussian`, :func:`parse`, :func:`from_file` or
    :func:`from_array`; those validate the weights.
    """

    name: str
    weights: np.ndarray = field(repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return self.weights.shape  # type: ignore[return-value]

    def halo(self, *, flipped: bool = False) -> tuple[int, int, int, int]:
        """Rows/columns of context needed (top, bottom, left, right).

        SciPy's anchor convention: correlation centres an even kernel at ``n // 2``; convolution
        flips the kernel, which mirrors the halo.
        """
        kh, kw = self.shape
        top, left = kh // 2, kw // 2
        bottom, right = kh - 1 - top, kw - 1 - left
        if flipped:
            return bottom, top, right, left
        return top, bottom, left, right

    @cached_property
    def factors(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(column, row)`` 1-D weights with ``outer(column, row) == weights``, or None."""
        w = self.weights
        peak = np.unravel_index(np.argmax(np.abs(w)), w.shape)
        pivot = w[peak]
        if pivot == 0:
            return None
        column = w[:, peak[1]].copy()
        row = w[peak[0], :] / pivot
        scale = float(np.abs(w).max())
        if not np.allclose(np.outer(column, row), w, rtol=0, atol=1e-12 * scale):
            return None
        column.setflags(write=False)
        row.setflags(write=False)
        return column, row

    @property
    def separable(self) -> bool:
        """True when the kernel is rank 1 (an outer product of a column and a row)."""
        return self.factors is not None

    @property
    def zero_sum(self) -> bool:
        """True for derivative-like kernels whose weights sum to zero (edge detectors)."""
        return abs(float(self.weights.sum())) <= 1e-9 * float(np.abs(self.weights).sum())

    @property
    def default_policy(self) -> str:
        """The dtype-conversion policy DESIGN.md assigns: ``abs`` for zero-sum, else ``clip``."""
        return "abs" if self.zero_sum else "clip"

    def flipped(self) -> "Kernel":
        """The kernel rotated by 180 degrees (convolution = correlation with this)."""
        return self._flipped

    @cached_property
    def _flipped(self) -> "Kernel":
        # Kept: a batch convolves photo after photo with it, and its factors (a rank test
        # that costs more than filtering a small photo's row) are then found once.
        return Kernel(self.name, _freeze(self.weights[::-1, ::-1]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Kernel):
            return NotImplemented
        return self.name == other.name and np.array_equal(self.weights, other.weights)

    def __hash__(self) -> int:
        return hash((self.name, self.weights.shape, self.weights.tobytes()))

    def __repr__(self) -> str:
        kh, kw = self.shape
        return f"Kernel({self.name!r}, {kh}x{kw}, separable={self.separable})"


def _freeze(weights: np.ndarray) -> np.ndarray:
    out = np.array(weights, dtype=np.float64, order="C", copy=True)
    out.setflags(write=False)
    return out


def from_array(weights, name: str = "custom", *, normalize: bool = False) -> Kernel:
    """Validate ``weights`` (2-D, finite, numeric, non-empty, at most 255 a side) as a Kernel.

    Raises
    ------
    InvalidKernelError
        Naming ``name`` and what is wrong.
    """
    try:
        raw = np.asarray(weights)
    except (TypeError, ValueError) as exc:
        raise InvalidKernelError(f"kernel {name!r}: weights are not numeric ({exc})") from None
    if raw.dtype.kind == "c":
        raise InvalidKernelError(
            f"kernel {name!r}: weights are complex ({raw.dtype.name}); pixelmill filters with real "
            "weights only: pass weights.real (or filter the real and imaginary parts separately)"
        )
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidKernelError(f"kernel {name!r}: weights are not numeric ({exc})") from None
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if arr.ndim != 2:
        raise InvalidKernelError(f"kernel {name!r}: weights must be 2-D, got {arr.ndim}-D")
    if arr.size == 0:
        raise InvalidKernelError(f"kernel {name!r}: weights are empty")
    if max(arr.shape) > MAX_KERNEL_SIDE:
        raise InvalidKernelError(
            f"kernel {name!r}: {arr.shape[0]}x{arr.shape[1]} is too large "
            f"(at most {MAX_KERNEL_SIDE} a side)"
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidKernelError(f"kernel {name!r}: weights contain NaN or infinity")
    if normalize:
        total = float(arr.sum())
        if total == 0:
            raise InvalidKernelError(f"kernel {name!r}: cannot normalize, the weights sum to 0")
        arr = arr / total
    return Kernel(name, _freeze(arr))


def gaussian(size: int = 5, sigma: float = 1.0) -> Kernel:
    """A ``size`` x ``size`` Gaussian, ``exp(-(x^2 + y^2) / (2 sigma^2))``, normalized to sum 1.

    Parameters
    ----------
    size : int
        Odd side length, 1 to 255.
    sigma : float
        Standard deviation in pixels, > 0.

    Raises
    ------
    InvalidKernelError
        If ``size`` is even, not positive, too large, or ``sigma`` is not a positive number.

    Examples
    --------
    >>> gaussian(3, 1.0).shape
    (3, 3)
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise InvalidKernelError(f"gaussian size must be an odd integer, got {size!r}")
    if size < 1 or size % 2 == 0:
        raise InvalidKernelError(f"gaussian size must be a positive odd integer, got {size!r}")
    if size > MAX_KERNEL_SIDE:
        raise InvalidKernelError(f"gaussian size {size!r} is too large (at most {MAX_KERNEL_SIDE})")
    try:
        sigma = float(sigma)
    except (TypeError, ValueError):
        raise InvalidKernelError(f"gaussian sigma must be a positive number, got {sigma!r}") from None
    if not math.isfinite(sigma) or sigma <= 0:
        raise InvalidKernelError(f"gaussian sigma must be a positive number, got {sigma!r}")
    r = size // 2
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    g /= g.sum()
    return from_array(np.outer(g, g), f"gaussian-{size}-{sigma:g}")


def _named() -> dict[str, np.ndarray]:
    identity = np.zeros((5, 5))
    identity[2, 2] = 1.0
    edge_x = np.array([[0.5, 0.0, -0.5]])
    sobel_x = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    laplacian = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    return {
        "identity": identity,
        "edge-x": edge_x,
        "edge-y": edge_x.T,
        "sobel-x": sobel_x,
        "sobel-y": sobel_x.T,
        "laplacian": laplacian,
        "gaussian": gaussian(5, 1.0).weights,
    }


_DESCRIPTIONS = {
    "identity": "5x5 impulse: output equals input",
    "edge-x": "[0.5, 0, -0.5]: horizontal central difference, (f(x+1) - f(x-1)) / 2",
    "edge-y": "transpose of edge-x: vertical central difference",
    "sobel-x": "3x3 Sobel, horizontal gradient",
    "sobel-y": "3x3 Sobel, vertical gradient",
    "laplacian": "3x3 Laplacian, second derivative in both directions",
    "gaussian": "5x5 Gaussian, sigma 1 (gaussian(size, sigma) for others)",
}


def names() -> list[str]:
    """Names accepted by :func:`get`, sorted."""
    return sorted(_DESCRIPTIONS)


def describe(name: str) -> str:
    """One line saying what the named kernel does."""
    get(name)
    return _DESCRIPTIONS[name]


def get(name: str) -> Kernel:
    """The named kernel (see :func:`names`).

    Raises
    ------
    InvalidKernelError
        For an unknown name; the message lists the known ones.

    Examples
    --------
    >>> get("edge-x").weights
    array([[ 0.5,  0. , -0.5]])
    """
    table = _named()
    if name not in table:
        raise InvalidKernelError(
            f"unknown kernel name {name!r}; known kernels: {', '.join(names())}"
        )
    return from_array(table[name], name)


_SEPARATORS = re.compile(r"[,\s]+")


def parse(text: str, *, normalize: bool = False, name: str = "inline") -> Kernel:
    """A kernel from text: rows separated by ``;`` or new lines, values by spaces or commas.

    Lines starting with ``#`` are comments. ``normalize=True`` divides by the sum.

    Raises
    ------
    InvalidKernelError
        If the text is empty, has non-numeric values or ragged rows.
    """
    rows: list[list[float]] = []
    for line_no, line in enumerate(re.split(r"[;\n]", str(text)), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        values = [v for v in _SEPARATORS.split(line) if v]
        try:
            rows.append([float(v) for v in values])
        except ValueError:
            bad = next(v for v in values if not _is_float(v))
            raise InvalidKernelError(
                f"kernel {name!r}: row {line_no} has a non-numeric value {bad!r}"
            ) from None
    if not rows:
        raise InvalidKernelError(f"kernel {name!r}: no weights found")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise InvalidKernelError(
            f"kernel {name!r}: rows have different lengths {sorted(widths)}; a kernel is a rectangle"
        )
    return from_array(np.array(rows), name, normalize=normalize)


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _check_npy_header(path: Path) -> None:
    """Refuse a ``.npy`` file whose header claims a shape no kernel may have, before loading
    it: ``np.load`` would allocate what the header says (a 100000 x 100000 header: 74.5 GiB)."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as fh:
            version = fmt.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = fmt.read_array_header_2_0(fh)
            else:  # 3.0: a UTF-8 header, read by the same private reader np.load uses
                shape, _, dtype = fmt._read_array_header(fh, version)
    except (ValueError, OSError, SyntaxError, TypeError) as exc:
        raise InvalidKernelError(f"kernel file {str(path)!r} is not a valid .npy array: {exc}") from None
    if len(shape) not in (1, 2) or max(shape, default=0) > MAX_KERNEL_SIDE:
        raise InvalidKernelError(
            f"kernel file {str(path)!r} holds an array of shape {tuple(shape)!r}; a kernel is 1-D or 2-D "
            f"with at most {MAX_KERNEL_SIDE} a side"
        )
    if dtype.hasobject:
        raise InvalidKernelError(f"kernel file {str(path)!r} holds Python objects, not numbers")


def from_file(path, *, normalize: bool = False) -> Kernel:
    """A kernel from a ``.txt``/``.csv`` text file or a ``.npy`` array (loaded without pickle).

    Raises
    ------
    InvalidKernelError
        Naming the file, for a missing file, an unknown extension or malformed contents.
    """
    path = Path(path)
    name = path.stem
    if not path.is_file():
        raise InvalidKernelError(f"kernel file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        _check_npy_header(path)
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InvalidKernelError(f"kernel file {str(path)!r} is not a valid .npy array: {exc}") from None
        try:
            return from_array(arr, name, normalize=normalize)
        except InvalidKernelError as exc:
            raise InvalidKernelError(f"kernel file {str(path)!r}: {exc}") from None
    if suffix in (".txt", ".csv", ".kernel", ""):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as exc:
            raise InvalidKernelError(f"kernel file {str(path)!r} is not readable text: {exc}") from None
        try:
            return parse(text, normalize=normalize, name=name)
        except InvalidKernelError as exc:
            raise InvalidKernelError(f"kernel file {str(path)!r}: {exc}") from None
    raise InvalidKernelError(
        f"kernel file {str(path)!r} has extension {suffix!r}; use .txt, .csv or .npy"
    )
