"""Suite ``peers``: the same work done by OpenCV, SciPy ndimage, scikit-image, Pillow and pyvips.

Every method gets the same RGB uint8 image in memory and must return the uint8 image a user
would save: ``invert``, the Gaussian, a 15 x 15 disk blur (not separable) and the Sobel
gradient magnitude, all with the edge pixel replicated at the border (pixelmill's ``nearest``).
pixelmill's timings include converting its float32 result to uint8 (the operation's default
policy), so both sides produce the same thing. Each result is compared with pixelmill's numpy
engine output; a peer whose semantics differ is configured to match where it can, and the
record's notes say what still differs (e.g. OpenCV's 8-bit Gaussian is fixed-point, so values
may differ by 1; Pillow leaves a border of kernel-radius pixels unfiltered, so only the interior
is compared). Peers that are not installed, or cannot do an operation, get a row saying so.
"""

from __future__ import annotations

import importlib
import math

import numpy as np

from ._harness import Group, apply_measurement, measure, pair_with_delegate, timing
from ._records import Record
from ._targets import Target, ok_records

NAME = "peers"
TITLE = "The same filters with OpenCV, SciPy, scikit-image, Pillow and pyvips"
ENTRY_POINT = "pixelmill.bench._peers:run_method"

#: Peer name -> the module whose import decides whether it is installed.
PEER_MODULES = {"cv2": "cv2", "scipy": "scipy.ndimage", "skimage": "skimage.filters", "pillow": "PIL.ImageFilter",
                "pyvips": "pyvips"}
#: Which pip package provides it (for "not installed" rows).
PEER_PACKAGES = {"cv2": "opencv-python-headless", "scipy": "scipy", "skimage": "scikit-image", "pillow": "pillow",
                 "pyvips": "pyvips[binary]"}
#: Peers whose thread count can be set: timed with 1 and with N threads.
THREADED = {"cv2", "pyvips"}
#: pixelmill engines shown next to the peers, and the worker counts they run with.
PIXELMILL = {"numpy": "one", "numba": "both", "threads": "max", "auto": "both"}


class Unsupported(Exception):
    """The peer has no way to do this operation (the message says why)."""


#: Kernels users bring that no exact fast path but the FFT (or, for the Gaussian, width)
#: helps: random 15, 31 and 63 a side, and a Gaussian of sigma 10 sized from sigma (4 sigma
#: each side, as scipy's truncate=4). Full runs only: a quick run keeps to the four above.
LARGE_KERNELS = ("random:15", "random:31", "random:63", "gaussian:size=81,sigma=10")
#: Direct-sum peers (scipy.ndimage.convolve, pyvips conv) time random kernels up to this side;
#: larger ones take minutes on a large photo and get an "unsupported" row saying so.
DIRECT_PEER_MAX_SIDE = 15


def ops_for(opts) -> list[str]:
    base = ["invert", f"gaussian:size={opts['gaussian_size']},sigma={opts['sigma']:g}", "disk:15", "sobel"]
    return base if opts.get("quick") else base + [s for s in LARGE_KERNELS if s not in base]


def plan(ctx) -> list[Group]:
    o = ctx.opts
    image = ctx.image(o["image_mp"] / 2 if o["quick"] else o["image_mp"])
    ops = ops_for(o)
    refs = {spec: ctx.reference(image, spec, kind="pixelmill-uint8") for spec in ops}
    ctx.inputs[NAME] = (f"{image['source']}; operations {', '.join(ops)}, uint8 in and out, border 'nearest'; "
                        f"threads 1 and {o['max_workers']} where the library lets one choose")
    base = dict(ctx.spec_common(), suite=NAME, image=image["npy"], mp=image["mp"], ops=ops, refs=refs,
                max_workers=o["max_workers"], engines=[e for e in PIXELMILL if e in o["engines"]])
    groups = []
    for engine, which in PIXELMILL.items():
        if engine not in o["engines"]:
            continue
        ws = {"one": [1], "both": sorted({1, o["max_workers"]}), "max": [o["max_workers"]]}[which]
        groups.append(Group(NAME, engine, "engine", ENTRY_POINT, dict(base, method=engine, kind="engine", workers=ws)))
    for peer in PEER_MODULES:
        ws = sorted({1, o["max_workers"]}) if peer in THREADED else [1]
        groups.append(Group(NAME, peer, "peer", ENTRY_POINT, dict(base, method=peer, kind="peer", workers=ws)))
    return groups


