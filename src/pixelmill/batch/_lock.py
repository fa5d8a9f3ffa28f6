"""One run at a time per output folder: an exclusive lock on ``OUTDIR/.pixelmill.lock``.

Two runs into one folder would overwrite each other's outputs and journal entries, and each
manifest would then call "done" files that hold the other run's result. A run holds the lock
from before it reads the journal until its manifest is written; the lock file holds the
holder's pid, so a second run can say which process it waits for. The lock is the operating
system's (``flock``; ``filelock`` where there is no ``fcntl``), so it goes with the process:
a killed run never leaves a lock behind.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import OutputFolderBusyError, UnsafeOutputError

__all__ = ["LOCK_NAME", "outdir_lock"]

LOCK_NAME = ".pixelmill.lock"


@contextmanager
def outdir_lock(outdir: Path, *, wait: bool = False):
    """Hold the exclusive lock of ``outdir`` for the block.

    Parameters
    ----------
    wait : bool
        Wait for a run that holds it to finish, instead of raising at once.

    Raises
    ------
    OutputFolderBusyError
        When another process holds the lock (the message names its pid) and ``wait`` is False.
    UnsafeOutputError
        When the lock file cannot be opened (it is a symlink, or the folder is not writable).
    """
    try:
        import fcntl
    except ImportError:  # Windows
        yield from _filelock(outdir, wait)
        return
    path = Path(outdir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        raise UnsafeOutputError(f"cannot open the lock file {str(path)!r} ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise OutputFolderBusyError(
                f"output folder {str(outdir)!r} is in use by another pixelmill run "
                f"({_holder(fd)}); wait for it to finish, or pass --wait"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "a process that has not yet written its pid"


def _filelock(outdir, wait):
    from filelock import FileLock, Timeout

    lock = FileLock(str(Path(outdir) / LOCK_NAME), timeout=-1 if wait else 0)
    try:
        lock.acquire()
    except Timeout:
        raise OutputFolderBusyError(
            f"output folder {str(outdir)!r} is in use by another pixelmill run; wait for it to finish, or pass --wait"
        ) from None
    try:
        yield
    finally:
        lock.release()

