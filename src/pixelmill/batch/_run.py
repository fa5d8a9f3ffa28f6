"""Running operations over a library of images: walk, plan, skip/resume, isolate failures,
report progress, write the manifest.

One task per input file (see :mod:`._task`). Finished pairs are appended to a journal as they
complete, so a run that is killed -- even with SIGKILL -- resumes where it stopped: a rerun
skips outputs that exist and whose input and options are unchanged.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..engines import make_engine
from ..errors import UnsafeOutputError
from .._files import durable_in_background, make_durable
from ._manifest import (
    JOURNAL_NAME, MANIFEST_NAME, input_signature, is_up_to_date, load_journal, output_key, record, write_manifest,
)
from ._schedule import plan_schedule
from ._settings import RunSettings
from ._task import Step, Task, close_inner_engines, engine_options, run_task
from ._walk import RealPaths, check_outdir, discover, output_path

__all__ = ["BatchResult", "run_batch", "one_malloc_arena"]


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


def run_batch(inputs, outdir, settings: RunSettings, *, progress=None, notify=None) -> BatchResult:
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
    notify : callable, optional
        Called with a line of text when one-time work comes first (calibrating ``auto``).

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
    s.check()

    outdir = Path(outdir)
    check_outdir(outdir, inputs)
    files, ignored = discover(inputs)
    realpath = RealPaths()
    input_reals = {realpath(p) for p, _ in files}
    several = len(s.ops) > 1
    journal = {} if s.overwrite else load_journal(outdir)

    result = BatchResult(outdir=outdir, ignored=ignored)
    tasks: list[Task] = []
    claimed: dict[str, str] = {}
    schedule = plan_schedule(s, len(files), notify=notify)
    result.schedule = schedule.to_json()
    for path, rel in files:
        signature = input_signature(path)
        steps = []
        for op in s.ops:
            out, rel_out = output_path(outdir, rel, op, several, s.format)
            if realpath(out) in input_reals:
                raise UnsafeOutputError(
                    f"output {str(out)!r} would overwrite the input {str(path)!r}; choose another output folder"
                )
            step = Step(op, str(out), output_key(signature, s.fingerprint(op)), rel_out)
            if rel_out in claimed:
                result.items.append(record(path, step, "failed",
                                            f"output {rel_out!r} is also the output of {claimed[rel_out]!r}"))
                continue
            claimed[rel_out] = str(path)
            if is_up_to_date(outdir, rel_out, step.key, journal):
                rec = dict(journal[rel_out], status="skipped", error=None, input=str(path), timings={})
                result.items.append(rec)
                continue
            steps.append(step)
        if steps:
            tasks.append(Task(str(path), tuple(steps), s, schedule.within, schedule.within_workers))

    outdir.mkdir(parents=True, exist_ok=True)
    one_malloc_arena()
    started = time.perf_counter()
    done_tasks, megapixels = 0, 0.0
    try:
        # Every output on disk before the batch says it is done: fsync'ed while the next images
        # run, not all after the last one.
        with open(outdir / JOURNAL_NAME, "a", encoding="utf-8") as journal_fh, \
                durable_in_background() as make_durable_soon, \
                make_engine(schedule.across, schedule.across_workers, **engine_options(s)) as engine:
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