# -- the peers' implementations -------------------------------------------------------------------------------
# Each returns (fn(image) -> uint8 image, margin ignored in the comparison, note).


def _gaussian_params(spec: str) -> tuple[int, float]:
    from ._ops import make_op

    k = make_op(spec).kernel
    return k.shape[0], float(spec.split("sigma=")[1]) if "sigma=" in spec else 1.0


def _weights(spec: str) -> np.ndarray:
    from ._ops import make_op

    return np.asarray(make_op(spec).kernel.weights, dtype=np.float64)


def _side(spec: str) -> int:
    return int(spec.split(":", 1)[1])


def _direct_only(what: str, spec: str) -> str:
    n = _side(spec)
    return (f"{what} sums all {n * n} taps directly (no FFT): minutes on a large photo, so it is not timed "
            f"beyond {DIRECT_PEER_MAX_SIDE}x{DIRECT_PEER_MAX_SIDE} (its time grows with the taps)")


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _sobel_w():
    from .. import kernels

    return kernels.get("sobel-x").weights


def impl_cv2(spec: str):
    import cv2

    rep = cv2.BORDER_REPLICATE
    if spec == "invert":
        return cv2.bitwise_not, 0, "cv2.bitwise_not"
    if spec.startswith("gaussian"):
        size, sigma = _gaussian_params(spec)
        return (lambda im: cv2.GaussianBlur(im, (size, size), sigma, borderType=rep)), 0, \
            "cv2.GaussianBlur, BORDER_REPLICATE; OpenCV's 8-bit Gaussian uses fixed-point weights, so values may differ by 1"
    if spec.startswith("disk") or spec.startswith("random"):
        w = np.ascontiguousarray(_weights(spec)[::-1, ::-1]).astype(np.float32)
        return (lambda im: cv2.filter2D(im, -1, w, borderType=rep)), 0, \
            "cv2.filter2D (correlation: given the flipped kernel), BORDER_REPLICATE; OpenCV switches to a DFT for kernels of 11x11 and more"
    if spec == "sobel":
        def sobel(im):
            gx = cv2.Sobel(im, cv2.CV_32F, 1, 0, ksize=3, borderType=rep)
            gy = cv2.Sobel(im, cv2.CV_32F, 0, 1, ksize=3, borderType=rep)
            return cv2.convertScaleAbs(cv2.magnitude(gx, gy))
        return sobel, 0, "cv2.Sobel x and y (CV_32F) + cv2.magnitude + convertScaleAbs, BORDER_REPLICATE"
    raise Unsupported(spec)


def impl_scipy(spec: str):
    import scipy.ndimage as ndi

    if spec == "invert":
        raise Unsupported("scipy.ndimage has no inversion (it is 255 - x in NumPy)")
    if spec.startswith("gaussian"):
        size, sigma = _gaussian_params(spec)
        radius = size // 2
        return (lambda im: _to_u8(ndi.gaussian_filter(im, sigma=(sigma, sigma, 0), truncate=radius / sigma,
                                                      mode="nearest", output=np.float32))), 0, \
            f"ndimage.gaussian_filter(truncate={radius}/sigma, mode='nearest', output=float32) then rounded; " \
            "asking for uint8 output would truncate instead of round"
    if spec.startswith("random") and _side(spec) > DIRECT_PEER_MAX_SIDE:
        raise Unsupported(_direct_only("ndimage.convolve", spec))
    if spec.startswith("disk") or spec.startswith("random"):
        w = _weights(spec)[:, :, None]
        return (lambda im: _to_u8(ndi.convolve(im, w, mode="nearest", output=np.float32))), 0, \
            "ndimage.convolve(mode='nearest', output=float32) with the kernel extended over channels, then rounded"
    if spec == "sobel":
        def sobel(im):
            f = im.astype(np.float32)
            out = np.empty(im.shape, np.float32)
            for c in range(im.shape[2]):  # ndi.sobel smooths across every other axis, channels included
                out[..., c] = np.hypot(ndi.sobel(f[..., c], axis=1, mode="nearest"),
                                       ndi.sobel(f[..., c], axis=0, mode="nearest"))
            return _to_u8(out)
        return sobel, 0, "ndimage.sobel per channel (on float32: on uint8 it would wrap), hypot, rounded"
    raise Unsupported(spec)


