"""Suite ``batch``: a JPEG library end to end (decode, invert, encode), in megapixels per second.

pixelmill runs :func:`pixelmill.batch.run_batch` with each engine (a fresh output folder per
run; engine start-up is inside the timing, as a user pays it). The peers run the same job as a
user would write it: OpenCV and Pillow in a ``multiprocessing.Pool`` (the pool's start-up is
timed too), pyvips in a plain loop over the files with libvips' own threads. The *floor* is
decoding and encoding every image with pixelmill's io and no operation: in one process, and with
N threads and N processes (the faster of the two is the floor for N workers; Pillow releases the
GIL while it decodes and encodes). No batch of this library can be much faster than decode + encode. Every output is
decoded and compared with pixelmill's numpy-engine output; other encoders produce slightly
different JPEGs, so peers are held to a mean difference of at most 2 grey levels.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ._harness import Group, apply_measurement, measure
from ._records import Record

NAME = "batch"
TITLE = "A JPEG library end to end: decode, invert, encode"
TARGET = "pixelmill.bench._batch:run_method"
QUALITY = 95
PEERS = {
    "cv2": "cv2.imread -> cv2.bitwise_not -> cv2.imwrite(IMWRITE_JPEG_QUALITY=95) in multiprocessing.Pool(N)",
    "pillow": "Image.open -> ImageOps.invert -> save(quality=95) in multiprocessing.Pool(N)",
    "pyvips": "for each file: Image.new_from_file(access='sequential').invert().write_to_file(Q=95), libvips threads = N",
}
PEER_MODULES = {"cv2": "cv2", "pillow": "PIL", "pyvips": "pyvips"}
ENGINE_TOLERANCE = 0.0  # same encoder, same settings: the same pixels
PEER_TOLERANCE = 2.0    # mean absolute difference: another JPEG encoder, not another operation


def plan(ctx) -> list[Group]:
    from ._library import pick

    o = ctx.opts
    n = min(o["batch_images"], len(ctx.library))
    paths = pick(ctx.library, n, seed=o["seed"])
    lib = ctx.workdir / "batch-library"
    lib.mkdir(parents=True, exist_ok=True)
    total_px = 0
    from PIL import Image

    for k, p in enumerate(paths):
        dst = lib / f"{k:04d}_{p.stem}.jpg"
        if p.suffix.lower() in (".jpg", ".jpeg"):
            try:
                os.symlink(os.path.abspath(p), dst)
            except OSError:
                shutil.copyfile(p, dst)
        else:  # the issue asks for a JPEG library: re-encode anything else once
            with Image.open(p) as im:
                im.convert("RGB").save(dst, quality=QUALITY)
        with Image.open(dst) as im:
            total_px += im.size[0] * im.size[1]
    mp = total_px / 1e6
    ctx.inputs[NAME] = f"{n} JPEG files picked from the library ({mp:.1f} MP in all), output JPEG quality {QUALITY}"
    ref = ctx.workdir / "batch-reference"
    from ..batch import RunSettings, run_batch
    from ..ops import Invert

    result = run_batch([str(lib)], str(ref), RunSettings(ops=(Invert(),), engine="numpy", workers=1, quality=QUALITY))
    if result.count("done") != n:
        raise RuntimeError(f"the reference batch (numpy engine) did {result.count('done')} of {n} images")
    W = o["max_workers"]
    base = dict(ctx.spec_common(), suite=NAME, library=str(lib), reference=str(ref), mp=mp, images=n,
                out=str(ctx.workdir / "batch-out"), quality=QUALITY)
    variants = [[1, "serial"]] + ([[W, "threads"], [W, "processes"]] if W > 1 else [])
    groups = [Group(NAME, "floor", "baseline", TARGET, dict(base, method="floor", kind="baseline", variants=variants))]
    for engine in o["engines"]:
        if engine == "loops":
            continue  # pure Python over whole photographs would take hours (invert-scaling shows its rate)
        groups.append(Group(NAME, engine, "engine", TARGET,
                            dict(base, method=engine, kind="engine", workers=[1 if engine == "numpy" else W])))
    for peer in PEERS:
        groups.append(Group(NAME, peer, "peer", TARGET, dict(base, method=peer, kind="peer", workers=[W])))
    return groups


# -- one file, as each peer's user would write it (top-level: the pool pickles them) -----------------------------


def _cv2_one(job):
    import cv2

    src, dst, q = job
    cv2.imwrite(dst, cv2.bitwise_not(cv2.imread(src, cv2.IMREAD_COLOR)), [cv2.IMWRITE_JPEG_QUALITY, q])
    return dst


def _pillow_one(job):
    from PIL import Image, ImageOps

    src, dst, q = job
    with Image.open(src) as im:
        ImageOps.invert(im.convert("RGB")).save(dst, quality=q)
    return dst


def _floor_one(job):
    from ..io import read_image, write_image

    src, dst, q = job
    write_image(dst, read_image(src), quality=q)
    return dst


def _pool_map(fn, jobs, workers, pool="processes"):
    """``fn`` over ``jobs`` as a user would: a loop, a thread pool or a ``multiprocessing.Pool``."""
    if workers == 1 or pool == "serial":
        return [fn(j) for j in jobs]
    if pool == "threads":
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as ex:
            return list(ex.map(fn, jobs))
    import multiprocessing

    with multiprocessing.Pool(workers) as p:
        return list(p.imap_unordered(fn, jobs, chunksize=1))


def _pyvips_all(jobs):
    import pyvips

    for src, dst, q in jobs:
        pyvips.Image.new_from_file(src, access="sequential").invert().write_to_file(dst, Q=q)
    return [d for _, d, _ in jobs]


# -- running ---------------------------------------------------------------------------------------------------


def _decode(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _compare(outdir: Path, reference: Path, names: list[str], *, invert_reference: bool = False
             ) -> tuple[float, float, int]:
    """(max abs, mean abs, missing outputs) of every output against the reference's.

    ``invert_reference``: compare with the reference inverted back (for the floor, which
    re-encodes the inputs without an operation).
    """
    worst, total, count, missing = 0.0, 0.0, 0, 0
    for name in names:
        out = outdir / name
        if not out.exists():
            missing += 1
            continue
        a, b = _decode(out).astype(np.int16), _decode(reference / name).astype(np.int16)
        if invert_reference:
            b = 255 - b
        if a.shape != b.shape:
            missing += 1
            continue
        d = np.abs(a - b)
        worst = max(worst, float(d.max()))
        total += float(d.sum())
        count += d.size
    return worst, (total / count if count else float("inf")), missing


def run_method(spec: dict) -> list[Record]:
    lib, ref = Path(spec["library"]), Path(spec["reference"])
    names = sorted(p.name for p in lib.iterdir() if p.suffix == ".jpg")
    method, kind = spec["method"], spec["kind"]
    if kind == "peer":
        try:
            __import__(PEER_MODULES[method])
            if method == "pyvips":
                import pyvips

                pyvips.cache_set_max(0)
        except Exception as exc:  # noqa: BLE001
            return [Record(suite=NAME, method=method, kind=kind, case="invert", status="not installed",
                           notes=f"import failed: {type(exc).__name__}: {exc}")]
    records = []
    variants = spec.get("variants") or [[w, None] for w in spec["workers"]]
    for w, pool in variants:
        outroot = Path(spec["out"]) / f"{method}-{w}-{pool}"
        state = {"k": 0, "dir": None}

        def setup():
            if state["dir"] is not None:
                shutil.rmtree(state["dir"], ignore_errors=True)
            state["k"] += 1
            state["dir"] = outroot / f"run{state['k']}"
            state["dir"].mkdir(parents=True)

        fn, case, note = _runner(method, kind, w, lib, state, names, spec, pool)
        m = measure(fn, repeats=spec["repeats"], warmup=spec["warmup"], budget_s=spec["budget_s"], setup=setup)
        rec = Record(suite=NAME, method=method, kind=kind, case=case, size=spec["images"], size_unit="images",
                     workers=w, notes=note)
        apply_measurement(rec, m, megapixels=spec["mp"])
        worst, mean, missing = _compare(state["dir"], ref, names, invert_reference=method == "floor")
        if missing:
            worst = mean = float("inf")
            rec.notes += f"; {missing} of {len(names)} outputs missing or of the wrong size"
        # The floor re-encodes the inputs (a second generation of JPEG loss): held to the peers' tolerance.
        tol_on = "max_abs_err" if kind == "engine" else "mean_abs_err"
        tol = ENGINE_TOLERANCE if kind == "engine" else PEER_TOLERANCE
        rec.set_check((worst, mean), tolerance=tol, tolerance_on=tol_on,
                      reference="outputs of pixelmill's numpy-engine batch, decoded" +
                                ("; inverted back (the floor does no operation)" if method == "floor" else ""))
        records.append(rec)
        shutil.rmtree(outroot, ignore_errors=True)
    return records


def _runner(method, kind, w, lib, state, names, spec, pool=None):
    q = spec["quality"]

    def jobs():
        return [(str(lib / n), str(state["dir"] / n), q) for n in names]

    if kind == "engine":
        from ..batch import RunSettings, run_batch
        from ..ops import Invert

        settings = RunSettings(ops=(Invert(),), engine=method, workers=w, quality=q)

        def fn():
            result = run_batch([str(lib)], str(state["dir"]), settings)
            if result.count("done") != len(names):
                raise RuntimeError(f"run_batch did {result.count('done')} of {len(names)} images: "
                                   + "; ".join(i["error"] or "" for i in result.items if i["status"] == "failed")[:300])
            return None
        return fn, "invert", f"pixelmill.batch.run_batch(engine={method!r}, workers={w}), start-up included"
    if method == "floor":
        how = {"serial": "in one process", "threads": f"ThreadPoolExecutor({w})",
               "processes": f"multiprocessing.Pool({w})"}[pool]
        case = "decode+encode" + ("" if pool == "serial" else f":{pool}")
        return (lambda: _pool_map(_floor_one, jobs(), w, pool)), case, (
            f"pixelmill.io read_image + write_image, no operation, {how}")
    if method == "cv2":
        return (lambda: _pool_map(_cv2_one, jobs(), w)), "invert", PEERS["cv2"].replace("(N)", f"({w})")
    if method == "pillow":
        return (lambda: _pool_map(_pillow_one, jobs(), w)), "invert", PEERS["pillow"].replace("(N)", f"({w})")
    if method == "pyvips":
        import pyvips

        pyvips.concurrency_set(w)
        return (lambda: _pyvips_all(jobs())), "invert", PEERS["pyvips"].replace("= N", f"= {w}")
    raise ValueError(method)


# -- analysis ------------------------------------------------------------------------------------------------------


def best_floors(records) -> dict:
    """{workers: the fastest decode+encode record with that many workers}."""
    out: dict = {}
    for r in records:
        if r.suite == NAME and r.kind == "baseline" and r.status == "ok" and r.mp_per_s:
            if r.workers not in out or r.mp_per_s > out[r.workers].mp_per_s:
                out[r.workers] = r
    return out


def analyse(records: list[Record], opts: dict) -> dict:
    ok = [r for r in records if r.status == "ok" and r.mp_per_s]
    result = {"conclusions": []}
    floors = best_floors(records)
    engines = [r for r in ok if r.kind == "engine"]
    peers = [r for r in ok if r.kind == "peer"]
    if engines:
        best = max(engines, key=lambda r: r.mp_per_s)
        result["best_engine"] = [best.method, best.workers, best.mp_per_s]
        text = f"pixelmill's fastest batch is {best.method} at {best.mp_per_s:.1f} MP/s ({best.workers} worker{'s' if best.workers != 1 else ''})"
        floor = floors.get(best.workers)
        if floor:
            result["floor_ratio"] = best.mp_per_s / floor.mp_per_s
            text += (f", {100 * result['floor_ratio']:.0f}% of the decode+encode floor with the same workers "
                     f"({floor.mp_per_s:.1f} MP/s)")
        result["conclusions"].append(text + ".")
    if peers and engines:
        bp = max(peers, key=lambda r: r.mp_per_s)
        be = max(engines, key=lambda r: r.mp_per_s)
        result["conclusions"].append(
            f"The fastest peer is {bp.method} at {bp.mp_per_s:.1f} MP/s; pixelmill's best reaches "
            f"{be.mp_per_s / bp.mp_per_s:.2f}x its throughput.")
    if 1 in floors and len(floors) > 1:
        wmax = max(floors)
        how = floors[wmax].case.split(":")[-1]
        result["conclusions"].append(
            f"Decode+encode alone scales from {floors[1].mp_per_s:.1f} MP/s (1 worker) to "
            f"{floors[wmax].mp_per_s:.1f} MP/s ({wmax} {how}), {floors[wmax].mp_per_s / floors[1].mp_per_s:.2f}x.")
    bad = [r for r in records if r.checked and not r.match]
    if bad:
        result["conclusions"].append("Outputs that differ from pixelmill's reference beyond tolerance: "
                                     + ", ".join(f"{r.method} (max {r.max_abs_err:g}, mean {r.mean_abs_err:.2f})" for r in bad) + ".")
    return result


def plot(records, analysis, path, opts) -> None:
    from ._plots import METHOD_STYLE, new_figure, save

    ok = sorted((r for r in records if r.status == "ok" and r.mp_per_s), key=lambda r: r.mp_per_s)
    fig, ax = new_figure(1, 1, width=11, height=max(4.0, 0.42 * len(ok) + 1.8))
    labels, vals, colors, hatches = [], [], [], []
    for r in ok:
        who = {"engine": f"pixelmill {r.method}", "peer": r.method, "baseline": "floor: decode+encode"}[r.kind]
        pool = f"{r.case.split(':')[1]}, " if r.kind == "baseline" and ":" in r.case else ""
        labels.append(f"{who} ({pool}{r.workers} {'worker' if r.workers == 1 else 'workers'})")
        vals.append(r.mp_per_s)
        colors.append("#cccccc" if r.kind == "baseline" else METHOD_STYLE(r.method)["color"])
        hatches.append({"engine": "", "peer": "//", "baseline": ".."}[r.kind])
    bars = ax.barh(range(len(ok)), vals, color=colors, edgecolor="black", linewidth=0.4, hatch=hatches or None)
    for bar, r in zip(bars, ok):
        # Throughput spread from the fastest and slowest runs.
        lo, hi = r.megapixels / r.max_s, r.megapixels / r.min_s
        ax.plot([lo, hi], [bar.get_y() + bar.get_height() / 2] * 2, color="black", linewidth=1)
        mark = "" if (r.checked and r.match) else ("  MISMATCH" if r.checked else "  unchecked")
        ax.annotate(f"  {r.mp_per_s:.1f}{mark}", (max(hi, bar.get_width()), bar.get_y() + bar.get_height() / 2),
                    va="center", fontsize=8, color="red" if mark else "black")
    for w, r in best_floors(records).items():
        ax.axvline(r.mp_per_s, color="black", linestyle="--", linewidth=0.8)
        ax.annotate(f"floor, {w} worker{'s' if w > 1 else ''} ", (r.mp_per_s, 0.0), xycoords=("data", "axes fraction"),
                    rotation=90, va="bottom", ha="right", fontsize=7.5)
    ax.set_yticks(range(len(ok)))
    ax.set_yticklabels(labels, fontsize=9)
    if vals:
        ax.set_xlim(0, max(vals) * 1.25)
    n = next((int(r.size) for r in ok if r.size), 0)
    mp = next((r.megapixels for r in ok if r.megapixels), 0)
    ax.set_title(f"Batch: decode, invert, encode {n} JPEGs ({mp:.1f} MP) — higher is better")
    ax.set_xlabel("throughput (megapixels per second, at the median run; line = fastest..slowest run)")
    fig.text(0.01, 0.005, "Dashed lines: the decode+encode floor (no operation; the faster pool per worker count). "
             "Hatched: other libraries.",
             fontsize=8, style="italic")
    save(fig, path)


def table(records, analysis, opts) -> str:
    from ._report import md_table

    rows = []
    for r in sorted((r for r in records if r.status == "ok"), key=lambda r: -(r.mp_per_s or 0)):
        rows.append([r.method, r.kind, r.workers, r.case, f"{r.median_s:.3f}", f"{r.iqr_s:.3f}",
                     f"{r.mp_per_s:.1f}" if r.mp_per_s else "", f"{r.peak_rss_mb:.0f}" if r.peak_rss_mb else "",
                     (("ok" if r.match else "MISMATCH") + f" (max {r.max_abs_err:g}, mean {r.mean_abs_err:.3f}; "
                      f"tol {r.tolerance:g} on {r.tolerance_on.replace('_abs_err', '')})") if r.checked else "not checked",
                     r.notes])
    return md_table(["method", "kind", "workers", "case", "median s", "IQR s", "MP/s", "peak RSS MB", "check", "how"], rows)
