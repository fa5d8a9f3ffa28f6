"""Parsing operation specs as the CLI writes them: ``invert``, ``sobel``, a kernel name,
``gaussian`` or ``gaussian:size=9,sigma=2``, ``kernel:PATH`` (``kernel:PATH,normalize``),
an inline kernel ``kernel:"1 2 1; 2 4 2; 1 2 1",normalize``, and chains of those joined by
``|`` (``gaussian:size=9,sigma=2 | invert``: one output, the steps applied one after another)."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

from . import kernels
from .errors import InvalidKernelError, InvalidParameterError
from .ops import Filter, Invert, Operation, SobelMagnitude

__all__ = ["parse_op", "parse_ops", "Chain", "steps_of", "OP_HELP", "CHAIN_SEPARATOR"]

#: What joins the steps of a chain in an op spec. Neither a kernel name, an option nor an
#: inline kernel (numbers, ``;`` and spaces) holds it, and paths almost never do.
CHAIN_SEPARATOR = "|"

OP_HELP = (
    "invert, sobel, a kernel name (" + ", ".join(kernels.names()) + "), "
    "gaussian:sigma=2 (size from sigma, as SciPy: 2 * int(4 * sigma + 0.5) + 1), gaussian:size=9,sigma=2, "
    "gaussian:sigma=2,truncate=3, kernel:PATH[,normalize] (a .txt/.csv/.npy kernel file), "
    "kernel:\"1 2 1; 2 4 2; 1 2 1\"[,normalize] (inline weights), "
    "or a chain of those joined by '|' (\"gaussian | invert\")"
)


@dataclass(frozen=True)
class Chain:
    """Operations applied one after another to the same image, giving one output: each
    step's result is converted back to the image dtype with that step's policy before the
    next step reads it, as calling the library's functions one after another would.

    >>> parse_op("gaussian:size=3,sigma=1 | invert").label
    'gaussian-3-1+invert'
    """

    steps: tuple[Operation, ...]

    @property
    def label(self) -> str:
        """The steps' labels joined by ``+`` (the output folder's name in a filter bank)."""
        return "+".join(step.label for step in self.steps)


def steps_of(op) -> tuple[Operation, ...]:
    """The operations ``op`` runs, in order: a chain's steps, or the operation itself."""
    return op.steps if isinstance(op, Chain) else (op,)


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


#: Text that can only be inline weights: numbers, separators (spaces, commas, ';'), signs.
_INLINE = re.compile(r"^[\s0-9.,;eE+\-]+$")


def _kernel_op(spec: str, rest: str) -> tuple[Operation, str | None]:
    """``(operation, the kernel file's path or None for inline weights)``."""
    body, flag = rest, ""
    if body.endswith(",normalize"):
        body, flag = body[: -len(",normalize")], "normalize"
    body = body.strip()
    normalize = flag == "normalize"
    if not body:
        raise InvalidParameterError(f"op {spec!r}: give a kernel file, as kernel:PATH, or weights, as "
                                    "kernel:\"1 2 1; 2 4 2; 1 2 1\"")
    quoted = len(body) >= 2 and body[0] == body[-1] and body[0] in "\"'"
    if quoted or (_INLINE.match(body) and not os.path.lexists(body) and re.search(r"[\s;]", body.strip())):
        text = body[1:-1] if quoted else body
        weights = kernels.parse(text, normalize=normalize, name="inline").weights
        digest = hashlib.sha1(weights.tobytes() + str(weights.shape).encode()).hexdigest()[:6]
        name = f"kernel-{weights.shape[0]}x{weights.shape[1]}-{digest}"
        return Filter(kernels.from_array(weights, name=name)), None
    if "," in body and not os.path.lexists(body):
        raise InvalidParameterError(f"op {spec!r}: only ',normalize' may follow the path")
    return Filter(kernels.from_file(body, normalize=normalize)), body


