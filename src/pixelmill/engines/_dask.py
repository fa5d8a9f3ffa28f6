"""The ``dask`` engine: dask.array ``map_overlap`` within an image, dask.bag or futures across a library.

Runs on a local dask scheduler (threads or processes) or on a running ``distributed`` cluster.
dask and distributed are imported lazily, inside the methods that need them.
"""

from __future__ import annotations

import queue
import socket
import threading

import numpy as np

from .. import tiling
from ..errors import ClusterConnectionError, InvalidParameterError
from ..ops import Operation
from ._base import Engine

__all__ = ["DaskEngine"]

LOCAL_SCHEDULERS = ("threads", "processes")

#: Output bytes per ``map_overlap`` chunk when no ``tile_shape`` is given.
DASK_CHUNK_BYTES = 4 << 20


def _compute_block(block: np.ndarray, *, op: Operation, halo, out_dtype, flavour: str) -> np.ndarray:
    # One tile: the block is the tile plus its halo (the border rule was applied once, to the
    # whole image), so the arithmetic per pixel is the untiled computation's.
    top, bottom, left, right = halo
    out = np.empty(
        (block.shape[0] - top - bottom, block.shape[1] - left - right) + block.shape[2:], dtype=out_dtype
    )
    op.compute(block, out, flavour)
    return out


def _probe_scheduler(address: str, timeout: float) -> str | None:
    """None when ``address`` answers a dask ``identity`` request within ``timeout`` seconds as
    a scheduler; else a few words on what went wrong. Runs in its own thread and event loop,
    so it is bounded whatever loop the caller has."""
    import asyncio

    from distributed.comm import connect

    async def identity():
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity"})
            return await comm.read()
        finally:
            comm.abort()

    outcome: list = []

    def run():
        try:
            outcome.append(asyncio.run(asyncio.wait_for(identity(), timeout)))
        except BaseException as exc:  # anything: the answer is "not a scheduler"
            outcome.append(exc)

    thread = threading.Thread(target=run, name="pixelmill-dask-probe", daemon=True)
    thread.start()
    thread.join(timeout + 2.0)
    if not outcome:
        return "no answer"
    answer = outcome[0]
    if isinstance(answer, BaseException):
        text = str(answer).strip().splitlines()
        return f"{type(answer).__name__}: {text[0][:120]}" if text else f"no answer ({type(answer).__name__})"
    if not isinstance(answer, dict) or answer.get("type") != "Scheduler":
        return f"it answered {str(answer)[:80]!r}"
    return None


class _Cancelled(Exception):
    """Raised inside the local scheduler loop to stop a ``map`` whose consumer went away."""


