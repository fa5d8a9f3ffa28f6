"""Suite ``batch``: a JPEG library end to end (decode, operate, encode), in megapixels per second.

Two cases: ``invert`` and the Gaussian (``gaussian-5-1`` by default, the ``peers`` suite's),
each run as ``pixelmill run --op OP`` runs it: :func:`pixelmill.batch.run_batch` with each
engine and the operation's default policy (``clip`` for the Gaussian), a fresh output folder
per run, engine start-up inside the timing as a user pays it. The peers run the same job as a
user would write it: OpenCV and Pillow in a ``multiprocessing.Pool`` (the pool's start-up is
timed too; ``cv2.GaussianBlur`` with ``BORDER_REPLICATE``, Pillow's ``ImageFilter.Kernel`` with
the same 5 x 5 weights), pyvips in a plain loop over the files with libvips' own threads
(``conv`` with the same mask, in float). Every writer uses JPEG quality 95 and the input's
chroma subsampling, as pixelmill does. The *floor* is decoding and encoding every image with
pixelmill's io and no operation: in one process, and with N threads and N processes (the faster
of the two is the floor for N workers; Pillow releases the GIL while it decodes and encodes). No
batch of this library can be much faster than decode + encode. Every output is decoded and
compared with pixelmill's numpy-engine output of the same case: engines must match exactly;
other encoders produce slightly different JPEGs, so peers are held to a mean difference of at
most 2 grey levels, and every output must keep the reference's chroma subsampling.

Paired: each method above runs in its own process, minutes from the others, and on a shared
machine the same batch then differs by 10-40% from one process to the next. So the default run
(``auto``), the floor (threads) and OpenCV (the fastest peer in every run so far) also run in
turn in one process, round after round, the order reversed every other round (``paired``
records, ``times_s`` in round order), with the engine whose batch runs the schedule ``auto``'s
does, if one does (the inversion: whole photos on threads, NumPy in each). The drift then hits
every member of a round alike, and the batch targets use the median over rounds of the time
ratio: against the floor always, against the fastest peer when the separate records found that
same peer fastest; ``auto``'s own cost over that engine's is the ``auto-vs-best`` target's.

Memory: the ``batch-memory`` target's bound is 2 x the library's largest decoded image
(``largest-image``) plus each engine run's constant: before its timed runs, the same run over
as many tiny JPEGs, whose peak holds the interpreter, libraries, compiled kernels and pools of
all its workers (``constant_rss_mb``). A fresh Python process that imports what a batch worker
imports (``python-process``, ``startup``) shows how much of that is Python itself, and is the
constant of records without one. Each record's notes say how many Python processes the run
had at once (this one plus worker processes seen during the timed runs; multiprocessing's
resource trackers and fork servers are not counted, though their memory is in the peak).
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from ._harness import Group, MemoryProbe, apply_measurement, measure, median_ratio, timing
from ._records import Record
from ._targets import Target, ok_records

NAME = "batch"
TITLE = "A JPEG library end to end: decode, invert or Gaussian, encode"
ENTRY_POINT = "pixelmill.bench._batch:run_method"
QUALITY = 95
#: Peer -> what it runs for invert and for the Gaussian; "N" is the worker count.
PEERS = {
    "cv2": {
        "invert": "cv2.imread -> cv2.bitwise_not -> cv2.imwrite(IMWRITE_JPEG_QUALITY=95, the input's sampling "
                  "factor) in multiprocessing.Pool(N), cv2.setNumThreads(1) in each worker",
        "gaussian": "cv2.imread -> cv2.GaussianBlur({k}, {sigma}, borderType=BORDER_REPLICATE) -> "
                    "cv2.imwrite(IMWRITE_JPEG_QUALITY=95, the input's sampling factor) in multiprocessing.Pool(N), "
                    "cv2.setNumThreads(1) in each worker; OpenCV's 8-bit Gaussian is fixed-point",
    },
    "pillow": {
        "invert": "Image.open -> ImageOps.invert -> save(quality=95, subsampling=the input's) in "
                  "multiprocessing.Pool(N)",
        "gaussian": "Image.open -> filter(ImageFilter.Kernel({k}, the same weights, scale=1)) -> save(quality=95, "
                    "subsampling=the input's) in multiprocessing.Pool(N); Pillow leaves the outer kernel-radius "
                    "pixels unfiltered",
    },
    "pyvips": {
        "invert": "Image.new_from_file(access='sequential').invert().write_to_file(Q=95, subsample_mode as the "
                  "input) in multiprocessing.Pool(N), concurrency_set(1) and no operation cache in each worker",
        "gaussian": "Image.new_from_file(access='sequential').convsep(integer mask {mask}, scale {scale}, "
                    "precision='integer').write_to_file(Q=95, subsample_mode as the input) in "
                    "multiprocessing.Pool(N), concurrency_set(1) and no operation cache in each worker",
    },
    "pyvips-threads": {
        "invert": "for each file in one process: Image.new_from_file(access='sequential').invert()"
                  ".write_to_file(Q=95, subsample_mode as the input), libvips threads = N, no operation cache",
        "gaussian": "for each file in one process: Image.new_from_file(access='sequential').convsep(integer mask "
                    "{mask}, scale {scale}, precision='integer').write_to_file(Q=95, subsample_mode as the input), "
                    "libvips threads = N, no operation cache",
    },
}
PEER_MODULES = {"cv2": "cv2", "pillow": "PIL", "pyvips": "pyvips", "pyvips-threads": "pyvips"}
ENGINE_TOLERANCE = 0.0  # same encoder, same settings: the same pixels
PEER_TOLERANCE = 2.0    # mean absolute difference: another JPEG encoder, not another operation
#: Chroma subsampling as Pillow numbers it (JpegImagePlugin.get_sampling).
SUBSAMPLING = {-1: "unknown", 0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}
#: What a batch worker process imports (the python-process baseline).
WORKER_MODULES = ("numpy", "PIL.Image", "simplejpeg", "pixelmill", "pixelmill.io", "pixelmill.batch")
MEMORY_METHODS = ("python-process", "largest-image")


def gaussian_spec(opts) -> str:
    """The Gaussian's op spec, as the ``peers`` suite writes it."""
    return f"gaussian:size={opts['gaussian_size']},sigma={opts['sigma']:g}"


def cases_for(opts) -> dict[str, str]:
    """{case label: op spec}: ``invert`` and the Gaussian (``gaussian-5-1``)."""
    from ._ops import op_label

    g = gaussian_spec(opts)
    return {"invert": "invert", op_label(g): g}


