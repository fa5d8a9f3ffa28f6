"""Running operations over a library of images: walk, plan, skip/resume, isolate failures,
report progress, write the manifest.

One task per input file: decode once, run every operation on the decoded image (a filter
bank), encode each result atomically. A task never raises: it records ``done``, ``skipped`` or
``failed`` (with a one-line reason) for each (input, operation) pair. Finished pairs are appended
to a journal as they complete, so a run that is killed -- even with SIGKILL -- resumes where it
stopped: a rerun skips outputs that exist and whose input and options are unchanged.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from ._files import atomic_write, durable_in_background, make_durable
from ._validation import check_border, check_cval, check_policy
from .engines import ENGINES, get_engine_class, make_engine, usable_cores
from .errors import InvalidImageError, InvalidParameterError, PixelmillError, UnsafeOutputError
from .io import (
    DEFAULT_MAX_PIXELS,
    EXTENSION_FORMATS,
    FORMAT_SUFFIX,
    is_image_path,
    read_image,
    write_image,
)
from .ops import Filter, Operation, to_dtype

__all__ = ["RunSettings", "BatchResult", "run_batch", "discover", "MANIFEST_NAME", "JOURNAL_NAME"]

MANIFEST_NAME = "manifest.json"
JOURNAL_NAME = ".pixelmill-journal.jsonl"


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

    def fingerprint(self, op: Operation) -> str:
        """What, besides the input, determines ``op``'s output bytes."""
        weights = op.effective_kernel.weights.tobytes().hex() if isinstance(op, Filter) else ""
        parts = [
            __version__, type(op).__name__, op.label, weights, self.border, repr(self.cval),
            str(self.policy), str(self.format), str(self.quality),
        ]
        return "|".join(parts)


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


