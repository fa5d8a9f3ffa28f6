"""The speed and memory targets, as ratios against peers measured in the same run.

Each target compares two records of this run (never a number from another machine), so it
holds or misses on the machine at hand. A target whose records are missing is ``not measured``.
The list is meant to grow: add a :class:`Target` with a function that finds its ratio.
"""

from __future__ import annotations

import re

from dataclasses import dataclass
from typing import Callable

from ._records import Record

__all__ = ["Target", "TARGETS", "compute_targets", "targets_table"]


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


def _ok(records, **kw) -> list[Record]:
    return [r for r in records if r.status == "ok" and r.median_s and all(getattr(r, k) == v for k, v in kw.items())]


def _invert_memcpy(records, analyses, opts):
    rs = _ok(records, suite="invert-scaling", case="invert")
    if not rs:
        return None
    n = max(int(r.size) for r in rs)
    memcpy = next((r for r in rs if r.method == "memcpy" and int(r.size) == n), None)
    engines = [r for r in rs if r.kind == "engine" and int(r.size) == n and not r.extrapolated]
    if not memcpy or not engines:
        return None
    best = min(engines, key=lambda r: r.min_s)
    return memcpy.min_s / best.min_s, (
        f"{best.method} inverts {n} images ({best.megapixels:.1f} MP) in {best.min_s * 1e3:.1f} ms; "
        f"copying them takes {memcpy.min_s * 1e3:.1f} ms (fastest runs; the target is stated for 24 MP RGB)")


def _peer_ratio(case_prefix, peer, *, threads="same"):
    def fn(records, analyses, opts):
        rs = _ok(records, suite="peers")
        rs = [r for r in rs if r.case.startswith(case_prefix)]
        details, worst = [], None
        for w in sorted({r.workers for r in rs if r.method == peer}):
            p = next((r for r in rs if r.method == peer and r.workers == w), None)
            pm = [r for r in rs if r.kind == "engine" and r.workers == w]
            if not p or not pm:
                continue
            best = min(pm, key=lambda r: r.median_s)
            ratio = best.median_s / p.median_s
            details.append(f"{w} thread{'s' if w > 1 else ''}: pixelmill {best.method} {best.median_s * 1e3:.1f} ms "
                           f"vs {peer} {p.median_s * 1e3:.1f} ms = {ratio:.2f}x")
            worst = ratio if worst is None else max(worst, ratio)
        if worst is None:
            return None
        return worst, "; ".join(details) + " (the worst thread count counts)"
    return fn


def _batch_floor(records, analyses, opts):
    """The default run of the invert batch against the decode+encode floor with its workers:
    timed in turn in one process when the run has that pairing, else the two records."""
    from ._batch import best_floors, default_run

    got = default_run(records, "invert")
    if got is None:
        return None
    rec, how = got
    f = best_floors(records).get(rec.workers)
    if f is None:
        return None
    apart = (f"{rec.mp_per_s:.1f} MP/s vs the decode+encode floor {f.mp_per_s:.1f} MP/s ({f.case.split(':')[-1]}), "
             f"{rec.workers} worker{'s' if rec.workers != 1 else ''}")
    return _paired_or_apart(records, rec, "invert", "floor", rec.mp_per_s / f.mp_per_s, how, apart)


def _paired_or_apart(records, rec, case, method, apart_ratio, how, apart):
    """``(ratio, detail)``: the paired ratio of ``rec`` (``auto``) over ``method`` when the run
    has it, with the separate records' ratio beside it; else the separate records' ratio."""
    from ._batch import paired_ratio, paired_text

    p = paired_ratio(records, case, method) if rec.method == "auto" else None
    if p is None:
        return apart_ratio, f"{how}: {apart}" + _mismatch(rec)
    name = f"the floor ({p['other'].case.split(':')[-1]})" if method == "floor" else method
    return p["ratio"], (f"{how}, {paired_text(p, name)}; in separate processes {apart} = {apart_ratio:.2f}"
                        + _mismatch(rec))


def _mismatch(rec) -> str:
    if rec.match:
        return ""
    return (f"; its output does NOT match the reference (max {rec.max_abs_err:g}, mean {rec.mean_abs_err:.2f}; "
            "see the batch table's notes)")


def _batch_peers_ratio(records, case):
    from ._batch import default_run, fastest_peer

    got = default_run(records, case)
    peer = fastest_peer(records, case)
    if got is None or peer is None:
        return None
    rec, how = got
    apart = (f"{rec.mp_per_s:.1f} MP/s vs the fastest peer (output checked), {peer.method} with {peer.workers} "
             f"workers, {peer.mp_per_s:.1f} MP/s")
    return _paired_or_apart(records, rec, case, peer.method, rec.mp_per_s / peer.mp_per_s, f"{case}: {how}", apart)


def _batch_vs_peers(records, analyses, opts):
    """The default run of the invert batch against the fastest peer pipeline."""
    return _batch_peers_ratio(records, "invert")


