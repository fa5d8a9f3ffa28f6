"""Suite ``filter-bank``: several filters on one image, one after the other vs at once.

*One after the other* is ``[engine.run(op, image) for op in ops]``: the image is padded and
the work scheduled once per filter. *At once* is ``engine.run_many(ops, image)``: engines that
support it pad once and put every filter's tiles in the same pool, so workers stay busy across
filter boundaries. The serial engines run a bank one filter at a time either way.
"""

from __future__ import annotations

from ._harness import Group, apply_measurement, measure, pair_with_delegate, timing
from ._records import Record

NAME = "filter-bank"
TITLE = "A filter bank on one image: one after the other vs at once"
ENTRY_POINT = "pixelmill.bench._filter_bank:run_method"
MODES = ("sequential", "at-once")
#: No target judges a filter bank yet (see :mod:`._targets`).
TARGETS: list = []


def ops_for(opts) -> list[str]:
    return [f"gaussian:size={opts['gaussian_size']},sigma={opts['sigma']:g}", "sobel", "laplacian"]


def plan(ctx) -> list[Group]:
    from ._convolve_speedup import parallel_engines

    o = ctx.opts
    image = ctx.image(o["bank_mp"])
    ops = ops_for(o)
    refs = {spec: ctx.reference(image, spec) for spec in ops}
    ctx.inputs[NAME] = f"{image['source']}; bank of {len(ops)} filters: {', '.join(ops)}; {o['max_workers']} workers"
    engines = (["numpy"] if "numpy" in o["engines"] else []) + parallel_engines(o)
    base = dict(ctx.spec_common(), suite=NAME, image=image["npy"], mp=image["mp"], ops=ops, refs=refs,
                engines=engines)
    return [Group(NAME, e, "engine", ENTRY_POINT,
                  dict(base, method=e, kind="engine", workers=1 if e == "numpy" else o["max_workers"]))
            for e in engines]


def run_method(spec: dict) -> list[Record]:
    from ..engines import make_engine
    from ._library import load_array, max_mean_abs
    from ._ops import BORDER, make_op

    image = load_array(spec["image"])
    ops = [make_op(s) for s in spec["ops"]]
    records = []
    with make_engine(spec["method"], spec["workers"]) as engine:
        for mode in MODES:
            ran = set()  # for auto: the engines it went to, one per filter or one for the bank
            if mode == "sequential":
                def work(eng):
                    outs = []
                    for op in ops:
                        outs.append(eng.run(op, image, border=BORDER))
                        chose = getattr(eng, "last_choice", None)
                        ran.add(chose and (chose.engine, chose.workers))
                    return outs
                last = ops[-1:]  # auto's delegate keeps the tiles of the last filter's call
            else:
                def work(eng):
                    return eng.run_many(ops, image, border=BORDER)
                last = ops
            m = measure(lambda: work(engine), **timing(spec))
            rec = Record(suite=NAME, method=spec["method"], kind="engine", case=f"bank:{mode}", size=spec["mp"],
                         size_unit="MP", workers=spec["workers"])
            if len(ran) <= 1:  # one engine ran the whole bank: auto can be timed beside it
                pair_with_delegate(rec, engine, work, runs=len(m.times), min_pairs=spec["min_pairs"], budget_s=spec["budget_s"],
                                   rivals=spec["engines"], shape=image.shape,
                                   itemsize=max(op.out_dtype(image.dtype).itemsize for op in last))
            apply_measurement(rec, m, megapixels=spec["mp"])
            # Every filter's output is checked; the record keeps the worst.
            worst, means, tol_ok, names = 0.0, [], True, set()
            for op_spec, out in zip(spec["ops"], m.result):
                ref = spec["refs"][op_spec]
                err = max_mean_abs(out, load_array(ref["npy"], mmap=True))
                worst = max(worst, err[0])
                means.append(err[1])
                tol_ok &= err[0] <= ref["tolerance"]
                names.add(ref["name"])
            tol = max(spec["refs"][s]["tolerance"] for s in spec["ops"])
            rec.set_check((worst, sum(means) / len(means)), tolerance=tol, reference="; ".join(sorted(names)))
            rec.match = bool(tol_ok)  # each filter against its own tolerance
            rec.notes = f"{len(ops)} filters ({', '.join(op.label for op in ops)}); megapixels = one image"
            m.result = None
            records.append(rec)
    return records


def _pairs(records):
    out: dict = {}
    for r in records:
        if r.status == "ok" and r.case.startswith("bank:"):
            out.setdefault(r.method, {})[r.case.split(":", 1)[1]] = r
    return out


