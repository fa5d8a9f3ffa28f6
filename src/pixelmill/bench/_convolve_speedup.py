"""Suite ``convolve-speedup``: a Gaussian and an edge filter on one large image, over worker counts.

Every parallel engine filters the same large RGB image (``Engine.run``, border ``nearest``)
with 1, 2, ... N workers; ``numpy`` runs once as the serial baseline. Speedup and parallel
efficiency are given against the engine's own one-worker run and against NumPy, and Amdahl's
law ``T(p) = T1 * ((1 - f) + f / p)`` is fitted to each engine's times, ``T1`` over the
speedup the table shows (least squares on ``T = a + b / p``; the parallel fraction is
``f = b / (a + b)``). With only two worker counts the fit is exact, not a test of the law.
The speedup over the one-worker run is also measured with every worker count timed in turn in
one process, nine rounds (``speedup_paired``; the speedup and efficiency columns and the
scaling target use it): one engine's efficiency measured from runs a few seconds apart moved
by 10-20 points from one run of the suite to the next.
"""

from __future__ import annotations

import numpy as np

from ._harness import Group, apply_measurement, measure, median_ratio, pair_with_delegate, time_in_turn, timing
from ._records import Record
from ._targets import Target, ok_records

NAME = "convolve-speedup"
TITLE = "Filtering one large image: speedup over worker counts"
ENTRY_POINT = "pixelmill.bench._convolve_speedup:run_method"


def ops_for(opts) -> list[str]:
    return [f"gaussian:size={opts['gaussian_size']},sigma={opts['sigma']:g}", "sobel"]


def parallel_engines(opts) -> list[str]:
    from ..engines import get_engine_class

    return [e for e in opts["engines"] if e not in ("loops", "numpy") and get_engine_class(e).parallel]


def plan(ctx) -> list[Group]:
    o = ctx.opts
    image = ctx.image(o["image_mp"])
    ops = ops_for(o)
    refs = {spec: ctx.reference(image, spec) for spec in ops}
    ctx.inputs[NAME] = f"{image['source']}; filters {', '.join(ops)}; worker counts {', '.join(map(str, o['workers']))}"
    engines = (["numpy"] if "numpy" in o["engines"] else []) + parallel_engines(o)
    base = dict(ctx.spec_common(), suite=NAME, image=image["npy"], mp=image["mp"], ops=ops, refs=refs,
                engines=engines)
    groups = []
    if "numpy" in o["engines"]:
        groups.append(Group(NAME, "numpy", "engine", ENTRY_POINT, dict(base, method="numpy", kind="engine", workers=[1])))
    for engine in parallel_engines(o):
        groups.append(Group(NAME, engine, "engine", ENTRY_POINT, dict(base, method=engine, kind="engine", workers=o["workers"])))
    # How far memory bandwidth itself scales: the ceiling of every engine whose tiles stream
    # through memory rather than cache.
    groups.append(Group(NAME, "memcpy", "baseline", MEMCPY_TARGET,
                        dict(base, method="memcpy", kind="baseline", workers=o["workers"])))
    return groups


MEMCPY_TARGET = "pixelmill.bench._convolve_speedup:run_memcpy"
#: Case name of the memory-bandwidth baseline.
MEMCPY_CASE = "memory-copy"


def run_memcpy(spec: dict) -> list[Record]:
    """Copy a float32 array the size of the filters' result (split into equal parts, one per
    thread; NumPy releases the GIL while copying), into memory touched beforehand."""
    from concurrent.futures import ThreadPoolExecutor

    from ._library import load_array

    image = load_array(spec["image"])
    src = np.ones(image.size, dtype=np.float32)
    dst = np.zeros_like(src)  # touched: the copies measure bandwidth, not page faults
    records, copies, pools = [], {}, []

    def copier(pool, bounds):
        def copy():
            list(pool.map(lambda b: np.copyto(dst[b[0]:b[1]], src[b[0]:b[1]]), bounds))
            return dst
        return copy

    for w in spec["workers"]:
        parts = np.array_split(np.arange(src.size), w)
        bounds = [(int(p[0]), int(p[-1]) + 1) for p in parts if p.size]
        pools.append(ThreadPoolExecutor(max_workers=w))
        copies[w] = copier(pools[-1], bounds)
        m = measure(copies[w], **timing(spec))
        rec = Record(suite=NAME, method="memcpy", kind="baseline", case=MEMCPY_CASE, size=spec["mp"],
                     size_unit="MP", workers=w)
        apply_measurement(rec, m, megapixels=spec["mp"])
        same = np.array_equal(m.result, src)
        rec.set_check((0.0 if same else float("inf"), 0.0), tolerance=0, reference="the source array")
        rec.notes = (f"np.copyto of {src.nbytes / 1e6:.0f} MB (a float32 result of this image) in {w} equal "
                     "parts on as many threads: the memory bandwidth the engines share")
        m.result = None
        records.append(rec)
    _speedup_in_turn(records, copies, spec)
    for pool in pools:
        pool.shutdown()
    return records