def plan(ctx) -> list[Group]:
    from PIL import Image, JpegImagePlugin

    from ..batch import run_batch
    from ._library import pick

    o = ctx.opts
    n = min(o["batch_images"], len(ctx.library))
    paths = pick(ctx.library, n, seed=o["seed"])
    lib = ctx.workdir / "batch-library"
    lib.mkdir(parents=True, exist_ok=True)
    total_px, largest, subsampling = 0, None, {}
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
            w, h = im.size
            subsampling[dst.name] = JpegImagePlugin.get_sampling(im)
        total_px += w * h
        if largest is None or w * h > largest[1] * largest[2]:
            largest = (dst.name, w, h)
    mp = total_px / 1e6
    # As many files as the library: engines plan by the number of images (auto starts numba
    # only for enough of them), so the tiny run must be planned as the real one is.
    tiny = _tiny_library(ctx.workdir / "batch-tiny-library", n, seed=o["seed"])
    cases = cases_for(o)
    subs = sorted({SUBSAMPLING.get(s, str(s)) for s in subsampling.values()})
    ctx.inputs[NAME] = (f"{n} JPEG files picked from the library ({mp:.1f} MP in all; the largest "
                        f"{largest[1]} x {largest[2]}), chroma subsampling {', '.join(subs)}; operations "
                        f"{', '.join(cases.values())}; output JPEG quality {QUALITY} and the input's subsampling")
    refs = {}
    for case, op_spec in cases.items():
        ref = ctx.workdir / "batch-reference" / case
        result = run_batch([str(lib)], str(ref), _engine_settings(op_spec, "numpy", 1, QUALITY))
        if result.count("done") != n:
            raise RuntimeError(f"the reference batch for {case} (numpy engine) did {result.count('done')} "
                               f"of {n} images")
        refs[case] = str(ref)
    W = o["max_workers"]
    base = dict(ctx.spec_common(), suite=NAME, library=str(lib), tiny_library=str(tiny), refs=refs, mp=mp, images=n,
                out=str(ctx.workdir / "batch-out"), quality=QUALITY, subsampling=subsampling)
    groups = [Group(NAME, "python-process", "baseline", ENTRY_POINT,
                    dict(base, method="python-process", kind="baseline", largest=largest[0], quick=o["quick"]))]
    variants = [[1, "serial"]] + ([[W, "threads"], [W, "processes"]] if W > 1 else [])
    groups.append(Group(NAME, "floor", "baseline", ENTRY_POINT,
                        dict(base, method="floor", kind="baseline", case="decode+encode", op=None, variants=variants)))
    # A quick run times auto alone among the engines: the paired rounds already time it against
    # the engine it runs and the floor, and each further engine is a fresh process per case.
    engines = ["auto"] if o["quick"] and "auto" in o["engines"] else o["engines"]
    for case, op_spec in cases.items():
        for engine in engines:
            if engine == "loops":
                continue  # pure Python over whole photographs would take hours (invert-scaling shows its rate)
            groups.append(Group(NAME, engine, "engine", ENTRY_POINT,
                                dict(base, method=engine, kind="engine", case=case, op=op_spec,
                                     workers=[1 if engine == "numpy" else W])))
        for peer in PEERS:
            groups.append(Group(NAME, peer, "peer", ENTRY_POINT,
                                dict(base, method=peer, kind="peer", case=case, op=op_spec, workers=[W])))
    if not o["quick"]:  # minutes of whole programs; a quick run's in-process records suffice
        groups.append(Group(NAME, "programs", "program", ENTRY_POINT,
                            dict(base, method="programs", kind="program", case="*", cases=cases, workers=[W])))
    if "auto" in o["engines"]:
        groups.append(Group(NAME, "paired", "paired", ENTRY_POINT,
                            dict(base, method="paired", kind="paired", case="*", cases=cases, workers=[W],
                                 engines=[e for e in o["engines"] if e not in ("auto", "loops")])))
    return groups


def _tiny_library(path: Path, n: int, *, seed: int) -> Path:
    """``n`` 64 x 64 JPEGs: a batch over them holds what does not grow with the images
    (interpreter, libraries, compiled kernels, pools), the batch-memory target's constant."""
    from PIL import Image

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(n):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path / f"tiny{k:02d}.jpg",
                                                                                 quality=QUALITY)
    return path


# -- one file, as each peer's user would write it (top-level: the pool pickles them) -----------------------------
# A job is (source, destination, quality, the input's chroma subsampling, the operation's parameters or None).


def _cv2_one(job):
    import cv2

    src, dst, q, sub, gauss = job
    img = cv2.imread(src, cv2.IMREAD_COLOR)
    if gauss is None:
        out = cv2.bitwise_not(img)
    else:
        size, sigma = gauss
        out = cv2.GaussianBlur(img, (size, size), sigma, borderType=cv2.BORDER_REPLICATE)
    params = [cv2.IMWRITE_JPEG_QUALITY, q]
    factor = {0: "IMWRITE_JPEG_SAMPLING_FACTOR_444", 1: "IMWRITE_JPEG_SAMPLING_FACTOR_422",
              2: "IMWRITE_JPEG_SAMPLING_FACTOR_420"}.get(sub)
    if factor and hasattr(cv2, factor):
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, getattr(cv2, factor)]
    cv2.imwrite(dst, out, params)
    return dst


def _pillow_one(job):
    from PIL import Image, ImageFilter, ImageOps

    src, dst, q, sub, kernel = job
    with Image.open(src) as im:
        rgb = im.convert("RGB")
    if kernel is None:
        out = ImageOps.invert(rgb)
    else:
        size, weights = kernel
        out = rgb.filter(ImageFilter.Kernel((size, size), weights, scale=1))
    out.save(dst, quality=q, **({"subsampling": sub} if sub in (0, 1, 2) else {}))
    return dst


def _floor_one(job):
    from ..io import read_image, write_image

    src, dst, q = job[:3]
    # Keeps the input's subsampling and, like run_batch, leaves the fsync to _floor_all.
    write_image(dst, read_image(src), quality=q, durable=False)
    return dst


def _floor_all(jobs, workers, pool):
    from .._files import durable_in_background

    # Each output fsync'ed in the background as it is done, as run_batch does.
    with durable_in_background() as make_durable_soon:
        done = []
        for dst in _pool_iter(_floor_one, jobs, workers, pool):
            make_durable_soon(dst)
            done.append(dst)
    return done


def _pool_map(fn, jobs, workers, pool="processes", initializer=None):
    """``fn`` over ``jobs`` as a user would: a loop, a thread pool or a ``multiprocessing.Pool``."""
    return list(_pool_iter(fn, jobs, workers, pool, initializer))


def _pool_iter(fn, jobs, workers, pool="processes", initializer=None):
    """:func:`_pool_map`'s results, each as it is done. A ``"forkserver"`` pool forks its
    workers from a single-threaded server: forking this process, which may hold OpenCV's,
    libvips' or pixelmill's threads, can deadlock the child."""
    if workers == 1 or pool == "serial":
        if initializer is not None:
            initializer()
        yield from (fn(j) for j in jobs)
        return
    if pool == "threads":
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as ex:
            yield from ex.map(fn, jobs)
        return
    import multiprocessing

    if pool == "forkserver":
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
    else:
        context = multiprocessing.get_context()
    with context.Pool(workers, initializer=initializer) as p:
        yield from p.imap_unordered(fn, jobs, chunksize=1)


def _pyvips_one(job):
    import pyvips

    src, dst, q, sub, mask = job
    im = pyvips.Image.new_from_file(src, access="sequential")
    if mask is None:
        out = im.invert()
    else:  # as its users write a Gaussian: separable, an integer mask (int_gaussian_row)
        ints, scale = mask
        out = im.convsep(pyvips.Image.new_from_array(ints, scale=scale), precision="integer")
    # libvips turns chroma subsampling off at Q >= 90 unless told: keep the input's, as the others do.
    mode = {0: "off", 2: "on"}.get(sub)
    out.write_to_file(dst, Q=q, **({"subsample_mode": mode} if mode else {}))
    return dst


