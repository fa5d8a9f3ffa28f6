"""Work arrays reused from tile to tile by the thread that computes them.

The NumPy flavour needs a few tile-sized float arrays per tile (the float copy of the block,
the row-pass sum, products). Allocated afresh, each one is a new ``mmap`` that the kernel must
zero and fault in page by page, and that ``free`` hands straight back: on a 24 MP photo cut
into 4 MB tiles that costs more than the arithmetic, and it does not parallelise. Kept per
thread and reused, they are faulted in once.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["scratch", "MAX_KEPT_BYTES"]

#: Larger arrays are not kept (a serial engine's "tile" is the whole image): allocated each time.
MAX_KEPT_BYTES = 8 << 20

_local = threading.local()


def scratch(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised ``shape`` x ``dtype`` array for this thread, reusing the memory of the
    last array of the same ``name``. Each call site uses its own ``name``: the array stays
    valid only until the next call with that name on this thread.

    >>> a = scratch("doc", (2, 3), np.float32)
    >>> b = scratch("doc", (3, 2), np.float32)
    >>> np.shares_memory(a, b), b.shape
    (True, (3, 2))
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes > MAX_KEPT_BYTES:
        return np.empty(shape, dtype=dtype)
    kept = _local.__dict__.setdefault("arrays", {})
    buf = kept.get(name)
    if buf is None or buf.nbytes < nbytes:
        buf = kept[name] = np.empty(max(nbytes, 1), dtype=np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)