def _speedup_in_turn(records: list[Record], runs: dict, spec: dict) -> None:
    """Time ``runs`` (worker count -> a call at that count) in turn, ``spec["min_pairs"]`` rounds,
    and set each multi-worker record's ``speedup_paired``: the median over rounds of the
    one-worker time over its own."""
    if 1 not in runs or len(runs) < 2:
        return
    times = time_in_turn({str(w): run for w, run in runs.items()}, rounds=spec["min_pairs"],
                        budget_s=spec["budget_s"])
    for rec in records:
        if rec.workers != 1 and str(rec.workers) in times:
            rec.speedup_paired = median_ratio(times["1"], times[str(rec.workers)])


def run_method(spec: dict) -> list[Record]:
    from contextlib import ExitStack

    from ..engines import make_engine
    from ._library import load_array, max_mean_abs
    from ._ops import BORDER, make_op

    image = load_array(spec["image"])
    records = []
    ops = [make_op(op_spec) for op_spec in spec["ops"]]
    for op_spec, op in zip(spec["ops"], ops):
        ref = spec["refs"][op_spec]
        reference = load_array(ref["npy"], mmap=True)
        for w in spec["workers"]:
            rec = Record(suite=NAME, method=spec["method"], kind="engine", case=op.label, size=spec["mp"],
                         size_unit="MP", workers=w)
            with make_engine(spec["method"], w) as engine:
                m = measure(lambda: engine.run(op, image, border=BORDER), **timing(spec))
                chose = getattr(engine, "last_choice", None)
                pair_with_delegate(rec, engine, lambda e: e.run(op, image, border=BORDER), runs=len(m.times),
                                   min_pairs=spec["min_pairs"], budget_s=spec["budget_s"], rivals=spec["engines"],
                                   shape=image.shape, itemsize=op.out_dtype(image.dtype).itemsize)
            apply_measurement(rec, m, megapixels=spec["mp"])
            rec.set_check(max_mean_abs(m.result, reference), tolerance=ref["tolerance"], reference=ref["name"])
            rec.notes = ("Engine.run on the whole image; warm-up run includes pool start-up/JIT (warmup_s)"
                         + (f"; auto ran {chose.label}" if chose else ""))
            m.result = None
            records.append(rec)
    if len(spec["workers"]) > 1:
        # Engines of their own, started once for every filter: each record above had only its
        # own engine alive, so its peak memory is that engine's.
        with ExitStack() as stack:
            engines = {w: stack.enter_context(make_engine(spec["method"], w)) for w in spec["workers"]}
            for op in ops:
                for engine in engines.values():
                    engine.run(op, image, border=BORDER)  # pools started, kernels compiled
                _speedup_in_turn([r for r in records if r.case == op.label],
                                 {w: (lambda e=e, op=op: e.run(op, image, border=BORDER)) for w, e in engines.items()},
                                 spec)
    return records


# -- analysis --------------------------------------------------------------------------------------------


def amdahl_fit(workers: list[int], times: list[float]) -> dict | None:
    """Least-squares fit of ``T(p) = a + b / p``: parallel fraction ``f``, serial time, R^2.

    Examples
    --------
    >>> fit = amdahl_fit([1, 2, 4], [10.0, 6.0, 4.0])
    >>> round(fit["parallel_fraction"], 3), round(fit["max_speedup"], 2)
    (0.8, 5.0)
    """
    if len(workers) < 2:
        return None
    x = 1.0 / np.asarray(workers, dtype=float)
    y = np.asarray(times, dtype=float)
    A = np.stack([np.ones_like(x), x], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, y, rcond=None)
    a, b = float(a), float(b)
    if a + b <= 0:
        return None
    f = min(1.0, max(0.0, b / (a + b)))
    pred = a + b * x
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {
        "serial_s": a, "parallel_s": b, "parallel_fraction": f,
        "max_speedup": (1.0 / (1.0 - f)) if f < 1 else float("inf"),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0,
        "points": len(workers), "exact": len(workers) == 2,
    }


def _table(records):
    """{(engine, case): {workers: record}}."""
    out: dict = {}
    for r in records:
        if r.status == "ok" and r.median_s:
            out.setdefault((r.method, r.case), {})[r.workers] = r
    return out