def _batch_gaussian_vs_peers(records, analyses, opts):
    """The default run of the Gaussian batch against the fastest peer pipeline."""
    from ._batch import gaussian_spec
    from ._ops import op_label

    return _batch_peers_ratio(records, op_label(gaussian_spec(opts)))


def _batch_memory(records, analyses, opts):
    """The worst engine run's peak RSS over 2 x the largest decoded image + the run's constant
    (the same run over tiny images), both measured in this run."""
    from ._batch import _constant_text, memory_budget

    mem = memory_budget(records)
    if mem is None or not mem["rows"]:
        return None
    w = mem["worst"]
    workers = f"{w['workers']} worker{'s' if w['workers'] != 1 else ''}"
    detail = (f"worst: {w['method']} ({w['case']}, {workers}) peaks at {w['peak_mb']:.0f} MB; bound "
              f"2 x {mem['largest_image_mb']:.1f} MB (largest decoded image, {mem['largest_image_mp']:.1f} MP x 3) + "
              f"{_constant_text(w)} MB = {w['bound_mb']:.0f} MB")
    over = mem["over"]
    if over:
        detail += "; over the bound: " + ", ".join(f"{x['method']}/{x['case']} {x['ratio']:.2f}x" for x in over)
    else:
        detail += f"; all {len(mem['rows'])} engine runs within it"
    return w["ratio"], detail


#: The engines the scaling target names.
SCALING_ENGINES = ("processes", "threads", "numba")


def _efficiency_at(p):
    def fn(records, analyses, opts):
        sp = analyses.get("convolve-speedup", {}).get("speedup", {})
        per_engine: dict = {}
        for s in sp.values():
            row = s["by_workers"].get(p) or s["by_workers"].get(str(p))
            if row and s["engine"] in SCALING_ENGINES:
                # Each engine is judged on its best convolution case; the target needs all three.
                if s["engine"] not in per_engine or row["efficiency"] > per_engine[s["engine"]][0]:
                    per_engine[s["engine"]] = (row["efficiency"], s["case"])
        if not per_engine:
            return None
        worst = min(v[0] for v in per_engine.values())
        detail = "; ".join(f"{e} {100 * v[0]:.0f}% ({v[1]})" for e, v in sorted(per_engine.items())) + \
            f" of linear speedup at {p} workers (the worst engine counts)"
        if any(r.speedup_paired for r in records if r.suite == "convolve-speedup"):
            detail += ", each engine's worker counts timed in turn in one process"
        copy = next((s["by_workers"].get(p) or s["by_workers"].get(str(p)) for s in sp.values()
                     if s["engine"] == "memcpy"), None)
        if copy:
            detail += (f"; memory bandwidth itself (a copy of the result's size) scales {copy['speedup']:.2f}x at "
                       f"{p} threads here, the ceiling of engines whose tiles stream through memory")
        return worst, detail
    return fn


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

    ok = [r for r in _ok(records) if r.kind == "engine" and not r.extrapolated and r.case != "startup"]
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


TARGETS: list[Target] = [
    Target("invert-memcpy", "invert in memory >= 80% of memcpy bandwidth", "invert-scaling", 0.80, ">=",
           _invert_memcpy),
    Target("gaussian-vs-cv2", "Gaussian <= 1.5x cv2.GaussianBlur, same threads", "peers", 1.5, "<=",
           _peer_ratio("gaussian", "cv2")),
    Target("disk15-vs-filter2D", "15x15 non-separable (disk) <= 1.0x cv2.filter2D, same threads", "peers", 1.0, "<=",
           _peer_ratio("disk-15", "cv2")),
    Target("sobel-vs-cv2", "Sobel magnitude <= 2x OpenCV, same threads", "peers", 2.0, "<=",
           _peer_ratio("sobel", "cv2")),
    Target("batch-vs-floor", "batch invert >= 90% of the decode+encode floor (MP/s)", "batch", 0.90, ">=",
           _batch_floor),
    Target("batch-vs-peers", "batch invert >= the fastest peer pipeline (MP/s)", "batch", 1.0, ">=",
           _batch_vs_peers),
    Target("batch-gaussian-vs-peers", "batch Gaussian 5x5 >= the fastest peer pipeline (MP/s)", "batch", 1.0, ">=",
           _batch_gaussian_vs_peers),
    Target("efficiency-2", "parallel efficiency at 2 workers >= 85% (processes, threads, numba)", "convolve-speedup",
           0.85, ">=", _efficiency_at(2)),
    Target("auto-vs-best", "engine='auto' within 10% of the best engine", "all", 1.10, "<=",
           _auto_vs_best),
    Target("batch-memory", "batch peak RSS <= 2x the largest decoded image + a constant per worker", "batch", 1.0,
           "<=", _batch_memory),
]


def compute_targets(records: list[Record], analyses: dict, opts: dict) -> list[dict]:
    """One row per target: measured ratio, threshold and ``pass``/``miss``/``not measured``."""
    rows = []
    for t in TARGETS:
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
