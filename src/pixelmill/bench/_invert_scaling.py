"""Suite ``invert-scaling``: invert N in-memory images with every engine, for several N.

The images are picked once from the library (seeded) and decoded once; a sample of N images
is the first N of that pick, so every method sees exactly the same pixels. Each engine runs
its library-level path, :meth:`Engine.map`, over the N images (one engine instance; its pool
is started by the warm-up and reported separately as ``startup``). ``memcpy`` (a copy of
every image into ready, already-touched arrays: the same memory traffic as an inversion, without
allocating) is the floor.

``loops`` (pure Python) would take hours on whole images, so it is timed on a crop of the first
image and extrapolated linearly in megapixels; such records have ``extrapolated=True``.
"""

from __future__ import annotations

import time

import numpy as np

from ._harness import Group, apply_measurement, measure, pair_with_delegate, timing
from ._records import Record
from ._targets import Target, ok_records

NAME = "invert-scaling"
TITLE = "Inverting a library in memory: wall time against sample size"
ENTRY_POINT = "pixelmill.bench._invert_scaling:run_method"

#: Megapixels of the crop the loops engine is timed on.
LOOPS_CROP_MP = {True: 0.01, False: 0.05}


def _invert_item(item):
    """One image of the sample: ``(index, flavour, array) -> (index, inverted)``. Top-level: picklable."""
    from ..ops import Invert

    index, flavour, image = item
    out = np.empty_like(image)
    Invert().compute(image, out, flavour)
    return index, out


def plan(ctx) -> list[Group]:
    o = ctx.opts
    sample = ctx.sample(max(o["sizes"]))
    total = sum(s["mp"] for s in sample)
    ctx.inputs[NAME] = (
        f"{len(sample)} images picked once (seed {o['seed']}) from the library, {total:.1f} MP in all; "
        f"sample sizes {', '.join(map(str, o['sizes']))} are prefixes of that pick"
    )
    base = dict(ctx.spec_common(), suite=NAME, sizes=o["sizes"], images=[s["npy"] for s in sample],
                mps=[s["mp"] for s in sample], workers=o["max_workers"], loops_crop_mp=LOOPS_CROP_MP[o["quick"]],
                engines=list(o["engines"]))
    groups = [Group(NAME, "memcpy", "baseline", ENTRY_POINT, dict(base, method="memcpy", kind="baseline"))]
    for engine in o["engines"]:
        groups.append(Group(NAME, engine, "engine", ENTRY_POINT, dict(base, method=engine, kind="engine")))
    return groups


def run_method(spec: dict) -> list[Record]:
    from ._library import load_array

    images = [load_array(p) for p in spec["images"]]
    mps = spec["mps"]
    method = spec["method"]
    if method == "memcpy":
        return _run_memcpy(spec, images, mps)
    if method == "loops":
        return _run_loops(spec, images, mps)
    return _run_engine(spec, images, mps)


def _record(spec, n, **kw) -> Record:
    return Record(suite=NAME, method=spec["method"], kind=spec["kind"], case="invert", size=n,
                  size_unit="images", **kw)


def _check(rec: Record, images, results) -> Record:
    worst, total, count = 0.0, 0.0, 0
    for image, out in zip(images, results):
        ref = np.iinfo(image.dtype).max - image
        d = np.abs(out.astype(np.int16) - ref.astype(np.int16))
        worst = max(worst, float(d.max()))
        total += float(d.sum())
        count += d.size
    if len(results) != len(images):
        worst = float("inf")
    return rec.set_check((worst, total / max(1, count)), tolerance=0, reference="exact inversion (iinfo.max - x)")


def _run_memcpy(spec, images, mps) -> list[Record]:
    from ._library import max_mean_abs

    records = []
    for n in spec["sizes"]:
        subset = images[:n]
        outs = [np.empty_like(im) for im in subset]
        for out in outs:
            out.fill(0)  # touch every page now: the timed copies measure bandwidth, not page faults

        def copy_all():
            for out, im in zip(outs, subset):
                np.copyto(out, im)
            return outs

        m = measure(copy_all, **timing(spec))
        rec = _record(spec, n, workers=1, notes=("a copy of every image into arrays allocated and touched beforehand: "
                                                  "the memory-bandwidth floor of an inversion (engines also allocate "
                                                  "their outputs)"))
        apply_measurement(rec, m, megapixels=sum(mps[:n]))
        # A copy must equal its input: checked like every other method.
        errs = [max_mean_abs(a, b) for a, b in zip(m.result, subset)]
        rec.set_check((max(e[0] for e in errs), sum(e[1] for e in errs) / len(errs)), tolerance=0,
                      reference="the input images")
        m.result = None
        records.append(rec)
    return records


