"""The ``auto`` engine: for each call, the engine, workers and tile size the calibration says
are fastest on this machine for that operation and image size (see :mod:`._calibration`).
"""

from __future__ import annotations

import time
from dataclasses import replace

from . import _calibration as _cal
from ._base import Engine

__all__ = ["AutoEngine", "POOL_PAYS_OFF_S"]

#: Once :meth:`AutoEngine.map`'s items have taken this long one after the other, the rest go to a pool.
POOL_PAYS_OFF_S = 5e-4


class AutoEngine(Engine):
    """Delegates every call to the candidate the calibrated cost model predicts to be fastest.

    The first use on a machine times the candidates for the kind of work asked for (a quick
    table, a few seconds; ``pixelmill calibrate`` measures the full one, see
    :mod:`._calibration`) and caches the table; later uses only read it. The engines it
    delegates to are kept for its life, so their pools start once.

    Parameters
    ----------
    workers : int, optional
        The most workers it may use; defaults to the usable cores.
    tile_shape : (int, int), optional
        Forces this tile size on tiled engines instead of the calibrated one.
    calibration : Calibration, optional
        Use this table instead of the machine's cached one (tests, experiments).
    notify : callable, optional
        Called with a line of text if the machine must be calibrated first.

    Attributes
    ----------
    last_choice : Candidate or None
        What the latest call ran on.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmill.engines import Calibration
    >>> from pixelmill.ops import Invert
    >>> table = Calibration([1.0], {"invert": {"numpy:1:0": [0.01]}}, machine={})
    >>> with AutoEngine(calibration=table) as eng:
    ...     eng.run(Invert(), np.array([[0, 1, 2]], dtype=np.uint8))
    array([[255, 254, 253]], dtype=uint8)
    """

    name = "auto"
    flavour = "numpy"
    parallel = True

    def __init__(self, workers=None, tile_shape=None, *, calibration=None, notify=None):
        super().__init__(workers=workers, tile_shape=tile_shape)
        self._calibration = calibration
        self._given = calibration is not None
        self._notify = notify
        self._engines: dict[tuple[str, int], Engine] = {}
        self._choices: dict = {}
        self.last_choice: _cal.Candidate | None = None

    @property
    def calibration(self) -> _cal.Calibration:
        """The table it chooses by (this machine's, unless one was given)."""
        return self._table(_cal.WORK_CLASSES)

    def _table(self, classes) -> _cal.Calibration:
        # A machine's table is loaded for the work asked for: a first call on a fresh machine
        # then measures (quickly) only that kind of work.
        cal = self._calibration
        if cal is None or (not self._given and not set(classes) <= set(cal.times)):
            cal = self._calibration = _cal.load(notify=self._notify, classes=tuple(sorted(set(classes))))
        return cal

    def choose(self, ops, shape) -> _cal.Candidate:
        """The fastest candidate for running ``ops`` (one operation or a bank) on ``shape``."""
        return self._plan(ops, shape)[0]

    def _plan(self, ops, shape) -> tuple[_cal.Candidate, tuple]:
        """``(candidate, methods)``: the fastest candidate and, for each operation, the filter
        method it runs there (None: as the operation says)."""
        ops = tuple(ops) if isinstance(ops, (list, tuple)) else (ops,)
        classes = tuple(_cal.work_class(op) for op in ops)
        pixels = shape[0] * shape[1] if len(shape) >= 2 else 1
        # A filter whose method auto picks is costed by its kernel, not by its class alone.
        kernels = tuple(op.kernel if getattr(op, "method", None) == "auto" and c == "general" else None
                        for op, c in zip(ops, classes))
        key = (classes, kernels, pixels, self.workers)
        # Remembered per call shape: a library of same-sized photos pays for the model once.
        if key not in self._choices:
            self._choices[key] = self._predict_best(ops, classes, pixels / 1e6)
        return self._choices[key]

    def _predict_best(self, ops, classes, mp) -> tuple[_cal.Candidate, tuple]:
        cal = self._table(classes)
        totals: dict = {}
        methods: dict = {}
        for op, cls in zip(ops, classes):
            for _, cand in cal.ranked(cls, mp, self.workers) if cls in cal.times else ():
                t, method = cal.predict_op(op, cls, cand, mp)
                totals[cand] = totals.get(cand, 0.0) + t
                methods.setdefault(cand, []).append(method)
        # A candidate must cover every operation of a bank to be compared fairly.
        complete = {c: t for c, t in totals.items()
                    if len(methods[c]) == len(ops) and all(c.key in cal.times.get(cls, {}) for cls in classes)}
        if not complete:
            return _cal.Candidate("numpy", 1), (None,) * len(ops)
        best = min(complete, key=complete.get)
        return best, tuple(methods[best])

    @staticmethod
    def _with_methods(ops, methods):
        """``ops`` with each filter's ``auto`` method replaced by the one the model chose."""
        return [op if m is None else replace(op, method=m) for op, m in zip(ops, methods)]

    def _delegate(self, choice: _cal.Candidate, shape, itemsize: int) -> Engine:
        from ._registry import make_engine

        key = (choice.engine, choice.workers)
        if key not in self._engines:
            self._engines[key] = make_engine(choice.engine, choice.workers)
        engine = self._engines[key]
        engine.tile_shape = self.tile_shape or choice.tile_shape(shape, itemsize)
        self.last_choice = choice
        return engine

    def run(self, op, image, *, border="nearest", cval=0.0, out=None):
        choice, methods = self._plan(op, image.shape)
        engine = self._delegate(choice, image.shape, op.out_dtype(image.dtype).itemsize)
        (op,) = self._with_methods([op], methods)
        return engine.run(op, image, border=border, cval=cval, out=out)

    def run_many(self, ops, image, *, border="nearest", cval=0.0):
        choice, methods = self._plan(list(ops), image.shape)
        engine = self._delegate(choice, image.shape, max(op.out_dtype(image.dtype).itemsize for op in ops))
        return engine.run_many(self._with_methods(ops, methods), image, border=border, cval=cval)

    def map(self, fn, items):
        """Whole items on a thread pool (``fn`` is NumPy work that releases the GIL, or I/O),
        unless they are too small for a pool to pay off.

        What ``fn`` costs is not known in advance. With at least four items per worker the
        pool's cost (tens of microseconds per item) is small beside any real image work, so
        they all go to it; fewer items run here, timed, until they have taken
        :data:`POOL_PAYS_OFF_S` in all, and only the rest go to the pool. A few tiny items
        never start one.
        """
        items = list(items)
        spent, k = 0.0, 0
        self.last_choice = None  # until the items go to a pool
        if len(items) >= 4 * self.workers:
            spent = POOL_PAYS_OFF_S
        while k < len(items) and (spent < POOL_PAYS_OFF_S or self.workers == 1):
            t0 = time.perf_counter()
            yield fn(items[k])
            spent += time.perf_counter() - t0
            k += 1
        rest = items[k:]
        if len(rest) > 1:
            engine = self._delegate(_cal.Candidate("threads", min(self.workers, len(rest))), (1, 1), 1)
            yield from engine.map(fn, rest)
        elif rest:
            yield fn(rest[0])

    def close(self) -> None:
        while self._engines:
            _, engine = self._engines.popitem()
            engine.close()