def analyse(records: list[Record], opts: dict) -> dict:
    tab = _table(records)
    cases = list(dict.fromkeys(r.case for r in records if r.status == "ok"))
    result = {"speedup": {}, "conclusions": []}
    for case in cases:
        numpy = tab.get(("numpy", case), {}).get(1)
        best = None
        for (engine, c), by_w in tab.items():
            if c != case or engine == "numpy" or 1 not in by_w:
                continue
            ws = sorted(by_w)
            t1 = by_w[1].median_s
            rows = {}
            for w in ws:
                t = by_w[w].median_s
                speedup = by_w[w].speedup_paired or t1 / t  # timed in turn with one worker, if it was
                rows[w] = {
                    "median_s": t, "speedup": speedup, "efficiency": speedup / w, "speedup_apart": t1 / t,
                    "speedup_vs_numpy": (numpy.median_s / t) if numpy else None,
                    "efficiency_vs_numpy": (numpy.median_s / t / w) if numpy else None,
                }
            # Fitted to the speedups the table shows (timed in turn where they were), so the fit
            # and the points it explains come from the same measurement.
            fit = amdahl_fit(ws, [t1 / rows[w]["speedup"] for w in ws])
            result["speedup"][f"{engine}|{case}"] = {"engine": engine, "case": case, "by_workers": rows, "amdahl": fit}
            wmax = ws[-1]
            if best is None or rows[wmax]["median_s"] < best[1]["median_s"]:
                best = (engine, rows[wmax], wmax, fit)
        if best:
            engine, row, wmax, fit = best
            text = (f"{case}: fastest at {wmax} workers is {engine}, {row['speedup']:.2f}x its one-worker run "
                    f"(parallel efficiency {100 * row['efficiency']:.0f}%)")
            if row["speedup_vs_numpy"]:
                text += f" and {row['speedup_vs_numpy']:.2f}x NumPy"
            if fit and fit["parallel_fraction"] < 0.05:
                text += "; Amdahl fit: no measurable parallel part (more workers did not help)"
            elif fit:
                text += (f"; Amdahl fit: parallel fraction {fit['parallel_fraction']:.2f}"
                         + (f", so at most {fit['max_speedup']:.1f}x with unlimited workers" if fit['parallel_fraction'] < 1 else "")
                         + (" (an exact fit through two points)" if fit["exact"] else f" (R² {fit['r2']:.2f})"))
            result["conclusions"].append(text + ".")
        slow = [(k.split("|")[0], v["by_workers"]) for k, v in result["speedup"].items()
                if v["case"] == case and max(v["by_workers"]) > 1]
        weak = [e for e, rows in slow if rows[max(rows)]["speedup"] < 1.1]
        if weak:
            result["conclusions"].append(
                f"{case}: {', '.join(weak)} gain{'s' if len(weak) == 1 else ''} less than 10% from more workers on this machine.")
    return result