def _cv2_worker_init():
    """A pool worker of OpenCV's users: one image per process, so no OpenCV threads of its own."""
    import cv2

    cv2.setNumThreads(1)


def _pyvips_worker_init():
    """A pool worker of pyvips' users: one image per process, one libvips thread, no cache."""
    import pyvips

    pyvips.concurrency_set(1)
    pyvips.cache_set_max(0)


#: Peer -> (what it does to one file, its pool workers' initializer). "pyvips-threads" is one
#: process over the files with libvips' own threads.
PEER_FILE_JOBS = {"cv2": (_cv2_one, _cv2_worker_init), "pillow": (_pillow_one, None),
                  "pyvips": (_pyvips_one, _pyvips_worker_init), "pyvips-threads": (_pyvips_one, None)}


_PROCESSES_NOTE = re.compile(r"(\d+) Python process")


def python_processes(rec: Record) -> int:
    """Python processes a record's run had at once: from its notes (counted during the run),
    or, for records without the count, what the engine starts (1, or 1 + workers for the
    process-pool engines; dask's local scheduler uses threads)."""
    m = _PROCESSES_NOTE.search(rec.notes or "")
    if m:
        return int(m.group(1))
    if rec.method in ("processes", "joblib") and (rec.workers or 1) > 1:
        return 1 + rec.workers
    return 1


def _processes_note(n: int) -> str:
    return (f"{n} Python process{'es' if n != 1 else ''} at once (this one"
            + (f" and {n - 1} worker{'s' if n != 2 else ''}" if n > 1 else "") + ", helpers not counted)")


# -- running ---------------------------------------------------------------------------------------------------