class DaskEngine(Engine):
    """dask: ``map_overlap`` tiles within an image; a bag or futures across a library.

    Within an image, :meth:`~pixelmill.engines.Engine.run` pads the image once with the border
    rule; :meth:`execute` chunks the padded array so that each output tile is one chunk and runs
    ``dask.array.map_overlap`` with ``depth`` = the operation's halo (asymmetric for even
    kernels) and ``boundary="none"`` (the border is already there). Each block is computed by
    the operation's NumPy implementation, so the result equals the ``numpy`` engine's bit for
    bit. Channels stay together in one chunk.

    Across a library, :meth:`map` runs ``fn`` on each item with ``dask.bag`` (local scheduler)
    or ``client.map`` (cluster) and yields results as they finish. Workers read inputs and
    write outputs by path, so a multi-machine cluster needs a filesystem shared by all of them.

    Parameters
    ----------
    workers : int, optional
        Threads or processes of the local scheduler; defaults to the usable cores. With a
        cluster it only sizes the automatic tiles (the cluster has its own workers).
    tile_shape : (int, int), optional
        Output tile (chunk) size; automatic when omitted (:func:`pixelmill.tiling.auto_tile_shape`).
        Tiles are never smaller than the halo (dask overlaps adjacent chunks only).
    scheduler : str, optional
        Address of a running ``distributed`` scheduler, e.g. ``"tcp://127.0.0.1:8786"``. The
        client is created on first use and closed by :meth:`close`.
    local_scheduler : {"threads", "processes"}
        The local dask scheduler used when no ``scheduler`` is given.
    connect_timeout : float
        Seconds to wait for the cluster before raising :class:`~pixelmill.errors.ClusterConnectionError`.

    Raises
    ------
    InvalidParameterError
        For a ``scheduler`` that is not a string, an unknown ``local_scheduler`` or a
        ``connect_timeout`` that is not a positive number; on first use, for an address
        that is not a dask address.
    ClusterConnectionError
        On first use, when the scheduler at ``scheduler`` cannot be reached in time.

    Notes
    -----
    Why the *padded* image and an asymmetric ``depth``: the border rule must see the whole
    image (``wrap`` and ``reflect`` never wrap around a tile), so it is applied once before
    chunking and ``map_overlap`` only shares halos between neighbouring chunks
    (``boundary="none"``). An even kernel needs different context before and after each pixel
    (SciPy's anchor); dask accepts a ``(before, after)`` depth with ``boundary="none"``, so each
    block is exactly its tile plus the halo, with no extra rows to crop. The first chunk carries
    the leading padding and the last the trailing padding, so the output chunks are the tiles
    (``trim=False``; the block function returns just the tile).

    With a cluster the chunks are scattered to the workers once (not embedded in the task
    graph) and the tiles are copied into the result as they arrive.

    Examples
    --------
    >>> import numpy as np, pixelmill
    >>> img = np.arange(20, dtype=np.uint8).reshape(4, 5)
    >>> with DaskEngine(workers=2, tile_shape=(2, 2)) as eng:
    ...     got = eng.run(pixelmill.ops.Invert(), img)
    >>> bool((got == 255 - img).all())
    True
    """

    name = "dask"
    flavour = "numpy"
    parallel = True
    streams_by_task = True

    def __init__(
        self,
        workers: int | None = None,
        tile_shape: tuple[int, int] | None = None,
        *,
        scheduler: str | None = None,
        local_scheduler: str = "threads",
        connect_timeout: float = 5.0,
    ):
        super().__init__(workers, tile_shape)
        if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
            raise InvalidParameterError(
                f"scheduler must be the address of a running dask scheduler such as "
                f"'tcp://127.0.0.1:8786', got {scheduler!r}"
            )
        if local_scheduler not in LOCAL_SCHEDULERS:
            raise InvalidParameterError(
                f"local_scheduler {local_scheduler!r} is not known; use one of {', '.join(LOCAL_SCHEDULERS)}"
            )
        timeout_ok = isinstance(connect_timeout, (int, float)) and not isinstance(connect_timeout, bool)
        if not timeout_ok or not connect_timeout > 0:
            raise InvalidParameterError(
                f"connect_timeout must be a positive number of seconds, got {connect_timeout!r}"
            )
        self.scheduler = scheduler.strip() if scheduler else None
        self.local_scheduler = local_scheduler
        self.connect_timeout = float(connect_timeout)
        self._client = None
        self._pool = None

    def __repr__(self) -> str:
        if self.scheduler:
            where = f"scheduler={self.scheduler!r}"
        else:
            where = f"local_scheduler={self.local_scheduler!r}"
        return f"{type(self).__name__}(workers={self.workers}, {where})"

    # -- schedulers ------------------------------------------------------------------------------

    @property
    def client(self):
        """The ``distributed.Client`` for :attr:`scheduler` (created on first use), or None."""
        if self.scheduler is None:
            return None
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self):
        from distributed import Client
        from distributed.comm.addressing import parse_address, parse_host_port
        from distributed.comm.registry import get_backend

        address = self.scheduler
        hint = "start one with `dask scheduler` (and `dask worker ADDRESS`) or pass the address it prints"
        try:
            scheme, location = parse_address(address)
            get_backend(scheme)
        except ValueError as exc:
            raise InvalidParameterError(
                f"scheduler {address!r} is not a dask scheduler address ({exc}); "
                "use e.g. 'tcp://127.0.0.1:8786'"
            ) from None
        if scheme in ("tcp", "tls", "ws", "wss"):
            # A plain socket first: a refused or silent port fails at once, without leaving a
            # half-started Client behind (whose finaliser would block at exit).
            try:
                host, port = parse_host_port(location)
                socket.create_connection((host, port), timeout=self.connect_timeout).close()
            except (OSError, ValueError) as exc:
                raise ClusterConnectionError(
                    f"cannot connect to the dask scheduler at {address!r} ({exc}); {hint}"
                ) from None
        # Then one request, bounded in time: a port that accepts and never answers, or answers
        # with something that is not dask, would otherwise hang the Client (or make it try to
        # allocate what a garbage length header claims) instead of failing.
        problem = _probe_scheduler(address, self.connect_timeout)
        if problem:
            raise ClusterConnectionError(
                f"the server at {address!r} does not answer as a dask scheduler within "
                f"{self.connect_timeout:g} s ({problem}); {hint}"
            )
        try:
            return Client(address, timeout=self.connect_timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterConnectionError(
                f"cannot connect to the dask scheduler at {address!r} "
                f"(timeout {self.connect_timeout:g} s: {exc}); {hint}"
            ) from None

    def _local_pool(self):
        # One executor for the engine's lifetime, so worker processes start once, not per image.
        if self._pool is None:
            if self.local_scheduler == "processes":
                from concurrent.futures import ProcessPoolExecutor

                from dask.multiprocessing import get_context, initialize_worker_process

                self._pool = ProcessPoolExecutor(
                    self.workers, mp_context=get_context(), initializer=initialize_worker_process
                )
            else:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="pixelmill-dask")
        return self._pool

    def close(self) -> None:
        """Close the client this engine created and its local pool. Safe to call twice."""
        client, self._client = self._client, None
        pool, self._pool = self._pool, None
        if client is not None:
            client.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    # -- one image -------------------------------------------------------------------------------

    def execute(self, op: Operation, padded: np.ndarray, out: np.ndarray) -> None:
        """Fill ``out`` from ``padded`` with ``map_overlap``: one chunk per output tile."""
        import dask.array as da

        top, bottom, left, right = halo = op.halo
        # Larger chunks than the other engines' tiles: each dask task costs about a millisecond.
        tile_shape = self.tile_shape or tiling.auto_tile_shape(
            out.shape, self.workers, padded.dtype.itemsize, target_bytes=DASK_CHUNK_BYTES
        )
        out_rows, in_rows = tiling.overlap_chunks(out.shape[0], tile_shape[0], top, bottom)
        out_cols, in_cols = tiling.overlap_chunks(out.shape[1], tile_shape[1], left, right)
        channels = tuple((c,) for c in padded.shape[2:])  # channels: one chunk
        depth = {0: (top, bottom) if top != bottom else top, 1: (left, right) if left != right else left}
        depth.update({axis: 0 for axis in range(2, padded.ndim)})

        client = self.client
        if client is not None:
            source = self._scattered(client, padded, (in_rows, in_cols) + channels)
        else:
            # name=False: a random name instead of hashing the whole image; numpy input is
            # sliced eagerly into views, one per chunk.
            source = da.from_array(padded, chunks=(in_rows, in_cols) + channels, name=False)
        result = da.map_overlap(
            _compute_block,
            source,
            depth=depth,
            boundary="none",  # the border rule was applied once, to the whole image
            trim=False,  # _compute_block returns only the tile
            allow_rechunk=False,  # chunks are planned to fit; a rechunk would misalign the tiles
            chunks=(out_rows, out_cols) + channels,
            dtype=out.dtype,
            meta=np.empty((0,) * out.ndim, dtype=out.dtype),
            op=op,
            halo=halo,
            out_dtype=out.dtype,
            flavour=self.flavour,
        )

        if client is not None:
            self._gather_blocks(client, result, out)
        elif self.local_scheduler == "threads":
            # Threads share memory: each tile is written straight into ``out``.
            da.store(result, out, lock=False, scheduler="threads", pool=self._local_pool())
        else:
            out[...] = result.compute(scheduler="processes", pool=self._local_pool())

    @staticmethod
    def _scattered(client, padded: np.ndarray, chunks):
        """A dask array whose chunks were sent to the cluster once, not embedded in the graph."""
        import dask.array as da
        from dask.array.core import slices_from_chunks

        slices = slices_from_chunks(chunks)
        futures = client.scatter([padded[s] for s in slices])
        grid = np.empty(tuple(len(c) for c in chunks), dtype=object)
        for index, (s, fut) in zip(np.ndindex(grid.shape), zip(slices, futures)):
            grid[index] = da.from_delayed(fut, shape=padded[s].shape, dtype=padded.dtype)
        return da.block(grid.tolist())

    @staticmethod
    def _gather_blocks(client, result, out: np.ndarray) -> None:
        """Compute each tile on the cluster and copy it into ``out`` as it arrives."""
        from dask.array.core import slices_from_chunks
        from distributed import as_completed

        blocks = result.to_delayed().ravel().tolist()
        futures = client.compute(blocks)
        where = dict(zip((f.key for f in futures), slices_from_chunks(result.chunks)))
        for fut, block in as_completed(futures, loop=client.loop, with_results=True):
            out[where[fut.key]] = block

    # -- a library of images -----------------------------------------------------------------------

    def map(self, fn, items):
        """Yield ``fn(item)`` for each item, in the order they finish.

        With a cluster, ``client.map`` submits every item and ``as_completed`` yields them; with
        the local scheduler, a ``dask.bag`` (one item per partition) runs on this engine's
        threads or processes and each result is handed over the moment its task finishes.
        ``fn`` must be a picklable top-level function that does not raise; it reads its input
        and writes its output by path, so on a cluster every worker must see the same files.
        """
        items = list(items)
        if not items:
            return
        client = self.client
        if client is not None:
            yield from self._map_distributed(client, fn, items)
        else:
            yield from self._map_local(fn, items)

    @staticmethod
    def _map_distributed(client, fn, items):
        from distributed import as_completed

        futures = client.map(fn, items, pure=False)
        try:
            for _, result in as_completed(futures, loop=client.loop, with_results=True):
                yield result
        finally:
            # The consumer may stop early: do not leave work running on the cluster.
            client.cancel([f for f in futures if not f.done()])

    def _map_local(self, fn, items):
        import dask
        import dask.bag as db

        bag = db.from_sequence(items, npartitions=len(items)).map(fn)
        parts = bag.to_delayed(optimize_graph=True)
        keys = {p.key for p in parts}
        results: queue.Queue = queue.Queue()
        stop = threading.Event()

        # The local scheduler has no futures; its per-task callbacks run in its own loop and see
        # each partition's result as soon as it arrives.
        def pretask(key, dsk, state):
            if stop.is_set():
                raise _Cancelled

        def posttask(key, result, dsk, state, worker_id):
            if key in keys:
                results.put(("ok", list(result)))

        pool = self._local_pool()

        def run():
            try:
                dask.compute(
                    *parts,
                    scheduler=self.local_scheduler,
                    pool=pool,
                    callbacks=[(None, None, pretask, posttask, None)],
                    chunksize=1,  # processes: hand tasks out one by one, so results stream
                )
            except _Cancelled:
                pass
            except BaseException as exc:  # handed to the consumer
                results.put(("error", exc))
            results.put(("done", None))

        runner = threading.Thread(target=run, name="pixelmill-dask-map", daemon=True)
        runner.start()
        try:
            while True:
                kind, value = results.get()
                if kind == "done":
                    break
                if kind == "error":
                    raise value
                yield from value
        finally:
            stop.set()
            runner.join()