def analyse(records: list[Record], opts: dict) -> dict:
    pairs = _pairs(records)
    result = {"gain": {}, "conclusions": []}
    for engine, modes in pairs.items():
        if set(MODES) <= set(modes):
            result["gain"][engine] = modes["sequential"].median_s / modes["at-once"].median_s
    parallel = {e: g for e, g in result["gain"].items() if e != "numpy"}
    if parallel:
        best = max(parallel, key=parallel.get)
        helped = [e for e, g in parallel.items() if g > 1.05]
        hurt = [e for e, g in parallel.items() if g < 0.95]
        result["conclusions"].append(
            f"Running the bank at once is {parallel[best]:.2f}x faster than one filter after the other with {best}"
            + (f"; it helps (>5%) {', '.join(helped)}" if helped else "; no engine gains more than 5%")
            + (f" and is slower with {', '.join(hurt)}" if hurt else "") + "."
        )
    fastest = min(((r.median_s, r.method, r.case) for r in records if r.status == "ok" and r.median_s), default=None)
    if fastest:
        result["conclusions"].append(
            f"Fastest bank: {fastest[1]} ({fastest[2].split(':', 1)[1]}), {fastest[0]:.3f} s for the whole bank.")
    return result


def plot(records, analysis, path, opts) -> None:
    import numpy as np
    from matplotlib.patches import Patch

    from ._plots import METHOD_STYLE, new_figure, save

    pairs = _pairs(records)
    engines = list(pairs)
    fig, ax = new_figure(1, 1, width=max(7, 1.6 * len(engines) + 3), height=5.5)
    top = max((r.max_s for m in pairs.values() for r in m.values()), default=1.0)
    scale, unit = (1e3, "ms") if top < 2 else (1.0, "s")
    x = np.arange(len(engines))
    width = 0.38
    for k, mode in enumerate(MODES):
        got = [pairs[e].get(mode) for e in engines]
        vals = [r.median_s * scale if r else np.nan for r in got]
        err = [[(r.median_s - r.min_s) * scale if r else 0 for r in got],
               [(r.max_s - r.median_s) * scale if r else 0 for r in got]]
        bars = ax.bar(x + (k - 0.5) * width, vals, width, yerr=err, capsize=3,
                      color=[METHOD_STYLE(e)["color"] for e in engines], alpha=0.55 if mode == "sequential" else 1.0,
                      hatch="//" if mode == "sequential" else None, edgecolor="black", linewidth=0.5)
        for rect, r in zip(bars, got):
            if r:
                ax.annotate(f"{r.median_s * scale:.0f}" if unit == "ms" else f"{r.median_s:.2f}",
                            (rect.get_x() + rect.get_width() / 2, r.max_s * scale),
                            textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    labels = []
    for e in engines:
        w = next((r.workers for r in records if r.method == e and r.workers), None)
        labels.append(f"{e}\n({w} worker{'s' if w and w > 1 else ''})")
    ax.set_xticks(x)
    ax.set_xticklabels(labels)
    mp = next((r.megapixels for r in records if r.megapixels), None)
    n = next((r.notes.split(" ")[0] for r in records if r.notes), "?")
    ax.set_title(f"Filter bank of {n} filters on a {mp or 0:.1f} MP RGB image (lower is better)")
    ax.set_ylabel(f"wall time for the whole bank ({unit}, median; whiskers = min..max)")
    ax.set_xlabel("engine")
    ax.set_ylim(0, top * scale * 1.15)
    ax.legend(handles=[Patch(facecolor="#bbbbbb", hatch="//", edgecolor="black", label="one after the other (run per filter)"),
                       Patch(facecolor="#555555", edgecolor="black", label="at once (run_many)")], fontsize=9)
    save(fig, path)


def table(records, analysis, opts) -> str:
    from .._text import md_table

    rows = []
    for engine, modes in _pairs(records).items():
        for mode in MODES:
            r = modes.get(mode)
            if not r:
                continue
            rows.append([engine, r.workers, mode, f"{r.median_s:.3f}", f"{r.iqr_s:.3f}",
                         f"{analysis['gain'][engine]:.2f}x" if mode == "at-once" and engine in analysis.get("gain", {}) else "",
                         f"{r.peak_rss_mb:.0f}" if r.peak_rss_mb else "",
                         ("ok" if r.match else "MISMATCH") + f" (max err {r.max_abs_err:.2g})" if r.checked else "not checked"])
    return md_table(["engine", "workers", "mode", "median s", "IQR s", "at once vs sequential", "peak RSS MB", "check"], rows)