def _run_engine(spec, images, mps) -> list[Record]:
    from ..engines import get_engine_class, make_engine

    name = spec["method"]
    t0 = time.perf_counter()
    cls = get_engine_class(name)  # imports the engine's libraries: part of its start-up
    workers = spec["workers"] if cls.parallel else 1
    records = []
    with make_engine(name, workers) as engine:
        tiny = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
        first = list(engine.map(_invert_item, [(0, cls.flavour, tiny)]))
        startup = time.perf_counter() - t0
        rec = Record(
            suite=NAME, method=name, kind="engine", case="startup", size=0, size_unit="images", workers=workers,
            notes="cold: import the engine's libraries, create it, start its pool/JIT, map one 8x8 image",
        ).set_times([startup])
        records.append(_check(rec, [tiny], [out for _, out in first]))
        for n in spec["sizes"]:
            items = [(i, cls.flavour, images[i]) for i in range(n)]
            m = measure(lambda: list(engine.map(_invert_item, items)), **timing(spec))
            rec = apply_measurement(_record(spec, n, workers=workers), m, megapixels=sum(mps[:n]))
            pair_with_delegate(rec, engine, lambda e: list(e.map(_invert_item, [(i, e.flavour, images[i])
                                                                                for i in range(n)])),
                               runs=len(m.times), min_pairs=spec["min_pairs"], budget_s=spec["budget_s"], rivals=spec["engines"])
            outs = [out for _, out in sorted(m.result, key=lambda r: r[0])]
            _check(rec, images[:n], outs)
            rec.notes = f"Engine.map over the images, warm pool ({workers} worker{'s' if workers > 1 else ''})"
            records.append(rec)
    return records