def _decode(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _sampling(path) -> int:
    from PIL import Image, JpegImagePlugin

    with Image.open(path) as im:
        return JpegImagePlugin.get_sampling(im) if im.format == "JPEG" else -1


def _compare(outdir: Path, reference: Path, names: list[str], *, invert_reference: bool = False) -> dict:
    """Every output against the reference's: max and mean abs difference, outputs missing (or
    of the wrong size), outputs with another chroma subsampling, and total bytes / reference's.

    ``invert_reference``: compare with the reference inverted back (for the floor, which
    re-encodes the inputs without an operation).
    """
    worst, total, count, missing, other_sub, nbytes, ref_bytes = 0.0, 0.0, 0, 0, 0, 0, 0
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
        if _sampling(out) != _sampling(reference / name):
            other_sub += 1
        nbytes += out.stat().st_size
        ref_bytes += (reference / name).stat().st_size
        d = np.abs(a - b)
        worst = max(worst, float(d.max()))
        total += float(d.sum())
        count += d.size
    return {"max": worst, "mean": total / count if count else float("inf"), "missing": missing,
            "other_subsampling": other_sub, "bytes_ratio": nbytes / ref_bytes if ref_bytes else float("nan")}


def run_method(spec: dict) -> list[Record]:
    if spec["method"] == "python-process":
        return _run_memory_baselines(spec)
    if spec["method"] == "paired":
        return _run_paired(spec)
    if spec["method"] == "programs":
        return _run_programs(spec)
    lib = Path(spec["library"])
    names = sorted(p.name for p in lib.iterdir() if p.suffix == ".jpg")
    method, kind, case = spec["method"], spec["kind"], spec["case"]
    if kind == "peer":
        try:
            __import__(PEER_MODULES[method])
        except Exception as exc:  # noqa: BLE001
            return [Record(suite=NAME, method=method, kind=kind, case=case, status="not installed",
                           notes=f"import failed: {type(exc).__name__}: {exc}")]
        if method == "pillow" and spec["op"] != "invert":
            from ._ops import make_op

            size = make_op(spec["op"]).kernel.shape[0]
            if size not in (3, 5):
                return [Record(suite=NAME, method=method, kind=kind, case=case, status="unsupported",
                               notes=f"ImageFilter.Kernel takes only 3x3 and 5x5 kernels, not {size}x{size}")]
    # The floor re-encodes the inputs without an operation: compared with the invert reference, inverted back.
    ref = Path(spec["refs"]["invert" if method == "floor" else case])
    records = []
    variants = spec.get("variants") or [[w, None] for w in spec["workers"]]
    for w, pool in variants:
        outroot = Path(spec["out"]) / f"{method}-{case}-{w}-{pool}"
        state = {"k": 0, "dir": None}

        def setup(state=state, outroot=outroot):
            if state["dir"] is not None:
                shutil.rmtree(state["dir"], ignore_errors=True)
            state["k"] += 1
            state["dir"] = outroot / f"run{state['k']}"
            state["dir"].mkdir(parents=True)

        fn, rec_case, note = _runner(method, kind, w, lib, state, names, spec, pool)
        constant = _constant_rss(spec, w) if kind == "engine" else None
        m = measure(fn, **timing(spec), setup=setup)
        rec = Record(suite=NAME, method=method, kind=kind, case=rec_case, size=spec["images"], size_unit="images",
                     workers=w, notes=note, constant_rss_mb=constant)
        apply_measurement(rec, m, megapixels=spec["mp"])
        _check(rec, state["dir"], ref, names, kind, method == "floor")
        rec.notes += f"; {_processes_note(m.processes)}"
        records.append(rec)
        shutil.rmtree(outroot, ignore_errors=True)
    return records


#: The peer the paired measurement runs. One peer keeps the rounds short; the batch targets use
#: its paired ratio only where the separate records found it the fastest peer too.
PAIRED_PEER = "cv2"


def _run_paired(spec: dict) -> list[Record]:
    """``auto`` for each case, the floor (threads) and :data:`PAIRED_PEER` for each case, each
    batch in turn in this process: one untimed round, then at least ``spec["min_pairs"]`` rounds
    (at least 3 when they take over 3 x ``budget_s``), the order reversed every other round.
    One ``paired`` record per member, its outputs of the last round checked as its own
    record's are, its peak memory the highest of its runs."""
    lib = Path(spec["library"])
    names = sorted(p.name for p in lib.iterdir() if p.suffix == ".jpg")
    w = spec["workers"][0]
    members = [("auto", "engine", case, op, None) for case, op in spec["cases"].items()]
    twins = auto_twins(spec["cases"], spec.get("engines", ()), len(names), w, spec["quality"])
    members += [(engine, "engine", case, spec["cases"][case], None) for case, engine in twins.items()]
    members.append(("floor", "baseline", "decode+encode", None, "threads" if w > 1 else "serial"))
    if importlib.util.find_spec(PEER_MODULES[PAIRED_PEER]) is not None:
        members += [(PAIRED_PEER, "peer", case, op, None) for case, op in spec["cases"].items()]
    out = Path(spec["out"]) / "paired"
    runs = []
    for method, kind, case, op, pool in members:
        state = {"dir": None}
        fn, rec_case, note = _runner(method, kind, w, lib, state, names, dict(spec, case=case, op=op), pool)
        rec = Record(suite=NAME, method=method, kind="paired", case=rec_case, size=spec["images"],
                     size_unit="images", workers=w, notes=note)
        if method == "auto" and case in twins:
            rec.auto_ran = f"{twins[case]} ({w} worker{'s' if w != 1 else ''})"
        runs.append({"rec": rec, "fn": fn, "state": state, "member": (method, kind, case), "slot": len(runs),
                     "times": [], "peak": 0.0, "before": None, "processes": 1})
    start = time.perf_counter()
    min_pairs = spec["min_pairs"]
    for k in range(min_pairs + 1):  # round 0 warms up (pools, compiled kernels, the file cache)
        last = k == min_pairs or (k >= 3 and spec["budget_s"] is not None
                                  and time.perf_counter() - start > 3 * spec["budget_s"])
        for run in runs if k % 2 == 0 else runs[::-1]:
            state = run["state"]
            if state["dir"] is not None:
                shutil.rmtree(state["dir"], ignore_errors=True)
            state["dir"] = out / f"{run['slot']}-{k}"
            state["dir"].mkdir(parents=True)
            with MemoryProbe() as probe:
                t0 = time.perf_counter()
                run["fn"]()
                elapsed = time.perf_counter() - t0
            if k == 0:
                run["rec"].warmup_s = elapsed
                continue
            run["times"].append(elapsed)
            run["peak"] = max(run["peak"], probe.peak_mb or 0.0)
            run["before"] = probe.before_mb if run["before"] is None else min(run["before"], probe.before_mb)
            run["processes"] = max(run["processes"], probe.most_processes)
        if last:
            break
    records = []
    for run in runs:
        rec, (method, kind, case) = run["rec"], run["member"]
        rec.set_times(run["times"], megapixels=spec["mp"])
        rec.peak_rss_mb, rec.rss_before_mb = run["peak"], run["before"]
        _check(rec, run["state"]["dir"], Path(spec["refs"]["invert" if method == "floor" else case]), names,
               kind, method == "floor")
        rec.notes += (f"; in turn with the other paired batches, {len(run['times'])} rounds in one process; "
                      f"{_processes_note(run['processes'])}")
        records.append(rec)
    shutil.rmtree(out, ignore_errors=True)
    return records


#: The whole-program members: ``pixelmill run`` as its users type it, then each peer's script.
PROGRAM_PIXELMILL = "pixelmill run"


def peer_script(method: str, workers: int) -> str:
    """The whole script a peer's user would write for the batch: the one-file function this
    suite times in process (its source, so the two cannot drift apart) and a pool over the
    job list named on its command line, or a plain loop with libvips' threads."""
    fn, init = PEER_FILE_JOBS[method]
    parts = ["import json\nimport multiprocessing\nimport sys\n\n", inspect.getsource(fn)]
    if init is not None:
        parts += ["\n\n", inspect.getsource(init)]
    if method == "pyvips-threads":
        main = (f"    import pyvips\n\n    pyvips.cache_set_max(0)\n    pyvips.concurrency_set({workers})\n"
                f"    for job in json.load(open(sys.argv[1])):\n        {fn.__name__}(job)\n")
    else:
        initializer = f", initializer={init.__name__}" if init is not None else ""
        main = (f"    with multiprocessing.Pool({workers}{initializer}) as pool:\n"
                f"        for _ in pool.imap_unordered({fn.__name__}, json.load(open(sys.argv[1])), chunksize=1):\n"
                "            pass\n")
    return "".join(parts) + '\n\nif __name__ == "__main__":\n' + main


def _run_programs(spec: dict) -> list[Record]:
    """Each case as whole programs, as users run them: ``pixelmill run LIB -o OUT --op OP``
    (interpreter start-up, imports, numba's cache and calibration included) and each peer's
    script (:func:`peer_script`) with ``python``, timed from outside (:func:`run_process`). One
    untimed round, then rounds in turn (:func:`time_in_turn`: at least one, at most
    ``min_pairs``, until 3 x ``budget_s`` is spent). One ``program`` record per program and case;
    its outputs of the last round checked as the in-process records' are."""
    import json
    import sys

    from ._harness import run_process, time_in_turn, worker_env

    lib = Path(spec["library"])
    names = sorted(p.name for p in lib.iterdir() if p.suffix == ".jpg")
    w, q, subs = spec["workers"][0], spec["quality"], spec["subsampling"]
    root = Path(spec["out"]) / "programs"
    root.mkdir(parents=True, exist_ok=True)
    peers = [m for m in PEERS if importlib.util.find_spec(PEER_MODULES[m]) is not None]
    members, runs = {}, {}
    for case, op_spec in spec["cases"].items():
        for method in [PROGRAM_PIXELMILL] + peers:
            label = f"{method}|{case}"
            state = {"k": 0, "dir": None, "peak": 0.0, "processes": 1, "failed": None}
            if method == PROGRAM_PIXELMILL:
                how = (f"`pixelmill run LIBRARY -o OUT --op {op_spec} --quality {q} -q` as a whole program "
                       "(engine auto, its defaults), start-up included")

                def argv(outdir, op_spec=op_spec):
                    return [sys.executable, "-m", "pixelmill", "run", str(lib), "-o", str(outdir), "--op", op_spec,
                            "--quality", str(q), "-q"]
            else:
                if method == "pillow" and op_spec != "invert":
                    from ._ops import make_op

                    if make_op(op_spec).kernel.shape[0] not in (3, 5):
                        continue  # ImageFilter.Kernel takes only 3x3 and 5x5 kernels
                fn, params, how = peer_job(method, op_spec, w)
                script = root / f"{method}-{case}.py"
                script.write_text(peer_script(method, w), encoding="utf-8")
                how = f"`python {script.name}` as a whole program, start-up included: {how}"

                def argv(outdir, script=script, params=params, label=label):
                    jobs = [(str(lib / n), str(Path(outdir) / n), q, subs.get(n, -1), params) for n in names]
                    listing = root / f"{label.replace('|', '-').replace(' ', '-')}-jobs.json"
                    listing.write_text(json.dumps(jobs), encoding="utf-8")
                    return [sys.executable, str(script), str(listing)]

            def member(state=state, argv=argv, label=label):
                if state["dir"] is not None:
                    shutil.rmtree(state["dir"], ignore_errors=True)
                state["k"] += 1
                state["dir"] = root / f"{label.replace('|', '-').replace(' ', '-')}-{state['k']}"
                state["dir"].mkdir(parents=True)
                run = run_process(argv(state["dir"]), stderr_path=root / f"{label.replace('|', '-').replace(' ', '-')}.stderr.txt",
                                  env=worker_env())
                if run.failed and state["failed"] is None:
                    state["failed"] = f"exit {run.returncode}: {run.stderr_tail[-600:]}"
                state["peak"] = max(state["peak"], run.peak_mb or 0.0)
                state["processes"] = max(state["processes"], run.processes)
            members[label] = member
            runs[label] = (method, case, how, state)
    warmup = {}
    for label, member in members.items():  # file cache, numba's cache, the calibration: as on a second run
        t0 = time.perf_counter()
        member()
        warmup[label] = time.perf_counter() - t0
    times = time_in_turn(members, rounds=spec["min_pairs"],
                         budget_s=3 * spec["budget_s"] if spec["budget_s"] is not None else None)
    records = []
    for label, (method, case, how, state) in runs.items():
        kind = "engine" if method == PROGRAM_PIXELMILL else "peer"
        rec = Record(suite=NAME, method=method, kind="program", case=case, size=spec["images"], size_unit="images",
                     workers=w, notes=how)
        if state["failed"]:
            rec.status, rec.notes = "error", f"{how}; {state['failed']}"
            records.append(rec)
            continue
        rec.set_times(times[label], megapixels=spec["mp"])
        rec.warmup_s, rec.peak_rss_mb = warmup[label], state["peak"]
        _check(rec, state["dir"], Path(spec["refs"][case]), names, kind, False)
        rec.notes += (f"; in turn with the other programs, {len(times[label])} rounds after an untimed one; "
                      f"peak RSS of its process tree; {_processes_note(state['processes'])}")
        records.append(rec)
    shutil.rmtree(root, ignore_errors=True)
    return records


def auto_twins(cases: dict, engines, n_images: int, workers: int, quality: int) -> dict[str, str]:
    """{case: the engine whose batch runs the schedule ``auto``'s batch runs for this library},
    for the cases that have one (the inversion: whole photos on threads, NumPy in each)."""
    from ..batch import plan_schedule as _plan_schedule

    twins = {}
    for case, op_spec in cases.items():
        planned = _plan_schedule(_engine_settings(op_spec, "auto", workers, quality), n_images)
        twin = next((e for e in engines
                     if _plan_schedule(_engine_settings(op_spec, e, workers, quality), n_images) == planned), None)
        if twin is not None:
            twins[case] = twin
    return twins


def paired_auto_overhead(records, case: str) -> tuple[str, float] | None:
    """``(the engine auto ran, auto's time over that engine's)`` for the batch of ``case``, from
    the ``paired`` records when auto's batch ran the same schedule as an engine's and the two
    ran in turn in one process (the median over rounds); else None."""
    ran = next((r.auto_ran for r in _paired_records(records) if r.method == "auto" and r.case == case), "")
    p = paired_ratio(records, case, ran.split(" (")[0]) if ran else None
    if p is None:
        return None
    return ran, median_ratio(p["auto"].times_s, p["other"].times_s)


def _paired_records(records) -> list[Record]:
    return [r for r in records if r.suite == NAME and r.kind == "paired" and r.status == "ok" and r.times_s]


def paired_ratio(records, case: str, method: str) -> dict | None:
    """The default run's throughput over ``method``'s in ``case`` from the ``paired`` records:
    the median over rounds of ``method``'s time over ``auto``'s. The floor is the paired one
    whatever pool the separate records found fastest: it runs as auto's batch does, on threads
    (the two pools' floors differ by less than the machine's noise)."""
    paired = _paired_records(records)
    auto = next((r for r in paired if r.method == "auto" and r.case == case), None)
    other = next((r for r in paired if r.method == method and (method == "floor" or r.case == case)), None)
    if auto is None or other is None:
        return None
    ratios = [t / a for a, t in zip(auto.times_s, other.times_s)]
    return {"ratio": statistics.median(ratios), "rounds": len(ratios), "low": min(ratios), "high": max(ratios),
            "auto": auto, "other": other}


def paired_text(p: dict, name: str) -> str:
    return (f"in turn in one process, {p['rounds']} rounds: {p['ratio']:.2f} (medians {p['auto'].median_s:.3f} s vs "
            f"{name} {p['other'].median_s:.3f} s; ratios {p['low']:.2f}-{p['high']:.2f})")


def _check(rec: Record, outdir: Path, ref: Path, names: list[str], kind: str, floor: bool) -> None:
    """Compare a run's outputs with the reference batch's and record it in ``rec``: pixelmill's
    engines exactly, other encoders by their mean difference, all with the same subsampling."""
    c = _compare(outdir, ref, names, invert_reference=floor)
    worst, mean = c["max"], c["mean"]
    if c["missing"]:
        worst = mean = float("inf")
        rec.notes += f"; {c['missing']} of {len(names)} outputs missing or of the wrong size"
    tol_on = "max_abs_err" if kind == "engine" else "mean_abs_err"
    tol = ENGINE_TOLERANCE if kind == "engine" else PEER_TOLERANCE
    rec.set_check((worst, mean), tolerance=tol, tolerance_on=tol_on,
                  reference=f"outputs of pixelmill's numpy-engine batch ({ref.name}), "
                            "decoded; the same chroma subsampling" +
                            ("; inverted back (the floor does no operation)" if floor else ""))
    if c["other_subsampling"]:
        # Another subsampling is another (cheaper or dearer) encode: not the same job.
        rec.match = False
        rec.notes += f"; {c['other_subsampling']} of {len(names)} outputs have another chroma subsampling"
    rec.notes += f"; output bytes {c['bytes_ratio']:.2f}x the reference's"


def _engine_settings(op_spec: str, engine: str, workers: int, quality: int):
    """The batch settings `pixelmill run --op OP --engine E --workers W` builds (policy None:
    the operation's default)."""
    from ..batch import RunSettings
    from ._ops import make_op

    return RunSettings(ops=(make_op(op_spec),), engine=engine, workers=workers, quality=quality)


def _constant_rss(spec, workers) -> float:
    """Peak RSS (MB, this process and its children) of the same batch over the tiny library,
    run first in this process: the part of the memory that does not grow with the images."""
    import tempfile

    from ..batch import run_batch

    settings = _engine_settings(spec["op"], spec["method"], workers, spec["quality"])
    with tempfile.TemporaryDirectory(dir=spec["out"]) as outdir, MemoryProbe() as probe:
        run_batch([spec["tiny_library"]], outdir, settings)
    return probe.peak_mb


def _runner(method, kind, w, lib, state, names, spec, pool=None):
    q, case, op_spec = spec["quality"], spec["case"], spec["op"]
    subs = spec["subsampling"]

    def jobs(params=None):
        return [(str(lib / n), str(state["dir"] / n), q, subs.get(n, -1), params) for n in names]

    if kind == "engine":
        from ..batch import run_batch

        settings = _engine_settings(op_spec, method, w, q)

        def fn():
            result = run_batch([str(lib)], str(state["dir"]), settings)
            if result.count("done") != len(names):
                raise RuntimeError(f"run_batch did {result.count('done')} of {len(names)} images: "
                                   + "; ".join(i["error"] or "" for i in result.items if i["status"] == "failed")[:300])
            return None
        return fn, case, (f"pixelmill.batch.run_batch(--op {op_spec}, engine={method!r}, workers={w}), "
                          "start-up included")
    if method == "floor":
        how = {"serial": "in one process", "threads": f"ThreadPoolExecutor({w})",
               "processes": f"multiprocessing.Pool({w})"}[pool]
        rec_case = "decode+encode" + ("" if pool == "serial" else f":{pool}")
        return (lambda: _floor_all(jobs(), w, pool)), rec_case, (
            f"pixelmill.io read_image + write_image (each output fsync'ed in the background, as run_batch does), no operation, {how}")
    fn, params, how = peer_job(method, op_spec, w)
    if method == "pyvips-threads":
        import pyvips

        pyvips.cache_set_max(0)
        pyvips.concurrency_set(w)
        return (lambda: _pool_map(fn, jobs(params), 1)), case, how
    init = PEER_FILE_JOBS[method][1]
    return (lambda: _pool_map(fn, jobs(params), w, "forkserver", init)), case, how


def peer_job(method: str, op_spec: str, workers: int):
    """``(what the peer does to one file, the operation's parameters in its job, what it runs)``."""
    from ._ops import int_gaussian_row, make_op

    gauss = op_spec != "invert"
    desc = PEERS[method]["gaussian" if gauss else "invert"]
    params = None
    if gauss:
        op = make_op(op_spec)
        size = op.kernel.shape[0]
        sigma = float(op_spec.split("sigma=")[1])
        if method == "cv2":
            params = (size, sigma)
        elif method == "pillow":
            # ImageFilter.GaussianBlur is a box approximation, not this kernel: give Pillow the
            # weights, as pixelmill correlates them (Pillow's Kernel correlates).
            params = (size, np.asarray(op.effective_kernel.weights, dtype=np.float64).ravel().tolist())
        else:
            params = int_gaussian_row(op.kernel)
        desc = desc.format(k=f"({size},{size})", sigma=f"{sigma:g}", mask=params[0] if method.startswith("pyvips")
                           else "", scale=params[1] if method.startswith("pyvips") else "")
    return PEER_FILE_JOBS[method][0], params, desc.replace("(N)", f"({workers})").replace("= N", f"= {workers}")


def _run_memory_baselines(spec: dict) -> list[Record]:
    """Two baselines of the batch-memory target: a fresh worker-like Python process's resident
    memory (the constant of runs that did not measure their own) and decoding the library's
    largest image."""
    import importlib.util
    import json
    import subprocess
    import sys

    import psutil

    from ..io import read_image

    modules = list(WORKER_MODULES) + (["numba"] if importlib.util.find_spec("numba") else [])
    code = ("import importlib, json, sys\nfailed = []\n"
            f"for m in {modules!r}:\n"
            "    try:\n        importlib.import_module(m)\n"
            "    except Exception as exc:\n        failed.append(f'{m}: {type(exc).__name__}: {exc}')\n"
            "print(json.dumps(failed), flush=True)\nsys.stdin.read()\n")
    # The child must import this very pixelmill, installed or not (as the bench's workers do).
    src = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p))
    times, rss, failed = [], [], []
    for _ in range(1 if spec["quick"] else max(1, spec["repeats"])):  # seconds each; a quick run needs one
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env, text=True)
        try:
            line = proc.stdout.readline()
            times.append(time.perf_counter() - t0)
            # Read while it waits, every import done: what a pool worker holds before its first image.
            rss.append(psutil.Process(proc.pid).memory_info().rss / 2**20)
            failed = json.loads(line) if line.strip() else ["the process printed nothing"]
        finally:
            proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    constant = Record(suite=NAME, method="python-process", kind="baseline", case="startup", size=0,
                      size_unit="images", workers=None).set_times(times)
    constant.peak_rss_mb = max(rss)
    constant.set_check((len(failed), len(failed)), tolerance=0,
                       reference="every module a batch worker imports was imported: " + ", ".join(modules))
    constant.notes = (f"a fresh `{Path(sys.executable).name} -c 'import {', '.join(modules)}'`: start-up time and its "
                      f"resident memory once imported ({', '.join(f'{v:.0f}' for v in rss)} MB; the largest is "
                      "Python's own share of a batch run's constant)"
                      + (f"; failed: {'; '.join(failed)}" if failed else ""))
    path = Path(spec["library"]) / spec["largest"]
    m = measure(lambda: read_image(path).data, **timing(spec))
    data = m.result
    h, w = data.shape[:2]
    largest = Record(suite=NAME, method="largest-image", kind="baseline", case="decode:largest", size=1,
                     size_unit="images", workers=1)
    apply_measurement(largest, m, megapixels=h * w / 1e6)
    ref = _decode_upright(path)
    err = (float("inf"), float("inf")) if ref.shape != data.shape else (
        float(np.abs(ref.astype(np.int16) - data).max()), float(np.abs(ref.astype(np.int16) - data).mean()))
    largest.set_check(err, tolerance=0, reference="Pillow's decode (upright, RGB)")
    largest.notes = (f"pixelmill.io.read_image of the largest image, {spec['largest']}: {w} x {h} x "
                     f"{data.shape[2] if data.ndim == 3 else 1}, {data.nbytes / 2**20:.1f} MB decoded")
    m.result = None
    return [constant, largest]


