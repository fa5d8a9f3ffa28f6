"""Inversion: unsigned ``max - x``, signed ``-1 - x``, float ``1 - x``, bool ``~x``.

For integers ``max - x`` (unsigned) and ``-1 - x`` (signed) are both the bitwise complement,
which is why the NumPy flavour is a single ``np.invert``.
"""

from __future__ import annotations

import numpy as np


def invert_loops(block: np.ndarray, out: np.ndarray) -> None:
    """Reference: one Python expression per sample, slow on purpose."""
    dtype = block.dtype
    if dtype == np.bool_:
        def f(v):
            return not v
    elif np.issubdtype(dtype, np.unsignedinteger):
        top = int(np.iinfo(dtype).max)

        def f(v):
            return top - v
    elif np.issubdtype(dtype, np.signedinteger):
        def f(v):
            return -1 - v
    else:
        def f(v):
            return 1.0 - v
    flat_in = block.reshape(-1).tolist()
    flat_out = [f(v) for v in flat_in]
    out[...] = np.asarray(flat_out, dtype=out.dtype).reshape(out.shape)


def invert_numpy(block: np.ndarray, out: np.ndarray) -> None:
    if block.dtype.kind in "biu":
        np.invert(block, out=out)
    else:
        np.subtract(block.dtype.type(1), block, out=out)