def plot(records, analysis, path, opts) -> None:
    from ._plots import METHOD_STYLE, new_figure, save

    cases = list(dict.fromkeys(r.case for r in records if r.status == "ok"))
    if not cases:
        cases = ["(no data)"]
    fig, axes = new_figure(2, len(cases), width=6.2 * len(cases), height=9.5)
    axes = axes if isinstance(axes, list) else [axes]
    top, bottom = axes[: len(cases)], axes[len(cases):]
    ws_all = sorted({r.workers for r in records if r.workers})
    for k, case in enumerate(cases):
        ax, ax2 = top[k], bottom[k]
        for key, s in analysis.get("speedup", {}).items():
            if s["case"] != case:
                continue
            st = METHOD_STYLE(s["engine"])
            ws = sorted(s["by_workers"], key=int)
            ax.plot(ws, [s["by_workers"][w]["speedup"] for w in ws], marker=st["marker"], color=st["color"],
                    label=s["engine"])
            fit = s.get("amdahl")
            if fit and len(ws) > 1:
                grid = np.linspace(1, max(map(int, ws)), 50)
                t1 = fit["serial_s"] + fit["parallel_s"]
                ax.plot(grid, t1 / (fit["serial_s"] + fit["parallel_s"] / grid), color=st["color"], linewidth=0.8,
                        linestyle=":", alpha=0.8)
            vs = [s["by_workers"][w]["speedup_vs_numpy"] for w in ws]
            if all(v is not None for v in vs):
                ax2.plot(ws, vs, marker=st["marker"], color=st["color"], label=s["engine"])
        if ws_all:
            ax.plot(ws_all, ws_all, color="black", linestyle="--", linewidth=1, label="ideal (linear)")
            ax.set_xticks(ws_all)
            ax2.set_xticks(ws_all)
        ax.plot([], [], color="gray", linestyle=":", label="Amdahl fit")
        mp = next((r.megapixels for r in records if r.case == case and r.megapixels), None)
        where = f" on {mp:.1f} MP RGB" if mp else ""
        ax.set_title(f"{case}{where}: speedup vs the engine's 1-worker run")
        ax.set_xlabel("workers")
        ax.set_ylabel("speedup (x, T(1) / T(p))")
        ax.legend(fontsize=8, loc="upper left")
        ax.set_ylim(bottom=0)
        if case == MEMCPY_CASE:
            # The baseline has no NumPy run: show the bandwidth the copy reached instead.
            copies = sorted((r for r in records if r.case == case and r.status == "ok" and r.median_s),
                            key=lambda r: r.workers)

            def bandwidth(r):  # bytes read plus bytes written: a float32 RGB result of the image, twice
                return 2 * r.megapixels * 1e6 * 3 * 4 / r.median_s / 1e9

            # More threads: the one-thread figure times their speedup timed in turn, as plotted above.
            one = next((bandwidth(r) for r in copies if r.workers == 1), None)
            gbs = [one * r.speedup_paired if one and r.workers != 1 and r.speedup_paired else bandwidth(r)
                   for r in copies]
            ws = [r.workers for r in copies]
            ax2.bar(ws, gbs, width=0.4, color=METHOD_STYLE("memcpy")["color"])
            for w, g in zip(ws, gbs):
                ax2.text(w, g, f"{g:.1f} GB/s", ha="center", va="bottom", fontsize=8)
            ax2.set_title(f"{case}: bandwidth (read + written), from the speedups above")
            ax2.set_xlabel("threads")
            ax2.set_ylabel("GB/s")
            continue
        ax2.axhline(1.0, color="black", linewidth=1)
        ax2.text(0.01, 1.0, " NumPy = 1", transform=ax2.get_yaxis_transform(), ha="left", va="bottom", fontsize=8)
        ax2.set_title(f"{case}: speed relative to the NumPy engine")
        ax2.set_xlabel("workers")
        ax2.set_ylabel("speedup vs NumPy (x, T_numpy / T(p))")
        ax2.legend(fontsize=8, loc="upper left")
        ax2.set_ylim(bottom=0)
    save(fig, path)


def table(records, analysis, opts) -> str:
    from .._text import md_table

    rows = []
    for s in analysis.get("speedup", {}).values():
        fit = s.get("amdahl") or {}
        for w, row in sorted(s["by_workers"].items(), key=lambda kv: int(kv[0])):
            rec = next((r for r in records if r.method == s["engine"] and r.case == s["case"] and r.workers == int(w)), None)
            rows.append([s["case"], s["engine"], w, f"{row['median_s']:.3f}", f"{rec.iqr_s:.3f}" if rec else "",
                         f"{row['speedup']:.2f}x", f"{100 * row['efficiency']:.0f}%",
                         f"{row['speedup_vs_numpy']:.2f}x" if row["speedup_vs_numpy"] else "",
                         f"{fit.get('parallel_fraction', float('nan')):.2f}" if fit else "",
                         f"{rec.peak_rss_mb:.0f}" if rec and rec.peak_rss_mb else "",
                         _check(rec)])
    for r in records:
        if r.method == "numpy" and r.status == "ok":
            rows.append([r.case, "numpy", 1, f"{r.median_s:.3f}", f"{r.iqr_s:.3f}", "1.00x", "100%", "1.00x", "",
                         f"{r.peak_rss_mb:.0f}" if r.peak_rss_mb else "", _check(r)])
    return md_table(["filter", "engine", "workers", "median s", "IQR s", "speedup", "efficiency", "vs NumPy",
                     "Amdahl f", "peak RSS MB", "check"], rows)


def _check(r):
    if r is None or not r.checked:
        return "not checked"
    return ("ok" if r.match else "MISMATCH") + f" (max err {r.max_abs_err:.2g}, tol {r.tolerance:.2g})"


# -- targets -------------------------------------------------------------------------------------------------


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


#: This suite's targets (:mod:`._targets`), listed in report.md in :data:`._suites.TARGET_ORDER`.
TARGETS = [
    Target("efficiency-2", "parallel efficiency at 2 workers >= 85% (processes, threads, numba)", "convolve-speedup",
           0.85, ">=", _efficiency_at(2)),
]