def _decode_upright(path) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


# -- analysis ------------------------------------------------------------------------------------------------------


def _ok(records) -> list[Record]:
    """The batch's in-process records, less the ``paired`` ones (see :func:`paired_ratio`) and
    the whole programs (:func:`program_ratio`)."""
    return [r for r in records if r.suite == NAME and r.status == "ok" and r.median_s
            and r.kind not in ("paired", "program")]


def best_floors(records) -> dict:
    """{workers: the fastest decode+encode record with that many workers}."""
    out: dict = {}
    for r in _ok(records):
        if r.method == "floor" and r.mp_per_s:
            if r.workers not in out or r.mp_per_s > out[r.workers].mp_per_s:
                out[r.workers] = r
    return out


def default_run(records, case: str) -> tuple[Record, str] | None:
    """``(record, how it was chosen)`` for "the default ``pixelmill run``" of ``case``: the
    ``auto`` engine when the run has it, otherwise the fastest engine."""
    engines = [r for r in _ok(records) if r.kind == "engine" and r.case == case and r.mp_per_s]
    if not engines:
        return None
    auto = next((r for r in engines if r.method == "auto"), None)
    if auto:
        return auto, "the default run, engine 'auto'"
    best = max(engines, key=lambda r: r.mp_per_s)
    return best, f"no 'auto' engine in this run: the fastest engine, {best.method}"