def _parse_step(step: str, spec: str) -> tuple[Operation, str | None]:
    step = step.strip()
    name, _, rest = step.partition(":")
    if name == "invert" and not rest:
        return Invert(), None
    if name == "sobel" and not rest:
        return SobelMagnitude(), None
    if name == "gaussian":
        opts = _options(rest, step, {"size", "sigma", "truncate"})
        if not opts:
            return Filter(kernels.gaussian(5, 1.0)), None  # the default op keeps its 5x5 kernel
        try:
            size = int(opts["size"]) if "size" in opts else None
            sigma = float(opts.get("sigma", 1.0))
            truncate = float(opts.get("truncate", 4.0))
        except ValueError:
            raise InvalidParameterError(
                f"op {step!r}: size must be an odd integer, sigma and truncate numbers"
            ) from None
        if size is not None and "truncate" in opts:
            raise InvalidParameterError(f"op {step!r}: give size or truncate, not both")
        return Filter(kernels.gaussian(size, sigma, truncate=truncate)), None
    if name == "kernel":
        return _kernel_op(step, rest)
    if not rest and name in kernels.names():
        return Filter(kernels.get(name)), None
    if not step:
        raise InvalidKernelError(f"op {spec!r} has an empty step; use {OP_HELP}")
    raise InvalidKernelError(f"unknown op {step!r}; use {OP_HELP}")


def _parse(spec: str) -> tuple[Operation | Chain, list[tuple[int, str]]]:
    """The op, and ``(step index, kernel path)`` for its steps read from kernel files."""
    spec = spec.strip()
    parts = spec.split(CHAIN_SEPARATOR)
    parsed = [_parse_step(part, spec) for part in parts]
    files = [(i, path) for i, (_, path) in enumerate(parsed) if path is not None]
    steps = tuple(op for op, _ in parsed)
    return (steps[0] if len(steps) == 1 else Chain(steps)), files


def parse_op(spec: str) -> Operation | Chain:
    """An :class:`~pixelmill.ops.Operation` from a CLI op spec (convolution for kernels), or
    a :class:`Chain` of them for steps joined by ``|``.

    Examples
    --------
    >>> parse_op("gaussian:size=9,sigma=2").label
    'gaussian-9-2'
    >>> parse_op("gaussian:sigma=3").label, parse_op("gaussian").label
    ('gaussian-25-3', 'gaussian-5-1')
    >>> parse_op("invert").label
    'invert'
    >>> float(parse_op('kernel:"1 2 1; 2 4 2; 1 2 1",normalize').kernel.weights.sum())
    1.0
    """
    return _parse(spec)[0]


def parse_ops(specs) -> tuple[Operation | Chain, ...]:
    """:func:`parse_op` of each spec, with distinct labels for kernel files that share a name.

    Two kernel files with the same stem in different folders (``a/box.csv``, ``b/box.csv``)
    would write into the same output folder: each is labelled with its folder's name appended
    (``box-a``, ``box-b``), or, when those are alike too, a short hash of its real path. The
    same file given twice is still the same op twice.
    """
    parsed = [_parse(spec) for spec in specs]
    by_label: dict[str, set[str]] = {}
    for op, files in parsed:
        for i, path in files:
            by_label.setdefault(steps_of(op)[i].label, set()).add(os.path.realpath(path))
    clashing = {label for label, reals in by_label.items() if len(reals) > 1}
    if not clashing:
        return tuple(op for op, _ in parsed)

    def parent_name(real: str) -> str:
        return os.path.basename(os.path.dirname(real)) or "root"

    renamed: dict[str, str] = {}
    for label in clashing:
        reals = sorted(by_label[label])
        names = {real: f"{label}-{parent_name(real)}" for real in reals}
        if len(set(names.values())) < len(reals):
            names = {real: f"{label}-{hashlib.sha1(real.encode()).hexdigest()[:6]}" for real in reals}
        renamed.update(names)
    out = []
    for op, files in parsed:
        steps = list(steps_of(op))
        for i, path in files:
            real = os.path.realpath(path)
            if real in renamed:
                steps[i] = Filter(kernels.from_array(steps[i].kernel.weights, name=renamed[real]))
        out.append(steps[0] if not isinstance(op, Chain) else Chain(tuple(steps)))
    return tuple(out)