@dataclass
class BatchResult:
    outdir: Path
    items: list[dict] = field(default_factory=list)
    ignored: int = 0
    seconds: float = 0.0
    #: How the work ran: across-images engine and workers, within-image engine and workers.
    schedule: dict = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(1 for item in self.items if item["status"] == status)

    @property
    def summary(self) -> dict:
        # Megapixels of input processed: an image run through three ops counts once.
        pixels = sum({i["input"]: i.get("pixels") or 0 for i in self.items if i["status"] == "done"}.values())
        return {
            "done": self.count("done"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "ignored_non_images": self.ignored,
            "seconds": round(self.seconds, 3),
            "megapixels_done": round(pixels / 1e6, 3),
            "megapixels_per_second": round(pixels / 1e6 / self.seconds, 3) if self.seconds > 0 else None,
            "manifest": str(self.outdir / MANIFEST_NAME),
        }

    @property
    def exit_code(self) -> int:
        return 1 if self.count("failed") else 0


# -- walking the inputs ----------------------------------------------------------------------


def discover(inputs) -> tuple[list[tuple[Path, Path]], int]:
    """``([(file, path relative to its input root)], number of non-image files ignored)``.

    Folders are walked recursively, following symlinks but never entering the same real
    folder twice (so symlink loops end). Our own temporary files are ignored.
    """
    found: list[tuple[Path, Path]] = []
    ignored = 0
    for raw in inputs:
        root = Path(raw)
        if not root.exists():
            raise InvalidParameterError(f"input {str(raw)!r} does not exist")
        if root.is_file():
            if is_image_path(root):
                found.append((root, Path(root.name)))
            else:
                ignored += 1
            continue
        seen: set[tuple[int, int]] = set()
        for folder, dirnames, filenames in os.walk(root, followlinks=True):
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen:
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(folder) / name
                if name.startswith(".") and name.endswith(".tmp"):
                    continue
                if is_image_path(path) and path.is_file():
                    found.append((path, path.relative_to(root)))
                else:
                    ignored += 1
    return found, ignored


# -- planning --------------------------------------------------------------------------------


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def _check_outdir(outdir: Path, inputs) -> None:
    out_real = Path(os.path.realpath(outdir))
    for raw in inputs:
        root = Path(os.path.realpath(raw))
        if root.is_dir() and _inside(out_real, root):
            raise UnsafeOutputError(
                f"output folder {str(outdir)!r} is the input folder {str(raw)!r} or inside it; "
                "choose an output folder outside the inputs"
            )


def _output_path(outdir: Path, rel: Path, op: Operation, several: bool, fmt: str | None) -> tuple[Path, str]:
    """``(output path, the same relative to outdir, in / form)``."""
    rel = Path(*[p for p in rel.parts if p not in ("", ".", "..")])
    if fmt:
        rel = rel.with_suffix(FORMAT_SUFFIX[fmt])
    if several:
        rel = op.label / rel
    out = outdir / rel
    # A name can never climb out of OUTDIR: parts are filtered above, and this is the proof.
    if not _inside(Path(os.path.normpath(out)), Path(os.path.normpath(outdir))):
        raise UnsafeOutputError(f"output {str(out)!r} would fall outside {str(outdir)!r}")
    return out, rel.as_posix()


class _RealPaths:
    """``os.path.realpath`` of many files, each folder resolved once: a file's real path is
    its folder's and its name, unless the file itself is a symlink."""

    def __init__(self):
        self._folders: dict[str, str] = {}

    def __call__(self, path) -> str:
        path = os.fspath(path)
        if os.path.islink(path):
            return os.path.realpath(path)
        folder, name = os.path.split(path)
        if folder not in self._folders:
            self._folders[folder] = os.path.realpath(folder or os.curdir)
        return os.path.join(self._folders[folder], name)


def _input_signature(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _key(input_sig: str, fingerprint: str) -> str:
    return hashlib.sha256(f"{input_sig}|{fingerprint}".encode()).hexdigest()[:32]


def _load_journal(outdir: Path) -> dict[str, dict]:
    """Latest journal record per output path (relative)."""
    records: dict[str, dict] = {}
    journal = outdir / JOURNAL_NAME
    if not journal.exists():
        return records
    with open(journal, encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if isinstance(rec, dict) and "output" in rec:
                records[rec["output"]] = rec
    return records


def _is_up_to_date(outdir: Path, rel_output: str, key: str, journal: dict[str, dict]) -> bool:
    rec = journal.get(rel_output)
    if not rec or rec.get("key") != key or rec.get("status") != "done":
        return False
    try:
        return (outdir / rel_output).stat().st_size == rec.get("size")
    except OSError:
        return False


# -- running one task (in whatever worker the engine chose) -----------------------------------


def run_task(task: Task) -> list[dict]:
    """Decode once, run each step, encode each output atomically. Never raises."""
    s = task.settings
    records = []
    t0 = time.perf_counter()
    try:
        image = read_image(task.input, max_pixels=s.max_pixels)
        suffix = Path(task.input).suffix.lower()
        promised = EXTENSION_FORMATS.get(suffix)
        if promised and image.format != promised:
            raise InvalidImageError(
                f"{task.input!r}: the extension {suffix!r} says {promised} but the content is {image.format}"
            )
    except Exception as exc:  # one bad file never stops a batch
        reason = _one_line(exc)
        return [_record(task.input, st, "failed", reason) for st in task.steps]
    decode = time.perf_counter() - t0
    pixels = int(image.data.shape[0] * image.data.shape[1])
    ops = [step.op for step in task.steps]
    t1 = time.perf_counter()
    try:
        # The filter bank: every op reads the one decoded image; parallel engines run them at once.
        engine = _inner_engine(task.inner_engine, task.inner_workers, s)
        results = _apply_bank(engine, ops, image, s)
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
        except Exception as exc:
            rec = _record(task.input, step, "failed", _one_line(exc), timings=timings)
        records.append(rec)
    return records


#: Within-image engines, kept for the life of the process: a pool starts once per batch (or
#: per worker process), not once per image.
_INNER_ENGINES: dict[tuple, object] = {}


def _inner_engine(name: str, workers: int, s: RunSettings):
    key = (name, workers, s.tile_shape)
    if key not in _INNER_ENGINES:
        _INNER_ENGINES[key] = make_engine(name, workers, **_engine_options(s, inner=True))
    return _INNER_ENGINES[key]


def close_inner_engines() -> None:
    """Close the cached within-image engines (pools, shared memory) of this process."""
    while _INNER_ENGINES:
        _, engine = _INNER_ENGINES.popitem()
        engine.close()


def _apply_bank(engine, ops: list[Operation], image, s: RunSettings):
    """Run ``ops`` on the colour channels; alpha is carried through untouched."""
    color = image.color
    # Per-pixel policies run fused with the filter, tile by tile: no full-size float result.
    ops = [op.with_policy(s.policy or op.default_policy) for op in ops]
    outputs = []
    if len(ops) == 1 and _can_overwrite(color, ops[0].out_dtype(color.dtype)):
        # One op: write its result over the decoded pixels, which nothing else reads. The
        # image is then held once: engines write it band by band, or (numba) row by row.
        results = [engine.run(ops[0], color, border=s.border, cval=s.cval, out=color)]
    else:
        results = engine.run_many(ops, color, border=s.border, cval=s.cval)
    for op, result in zip(ops, results):
        if result.dtype != color.dtype:
            result = to_dtype(result, color.dtype, policy=s.policy or op.default_policy)
        outputs.append(image.with_color(result))
    return outputs


def _can_overwrite(pixels: np.ndarray, out_dtype) -> bool:
    return pixels.dtype == out_dtype and pixels.flags.writeable and pixels.flags.c_contiguous


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    if isinstance(exc, PixelmillError):
        return msg or type(exc).__name__
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _record(input_path, step: Step, status, error, *, timings=None, pixels=None) -> dict:
    return {
        "input": str(input_path),
        "op": step.op.label,
        "output": step.rel_output,
        "status": status,
        "error": error,
        "timings": timings or {},
        "pixels": pixels,
        "key": step.key,
    }


# -- the batch --------------------------------------------------------------------------------


def _engine_options(s: RunSettings, *, inner: bool = False) -> dict:
    options = {}
    if s.tile_shape:
        options["tile_shape"] = s.tile_shape
    if s.scheduler and not inner:
        options["scheduler"] = s.scheduler
    return options


def _plan_schedule(s: RunSettings, n_tasks: int) -> tuple[str, int, str, int]:
    """(across-images engine, its workers, within-image engine, its workers).

    A parallel engine runs whole images in parallel (each worker single-threaded) when there
    are enough images to keep every worker busy; with fewer (one huge image), it tiles each
    image instead and runs the images one after the other.
    """
    cls = get_engine_class(s.engine)
    workers = s.workers or usable_cores()
    if s.engine == "auto" and not s.scheduler:
        from .engines._auto import plan_batch

        return plan_batch(s.ops, n_tasks, workers)
    if not cls.parallel or workers == 1 or not cls.maps_in_parallel():
        return "numpy", 1, s.engine, workers
    if n_tasks >= 2 * workers or s.scheduler:
        serial_twin = "numba" if cls.flavour == "numba" else "numpy"
        return s.engine, workers, serial_twin, 1
    return "numpy", 1, s.engine, workers


def run_batch(inputs, outdir, settings: RunSettings, *, progress=None) -> BatchResult:
    """Run ``settings.ops`` over every image under ``inputs`` into ``outdir``.

    Parameters
    ----------
    inputs : list of path
        Files and folders (walked recursively).
    outdir : path
        Created if needed; must not be an input folder or inside one.
    settings : RunSettings
    progress : callable, optional
        Called as ``progress(done_tasks, total_tasks, megapixels_done)`` after each input.

    Returns
    -------
    BatchResult
        Items for the manifest; ``exit_code`` is 1 when any item failed.

    Raises
    ------
    PixelmillError
        For a usage error found before any work starts (missing input, unsafe output folder,
        an output that would overwrite an input, bad options).

    Notes
    -----
    With glibc, the first batch limits the process to one malloc arena
    (:func:`one_malloc_arena`), so photos freed on one worker thread are reused on the others.
    """
    s = settings
    if not s.ops:
        raise InvalidParameterError("no operation given; add --op (e.g. --op invert)")
    check_border(s.border)
    check_cval(s.cval)
    if s.policy is not None:
        check_policy(s.policy)
    if s.format is not None and s.format not in FORMAT_SUFFIX:
        raise InvalidParameterError(f"format {s.format!r} is not known; use one of {', '.join(FORMAT_SUFFIX)}")
    if s.policy == "float32" and s.format != "TIFF":
        raise InvalidParameterError("policy 'float32' keeps float results, which only TIFF holds: add --format tiff")
    if not 1 <= int(s.quality) <= 100:
        raise InvalidParameterError(f"quality must be 1..100, got {s.quality!r}")
    if s.engine not in ENGINES:
        get_engine_class(s.engine)  # raises the clear message
    labels = [op.label for op in s.ops]
    if len(set(labels)) != len(labels):
        raise InvalidParameterError(f"the same op is given twice: {labels!r}")

    outdir = Path(outdir)
    _check_outdir(outdir, inputs)
    files, ignored = discover(inputs)
    realpath = _RealPaths()
    input_reals = {realpath(p) for p, _ in files}
    several = len(s.ops) > 1
    journal = {} if s.overwrite else _load_journal(outdir)

    result = BatchResult(outdir=outdir, ignored=ignored)
    tasks: list[Task] = []
    claimed: dict[str, str] = {}
    across, across_workers, inner, inner_workers = _plan_schedule(s, len(files))
    result.schedule = {"across_images": {"engine": across, "workers": across_workers},
                       "within_image": {"engine": inner, "workers": inner_workers}}
    for path, rel in files:
        signature = _input_signature(path)
        steps = []
        for op in s.ops:
            out, rel_out = _output_path(outdir, rel, op, several, s.format)
            if realpath(out) in input_reals:
                raise UnsafeOutputError(
                    f"output {str(out)!r} would overwrite the input {str(path)!r}; choose another output folder"
                )
            step = Step(op, str(out), _key(signature, s.fingerprint(op)), rel_out)
            if rel_out in claimed:
                result.items.append(_record(path, step, "failed",
                                            f"output {rel_out!r} is also the output of {claimed[rel_out]!r}"))
                continue
            claimed[rel_out] = str(path)
            if _is_up_to_date(outdir, rel_out, step.key, journal):
                rec = dict(journal[rel_out], status="skipped", error=None, input=str(path), timings={})
                result.items.append(rec)
                continue
            steps.append(step)
        if steps:
            tasks.append(Task(str(path), tuple(steps), s, inner, inner_workers))

    outdir.mkdir(parents=True, exist_ok=True)
    one_malloc_arena()
    started = time.perf_counter()
    done_tasks, megapixels = 0, 0.0
    try:
        # Every output on disk before the batch says it is done: fsync'ed while the next images
        # run, not all after the last one.
        with open(outdir / JOURNAL_NAME, "a", encoding="utf-8") as journal_fh, \
                durable_in_background() as make_durable_soon, \
                make_engine(across, across_workers, **_engine_options(s)) as engine:
            for records in engine.map(run_task, tasks):
                for rec in records:
                    if rec["status"] == "done":
                        journal_fh.write(json.dumps(rec) + "\n")
                        make_durable_soon(outdir / rec["output"])
                megapixels += max((r.get("pixels") or 0 for r in records if r["status"] == "done"), default=0) / 1e6
                journal_fh.flush()
                result.items.extend(records)
                done_tasks += 1
                if progress:
                    progress(done_tasks, len(tasks), megapixels)
        make_durable([outdir / JOURNAL_NAME])
    finally:
        close_inner_engines()
    result.seconds = time.perf_counter() - started
    write_manifest(result, s)
    return result


@functools.cache
def one_malloc_arena() -> bool:
    """Have every thread of this process allocate from one glibc malloc arena; True if set.

    glibc gives each thread its own arena and keeps what a thread frees there for that
    thread: a photo's pixels freed on one worker thread are not reused by the other, so each
    arena grows to the largest photos it has seen and a thread-pool batch's peak grew batch
    after batch (dask's Gaussian batch of 200 photos: 199, 236, 271, 296 MB in four runs in
    one process; with one arena 190-199 MB, at the same speed). Python objects come from
    Python's own allocator, so the threads rarely call malloc and one arena costs no waiting.
    A ``MALLOC_ARENA_MAX`` in the environment is the user's choice and is left alone; other
    C libraries than glibc have no arenas to limit.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        import ctypes

        return ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 1) == 1
    except (OSError, AttributeError, TypeError):  # not glibc
        return False


_M_ARENA_MAX = -8  # glibc's malloc.h


def write_manifest(result: BatchResult, s: RunSettings) -> Path:
    """Write ``manifest.json`` atomically; items sorted by input then op order."""
    order = {op.label: i for i, op in enumerate(s.ops)}
    items = sorted(result.items, key=lambda r: (r["input"], order.get(r["op"], 0)))
    manifest = {
        "version": 1,
        "pixelmill": __version__,
        "outdir": str(result.outdir.resolve()),
        "ops": [op.label for op in s.ops],
        "settings": {
            "engine": s.engine, "workers": s.workers, "border": s.border, "cval": s.cval,
            "policy": s.policy, "format": s.format, "quality": s.quality,
        },
        "schedule": result.schedule,
        "summary": result.summary,
        "items": items,
    }
    path = result.outdir / MANIFEST_NAME
    atomic_write(path, lambda fh: fh.write(json.dumps(manifest, indent=1).encode("utf-8")))
    return path
