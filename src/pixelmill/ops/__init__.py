"""Operations (what to compute) and dtype conversion policies."""

from ._convert import POLICIES, dtype_range, to_dtype, work_dtype
from ._operations import FLAVOURS, METHODS, TILEWISE_POLICIES, Filter, Invert, Operation, SobelMagnitude, fuse_policy

__all__ = [
    "FLAVOURS",
    "METHODS",
    "Operation",
    "Invert",
    "Filter",
    "SobelMagnitude",
    "TILEWISE_POLICIES",
    "fuse_policy",
    "POLICIES",
    "dtype_range",
    "to_dtype",
    "work_dtype",
]
