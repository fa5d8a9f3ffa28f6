"""What a batch is asked to do: the operations and every option that decides an output's bytes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._version import __version__
from ..io import DEFAULT_MAX_PIXELS, EXTENSION_FORMATS, SUPPORTED_FORMATS
from .._validation import check_border, check_cval, check_memory_limit, check_policy, check_quality
from ..engines import check_engine
from ..errors import InvalidParameterError
from .._opspec import steps_of
from ..ops import Filter, Operation

__all__ = ["RunSettings"]


@dataclass(frozen=True)
class RunSettings:
    """Everything that decides an output's bytes, plus how the work is scheduled."""

    ops: tuple[Operation, ...]
    engine: str = "numpy"
    workers: int | None = None
    border: str = "nearest"
    cval: float = 0.0
    policy: str | None = None
    format: str | None = None
    quality: int = 95
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # None: no limit
    overwrite: bool = False
    tile_shape: tuple[int, int] | None = None
    scheduler: str | None = None
    #: Seconds to wait for ``scheduler`` to answer as a dask scheduler.
    scheduler_timeout: float = 10.0
    #: Bytes (or a size such as "1GB") a streamed image may hold, all its workers together;
    #: None: a quarter of the machine's memory. Images above a tenth of it are streamed.
    memory_limit: int | str | None = None

    def __post_init__(self):
        object.__setattr__(self, "memory_limit", check_memory_limit(self.memory_limit))

    def fingerprint(self, op: Operation) -> str:
        """What, besides the input, determines ``op``'s output bytes (a chain: each step's)."""
        parts = [__version__]
        for step in steps_of(op):
            weights = step.effective_kernel.weights.tobytes().hex() if isinstance(step, Filter) else ""
            parts += [type(step).__name__, step.label, weights]
        parts += [self.border, repr(self.cval), str(self.policy), str(self.format), str(self.quality)]
        return "|".join(parts)

    def check(self) -> None:
        """Raise a :class:`~pixelmill.errors.PixelmillError` naming the first option that is
        not valid (before any work starts)."""
        if not self.ops:
            raise InvalidParameterError("no operation given; add --op (e.g. --op invert)")
        check_border(self.border)
        check_cval(self.cval)
        if self.policy is not None:
            check_policy(self.policy)
        if self.format is not None and self.format not in SUPPORTED_FORMATS:
            raise InvalidParameterError(
                f"format {self.format!r} is not known; use one of {', '.join(SUPPORTED_FORMATS)}"
            )
        if self.policy == "float32" and self.format not in (None, "TIFF"):
            # Without --format each output keeps its input's format: checked per item (a TIFF
            # input is fine, any other fails with the reason), see float32_refusal.
            raise InvalidParameterError(
                f"policy 'float32' keeps float results, which only TIFF holds, not {self.format}: "
                "use --format tiff"
            )
        check_quality(self.quality)
        check_engine(self.engine)
        if self.scheduler is not None and self.engine not in ("auto", "dask"):
            raise InvalidParameterError(
                f"--scheduler runs the batch on a dask cluster, which needs --engine dask (or auto), "
                f"got engine {self.engine!r}"
            )
        t = self.scheduler_timeout
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
            raise InvalidParameterError(f"scheduler timeout must be a positive number of seconds, got {t!r}")
        labels = [op.label for op in self.ops]
        if len(set(labels)) != len(labels):
            raise InvalidParameterError(f"the same op is given twice: {labels!r}")

    def float32_refusal(self, input_path) -> str | None:
        """Why ``input_path``'s output cannot keep float32 results (it would not be a TIFF), or
        None when it can or the policy is another."""
        if self.policy != "float32" or self.format == "TIFF":
            return None
        fmt = EXTENSION_FORMATS.get(Path(input_path).suffix.lower())
        if fmt == "TIFF":
            return None
        return (f"policy 'float32' keeps float results, which only TIFF holds, and this output would be "
                f"{fmt or 'in the input format'}: add --format tiff")