def fastest_peer(records, case: str) -> Record | None:
    """The fastest peer of ``case`` whose output passed its check."""
    peers = [r for r in _ok(records) if r.kind == "peer" and r.case == case and r.mp_per_s and r.match]
    return max(peers, key=lambda r: r.mp_per_s) if peers else None


def memory_budget(records) -> dict | None:
    """The batch-memory target for every engine record: bound = 2 x the largest decoded image
    (H*W*3 bytes) + the run's constant, all in MB (2**20 bytes). The constant is the peak of
    the same run over tiny images (``constant_rss_mb``: its interpreter, libraries, compiled
    kernels and pools, for all its workers); for records without it, Python processes x a
    fresh worker-like process."""
    ok = _ok(records)
    proc = next((r for r in ok if r.method == "python-process" and r.peak_rss_mb), None)
    big = next((r for r in ok if r.method == "largest-image" and r.megapixels), None)
    if proc is None or big is None:
        return None
    per, largest = proc.peak_rss_mb, big.megapixels * 1e6 * 3 / 2**20
    rows = []
    for r in ok:
        if r.kind != "engine" or not r.peak_rss_mb:
            continue
        n = python_processes(r)
        constant = r.constant_rss_mb or n * per
        bound = 2 * largest + constant
        rows.append({"method": r.method, "case": r.case, "workers": r.workers, "processes": n,
                     "constant_mb": constant, "measured_constant": bool(r.constant_rss_mb),
                     "peak_mb": r.peak_rss_mb, "bound_mb": bound, "ratio": r.peak_rss_mb / bound})
    return {"per_process_mb": per, "largest_image_mb": largest, "largest_image_mp": big.megapixels,
            "rows": rows, "worst": max(rows, key=lambda x: x["ratio"]) if rows else None,
            "over": [x for x in rows if x["ratio"] > 1]}


