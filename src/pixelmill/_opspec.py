"""Parsing operation specs as the CLI writes them: ``invert``, ``sobel``, a kernel name,
``gaussian`` or ``gaussian:size=9,sigma=2``, ``kernel:PATH`` (``kernel:PATH,normalize``)."""

from __future__ import annotations

from . import kernels
from .errors import InvalidKernelError, InvalidParameterError
from .ops import Filter, Invert, Operation, SobelMagnitude

__all__ = ["parse_op", "OP_HELP"]

OP_HELP = (
    "invert, sobel, a kernel name (" + ", ".join(kernels.names()) + "), "
    "gaussian:sigma=2 (size from sigma, as SciPy: 2 * int(4 * sigma + 0.5) + 1), gaussian:size=9,sigma=2, "
    "gaussian:sigma=2,truncate=3, or kernel:PATH[,normalize] (a .txt/.csv/.npy kernel file)"
)


def _options(text: str, spec: str, allowed: set[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in allowed:
            raise InvalidParameterError(
                f"op {spec!r}: option {part!r} is not understood; options: {', '.join(sorted(allowed))}"
            )
        options[key] = value
    return options


def parse_op(spec: str) -> Operation:
    """An :class:`~pixelmill.ops.Operation` from a CLI op spec (convolution for kernels).

    Examples
    --------
    >>> parse_op("gaussian:size=9,sigma=2").label
    'gaussian-9-2'
    >>> parse_op("gaussian:sigma=3").label, parse_op("gaussian").label
    ('gaussian-25-3', 'gaussian-5-1')
    >>> parse_op("invert").label
    'invert'
    """
    spec = spec.strip()
    name, _, rest = spec.partition(":")
    if name == "invert" and not rest:
        return Invert()
    if name == "sobel" and not rest:
        return SobelMagnitude()
    if name == "gaussian":
        opts = _options(rest, spec, {"size", "sigma", "truncate"})
        if not opts:
            return Filter(kernels.gaussian(5, 1.0))  # the default op keeps its 5x5 kernel
        try:
            size = int(opts["size"]) if "size" in opts else None
            sigma = float(opts.get("sigma", 1.0))
            truncate = float(opts.get("truncate", 4.0))
        except ValueError:
            raise InvalidParameterError(
                f"op {spec!r}: size must be an odd integer, sigma and truncate numbers"
            ) from None
        if size is not None and "truncate" in opts:
            raise InvalidParameterError(f"op {spec!r}: give size or truncate, not both")
        return Filter(kernels.gaussian(size, sigma, truncate=truncate))
    if name == "kernel":
        path, _, flag = rest.partition(",")
        if not path:
            raise InvalidParameterError(f"op {spec!r}: give a kernel file, as kernel:PATH")
        if flag not in ("", "normalize"):
            raise InvalidParameterError(f"op {spec!r}: only ',normalize' may follow the path")
        return Filter(kernels.from_file(path, normalize=flag == "normalize"))
    if not rest and name in kernels.names():
        return Filter(kernels.get(name))
    raise InvalidKernelError(f"unknown op {spec!r}; use {OP_HELP}")
