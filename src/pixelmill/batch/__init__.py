"""Batches: operations over a library of images, disk to disk, with a manifest.

Walk the inputs (:mod:`._walk`), plan one schedule for any engine (:mod:`._schedule`), skip
what is up to date and run one task per input file (:mod:`._task`), record every item in the
journal and the manifest (:mod:`._manifest`, which also reads them back).
"""

from ._manifest import JOURNAL_NAME, MANIFEST_NAME, check_manifest, read_manifest, write_manifest
from ._run import BatchResult, one_malloc_arena, run_batch
from ._schedule import Schedule, plan_schedule
from ._settings import RunSettings
from ._task import run_task
from ._walk import discover

__all__ = [
    "RunSettings",
    "BatchResult",
    "run_batch",
    "run_task",
    "discover",
    "plan_schedule",
    "Schedule",
    "read_manifest",
    "check_manifest",
    "write_manifest",
    "one_malloc_arena",
    "MANIFEST_NAME",
    "JOURNAL_NAME",
]
