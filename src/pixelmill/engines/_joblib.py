"""The ``joblib`` engine: tiles of one image on joblib's ``loky`` workers, through memory maps.

The padded input is written once to an uncompressed ``.npy`` file that every worker opens with
``np.load(mmap_mode="r")``, and the output is a ``.npy`` memory map that workers open read-write
and fill tile by tile. Tasks carry file names and tile coordinates only -- never image data.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from ..errors import EngineError
from ..ops import Operation
from ..tiling import bank_layout, window
from ._base import TASKS_PER_WORKER, Engine, chunked, compute_tiles

__all__ = ["JoblibEngine"]


def _run_mapped_tiles(op: Operation, source: str, offset, target: str, tiles, flavour: str) -> None:
    """Worker task: compute ``tiles`` of ``op`` from the memory-mapped input into the output map."""
    padded = np.load(source, mmap_mode="r")
    out = np.load(target, mmap_mode="r+")
    try:
        compute_tiles(op, window(padded, *offset, op.halo, out.shape), out, tiles, flavour)
    finally:
        # Writes to a shared file mapping are visible to the parent's mapping at once; dropping
        # the maps here releases the files so the parent can delete them (Windows).
        del padded, out


def _worker_died(exc: BaseException) -> EngineError:
    # loky's message already names the exit codes of the workers that died.
    return EngineError(f"a joblib worker died: {exc}")


def _temp_root(nbytes: int, temp_folder: str | None) -> str | None:
    """Where the memory maps go: ``temp_folder``, ``$JOBLIB_TEMP_FOLDER``, RAM-backed
    ``/dev/shm`` when it has room (as joblib does), else the system temporary directory."""
    if temp_folder is not None:
        return temp_folder
    if os.environ.get("JOBLIB_TEMP_FOLDER"):
        return os.environ["JOBLIB_TEMP_FOLDER"]
    shm = "/dev/shm"
    try:
        if os.path.isdir(shm) and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 * nbytes:
            return shm
    except OSError:
        pass
    return None


class JoblibEngine(Engine):
    """Output tiles of one image computed by ``joblib.Parallel`` with the ``loky`` backend.

    The padded input is dumped once to an uncompressed ``.npy`` file and memory-mapped
    read-only by the workers; the output is a ``.npy`` memory map the workers write their
    tiles into. The parent copies the result out and deletes the temporary folder in a
    ``finally``. Bit-identical to the ``numpy`` engine.

    Parameters
    ----------
    workers : int, optional
        ``n_jobs``; defaults to the usable cores. ``workers=1`` computes the tiles one after
        the other in this process.
    tile_shape : (int, int), optional
        Output tile size; by default full-width row strips, several per worker. Small tiles
        are grouped into at most ``4 * workers`` tasks per operation.
    temp_folder : str, optional
        Folder for the memory-mapped files; by default ``$JOBLIB_TEMP_FOLDER``, else
        ``/dev/shm`` when it has room, else the system temporary folder.

    Notes
    -----
    loky keeps its workers between calls (its reusable executor), so they start once. Each
    worker is limited to one BLAS/OpenMP thread (``inner_max_num_threads=1``).
    :meth:`run_many` pads the image once (once per work dtype) and runs the tiles of all
    operations in a single ``Parallel`` call, each writing its own output map.
    :meth:`map` uses ``return_as="generator_unordered"`` (joblib >= 1.4).

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmill.ops import Invert
    >>> with JoblibEngine(workers=1) as eng:
    ...     eng.run(Invert(), np.array([[0, 1, 2]], dtype=np.uint8))
    array([[255, 254, 253]], dtype=uint8)
    """

    name = "joblib"
    flavour = "numpy"
    parallel = True

    def __init__(
        self,
        workers: int | None = None,
        tile_shape: tuple[int, int] | None = None,
        *,
        temp_folder: str | None = None,
    ):
        super().__init__(workers=workers, tile_shape=tile_shape)
        self.temp_folder = None if temp_folder is None else os.fspath(temp_folder)

    def _parallel(self, **kwargs):
        """A ``Parallel`` on loky with one inner thread per worker (the backend is bound when
        ``Parallel`` is built, so the ``parallel_config`` block need not outlive this call)."""
        import joblib

        with joblib.parallel_config(backend="loky", inner_max_num_threads=1):
            # max_nbytes=None: tasks carry file names, nothing large to auto-memmap.
            return joblib.Parallel(n_jobs=self.workers, max_nbytes=None, **kwargs)

    def execute(self, op: Operation, padded: np.ndarray, out: np.ndarray) -> None:
        """Fill ``out`` from ``padded`` with the loky workers, through memory-mapped files."""
        self._run_jobs([padded], [(op, (0, 0, 0), out)])

    def run_many(
        self, ops: list[Operation], image: np.ndarray, *, border: str = "nearest", cval: float = 0.0
    ) -> list[np.ndarray]:
        """A filter bank: the padded image is written once and every operation's tiles run in
        one ``Parallel`` call, each writing its own output map."""
        inputs, placements = bank_layout(ops, image, border, cval, self.flavour)
        outs = [np.empty(image.shape, dtype=op.out_dtype(image.dtype)) for op in ops]
        self._run_jobs(inputs, list(zip(ops, placements, outs)))
        return outs

    def _run_jobs(self, inputs: list[np.ndarray], jobs) -> None:
        jobs = [job for job in jobs if job[2].size]
        if not jobs:
            return
        if self.workers == 1:
            for op, (i, dr, dc), out in jobs:
                padded = window(inputs[i], dr, dc, op.halo, out.shape)
                compute_tiles(op, padded, out, self.tiles_for(out.shape, out.dtype.itemsize), self.flavour)
            return
        nbytes = sum(a.nbytes for a in inputs) + sum(job[2].nbytes for job in jobs)
        folder = tempfile.mkdtemp(prefix="pixelmill_joblib_", dir=_temp_root(nbytes, self.temp_folder))
        try:
            sources = []
            for k, arr in enumerate(inputs):
                path = os.path.join(folder, f"input{k}.npy")
                np.save(path, arr, allow_pickle=False)
                sources.append(path)
            tasks = []
            for n, (op, (i, dr, dc), out) in enumerate(jobs):
                target = os.path.join(folder, f"output{n}.npy")
                # Header and zero-filled (sparse) data; the workers open it read-write.
                created = np.lib.format.open_memmap(target, mode="w+", dtype=out.dtype, shape=out.shape)
                del created
                tiles = [(t.r0, t.r1, t.c0, t.c1) for t in self.tiles_for(out.shape, out.dtype.itemsize)]
                for chunk in chunked(tiles, TASKS_PER_WORKER * self.workers):
                    tasks.append((op, sources[i], (dr, dc), target, chunk))
            from joblib import delayed

            try:
                self._parallel()(delayed(_run_mapped_tiles)(*task, self.flavour) for task in tasks)
            except BrokenProcessPool as exc:  # loky's TerminatedWorkerError is one
                raise _worker_died(exc) from exc
            for n, (_, _, out) in enumerate(jobs):
                result = np.load(os.path.join(folder, f"output{n}.npy"), mmap_mode="r")
                np.copyto(out, result)
                del result
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def map(self, fn, items):
        """Yield ``fn(item)`` for each item as each finishes, one image per loky worker."""
        if self.workers == 1:
            yield from super().map(fn, items)
            return
        from joblib import delayed

        try:
            yield from self._parallel(return_as="generator_unordered")(delayed(fn)(item) for item in items)
        except BrokenProcessPool as exc:
            raise _worker_died(exc) from exc
