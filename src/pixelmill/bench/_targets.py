"""The speed and memory targets, as ratios against peers measured in the same run.

Each target compares two records of this run (never a number from another machine), so it
holds or misses on the machine at hand. A target whose records are missing is ``not measured``.
Each suite module declares its own targets in a ``TARGETS`` list (the one target that spans
suites is in :mod:`._auto`); :func:`._suites.targets` collects them. To add one, append a
:class:`Target` with a function that finds its ratio to its suite's list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ._records import Record

__all__ = ["Target", "ok_records", "evaluate", "targets_table"]


@dataclass(frozen=True)
class Target:
    id: str
    description: str
    suite: str
    threshold: float
    #: ``>=``: the measured ratio must be at least the threshold; ``<=``: at most.
    comparison: str
    #: ``(records, analyses, opts) -> (ratio, detail)`` or None when not measured.
    measure: Callable


def ok_records(records, **kw) -> list[Record]:
    """The measured records (status ``ok``, with a time) whose fields equal ``kw``."""
    return [r for r in records if r.status == "ok" and r.median_s and all(getattr(r, k) == v for k, v in kw.items())]


def evaluate(targets: list[Target], records: list[Record], analyses: dict, opts: dict) -> list[dict]:
    """One row per target: measured ratio, threshold and ``pass``/``miss``/``not measured``."""
    rows = []
    for t in targets:
        try:
            got = t.measure(records, analyses, opts)
        except Exception as exc:  # noqa: BLE001 - a target must not break the report
            got, err = None, f"{type(exc).__name__}: {exc}"
        else:
            err = ""
        row = {"id": t.id, "description": t.description, "suite": t.suite, "threshold": t.threshold,
               "comparison": t.comparison, "measured": None, "status": "not measured", "detail": err}
        if got is not None:
            ratio, detail = got
            ok = ratio >= t.threshold if t.comparison == ">=" else ratio <= t.threshold
            row.update(measured=ratio, status="pass" if ok else "miss", detail=detail)
        rows.append(row)
    return rows


def targets_table(targets: list[dict]) -> str:
    from .._text import md_table

    head = ("Each measured target is a ratio between two measurements of this run, on this machine; "
            "*not measured* says what is missing.\n\n")
    rows = [[t["description"], f"{t['comparison']} {t['threshold']:g}",
             "" if t["measured"] is None else f"{t['measured']:.2f}", t["status"].upper() if t["status"] != "not measured"
             else "not measured", t["detail"]] for t in targets]
    return head + md_table(["target", "threshold", "measured", "result", "detail"], rows)
