"""The one target that spans suites: ``engine='auto'`` against the best engine of each measurement."""

from __future__ import annotations

import re

from ._targets import Target, ok_records

__all__ = ["TARGETS"]


def _auto_vs_best(records, analyses, opts):
    """Every ``auto`` record against the fastest other engine of the same suite, case and size
    with at most as many workers; the worst ratio counts.

    Where ``auto`` was timed in turn, in one process, with the engine it ran and the suite's
    other engines (``auto_vs_paired_best``), the ratio is its time over the fastest of them
    there: how good the choice was and what choosing cost, measured where the machine's drift
    cannot enter. Where it was paired with the engine it ran only (``auto_paired``; a batch's
    comes from the ``paired`` batch records, where auto ran in turn with the engine whose
    batch runs the same schedule), the ratio is that overhead times the chosen engine's own
    record over the best one's. Other records compare the two medians as they are."""
    from ._batch import paired_auto_overhead

    ok = [r for r in ok_records(records) if r.kind == "engine" and not r.extrapolated and r.case != "startup"]
    pairs = []
    for a in (r for r in ok if r.method == "auto"):
        rivals = [r for r in ok if r.method != "auto" and r.suite == a.suite and r.case == a.case
                  and r.size == a.size and r.workers <= a.workers]
        if not rivals:
            continue
        best = min(rivals, key=lambda r: r.median_s)
        if a.auto_vs_paired_best is not None:
            how = (f"auto ran {a.auto_ran}; timed in turn in one process with it and the suite's other engines, "
                   f"auto took {a.auto_vs_paired_best:.2f}x the time of the fastest of them, {a.paired_best} "
                   f"(median over rounds); the separate records' best is {best.method} ({best.workers})")
            pairs.append((a.auto_vs_paired_best, a, best, how))
            continue
        ran, overhead = a.auto_ran, a.auto_paired
        if overhead is None and a.suite == "batch":
            ran, overhead = paired_auto_overhead(records, a.case) or (ran, None)
        chosen = _chosen_record(ran, overhead, rivals)
        if chosen is not None:
            how = (f"auto ran {ran}, {overhead:.2f}x that engine's time when both ran in turn in one process; "
                   + ("the best engine itself" if chosen is best else
                      f"its own record {chosen.median_s * 1e3:.1f} ms vs {best.method} ({best.workers}) "
                      f"{best.median_s * 1e3:.1f} ms"))
            pairs.append((overhead * chosen.median_s / best.median_s, a, best, how))
        else:
            how = (f"auto {a.median_s * 1e3:.1f} ms vs {best.method} ({best.workers}) {best.median_s * 1e3:.1f} ms "
                   "(medians)")
            pairs.append((a.median_s / best.median_s, a, best, how))
    if not pairs:
        return None
    pairs.sort(key=lambda p: -p[0])
    ratio, a, best, how = pairs[0]
    within = sum(p[0] <= 1.10 for p in pairs)
    raw = max(p[1].median_s / p[2].median_s for p in pairs)
    return ratio, (f"{within} of {len(pairs)} comparisons within 10%; worst: {a.suite} {a.case} at size {a.size:g} "
                   f"({a.workers} workers): {how}; comparing medians of separate processes instead, the worst "
                   f"ratio is {raw:.2f}")


def _chosen_record(ran, overhead, rivals):
    """The record of the engine ``auto`` ran (``ran``: same engine and workers, default tiles),
    if ``auto`` was timed beside it in one process (``overhead``); else None."""
    match = re.fullmatch(r"(\w+) \((\d+) workers?\)", ran or "")
    if overhead is None or not match:
        return None
    engine, workers = match.group(1), int(match.group(2))
    return next((r for r in rivals if r.method == engine and r.workers == workers), None)


#: This suite's targets (:mod:`._targets`), listed in report.md in :data:`._suites.TARGET_ORDER`.
TARGETS = [
    Target("auto-vs-best", "engine='auto' within 10% of the best engine", "all", 1.10, "<=",
           _auto_vs_best),
]
