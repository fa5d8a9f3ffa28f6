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

from ..engines import make_engine
from ..errors import BatchInterrupted, UnsafeOutputError
from .._files import durable_in_background, make_durable, remove_stale_temporaries
from ._lock import outdir_lock
from ._manifest import (
    JOURNAL_NAME, MANIFEST_NAME, earlier_outputs, input_signature, is_up_to_date, load_journal, open_journal,
    output_key, record, write_manifest,
)
from ._schedule import plan_run
from ._settings import RunSettings
from ._task import Step, Task, close_inner_engines, engine_options, run_task
from ._walk import RealPaths, check_outdir, discover, escapes_outdir, output_path, prepare_outdir

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
            "stopped": self.stopped,
            "seconds": round(self.seconds, 3),
            "megapixels_done": round(pixels / 1e6, 3),
            "megapixels_per_second": round(pixels / 1e6 / self.seconds, 3) if self.seconds > 0 else None,
            "manifest": str(self.outdir / MANIFEST_NAME),
        }

    @property
    def exit_code(self) -> int:
        return 1 if self.count("failed") or self.count("not_done") or self.manifest_error else 0


def run_batch(inputs, outdir, settings: RunSettings, *, progress=None, notify=None, wait: bool = False) -> BatchResult:
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
    s = settings
    s.check()

    outdir = Path(outdir)
    check_outdir(outdir, inputs)
    files, ignored = discover(inputs)
    _check_no_input_overwritten(files, outdir, s)  # before OUTDIR (maybe an input's folder) is touched
    prepare_outdir(outdir)
    with outdir_lock(outdir, wait=wait), _sigterm_as_interrupt():
        remove_stale_temporaries(outdir)
        return _run_locked(files, ignored, outdir, s, progress, notify)


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


def _run_locked(files, ignored, outdir: Path, s: RunSettings, progress, notify) -> BatchResult:
    realpath = RealPaths()
    out_real = os.path.realpath(outdir)
    several = len(s.ops) > 1
    journal = load_journal(outdir)
    previous = {} if s.overwrite else journal

    result = BatchResult(outdir=outdir, ignored=ignored, journal_ignored=journal.ignored)
    tasks: list[Task] = []
    claimed: dict[str, str] = {}
    schedule, notes = plan_run(s, len(files), notify=notify)
    result.schedule = schedule.to_json()
    if notes:
        result.schedule["notes"] = notes
    for path, rel in files:
        signature = input_signature(path)
        steps = []
        for op in s.ops:
            out, rel_out = output_path(outdir, rel, op, several, s.format)
            step = Step(op, str(out), output_key(signature, s.fingerprint(op)), rel_out)
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
            tasks.append(Task(str(path), tuple(steps), s, schedule.within, schedule.within_workers))

    one_malloc_arena()
    options = engine_options(s)
    if "scheduler" in options:
        options["connect_timeout"] = s.scheduler_timeout
    started = time.perf_counter()
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
