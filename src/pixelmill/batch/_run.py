"""Running operations over a library of images: walk, plan, skip/resume, isolate failures,
report progress, write the manifest.

One task per input file (see :mod:`._task`). Finished pairs are appended to a journal as they
complete, so a run that is killed -- even with SIGKILL -- resumes where it stopped: a rerun
skips outputs that exist and whose input and options are unchanged.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..engines import load_calibration, make_engine
from ..engines._calibration import calibration_seconds
from ..errors import BatchInterrupted, InvalidParameterError, UnsafeOutputError
from .._files import durable_in_background, make_durable, remove_stale_temporaries
from ._lock import outdir_lock
from ._manifest import (
    JOURNAL_NAME, MANIFEST_NAME, earlier_outputs, input_signature, is_up_to_date, load_journal, open_journal,
    output_key, record, write_manifest,
)
from ._schedule import plan_run, work_classes
from ._settings import RunSettings
from ._task import Step, Task, close_inner_engines, engine_options, prepare_kernels, run_task
from ._walk import RealPaths, check_outdir, escapes_outdir, output_path, prepare_outdir, select

__all__ = ["BatchResult", "run_batch", "one_malloc_arena"]


@dataclass
class BatchResult:
    outdir: Path
    items: list[dict] = field(default_factory=list)
    ignored: int = 0
    seconds: float = 0.0
    #: How the work ran: across-images engine and workers, within-image engine and workers.
    schedule: dict = field(default_factory=dict)
    #: Outputs earlier runs wrote into ``outdir`` that this run left alone (journal records).
    earlier: list[dict] = field(default_factory=list)
    #: Journal lines that were not valid records (skipped; their outputs are redone).
    journal_ignored: int = 0
    #: Why the run stopped before the end (a full disk), or None.
    stopped: str | None = None
    #: Why ``manifest.json`` could not be written (one line), or None.
    manifest_error: str | None = None
    #: Seconds of one-time work inside ``seconds`` (measuring the calibration, preparing
    #: numba's kernels), by what it was: not per-image work.
    one_time: dict = field(default_factory=dict)
    #: Files reached more than once (processed once); files left out by include/exclude.
    duplicates: int = 0
    excluded: int = 0
    #: True for a dry run: the items say what would be done, nothing was written.
    dry_run: bool = False

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
            "not_done": self.count("not_done"),
            "ignored_non_images": self.ignored,
            "ignored_journal_lines": self.journal_ignored,
            "earlier_outputs": len(self.earlier),
            "duplicate_inputs": self.duplicates,
            "excluded": self.excluded,
            "stopped": self.stopped,
            "seconds": round(self.seconds, 3),
            "one_time_seconds": {k: round(v, 3) for k, v in self.one_time.items()},
            "megapixels_done": round(pixels / 1e6, 3),
            # Per-image speed: one-time work (calibration, compiling) is not the images'.
            "megapixels_per_second": round(pixels / 1e6 / self.image_seconds, 3) if self.image_seconds > 0 else None,
            "manifest": str(self.outdir / MANIFEST_NAME),
        }

    @property
    def image_seconds(self) -> float:
        """``seconds`` without the one-time work."""
        return max(0.0, self.seconds - sum(self.one_time.values()))

    @property
    def failures(self) -> list[dict]:
        """The failed items, ``{"input", "op", "output", "reason"}`` each, in order."""
        return [{"input": i["input"], "op": i["op"], "output": i["output"], "reason": i["error"]}
                for i in self.items if i["status"] == "failed"]

    @property
    def exit_code(self) -> int:
        return 1 if self.count("failed") or self.count("not_done") or self.manifest_error else 0


def run_batch(inputs, outdir, settings: RunSettings, *, progress=None, notify=None, wait: bool = False,
              include=(), exclude=(), files_from=None, dry_run: bool = False) -> BatchResult:
    """Run ``settings.ops`` over every image under ``inputs`` into ``outdir``.

    Parameters
    ----------
    inputs : list of path
        Files and folders (walked recursively).
    outdir : path
        Created if needed; must not be an input folder or inside one, and must be writable.
    settings : RunSettings
    progress : callable, optional
        Called as ``progress(done_tasks, total_tasks, megapixels_done)`` after each input.
    notify : callable, optional
        Called with a line of text when one-time work comes first (calibrating ``auto``), or
        when a request is lowered (workers capped to what the machine holds).
    wait : bool
        When another run holds ``outdir``, wait for it instead of raising.
    include, exclude, files_from
        Which files to take (see :func:`~._walk.select`).
    dry_run : bool
        Decide every item and write nothing (not ``outdir``, its journal nor its lock): the
        items' status is ``would-do``, ``skip`` (up to date) or ``refuse`` (with the reason).

    Returns
    -------
    BatchResult
        Items for the manifest; ``exit_code`` is 1 when any item failed or was not done, or the
        manifest could not be written (``manifest_error`` says why).

    Raises
    ------
    PixelmillError
        For a usage error found before any work starts (missing input, unsafe, unwritable or
        busy output folder, an output that would overwrite an input, bad options).
    BatchInterrupted
        On SIGINT (Ctrl-C) or SIGTERM during the work, after the manifest of what was done is
        written (finished items, the rest ``not_done``).

    Notes
    -----
    Only one run at a time writes into one output folder (:func:`~._lock.outdir_lock`). An
    output whose real folder is outside ``outdir`` (a symlinked folder in it) is refused, as a
    failed item. A full disk fails the item it hit and stops the run: what is left is
    ``not_done``, and a rerun resumes. While it runs in the main thread, SIGTERM is handled
    like Ctrl-C unless the application installed a handler of its own.

    With glibc, the first batch limits the process to one malloc arena
    (:func:`one_malloc_arena`), so photos freed on one worker thread are reused on the others.
    """
    started = time.perf_counter()  # the whole run's time: walking and one-time work included
    s = settings
    s.check()

    outdir = Path(outdir)
    check_outdir(outdir, inputs)
    selection = select(inputs, include=include, exclude=exclude, files_from=files_from)
    _check_float32_has_a_tiff(selection, s)
    _check_no_input_overwritten(selection.files, outdir, s)  # before OUTDIR (maybe an input's folder) is touched
    if dry_run:
        return _dry_run(selection, outdir, s, started)
    prepare_outdir(outdir)
    with outdir_lock(outdir, wait=wait), _sigterm_as_interrupt():
        remove_stale_temporaries(outdir)
        return _run_locked(selection, outdir, s, progress, notify, started)


def _check_float32_has_a_tiff(selection, s: RunSettings) -> None:
    """``--policy float32`` without ``--format``: each TIFF input keeps float results, any
    other input fails as an item; when no input at all is a TIFF it is a usage error."""
    if s.policy != "float32" or s.format is not None or not selection.files:
        return
    if all(s.float32_refusal(path) for path, _ in selection.files):
        raise InvalidParameterError(
            "policy 'float32' keeps float results, which only TIFF holds, and none of the inputs is a "
            "TIFF: add --format tiff"
        )


def _check_no_input_overwritten(files, outdir: Path, s: RunSettings) -> None:
    realpath = RealPaths()
    input_reals = {realpath(p) for p, _ in files}
    several = len(s.ops) > 1
    for path, rel in files:
        for op in s.ops:
            out, _ = output_path(outdir, rel, op, several, s.format)
            if realpath(out) in input_reals:
                raise UnsafeOutputError(
                    f"output {str(out)!r} would overwrite the input {str(path)!r}; choose another output folder"
                )


def _plan_items(selection, outdir: Path, s: RunSettings, previous, result: BatchResult, within=("numpy", 1)):
    """Decide every (input, op) item: the failed and skipped ones go into ``result.items``;
    returns the tasks to run and the outputs this run claims."""
    realpath = RealPaths()
    out_real = os.path.realpath(outdir)
    several = len(s.ops) > 1
    tasks: list[Task] = []
    claimed: dict[str, str] = {}
    for path, rel, reason in selection.refused:
        for op in s.ops:
            out, rel_out = output_path(outdir, rel, op, several, s.format)
            result.items.append(record(path, Step(op, str(out), "", rel_out), "failed", reason))
    for path, rel in selection.files:
        signature = input_signature(path)
        refusal = s.float32_refusal(path)
        steps = []
        for op in s.ops:
            out, rel_out = output_path(outdir, rel, op, several, s.format)
            step = Step(op, str(out), output_key(signature, s.fingerprint(op)), rel_out)
            if refusal:
                result.items.append(record(path, step, "failed", refusal))
                continue
            if rel_out in claimed:
                result.items.append(record(path, step, "failed",
                                            f"output {rel_out!r} is also the output of {claimed[rel_out]!r}"))
                continue
            claimed[rel_out] = str(path)
            escape = escapes_outdir(out, out_real, realpath)
            if escape:
                result.items.append(record(path, step, "failed", escape))
                continue
            if is_up_to_date(outdir, rel_out, step.key, previous):
                rec = dict(previous[rel_out], status="skipped", error=None, input=str(path), timings={})
                result.items.append(rec)
                continue
            steps.append(step)
        if steps:
            tasks.append(Task(str(path), tuple(steps), s, *within))
    return tasks, claimed


#: A dry run's name for each status a run would give.
DRY_RUN_STATUS = {"failed": "refuse", "skipped": "skip", "done": "would-do"}


def _dry_run(selection, outdir: Path, s: RunSettings, started: float) -> BatchResult:
    journal = load_journal(outdir) if outdir.is_dir() else {}
    previous = {} if s.overwrite else journal
    result = BatchResult(outdir=outdir, ignored=selection.ignored, duplicates=selection.duplicates,
                         excluded=selection.excluded, dry_run=True)
    tasks, _ = _plan_items(selection, outdir, s, previous, result)
    for item in result.items:
        item["status"] = DRY_RUN_STATUS[item["status"]]
    for task in tasks:
        result.items.extend(record(task.input, st, "would-do", None) for st in task.steps)
    result.items.sort(key=lambda r: r["input"])
    result.seconds = time.perf_counter() - started
    return result


def _run_locked(selection, outdir: Path, s: RunSettings, progress, notify, started: float) -> BatchResult:
    journal = load_journal(outdir)
    previous = {} if s.overwrite else journal
    result = BatchResult(outdir=outdir, ignored=selection.ignored, journal_ignored=journal.ignored,
                         duplicates=selection.duplicates, excluded=selection.excluded)
    t0 = time.perf_counter()
    measured = calibration_seconds()
    schedule, notes = plan_run(s, len(selection.files), notify=notify)
    result.schedule = schedule.to_json()
    if notes:
        result.schedule["notes"] = notes
    tasks, claimed = _plan_items(selection, outdir, s, previous, result,
                                 within=(schedule.within, schedule.within_workers))
    if tasks and "auto" in (schedule.within, schedule.across):
        # Once, before the images (auto would, in the first one), for the work this run needs.
        load_calibration(notify=notify, classes=work_classes(s.ops))
    if calibration_seconds() > measured:
        result.one_time["calibration"] = time.perf_counter() - t0

    one_malloc_arena()
    if tasks:
        kernels_s = prepare_kernels(schedule, s, notify=notify)
        if kernels_s is not None:
            result.one_time["numba kernels"] = kernels_s
    options = engine_options(s)
    if "scheduler" in options:
        options["connect_timeout"] = s.scheduler_timeout
    done_tasks, megapixels = 0, 0.0
    finished: set[str] = set()
    interrupted = None
    try:
        try:
            # Every output on disk before the batch says it is done: fsync'ed while the next
            # images run, not all after the last one.
            with open_journal(outdir) as journal_append, \
                    durable_in_background() as make_durable_soon, \
                    make_engine(schedule.across, schedule.across_workers, **options) as engine:
                if progress and tasks:
                    progress(0, len(tasks), 0.0)  # the images start: one-time work is behind
                for records in engine.map(run_task, tasks):
                    done = [rec for rec in records if rec["status"] == "done"]
                    for rec in done:
                        make_durable_soon(outdir / rec["output"])
                    megapixels += max((r.get("pixels") or 0 for r in done), default=0) / 1e6
                    result.items.extend(records)
                    finished.update(rec["input"] for rec in records)
                    done_tasks += 1
                    full = next((r["error"] for r in records if _disk_full(r.get("error"))), None)
                    try:
                        journal_append(done)
                    except OSError as exc:
                        if exc.errno not in _DISK_FULL:
                            raise
                        full = full or f"journal: {exc}"
                    if progress:
                        progress(done_tasks, len(tasks), megapixels)
                    if full:
                        # Every next output would fail the same way: stop, and say so once.
                        result.stopped = f"the output folder's disk is full ({full}); free space and run again to resume"
                        break
            make_durable([outdir / JOURNAL_NAME])
        finally:
            close_inner_engines()
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (see _sigterm_as_interrupt)
        interrupted = getattr(exc, "signal", signal.SIGINT)
    if interrupted or result.stopped:
        why = (f"not done: the run was interrupted ({signal.Signals(interrupted).name})" if interrupted
               else "not done: the run stopped when the disk was full")
        for task in tasks:
            if task.input not in finished:
                result.items.extend(record(task.input, st, "not_done", why) for st in task.steps)
    result.seconds = time.perf_counter() - started
    result.earlier = earlier_outputs(outdir, journal, set(claimed))
    try:
        write_manifest(result, s)
    except OSError as exc:
        result.manifest_error = f"could not write the manifest {str(outdir / MANIFEST_NAME)!r}: {exc}"
    if interrupted:
        raise BatchInterrupted(interrupted, result, result.manifest_error)
    return result


#: errno values meaning the output's filesystem has no room left.
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_DISK_FULL_TEXT = tuple(f"[Errno {code}]" for code in _DISK_FULL)


def _disk_full(error: str | None) -> bool:
    """True when an item's failure (its one-line reason) is a full disk or quota."""
    return bool(error) and any(text in error for text in _DISK_FULL_TEXT)


class _Terminated(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signal = signum


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises in the main thread as Ctrl-C does (so the batch writes its manifest),
    unless this is not the main thread or the application handles SIGTERM itself."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield
        return

    def handler(signum, frame):
        raise _Terminated(signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@functools.cache
def one_malloc_arena() -> bool:
    """Have every thread of this process allocate from one glibc malloc arena; True if set.

    glibc gives each thread its own arena and keeps what a thread frees there for that
    thread: a photo's pixels freed on one worker thread are not reused by the other, so each
    arena grows to the largest photos it has seen and a thread-pool batch's peak grows batch
    after batch. Python objects come from
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