def _constant_text(row: dict) -> str:
    """How a memory_budget row's constant was had, with its value."""
    if row["measured_constant"]:
        return f"{row['constant_mb']:.0f} (the same run over tiny images)"
    return f"{row['processes']} x {row['constant_mb'] / row['processes']:.0f} (fresh Python processes)"


def _case_order(case: str) -> int:
    if case.startswith("decode+encode"):
        return 0
    if case == "invert":
        return 1
    return 3 if case in ("startup", "decode:largest") else 2


def _cases(records) -> list[str]:
    return sorted({r.case for r in records if r.kind in ("engine", "peer") and r.case != "*"},
                  key=lambda c: (_case_order(c), c))


def analyse(records: list[Record], opts: dict) -> dict:
    ok = [r for r in _ok(records) if r.mp_per_s]
    result: dict = {"conclusions": [], "cases": {}}
    floors = best_floors(records)
    for case in _cases(records):
        got = default_run(records, case)
        if not got:
            continue
        rec, how = got
        row = {"default": [rec.method, rec.workers, rec.mp_per_s], "how": how}
        text = f"{case}: {how} runs at {rec.mp_per_s:.1f} MP/s ({rec.workers} worker{'s' if rec.workers != 1 else ''})"
        floor = floors.get(rec.workers)
        paired = []
        if floor:
            row["floor_ratio"] = rec.mp_per_s / floor.mp_per_s
            text += (f", {100 * row['floor_ratio']:.0f}% of the decode+encode floor with the same workers "
                     f"({floor.mp_per_s:.1f} MP/s)")
            p = paired_ratio(records, case, "floor") if rec.method == "auto" else None
            if p:
                row["floor_paired"] = p["ratio"]
                paired.append(f"{100 * p['ratio']:.0f}% of the floor")
        peer = fastest_peer(records, case)
        if peer:
            row["peer"] = [peer.method, peer.workers, peer.mp_per_s]
            row["peer_ratio"] = rec.mp_per_s / peer.mp_per_s
            text += f"; the fastest peer is {peer.method} at {peer.mp_per_s:.1f} MP/s, {row['peer_ratio']:.2f}x of it"
            p = paired_ratio(records, case, peer.method) if rec.method == "auto" else None
            if p:
                row["peer_paired"] = p["ratio"]
                paired.append(f"{p['ratio']:.2f}x {peer.method}")
        if paired:
            rounds = paired_ratio(records, case, "auto")["rounds"]
            text += f"; timed in turn in one process ({rounds} rounds), it runs at " + " and ".join(paired)
        prog = program_ratio(records, case)
        if prog:
            row["program"] = [prog["peer"].method, prog["ratio"]]
            text += f"; as whole programs, {program_text(prog)}"
        result["cases"][case] = row
        result["conclusions"].append(text + ".")
    engines = [r for r in ok if r.kind == "engine"]
    if engines:
        best = max(engines, key=lambda r: (r.case == "invert", r.mp_per_s))
        result["best_engine"] = [best.method, best.workers, best.mp_per_s]
    if 1 in floors and len(floors) > 1:
        wmax = max(floors)
        how = floors[wmax].case.split(":")[-1]
        result["conclusions"].append(
            f"Decode+encode alone scales from {floors[1].mp_per_s:.1f} MP/s (1 worker) to "
            f"{floors[wmax].mp_per_s:.1f} MP/s ({wmax} {how}), {floors[wmax].mp_per_s / floors[1].mp_per_s:.2f}x.")
    mem = memory_budget(records)
    if mem:
        result["memory"] = mem
        text = (f"Memory: a fresh worker-like Python process holds {mem['per_process_mb']:.0f} MB and the largest "
                f"image decodes to {mem['largest_image_mb']:.1f} MB ({mem['largest_image_mp']:.1f} MP x 3 bytes)")
        if mem["worst"]:
            w = mem["worst"]
            text += (f"; the worst engine run, {w['method']} ({w['case']}), peaks at {w['peak_mb']:.0f} MB against "
                     f"a bound of 2 x {mem['largest_image_mb']:.1f} + {_constant_text(w)} = "
                     f"{w['bound_mb']:.0f} MB ({w['ratio']:.2f}x)")
        if mem["over"]:
            text += "; over the bound: " + ", ".join(
                f"{x['method']}/{x['case']} ({x['ratio']:.2f}x)" for x in mem["over"])
        elif mem["rows"]:
            text += f"; all {len(mem['rows'])} engine runs stay within it"
        result["conclusions"].append(text + ".")
    bad = [r for r in records if r.checked and not r.match]
    if bad:
        result["conclusions"].append("Outputs that differ from pixelmill's reference beyond tolerance (or in chroma "
                                     "subsampling): " + ", ".join(
                                         f"{r.method}/{r.case} (max {r.max_abs_err:g}, mean {r.mean_abs_err:.2f})"
                                         for r in bad) + ".")
    elif any(r.checked for r in records):
        result["conclusions"].append(
            f"Every output keeps the reference's chroma subsampling at quality {QUALITY}; pixelmill's engines "
            "match the "
            f"numpy engine's outputs exactly and the peers' are within {PEER_TOLERANCE:g} grey levels on average.")
    return result


def _label(r: Record) -> str:
    workers = f"{r.workers} {'worker' if r.workers == 1 else 'workers'}"
    if r.kind == "baseline":
        pool = f"{r.case.split(':')[1]}, " if ":" in r.case else ""
        return f"floor: decode+encode ({pool}{workers})"
    if r.kind == "engine":
        return f"pixelmill {r.method}{' (default run)' if r.method == 'auto' else ''} ({workers})"
    return f"{r.method} ({workers})"


def plot(records, analysis, path, opts) -> None:
    from ._plots import METHOD_STYLE, new_figure, save

    ok = [r for r in _ok(records) if r.mp_per_s and r.method not in MEMORY_METHODS]
    floors = [r for r in ok if r.method == "floor"]
    cases = _cases(ok) or ["invert"]
    panels = [(case, sorted([r for r in ok if r.case == case] + floors, key=lambda r: r.mp_per_s)) for case in cases]
    heights = [max(2.6, 0.36 * len(rows) + 1.4) for _, rows in panels]
    fig, axes = new_figure(len(panels), 1, width=11, height=sum(heights) + 0.6)
    axes = axes if isinstance(axes, list) else [axes]
    top = max((r.megapixels / r.min_s for r in ok), default=1.0)
    n = next((int(r.size) for r in ok if r.size), 0)
    mp = next((r.megapixels for r in ok if r.megapixels), 0)
    for ax, (case, rows) in zip(axes, panels):
        colors = ["#cccccc" if r.kind == "baseline" else METHOD_STYLE(r.method)["color"] for r in rows]
        hatches = [{"engine": "", "peer": "//", "baseline": ".."}[r.kind] for r in rows]
        bars = ax.barh(range(len(rows)), [r.mp_per_s for r in rows], color=colors, edgecolor="black", linewidth=0.4,
                       hatch=hatches or None)
        for bar, r in zip(bars, rows):
            # Throughput spread from the fastest and slowest runs.
            lo, hi = r.megapixels / r.max_s, r.megapixels / r.min_s
            y = bar.get_y() + bar.get_height() / 2
            ax.plot([lo, hi], [y, y], color="black", linewidth=1)
            mark = "" if (r.checked and r.match) else ("  MISMATCH" if r.checked else "  unchecked")
            ax.annotate(f"{r.mp_per_s:.1f}{mark}", (max(hi, bar.get_width()), y), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=8, color="red" if mark else "black")
        for w, r in best_floors(records).items():
            ax.axvline(r.mp_per_s, color="black", linestyle="--", linewidth=0.8)
            ax.annotate(f"floor, {w} worker{'s' if w > 1 else ''} ", (r.mp_per_s, 0.0),
                        xycoords=("data", "axes fraction"), rotation=90, va="bottom", ha="right", fontsize=7.5)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([_label(r) for r in rows], fontsize=8.5)
        ax.set_xlim(0, top * 1.22)
        what = "invert" if case == "invert" else f"{case} (Gaussian, clip to uint8)"
        ax.set_title(f"{what}: decode, operate, encode {n} JPEGs ({mp:.1f} MP) — higher is better", fontsize=10)
        ax.set_xlabel("throughput (megapixels per second at the median run; line = fastest..slowest run)", fontsize=8.5)
    fig.text(0.01, 0.005, "Dashed lines and dotted grey bars: the decode+encode floor (no operation; the faster pool "
             "per worker count), the same in every panel. Hatched: other libraries.", fontsize=8, style="italic")
    save(fig, path, bottom=0.03 if len(panels) > 1 else 0.05)