def impl_skimage(spec: str):
    import skimage.filters
    import skimage.util

    if spec == "invert":
        return skimage.util.invert, 0, "skimage.util.invert"
    if spec.startswith("gaussian"):
        size, sigma = _gaussian_params(spec)
        radius = size // 2
        return (lambda im: _to_u8(skimage.filters.gaussian(im, sigma=sigma, truncate=radius / sigma, mode="nearest",
                                                           channel_axis=-1, preserve_range=True))), 0, \
            "skimage.filters.gaussian(preserve_range=True, mode='nearest'), float64 inside, rounded"
    if spec.startswith("disk") or spec.startswith("random"):
        raise Unsupported("scikit-image has no general 2-D convolution (it defers to scipy.ndimage)")
    if spec == "sobel":
        scale = 255 * 4 * math.sqrt(2)

        def sobel(im):
            return _to_u8(np.stack([skimage.filters.sobel(im[..., c], mode="nearest") for c in range(im.shape[2])],
                                   axis=-1) * scale)
        return sobel, 0, ("skimage.filters.sobel per channel; it works on [0, 1] floats with kernels divided by 4 "
                          "and the magnitude divided by sqrt(2), so it is scaled by 255*4*sqrt(2)")
    raise Unsupported(spec)


def impl_pillow(spec: str):
    from PIL import Image, ImageFilter, ImageOps

    if spec == "invert":
        return (lambda im: np.asarray(ImageOps.invert(Image.fromarray(im)))), 0, "ImageOps.invert"
    if spec.startswith("gaussian"):
        size, _ = _gaussian_params(spec)
        if size not in (3, 5):
            raise Unsupported(f"ImageFilter.Kernel takes only 3x3 and 5x5 kernels, not {size}x{size}")
        w = _weights(spec)
        kernel = ImageFilter.Kernel((size, size), w.ravel().tolist(), scale=1)
        return (lambda im: np.asarray(Image.fromarray(im).filter(kernel))), size // 2, (
            "ImageFilter.Kernel with the same weights (ImageFilter.GaussianBlur is a box approximation, not this kernel); "
            "Pillow leaves the outer kernel-radius pixels unfiltered, so only the interior is compared")
    if spec.startswith("disk") or spec.startswith("random"):
        raise Unsupported("ImageFilter.Kernel takes only 3x3 and 5x5 kernels")
    if spec == "sobel":
        raise Unsupported("ImageFilter.Kernel works on 8-bit images and clips negative responses, so a signed "
                          "gradient (and its magnitude) cannot be computed")
    raise Unsupported(spec)