def _run_loops(spec, images, mps) -> list[Record]:
    """Time loops on a crop and scale by megapixels (said in every record)."""
    from ..engines import make_engine

    first = images[0]
    target_px = spec["loops_crop_mp"] * 1e6
    rows = max(1, min(first.shape[0], int(target_px // first.shape[1]) or 1))
    crop = np.ascontiguousarray(first[:rows])
    crop_mp = crop.shape[0] * crop.shape[1] / 1e6
    with make_engine("loops") as engine:
        items = [(0, "python", crop)]
        m = measure(lambda: list(engine.map(_invert_item, items)), **timing(spec))
    s_per_mp = [t / crop_mp for t in m.times]
    records = []
    for n in spec["sizes"]:
        mp = sum(mps[:n])
        rec = _record(spec, n, workers=1)
        apply_measurement(rec, m, megapixels=mp)
        rec.set_times([s * mp for s in s_per_mp], megapixels=mp)
        rec.times_s = []  # not measured: only the crop's runs were
        rec.peak_rss_mb = rec.rss_before_mb = None  # the crop's memory says nothing about N images
        rec.extrapolated = True
        rec.notes = (f"extrapolated: timed on a {crop.shape[1]}x{crop.shape[0]} crop ({crop_mp:.3f} MP) of the first "
                     f"image, {len(m.times)} runs, median {np.median(s_per_mp):.2f} s/MP, scaled to {mp:.2f} MP")
        _check(rec, [crop], [m.result[0][1]])
        records.append(rec)
    return records


# -- analysis --------------------------------------------------------------------------------------------


def _series(records, method):
    return {int(r.size): r for r in records if r.method == method and r.case == "invert" and r.status == "ok"}


def analyse(records: list[Record], opts: dict) -> dict:
    """Break-even sizes of each parallel engine against numpy, warm and with start-up."""
    from ..engines import get_engine_class

    numpy = _series(records, "numpy")
    startups = {r.method: r.median_s for r in records if r.case == "startup" and r.status == "ok"}
    out = {"break_even": {}, "conclusions": []}
    sizes = sorted(numpy)
    if not sizes:
        out["conclusions"].append("The numpy engine did not run, so no break-even can be given.")
        return out
    for name in opts["engines"]:
        if name in ("numpy", "loops"):
            continue
        try:
            if not get_engine_class(name).parallel:
                continue
        except Exception:  # noqa: BLE001
            continue
        series = _series(records, name)
        if not series:
            continue
        common = [n for n in sizes if n in series]
        beats = {n: series[n].median_s < numpy[n].median_s for n in common}
        cold = {n: series[n].median_s + startups.get(name, 0.0) < numpy[n].median_s + startups.get("numpy", 0.0)
                for n in common}
        be = _from_where(common, beats)
        be_cold = _from_where(common, cold)
        ratio = {n: numpy[n].median_s / series[n].median_s for n in common}
        out["break_even"][name] = {"warm": be, "with_startup": be_cold, "speed_vs_numpy": ratio,
                                   "startup_s": startups.get(name)}
        label = name.capitalize() if name != "numba" else "Numba"
        largest = common[-1]
        if be is None:
            out["conclusions"].append(
                f"{label} does not beat NumPy at any measured size up to {largest} images on this machine "
                f"(at {largest} images it runs at {ratio[largest]:.2f}x NumPy's speed)."
            )
        else:
            text = f"{label} beats NumPy from {be} image{'s' if be != 1 else ''} on this machine (warm pool; {ratio[largest]:.2f}x NumPy's speed at {largest} images)"
            if be_cold is None:
                text += f", but counting its {startups.get(name, 0):.2f} s start-up it does not within {largest} images."
            elif be_cold != be:
                text += f"; counting its {startups.get(name, 0):.2f} s start-up, from {be_cold} image{'s' if be_cold != 1 else ''}."
            else:
                text += "."
            out["conclusions"].append(text)
    loops = _series(records, "loops")
    if loops and sizes:
        n = max(n for n in sizes if n in loops) if any(n in loops for n in sizes) else None
        if n:
            out["conclusions"].append(
                f"Pure-Python loops would take {loops[n].median_s:,.0f} s for {n} images, "
                f"{loops[n].median_s / numpy[n].median_s:,.0f}x NumPy (extrapolated from a crop, see the notes)."
            )
    memcpy = _series(records, "memcpy")
    if memcpy and sizes:
        n = sizes[-1]
        if n in memcpy:
            # Fastest runs: at millisecond scale the medians mostly measure whether the allocator
            # handed out fresh pages (page faults) or reused ones, which differs run to run.
            out["memcpy_ratio"] = memcpy[n].min_s / numpy[n].min_s
            text = (f"NumPy inverts {n} image{'s' if n != 1 else ''} ({numpy[n].megapixels:.1f} MP) in "
                    f"{numpy[n].min_s * 1e3:.1f} ms at best; copying them into ready arrays takes "
                    f"{memcpy[n].min_s * 1e3:.1f} ms, so inversion (allocating its outputs) runs at "
                    f"{100 * out['memcpy_ratio']:.0f}% of memcpy speed (fastest runs compared: at millisecond "
                    "scale the medians mostly measure page faults)")
            out["conclusions"].append(text + ".")
    return out


def _from_where(sizes, flags) -> int | None:
    """The smallest size from which ``flags`` holds at every larger measured size."""
    result = None
    for n in reversed(sizes):
        if flags[n]:
            result = n
        else:
            break
    return result


def plot(records, analysis, path, opts) -> None:
    from ._plots import METHOD_STYLE, new_figure, save

    fig, (ax, ax2) = new_figure(1, 2, width=13, height=5.2)
    methods = [m for m in ["loops", "numpy", *opts["engines"], "memcpy"]]
    seen = []
    for method in methods:
        if method in seen:
            continue
        seen.append(method)
        series = _series(records, method)
        if not series:
            continue
        xs = sorted(series)
        ys = [series[n].median_s for n in xs]
        lo = [series[n].min_s for n in xs]
        hi = [series[n].max_s for n in xs]
        style = METHOD_STYLE(method)
        extrap = any(series[n].extrapolated for n in xs)
        label = method + (" (extrapolated)" if extrap else "") + (" (floor)" if method == "memcpy" else "")
        kw = dict(color=style["color"], marker=style["marker"], label=label, linestyle=style["linestyle"])
        if extrap:
            kw.update(markerfacecolor="white", linestyle=":")
        ax.plot(xs, ys, **kw)
        if not extrap:
            ax.fill_between(xs, lo, hi, color=style["color"], alpha=0.15, linewidth=0)
        numpy = _series(records, "numpy")
        if method not in ("numpy",) and numpy:
            common = [n for n in xs if n in numpy]
            ax2.plot(common, [numpy[n].median_s / series[n].median_s for n in common], **kw)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sample size (images)")
    ax.set_ylabel("wall time per run (s, median; band = min..max)")
    ax.set_title("Invert N images in memory")
    ax2.axhline(1.0, color="black", linewidth=1)
    ax2.text(0.99, 1.0, " NumPy ", transform=ax2.get_yaxis_transform(), ha="right", va="bottom", fontsize=8)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("sample size (images)")
    ax2.set_ylabel("speed relative to NumPy (x, >1 = faster)")
    bes = analysis.get("break_even", {})
    found = [f"{k} from {v['warm']}" for k, v in bes.items() if v["warm"] is not None]
    never = [k for k, v in bes.items() if v["warm"] is None]
    line = "break-even (warm): " + (", ".join(found) if found else "none") + (f"; never: {', '.join(never)}" if never else "")
    ax2.set_title(f"Speed relative to NumPy (>1 = faster)\n{line}", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(8, len(labels)), fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 0.04))
    for a in (ax, ax2):
        _int_ticks(a, sorted({int(r.size) for r in records if r.case == "invert" and r.status == "ok"}))
    loops_note = any(r.extrapolated for r in records)
    if loops_note:
        fig.text(0.01, 0.01, "Hollow markers, dotted: loops timed on a crop and extrapolated linearly in megapixels.",
                 fontsize=8, style="italic")
    save(fig, path, bottom=0.14)


def _int_ticks(ax, values):
    from matplotlib.ticker import NullFormatter

    if values:
        ax.set_xticks(values)
        ax.set_xticklabels([str(v) for v in values])
        ax.xaxis.set_minor_formatter(NullFormatter())


def table(records, analysis, opts) -> str:
    from .._text import md_table

    rows = []
    numpy = _series(records, "numpy")
    for r in records:
        if r.case != "invert" or r.status != "ok":
            continue
        rel = numpy[int(r.size)].median_s / r.median_s if int(r.size) in numpy and r.median_s else None
        rows.append([r.method + (" *" if r.extrapolated else ""), int(r.size), f"{r.megapixels:.1f}",
                     _ms(r.median_s), _ms(r.iqr_s), f"{r.mp_per_s:,.0f}" if r.mp_per_s else "",
                     f"{rel:.2f}x" if rel else "", f"{r.peak_rss_mb:.0f}" if r.peak_rss_mb else "",
                     _ok(r)])
    text = md_table(["method", "images", "MP", "median", "IQR", "MP/s", "vs NumPy", "peak RSS MB", "check"], rows)
    starts = [r for r in records if r.case == "startup" and r.status == "ok"]
    if starts:
        text += "\n\nStart-up (cold, once per process: import, pool/JIT start, one tiny image): " + ", ".join(
            f"{r.method} {r.median_s:.2f} s" for r in starts) + "."
    if any(r.extrapolated for r in records):
        text += "\n\n\\* extrapolated: " + next(r.notes for r in records if r.extrapolated and r.notes) + "."
    return text


def _ms(s):
    if s is None:
        return ""
    return f"{s * 1e3:,.1f} ms" if s < 10 else f"{s:,.1f} s"


def _ok(r):
    if not r.checked:
        return "not checked"
    return ("ok" if r.match else "MISMATCH") + f" (max err {r.max_abs_err:g})"


# -- targets -------------------------------------------------------------------------------------------------


def _invert_memcpy(records, analyses, opts):
    rs = ok_records(records, suite="invert-scaling", case="invert")
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


#: This suite's targets (:mod:`._targets`), listed in report.md in :data:`._suites.TARGET_ORDER`.
TARGETS = [
    Target("invert-memcpy", "invert in memory >= 80% of memcpy bandwidth", "invert-scaling", 0.80, ">=",
           _invert_memcpy),
]
