"""Shared-memory segments for the processes engine: the parent's pool of segments, reused from
call to call, and the workers' mappings of them.

Every segment is named ``pixelmill_<pid>_<random>`` (the parent's pid). Only the parent owns,
unlinks and -- if it is killed -- has the resource tracker clean them up; workers attach
without registering (see :func:`attach`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import threading
import weakref
from collections import deque
from multiprocessing import shared_memory

import numpy as np

from ..errors import EngineError

__all__ = ["SHM_PREFIX", "Segments", "attach", "mapped", "check_room"]

#: Every segment this engine creates is named ``pixelmill_<pid>_<random>`` (pid of the parent),
#: so leftovers can be traced to the process that made them.
SHM_PREFIX = "pixelmill_"


# -- in the worker processes -----------------------------------------------------------------


def attach(name: str) -> shared_memory.SharedMemory:
    """Attach to a segment the parent owns, without making this process an owner.

    Before Python 3.13 attaching registers the segment with the resource tracker, which the
    workers share with the parent. Unregistering it afterwards would also drop the parent's
    registration (the tracker keeps a set of names, so the parent's own unlink would then make
    it print a KeyError); a worker with a tracker of its own would unlink the segment when it
    exits and warn about a "leak". So the registration is skipped while attaching: only the
    parent registers and unlinks. Workers run one task at a time, so the swap is not racy.
    """
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, track=False)
    from multiprocessing import resource_tracker

    register = resource_tracker.register

    def register_unless_shm(name, rtype):
        if rtype != "shared_memory":
            register(name, rtype)

    resource_tracker.register = register_unless_shm
    try:
        return shared_memory.SharedMemory(name=name)
    finally:
        resource_tracker.register = register


def _close(shm: shared_memory.SharedMemory) -> None:
    try:
        shm.close()
    except BufferError:
        # An array view is still alive (e.g. held by a traceback); the mapping goes when it does.
        pass


#: This worker's mappings of the parent's segments, by name (see :class:`_Segments`).
_MAPPED: dict[str, shared_memory.SharedMemory] = {}


def mapped(name: str, live: tuple[str, ...]) -> shared_memory.SharedMemory:
    """The segment ``name``, mapped once per worker and kept: a fresh mapping would fault in
    every page it touches again. Mappings of segments no longer in ``live`` (the parent's
    segments now) are closed, so the worker holds on to nothing the parent has dropped."""
    for old in [n for n in _MAPPED if n not in live]:
        _close(_MAPPED.pop(old))
    if name not in _MAPPED:
        _MAPPED[name] = attach(name)
    return _MAPPED[name]


# -- in the parent ---------------------------------------------------------------------------


class Segments:
    """The shared-memory segments of one engine, reused from call to call.

    A shared-memory page is expensive to fault in: POSIX shared memory is tmpfs, which gets no
    transparent huge pages, so a fresh segment costs many times an ordinary array's first-touch
    faults. So the segments of a call are kept for the
    next one (and workers keep their mappings, see :func:`mapped`): an image of the same size
    or smaller then costs one copy in and one copy out, no faults. Idle segments are kept up
    to twice the size of the last call's; :meth:`release` unlinks them all (on close). A call
    that fails unlinks its own segments. Thread-safe: calls from several threads each take
    their own segments.

    A call's output segment is *lent* to the caller as the result array (:meth:`lend`): copying
    a large float32 result out into a fresh array is a serial part of the call, done by the parent
    alone. It comes back when the array (and every view of
    it, which keeps it alive) is garbage-collected, and serves later calls like any idle one.
    """

    #: Idle segments kept after a call: up to this many times that call's bytes.
    KEEP = 2

    def __init__(self):
        self._lock = threading.Lock()
        self._idle: list[shared_memory.SharedMemory] = []  # most recently used first
        self._busy: list[shared_memory.SharedMemory] = []
        self._lent: list[shared_memory.SharedMemory] = []  # results the caller holds
        # Appended to by the finalizers of lent results, which run wherever the last
        # reference dies (any thread, or inside a garbage collection while this lock is held),
        # so they only queue; the queue is emptied under the lock by the next call.
        self._returned: deque = deque()
        self._orphans: set[str] = set()  # names of results lent when the engine closed

    def new(self, shape, dtype, taken: list) -> tuple[np.ndarray, tuple]:
        """A segment for ``shape`` x ``dtype`` (the smallest idle one that holds it, or a new
        one), recorded in the caller's ``taken``; returns a view and the workers' spec."""
        dtype = np.dtype(dtype)
        nbytes = max(1, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
        with self._lock:
            self._take_back()
            fits = [shm for shm in self._idle if shm.size >= nbytes]
            shm = min(fits, key=lambda m: m.size) if fits else self._create(nbytes)
            if fits:
                self._idle.remove(shm)
            self._busy.append(shm)
        taken.append(shm)
        return np.ndarray(shape, dtype=dtype, buffer=shm.buf), (shm.name, tuple(shape), dtype.str)

    @staticmethod
    def _create(nbytes: int) -> shared_memory.SharedMemory:
        while True:
            name = f"{SHM_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
            try:
                return shared_memory.SharedMemory(name=name, create=True, size=nbytes)
            except FileExistsError:
                continue

    def lend(self, shm: shared_memory.SharedMemory, result: np.ndarray) -> None:
        """``shm`` (of the caller's ``taken``) is ``result``'s memory from now on: :meth:`done`
        keeps it out of the idle segments until ``result`` has been garbage-collected."""
        with self._lock:
            self._busy.remove(shm)
            self._lent.append(shm)
        weakref.finalize(result, self._give_back, shm)

    def _give_back(self, shm: shared_memory.SharedMemory) -> None:
        if shm.name in self._orphans:  # its name went when the engine closed
            self._orphans.discard(shm.name)
            _close(shm)
        else:
            self._returned.append(shm)

    def _take_back(self) -> None:
        """Lent segments whose results are gone become idle (most recent first); with the lock."""
        while self._returned:
            shm = self._returned.popleft()
            if shm in self._lent:
                self._lent.remove(shm)
                self._idle.insert(0, shm)
            else:  # came back while the engine was closing
                _close(shm)

    def idle_bytes(self) -> int:
        with self._lock:
            self._take_back()
            return sum(shm.size for shm in self._idle)

    def names(self) -> tuple[str, ...]:
        """Every segment alive now (workers keep mappings of these only)."""
        with self._lock:
            return tuple(shm.name for shm in self._idle + self._busy + self._lent)

    def done(self, taken: list) -> None:
        """A call succeeded: its segments become idle; older idle ones beyond the limit go."""
        budget = self.KEEP * sum(shm.size for shm in taken)
        with self._lock:
            self._take_back()
            taken = [shm for shm in taken if shm in self._busy]  # the lent ones stay lent
            for shm in taken:
                self._busy.remove(shm)
            keep, drop = [], []
            for shm in taken + self._idle:
                (keep if sum(m.size for m in keep) + shm.size <= budget else drop).append(shm)
            self._idle = keep
        self._unlink(drop)

    def drop(self, taken: list) -> None:
        """A call failed: unlink its segments (those lent already come back with their arrays)."""
        with self._lock:
            taken = [shm for shm in taken if shm in self._busy]
            for shm in taken:
                self._busy.remove(shm)
        self._unlink(taken)

    def release(self) -> None:
        """Close and unlink every idle segment; unlink the names of lent ones, whose memory
        lasts until their results are gone (an unlinked segment stays mapped)."""
        with self._lock:
            self._take_back()
            idle, self._idle = self._idle, []
            lent, self._lent = self._lent, []
            self._orphans.update(shm.name for shm in lent)
        self._unlink(idle)
        for shm in lent:
            self._unlink_name(shm)

    @staticmethod
    def _unlink(shms) -> None:
        for shm in shms:
            try:
                _close(shm)
            finally:
                Segments._unlink_name(shm)

    @staticmethod
    def _unlink_name(shm: shared_memory.SharedMemory) -> None:
        try:
            shm.unlink()
        except FileNotFoundError:
            pass


def check_room(nbytes: int) -> None:
    """Refuse, with a clear error, segments larger than the free space of ``/dev/shm``.

    Creating a segment only reserves address space; writing past what the tmpfs can hold kills
    the process with SIGBUS. Containers often mount a small ``/dev/shm`` (64 MB in Docker).
    """
    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:  # not Linux, or no /dev/shm: nothing to check
        return
    if nbytes > free:
        raise EngineError(
            f"the processes engine needs {nbytes / 2**20:.0f} MiB of shared memory but /dev/shm "
            f"has {free / 2**20:.0f} MiB free; enlarge it (docker run --shm-size) or use "
            "engine='threads' or 'joblib'"
        )