def table(records, analysis, opts) -> str:
    from .._text import md_table

    mem = (analysis or {}).get("memory") or memory_budget(records)
    bounds = {}
    if mem:
        for x in mem["rows"]:
            bounds[(x["method"], x["case"], x["workers"])] = x
    rows = []
    ok = [r for r in records if r.status == "ok"]
    for r in sorted(ok, key=lambda r: (_case_order(r.case), r.case, -(r.mp_per_s or 0))):
        b = bounds.get((r.method, r.case, r.workers)) if r.kind == "engine" else None
        rows.append([r.case, r.method, r.kind, r.workers if r.workers is not None else "", f"{r.median_s:.3f}",
                     f"{r.iqr_s:.3f}", f"{r.mp_per_s:.1f}" if r.mp_per_s else "",
                     f"{r.peak_rss_mb:.0f}" if r.peak_rss_mb else "",
                     f"{b['bound_mb']:.0f} (constant {b['constant_mb']:.0f}, {b['ratio']:.2f}x)" if b else "",
                     (("ok" if r.match else "MISMATCH") + f" (max {r.max_abs_err:g}, mean {r.mean_abs_err:.3f}; "
                      f"tol {r.tolerance:g} on {r.tolerance_on.replace('_abs_err', '')})") if r.checked else "not checked",
                     r.notes])
    head = ""
    if mem:
        head = (f"Memory bound per engine run: 2 x {mem['largest_image_mb']:.1f} MB (the largest decoded image) + "
                "the run's constant: the peak of the same run (engine, workers, operation) over as many "
                "tiny 64 x 64 JPEGs, measured first in the same process; it holds the interpreter, libraries, "
                "compiled kernels and pools of every worker, none of which grows with the images. "
                f"A fresh worker-like Python process alone holds {mem['per_process_mb']:.0f} MB.\n\n")
    return head + md_table(["case", "method", "kind", "workers", "median s", "IQR s", "MP/s", "peak RSS MB",
                            "RSS bound MB", "check", "how"], rows)


# -- targets -------------------------------------------------------------------------------------------------


def _batch_floor(records, analyses, opts):
    """The default run of the invert batch against the decode+encode floor with its workers:
    timed in turn in one process when the run has that pairing, else the two records."""
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


def program_ratio(records, case: str) -> dict | None:
    """``pixelmill run``'s throughput over the fastest peer script's in ``case``, both whole
    programs timed in turn: the median over rounds of the peer's time over pixelmill's. The
    fastest peer is the one with the shortest median whose outputs passed their check."""
    progs = [r for r in records if r.suite == NAME and r.kind == "program" and r.case == case and r.status == "ok"
             and r.times_s]
    mine = next((r for r in progs if r.method == PROGRAM_PIXELMILL and r.match), None)
    peers = [r for r in progs if r.method != PROGRAM_PIXELMILL and r.match]
    if mine is None or not peers:
        return None
    peer = min(peers, key=lambda r: r.median_s)
    ratios = [t / a for a, t in zip(mine.times_s, peer.times_s)]
    return {"ratio": statistics.median(ratios), "rounds": len(ratios), "low": min(ratios), "high": max(ratios),
            "mine": mine, "peer": peer}


def program_text(p: dict) -> str:
    mine, peer = p["mine"], p["peer"]
    return (f"`pixelmill run` and {peer.method}'s script as whole programs in turn, {p['rounds']} rounds: "
            f"{p['ratio']:.2f} (medians {mine.median_s:.2f} s, {mine.mp_per_s:.1f} MP/s, vs {peer.median_s:.2f} s, "
            f"{peer.mp_per_s:.1f} MP/s; ratios {p['low']:.2f}-{p['high']:.2f})")


def _batch_peers_ratio(records, case):
    """The default run against the fastest peer pipeline: as whole programs timed in turn when
    the run has them (users run whole programs: start-up counts), else in process."""
    got = default_run(records, case)
    peer = fastest_peer(records, case)
    prog = program_ratio(records, case)
    inproc = None
    if got is not None and peer is not None:
        rec, how = got
        apart = (f"{rec.mp_per_s:.1f} MP/s vs the fastest peer (output checked), {peer.method} with {peer.workers} "
                 f"workers, {peer.mp_per_s:.1f} MP/s")
        inproc = _paired_or_apart(records, rec, case, peer.method, rec.mp_per_s / peer.mp_per_s, f"{case}: {how}",
                                  apart)
    if prog is None:
        return inproc
    detail = f"{case}: {program_text(prog)}" + _mismatch(prog["mine"])
    if inproc is not None:
        detail += f"; in process (no start-up): {inproc[0]:.2f}, {inproc[1].split(': ', 1)[1]}"
    return prog["ratio"], detail


def _batch_vs_peers(records, analyses, opts):
    """The default run of the invert batch against the fastest peer pipeline."""
    return _batch_peers_ratio(records, "invert")


def _batch_gaussian_vs_peers(records, analyses, opts):
    """The default run of the Gaussian batch against the fastest peer pipeline."""
    from ._ops import op_label

    return _batch_peers_ratio(records, op_label(gaussian_spec(opts)))


def _batch_memory(records, analyses, opts):
    """The worst engine run's peak RSS over 2 x the largest decoded image + the run's constant
    (the same run over tiny images), both measured in this run."""
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


#: This suite's targets (:mod:`._targets`), listed in report.md in :data:`._suites.TARGET_ORDER`.
TARGETS = [
    Target("batch-vs-floor", "batch invert >= 90% of the decode+encode floor (MP/s)", "batch", 0.90, ">=",
           _batch_floor),
    Target("batch-vs-peers", "batch invert >= the fastest peer pipeline (MP/s)", "batch", 1.0, ">=",
           _batch_vs_peers),
    Target("batch-gaussian-vs-peers", "batch Gaussian 5x5 >= the fastest peer pipeline (MP/s)", "batch", 1.0, ">=",
           _batch_gaussian_vs_peers),
    Target("batch-memory", "batch peak RSS <= 2x the largest decoded image + a constant per worker", "batch", 1.0,
           "<=", _batch_memory),
]
