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
import os
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

    def halo(self, *, flipped: bool = False, origin: tuple[int, int] = (0, 0)) -> tuple[int, int, int, int]:
        """Rows/columns of context needed (top, bottom, left, right).

        SciPy's anchor convention: correlation centres an even kernel at ``n // 2``; convolution
        flips the kernel, which mirrors the halo. ``origin`` ``(oy, ox)`` shifts the anchor as
        SciPy's ``origin`` does, for correlation (``+o``) and for convolution (SciPy negates
        it and, for an even side, moves it one more: the kernel is then anchored at the same
        sample as correlation with the flipped kernel and ``-o - 1``).

        >>> from_array([[1, 2, 3, 4]]).halo(origin=(0, 1)), from_array([[1, 2, 3, 4]]).halo(flipped=True, origin=(0, 1))
        ((0, 0, 3, 0), (0, 0, 0, 3))
        """
        kh, kw = self.shape
        oy, ox = origin
        if flipped:
            top, left = (kh - 1) // 2 - oy, (kw - 1) // 2 - ox
        else:
            top, left = kh // 2 + oy, kw // 2 + ox
        return top, kh - 1 - top, left, kw - 1 - left

    @cached_property
    def factors(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(column, row)`` 1-D weights with ``outer(column, row) == weights``, or None."""
        w = self.weights
        # One row or one column factors as itself, exactly (dividing by a pivot would round:
        # [1, 3] as 3 * [1/3, 1] no longer gives integer results for integer images).
        if w.shape[0] == 1 or w.shape[1] == 1:
            if not np.any(w):
                return None
            if w.shape[0] == 1:
                column, row = np.ones(1), w[0, :].copy()
            else:
                column, row = w[:, 0].copy(), np.ones(1)
            column.setflags(write=False)
            row.setflags(write=False)
            return column, row
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


def _gaussian_sigmas(sigma) -> tuple[float, float]:
    values = sigma if isinstance(sigma, (tuple, list, np.ndarray)) else (sigma, sigma)
    if len(values) != 2:
        raise InvalidKernelError(
            f"gaussian sigma must be a number or a pair (sigma_y, sigma_x), got {sigma!r}"
        )
    out = []
    for value in values:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InvalidKernelError(
                f"gaussian sigma must be a number >= 0 or a pair of them, got {sigma!r}"
            ) from None
        if not math.isfinite(value) or value < 0:
            raise InvalidKernelError(f"gaussian sigma must be a number >= 0 or a pair of them, got {sigma!r}")
        out.append(value)
    return out[0], out[1]


def _gaussian_radius(sigma: float, truncate: float, radius) -> int:
    if radius is None:
        return int(truncate * sigma + 0.5)  # SciPy's rule
    return int(radius)


def _gaussian_1d(sigma: float, radius: int) -> np.ndarray:
    # SciPy's expression (scipy.ndimage._gaussian_kernel1d, order 0); sigma 0 is the identity.
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    if sigma == 0:
        return (x == 0).astype(np.float64)
    phi = np.exp(-0.5 / (sigma * sigma) * x * x)
    return phi / phi.sum()


def gaussian(size: int | None = 5, sigma=1.0, *, truncate: float = 4.0, radius=None) -> Kernel:
    """A Gaussian kernel, ``exp(-(y^2 / sy^2 + x^2 / sx^2) / 2)``, normalized to sum 1.

    Parameters
    ----------
    size : int or None
        Odd side length, 1 to 255. None derives it from ``sigma`` by SciPy's rule: along each
        axis ``2 * radius + 1`` with ``radius = int(truncate * sigma + 0.5)`` (or ``radius``
        when given), as ``scipy.ndimage.gaussian_filter`` does.
    sigma : float or (float, float)
        Standard deviation in pixels, >= 0; a pair is ``(sigma_y, sigma_x)``. 0 along an axis
        is the identity along it (one tap, or a centred impulse with an explicit ``size``).
    truncate : float
        With ``size=None``: the radius in standard deviations (SciPy's default, 4.0).
    radius : int or (int, int), optional
        With ``size=None``: the radius itself, overriding ``truncate`` (SciPy's ``radius``).

    Raises
    ------
    InvalidKernelError
        If ``size`` is even, not positive, too large, ``sigma`` is negative or not a number,
        or ``truncate``/``radius`` are invalid.

    Examples
    --------
    >>> gaussian(3, 1.0).shape
    (3, 3)
    >>> gaussian(None, 2.0).shape, gaussian(None, (0, 1.0)).shape, gaussian(None, 1.0, radius=2).shape
    ((17, 17), (1, 9), (5, 5))
    >>> gaussian(9, 2).name, gaussian(None, 2).name
    ('gaussian-9-2', 'gaussian-17-2')
    """
    sy, sx = _gaussian_sigmas(sigma)
    if size is None:
        try:
            truncate = float(truncate)
        except (TypeError, ValueError):
            raise InvalidKernelError(f"gaussian truncate must be a positive number, got {truncate!r}") from None
        if not math.isfinite(truncate) or truncate <= 0:
            raise InvalidKernelError(f"gaussian truncate must be a positive number, got {truncate!r}")
        radii = radius if isinstance(radius, (tuple, list)) else (radius, radius)
        if len(radii) != 2 or any(
            r is not None and (isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 0) for r in radii
        ):
            raise InvalidKernelError(
                f"gaussian radius must be an integer >= 0 or a pair of them, got {radius!r}"
            )
        ry = 0 if sy == 0 and radii[0] is None else _gaussian_radius(sy, truncate, radii[0])
        rx = 0 if sx == 0 and radii[1] is None else _gaussian_radius(sx, truncate, radii[1])
        if max(ry, rx) * 2 + 1 > MAX_KERNEL_SIDE:
            raise InvalidKernelError(
                f"gaussian sigma {sigma!r} with truncate {truncate!r} gives a {2 * ry + 1}x{2 * rx + 1} kernel, "
                f"too large (at most {MAX_KERNEL_SIDE} a side); lower truncate or give radius"
            )
    else:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
            raise InvalidKernelError(f"gaussian size must be an odd integer or None, got {size!r}")
        if size < 1 or size % 2 == 0:
            raise InvalidKernelError(f"gaussian size must be a positive odd integer, got {size!r}")
        if size > MAX_KERNEL_SIDE:
            raise InvalidKernelError(f"gaussian size {size!r} is too large (at most {MAX_KERNEL_SIDE})")
        if radius is not None:
            raise InvalidKernelError(f"gaussian: give size or radius, not both (size={size!r}, radius={radius!r})")
        if sy == 0 and sx == 0:
            pass  # a centred impulse
        ry = rx = int(size) // 2
    gy, gx = _gaussian_1d(sy, ry), _gaussian_1d(sx, rx)
    if sy == sx:
        label = f"gaussian-{2 * rx + 1}-{sx:g}" if ry == rx else f"gaussian-{2 * ry + 1}x{2 * rx + 1}-{sx:g}"
    else:
        label = f"gaussian-{2 * ry + 1}x{2 * rx + 1}-{sy:g}x{sx:g}"
    return from_array(np.outer(gy, gx), label)


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
        if path.is_dir():
            what = "is a folder, not a kernel file"
        elif os.path.lexists(path) and not path.exists():
            what = "is a dangling symbolic link"
        elif os.path.lexists(path):
            what = "is not a regular file (a device or a pipe)"
        else:
            what = "does not exist"
        raise InvalidKernelError(f"kernel file {str(path)!r} {what}; give a .txt, .csv or .npy file")
    if path.stat().st_size == 0:
        raise InvalidKernelError(f"kernel file {str(path)!r} is empty; it should hold the weights")
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