def impl_pyvips(spec: str):
    import pyvips

    def run(build):
        def fn(im):
            return build(pyvips.Image.new_from_array(im)).numpy()
        return fn

    note = "numpy -> vips -> numpy conversions included; the vips operation cache is off"
    if spec == "invert":
        return run(lambda v: v.invert()), 0, f"Image.invert; {note}"
    if spec.startswith("gaussian"):
        # Separable, as its users run a Gaussian (gaussblur does, with a mask of its own choice):
        # the same 1-D weights, in float so the result matches.
        size, _ = _gaussian_params(spec)
        w = _weights(spec)
        row = pyvips.Image.new_from_array((w[size // 2] / w[size // 2].sum()).tolist())
        return run(lambda v: v.convsep(row, precision="float").rint().cast("uchar")), 0, (
            f"Image.convsep with the same 1-D float mask (separable, as gaussblur runs; gaussblur would pick its own "
            f"mask), rint, cast to uchar; edges copy the nearest pixel; {note}")
    if spec.startswith("random") and _side(spec) > DIRECT_PEER_MAX_SIDE:
        raise Unsupported(_direct_only("Image.conv", spec))
    if spec.startswith("disk") or spec.startswith("random"):
        # vips correlates (as cv2.filter2D): given the flipped kernel.
        mask = pyvips.Image.new_from_array(_weights(spec)[::-1, ::-1].tolist())
        return run(lambda v: v.conv(mask, precision="float").rint().cast("uchar")), 0, (
            f"Image.conv with the same float mask, flipped (vips correlates; precision='float'), "
            f"rint, cast to uchar; edges copy the nearest pixel; {note}")
    if spec == "sobel":
        sx = pyvips.Image.new_from_array(_sobel_w().tolist())
        sy = pyvips.Image.new_from_array(_sobel_w().T.tolist())

        def build(v):
            f = v.cast("float")
            gx, gy = f.conv(sx, precision="float"), f.conv(sy, precision="float")
            return ((gx * gx + gy * gy) ** 0.5).rint().cast("uchar")
        return run(build), 0, f"two Image.conv (float) + magnitude (Image.sobel uses its own scaling); {note}"
    raise Unsupported(spec)


IMPLS = {"cv2": impl_cv2, "scipy": impl_scipy, "skimage": impl_skimage, "pillow": impl_pillow, "pyvips": impl_pyvips}


def set_threads(peer: str, n: int) -> None:
    if peer == "cv2":
        import cv2

        cv2.setNumThreads(n)
    elif peer == "pyvips":
        import pyvips

        pyvips.concurrency_set(n)


def peer_version(peer: str) -> str:
    if peer == "pyvips":
        import pyvips

        return f"pyvips {pyvips.__version__}, libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}"
    if peer == "cv2":
        import cv2

        return f"OpenCV {cv2.__version__}"
    return ""


# -- running -------------------------------------------------------------------------------------------------


def run_method(spec: dict) -> list[Record]:
    from ._library import load_array, max_mean_abs

    image = load_array(spec["image"])
    method = spec["method"]
    records = []

    def rec_for(op_spec, w, **kw):
        from ._ops import op_label

        return Record(suite=NAME, method=method, kind=spec["kind"], case=op_label(op_spec), size=spec["mp"],
                      size_unit="MP", workers=w, **kw)

    if spec["kind"] == "peer":
        try:
            importlib.import_module(PEER_MODULES[method])
            if method == "pyvips":
                import pyvips

                pyvips.cache_set_max(0)  # repeats must compute, not hit vips' operation cache
        except Exception as exc:  # noqa: BLE001 - e.g. pyvips without its libvips binary
            return [rec_for(op, None, status="not installed",
                            notes=f"pip install {PEER_PACKAGES[method]} (import failed: {type(exc).__name__}: {exc})")
                    for op in spec["ops"]]
        version = peer_version(method)
    for op_spec in spec["ops"]:
        ref = spec["refs"][op_spec]
        reference = load_array(ref["npy"], mmap=True)
        if spec["kind"] == "peer":
            try:
                fn, margin, note = IMPLS[method](op_spec)
            except Unsupported as exc:
                records.append(rec_for(op_spec, None, status="unsupported", notes=str(exc)))
                continue
            note = f"{note} ({version})" if version else note
        for w in spec["workers"]:
            rec = rec_for(op_spec, w)
            if spec["kind"] == "peer":
                set_threads(method, w)
                m = measure(lambda: fn(image), **timing(spec))
            else:
                m, margin, note = _measure_pixelmill(spec, method, op_spec, image, w, rec)
            apply_measurement(rec, m, megapixels=spec["mp"])
            out = m.result
            if out.shape != reference.shape or out.dtype != np.uint8:
                rec.set_check((float("inf"), float("inf")), tolerance=ref["tolerance"], reference=ref["name"])
                rec.notes = f"{note}; returned {out.dtype} {out.shape}, expected uint8 {reference.shape}"
            else:
                rec.set_check(max_mean_abs(out, reference, margin=margin), tolerance=ref["tolerance"],
                              reference=ref["name"] + (f"; interior only (margin {margin} px)" if margin else ""))
                rec.notes = note
            m.result = None
            records.append(rec)
    return records


def _measure_pixelmill(spec, engine_name, op_spec, image, workers, rec):
    from ..engines import make_engine
    from ._ops import BORDER, make_op, uint8_result

    op = make_op(op_spec)
    op = op.with_policy(op.default_policy)  # what the API's policy= does: uint8 out, tile by tile

    def work(e):
        return uint8_result(e.run(op, image, border=BORDER), op_spec)

    with make_engine(engine_name, workers) as engine:
        m = measure(lambda: work(engine), **timing(spec))
        chose = getattr(engine, "last_choice", None)
        pair_with_delegate(rec, engine, work, runs=len(m.times), min_pairs=spec["min_pairs"], budget_s=spec["budget_s"],
                           rivals=spec["engines"], shape=image.shape, itemsize=op.out_dtype(image.dtype).itemsize)
    return m, 0, ("pixelmill Engine.run with the default policy (uint8 out), a new output array per run"
                  + (f"; auto ran {chose.label}" if chose else ""))


# -- analysis ----------------------------------------------------------------------------------------------------


def _ok(records):
    return [r for r in records if r.status == "ok" and r.median_s]


def analyse(records: list[Record], opts: dict) -> dict:
    ok = _ok(records)
    cases = list(dict.fromkeys(r.case for r in records))
    result = {"best": {}, "ratios": {}, "conclusions": []}
    for case in cases:
        rows = [r for r in ok if r.case == case]
        pm = [r for r in rows if r.kind == "engine"]
        peers = [r for r in rows if r.kind == "peer"]
        if not pm or not peers:
            continue
        best_pm = min(pm, key=lambda r: r.median_s)
        best_peer = min(peers, key=lambda r: r.median_s)
        result["best"][case] = {"pixelmill": [best_pm.method, best_pm.workers, best_pm.median_s],
                                "peer": [best_peer.method, best_peer.workers, best_peer.median_s]}
        # Same thread count: pixelmill's best at w against each peer at w.
        for w in sorted({r.workers for r in rows if r.workers}):
            pm_w = [r for r in pm if r.workers == w]
            if not pm_w:
                continue
            b = min(pm_w, key=lambda r: r.median_s)
            for p in (r for r in peers if r.workers == w):
                result["ratios"][f"{case}|{p.method}|{w}"] = {
                    "case": case, "peer": p.method, "workers": w, "pixelmill": b.method,
                    "ratio": b.median_s / p.median_s}
        ratio = best_pm.median_s / best_peer.median_s
        pm = (f"pixelmill's best ({best_pm.method}, {best_pm.workers} worker{'s' if best_pm.workers != 1 else ''}, "
              f"{best_pm.median_s * 1e3:.1f} ms)")
        peer = (f"the fastest peer ({best_peer.method}, {best_peer.workers} thread{'s' if best_peer.workers != 1 else ''}, "
                f"{best_peer.median_s * 1e3:.1f} ms)")
        if ratio <= 1:
            text = f"{case}: {pm} is {1 / ratio:.2f}x as fast as {peer}."
        else:
            text = f"{case}: {pm} takes {ratio:.2f}x the time of {peer}."
        result["conclusions"].append(text)
    bad = [r for r in records if r.checked and not r.match]
    if bad:
        result["conclusions"].append("Outputs that do not match pixelmill's: " + ", ".join(
            f"{r.method}/{r.case} (max err {r.max_abs_err:g})" for r in bad) + ".")
    elif any(r.checked for r in records):
        n = sum(1 for r in records if r.checked)
        result["conclusions"].append(
            f"All {n} timed results match pixelmill's output within 1 grey level (interior only for Pillow's kernels).")
    missing = sorted({r.method for r in records if r.status == "not installed"})
    if missing:
        result["conclusions"].append(f"Not installed (so not compared): {', '.join(missing)}.")
    return result


def plot(records, analysis, path, opts) -> None:
    from ._plots import METHOD_STYLE, new_figure, plain_log_axis, save

    cases = list(dict.fromkeys(r.case for r in records))
    cols = 2
    rows_n = max(1, math.ceil(len(cases) / cols))
    fig, axes = new_figure(rows_n, cols, width=14, height=3.6 * rows_n + 1.0)
    axes = axes if isinstance(axes, list) else [axes]
    for ax, case in zip(axes, cases):
        rows = [r for r in records if r.case == case]
        ok = sorted((r for r in rows if r.status == "ok" and r.median_s), key=lambda r: -r.median_s)
        labels = [f"{r.method} ({r.workers} thr)" if r.kind == "peer" else f"pixelmill {r.method} ({r.workers} w)"
                  for r in ok]
        vals = [r.median_s * 1e3 for r in ok]
        colors = [METHOD_STYLE(r.method)["color"] for r in ok]
        bars = ax.barh(range(len(ok)), vals, color=colors, edgecolor="black", linewidth=0.4,
                       hatch=["" if r.kind == "engine" else "//" for r in ok] if ok else None)
        for bar, r in zip(bars, ok):
            mark = "" if (r.checked and r.match) else ("  MISMATCH" if r.checked else "  unchecked")
            ax.annotate(f" {r.median_s * 1e3:.1f} ms{mark}", (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                        va="center", fontsize=7.5, color="red" if mark else "black")
        ax.set_yticks(range(len(ok)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_xscale("log")
        plain_log_axis(ax.xaxis)
        if vals:
            ax.set_xlim(min(vals) / 1.5, max(vals) * 4)
        missing = [f"{r.method}: {r.status}" for r in rows if r.status != "ok"]
        mp = next((r.megapixels for r in rows if r.megapixels), 0)
        ax.set_title(f"{case} on {mp:.1f} MP RGB uint8" + (f"\n(no row: {'; '.join(missing)})" if missing else ""),
                     fontsize=9)
        ax.set_xlabel("wall time (ms, median, log scale; lower is better)")
    for ax in axes[len(cases):]:
        ax.set_visible(False)
    fig.text(0.01, 0.005, "Solid bars: pixelmill engines (w = workers); hatched: other libraries (thr = threads).",
             fontsize=8, style="italic")
    save(fig, path)


def table(records, analysis, opts) -> str:
    from .._text import md_table

    rows = []
    for r in records:
        if r.status != "ok":
            continue
        rows.append([r.case, ("pixelmill " if r.kind == "engine" else "") + r.method, r.workers,
                     f"{r.median_s * 1e3:.1f}", f"{r.iqr_s * 1e3:.1f}", f"{r.mp_per_s:.0f}" if r.mp_per_s else "",
                     f"{r.peak_rss_mb:.0f}" if r.peak_rss_mb else "",
                     (("ok" if r.match else "MISMATCH") + f" (max {r.max_abs_err:g}, mean {r.mean_abs_err:.3g})")
                     if r.checked else "not checked", r.notes])
    return md_table(["operation", "method", "threads", "median ms", "IQR ms", "MP/s", "peak RSS MB", "check vs pixelmill",
                     "how / what differs"], rows)


# -- targets -------------------------------------------------------------------------------------------------


def _peer_ratio(case_prefix, peer, *, threads="same", exclude=()):
    def fn(records, analyses, opts):
        rs = ok_records(records, suite="peers")
        rs = [r for r in rs if r.case.startswith(case_prefix) and not r.case.startswith(tuple(exclude))]
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


#: This suite's targets (:mod:`._targets`), listed in report.md in :data:`._suites.TARGET_ORDER`.
TARGETS = [
    Target("gaussian-vs-cv2", "Gaussian <= 1.5x cv2.GaussianBlur, same threads", "peers", 1.5, "<=",
           _peer_ratio("gaussian", "cv2", exclude=("gaussian-81-10",))),
    Target("disk15-vs-filter2D", "15x15 non-separable (disk) <= 1.0x cv2.filter2D, same threads", "peers", 1.0, "<=",
           _peer_ratio("disk-15", "cv2")),
    Target("sobel-vs-cv2", "Sobel magnitude <= 2x OpenCV, same threads", "peers", 2.0, "<=",
           _peer_ratio("sobel", "cv2")),
    # Issue 25: general kernels against cv2.filter2D (a DFT from 11x11), the wide Gaussian.
    Target("random15-vs-filter2D", "random 15x15 <= 1.0x cv2.filter2D, same threads", "peers", 1.0, "<=",
           _peer_ratio("random-15", "cv2")),
    Target("random31-vs-filter2D", "random 31x31 <= 1.0x cv2.filter2D, same threads", "peers", 1.0, "<=",
           _peer_ratio("random-31", "cv2")),
    Target("random63-vs-filter2D", "random 63x63 <= 0.7x cv2.filter2D, same threads", "peers", 0.7, "<=",
           _peer_ratio("random-63", "cv2")),
    Target("gaussian-sigma10-vs-cv2", "Gaussian sigma 10 (81x81 from sigma) <= 1.0x cv2.GaussianBlur, same threads",
           "peers", 1.0, "<=", _peer_ratio("gaussian-81-10", "cv2")),
]
