"""Progress for long batches: a rich bar on a terminal, plain periodic lines elsewhere."""

from __future__ import annotations

import sys
import time


def eta_seconds(done: int, total: int, now: float, first: tuple[float, int] | None) -> float:
    """Seconds left, from the pace since ``first`` (``(time, done)`` when the first images
    had finished): the first image of a run may carry one-time work (numba compiling for a
    new kind of image) that the others do not, so it is not a sample of the per-image time.
    NaN until there is a pace to go by."""
    if first is None or done <= first[1]:
        return float("nan")
    return (total - done) * (now - first[0]) / (done - first[1])


class PlainProgress:
    """One line every ``every`` seconds (and at the end) on stderr, for CI logs and pipes.

    The clock of the rate and the ETA starts when the images start (the batch calls with
    ``done=0`` once its one-time work, said by :meth:`note`, is behind it)."""

    def __init__(self, label: str, *, every: float = 5.0, stream=None):
        self.label = label
        self.every = every
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.last = self.start
        self.first: tuple[float, int] | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def note(self, text: str) -> None:
        """One line about one-time work (calibration, compiling), not an image."""
        print(f"{self.label}: {text}", file=self.stream, flush=True)

    def __call__(self, done: int, total: int, megapixels: float | None) -> None:
        now = time.perf_counter()
        if done == 0:
            self.start = self.last = now
            self.first = None
            return
        if self.first is None:
            self.first = (now, done)
        if now - self.last < self.every and done != total:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        eta = eta_seconds(done, total, now, self.first)
        rate = f"{megapixels / elapsed:.1f} MP/s, " if megapixels is not None else ""
        left = ("ETA 0 s" if done >= total else "ETA after the next image" if eta != eta
                else f"ETA {eta:.0f} s")
        print(
            f"{self.label}: {done}/{total} images, {rate}elapsed {elapsed:.0f} s, {left}",
            file=self.stream,
            flush=True,
        )


class RichProgress:
    """A rich progress bar: images done/total, megapixels per second, ETA."""

    def __init__(self, label: str):
        from rich.progress import (
            BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("images"),
            TextColumn("{task.fields[mps]:.1f} MP/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.label = label
        self.task = None
        self.start = time.perf_counter()

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def note(self, text: str) -> None:
        """One line about one-time work, printed above the bar."""
        self.progress.console.print(text, markup=False, highlight=False)

    def __call__(self, done: int, total: int, megapixels: float) -> None:
        if done == 0 or self.task is None:
            # The bar (its clock and its ETA) starts with the images, after the one-time work;
            # rich's ETA goes by the pace between updates, so the first image's one-time cost
            # is not counted as an image's.
            self.start = time.perf_counter()
            if self.task is None:
                self.task = self.progress.add_task(self.label, total=total, mps=0.0)
            else:
                self.progress.reset(self.task, total=total)
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.progress.update(self.task, completed=done, total=total, mps=(megapixels or 0.0) / elapsed)


class NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def note(self, text):
        pass

    def __call__(self, done, total, megapixels):
        pass


def make_progress(label: str, *, quiet: bool = False, stream=None):
    """The right reporter for where stderr goes."""
    stream = stream or sys.stderr
    if quiet:
        return NoProgress()
    if stream.isatty():
        return RichProgress(label)
    return PlainProgress(label, stream=stream)
