"""One run at a time per output folder: an exclusive lock on ``OUTDIR/.pixelmill.lock``.

Two runs into one folder would overwrite each other's outputs and journal entries, and each
manifest would then call "done" files that hold the other run's result. A run holds the lock
from before it reads the journal until its manifest is written. The lock is ``filelock``'s
(the operating system's ``flock`` where there is one), so it goes with the process: a killed
run never leaves a lock behind. The holder writes its pid beside it (``.pixelmill.lock.pid``),
so a second run can say which process it waits for.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from .._files import atomic_write
from ..errors import OutputFolderBusyError, UnsafeOutputError

__all__ = ["LOCK_NAME", "PID_NAME", "outdir_lock"]

LOCK_NAME = ".pixelmill.lock"
PID_NAME = ".pixelmill.lock.pid"


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
        When the lock file cannot be opened (the folder is not writable).
    """
    from filelock import FileLock, Timeout

    path = Path(outdir) / LOCK_NAME
    pid_path = Path(outdir) / PID_NAME
    # thread_local=False: the lock is the process's, whichever thread releases it.
    lock = FileLock(str(path), timeout=-1 if wait else 0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise OutputFolderBusyError(
            f"output folder {str(outdir)!r} is in use by another pixelmill run "
            f"({_holder(pid_path)}); wait for it to finish, or pass --wait"
        ) from None
    except OSError as exc:
        raise UnsafeOutputError(f"cannot open the lock file {str(path)!r} ({exc.strerror or exc})") from None
    try:
        try:
            atomic_write(pid_path, lambda fh: fh.write(f"{os.getpid()}\n".encode()))
        except OSError:
            pass  # the pid only improves a second run's message
        yield
    finally:
        try:
            os.unlink(pid_path)
        except OSError:
            pass
        lock.release()


def _holder(pid_path: Path) -> str:
    try:
        text = pid_path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "a process that has not yet written its pid"
