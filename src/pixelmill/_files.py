"""Atomic and durable writing of every file pixelmill writes.

Images, the batch manifest and journal, the calibration cache, the contact sheet, the sample
library and the benchmark records all go through :func:`atomic_write`: the encoder writes a
hidden temporary file next to the target (``.pixelmill-<pid>-<random>.tmp``: a fixed length,
so any name that fits the filesystem fits, and the writer's pid, so leftovers of a killed writer
can be told from files being written, :func:`remove_stale_temporaries`), which is flushed,
fsync'ed and then renamed over the target, so a reader never sees a half-written file under
the final name. A batch writes with ``durable=False`` instead: the same temporary file and
rename, the disk write started but not waited for, and every output fsync'ed once, on a
background thread while the batch goes on (:func:`durable_in_background`;
:func:`make_durable` does the same in the caller).
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_write", "make_durable", "durable_in_background", "temporary_name", "remove_stale_temporaries",
           "TEMPORARY_PATTERN"]

#: The temporary files :func:`atomic_write` makes, exactly (group 1: the writer's pid).
TEMPORARY_PATTERN = re.compile(r"\.pixelmill-([0-9]{1,10})-[0-9a-f]{8}\.tmp")
#: A temporary file older than this is stale even when its pid is alive (reused, or another host's).
STALE_TEMPORARY_S = 24 * 3600


def temporary_name() -> str:
    """A fresh temporary file name: ``.pixelmill-<pid>-<8 hex>.tmp``, at most 34 bytes."""
    return f".pixelmill-{os.getpid()}-{secrets.token_hex(4)}.tmp"


def atomic_write(path, encode, *, durable: bool = True) -> None:
    """Run ``encode(fileobj)`` into a hidden temporary file, fsync it, rename it onto ``path``.

    The one way pixelmill writes any file: readers never see half of it, and a failure (or a
    kill) leaves at most a hidden ``.pixelmill-PID-XXXXXXXX.tmp`` beside it, never a partial
    ``path``. The temporary file is created exclusively (``O_EXCL``: never through a symlink),
    and the rename replaces a symlink standing at ``path`` instead of writing through it.

    ``durable=False`` starts the disk write but does not wait for it (no fsync): still atomic
    for every reader and after a crash of this process, but a power loss may leave the file
    empty. Batches write so and call :func:`make_durable` on their outputs at the end, so
    waiting for the disk does not stall the workers image after image.
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = folder / temporary_name()
        try:
            # "x": created here, exclusively; permissions as any new file (0o666 - umask)
            fh = open(tmp, "xb")
            break
        except FileExistsError:
            continue
    try:
        with fh:
            encode(fh)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
            elif hasattr(os, "posix_fadvise"):
                # Linux starts writing the dirty pages back now, asynchronously (and drops them
                # from the cache once written): the final fsync then finds little left to do.
                os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        _fsync_dir(folder)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists (another user's), or cannot tell: keep its file
    return True


def remove_stale_temporaries(folder, *, max_age_s: float = STALE_TEMPORARY_S) -> int:
    """Remove the temporary files of :func:`atomic_write` under ``folder`` (recursively, never
    through a symlink) whose writer is gone: its pid is not alive on this machine, or the file
    is older than ``max_age_s``. Only names matching :data:`TEMPORARY_PATTERN` exactly are
    touched. Returns how many were removed."""
    removed = 0
    now = time.time()
    for parent, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in filenames:
            m = TEMPORARY_PATTERN.fullmatch(name)
            if not m:
                continue
            path = os.path.join(parent, name)
            try:
                st = os.lstat(path)
                if not os.path.isfile(path) or os.path.islink(path):
                    continue
                if _pid_alive(int(m.group(1))) and now - st.st_mtime < max_age_s:
                    continue
                os.unlink(path)
                removed += 1
            except OSError:
                continue
    return removed


def make_durable(paths) -> None:
    """fsync each file of ``paths`` and each folder holding them, once: what
    :func:`atomic_write` skips with ``durable=False``. Files that are gone are skipped."""
    folders = {Path(path).parent for path in paths if _fsync(path)}
    for folder in folders:
        _fsync_dir(folder)


@contextmanager
def durable_in_background():
    """Yield ``add(path)``: each file handed over is fsync'ed on a background thread while
    the caller goes on, and when the block ends, the thread is waited for and the folders of
    those files are fsync'ed: :func:`make_durable`'s work, overlapped with the work that
    writes the files instead of after it. A block left by an exception drops what is left.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder, durable_in_background() as add:
    ...     for name in ("a.bin", "b.bin"):
    ...         atomic_write(Path(folder) / name, lambda fh: fh.write(b"x"), durable=False)
    ...         add(Path(folder) / name)
    """
    import queue

    # Fsyncs left until after the last file would stall the caller at the end; here the
    # thread mostly waits for the disk (os.fsync releases the GIL) while the caller encodes.
    pending: queue.SimpleQueue = queue.SimpleQueue()
    folders: set[Path] = set()
    stop, abandoned = object(), threading.Event()

    def sync_each():
        while (path := pending.get()) is not stop:
            if not abandoned.is_set() and _fsync(path):
                folders.add(Path(path).parent)

    thread = threading.Thread(target=sync_each, name="pixelmill-fsync", daemon=True)
    thread.start()
    try:
        yield pending.put
    except BaseException:
        abandoned.set()  # what is left is not worth the wait
        raise
    finally:
        pending.put(stop)
    thread.join()
    for folder in folders:
        _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable (POSIX); not possible on Windows, and not fatal.
    _fsync(folder)


def _fsync(path) -> bool:
    """fsync a file or folder by path; False when it cannot be opened (gone, or Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
    return True

