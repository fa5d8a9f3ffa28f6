"""Running suites: prepare inputs, run each method's group, collect records, write the outputs."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import InvalidParameterError
from ._context import Context
from ._extra import require
from ._harness import MEMORY_METHOD, TIMING_METHOD, BenchOptions, run_group
from ._library import ensure_library
from ._report import write_outputs
from ._records import Record, library_versions, machine_info, now_iso
from ._suites import DEFAULT_SUITES, suite_module

__all__ = ["BenchRun", "run_bench"]

@dataclass
class BenchRun:
    """What :func:`run_bench` produced: the records, the results document and the files written."""

    outdir: Path
    records: list[Record]
    document: dict
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


def _quiet(_msg: str) -> None:
    pass


def run_bench(outdir, *, suites=None, options: BenchOptions | None = None, progress=None,
              keep_work: bool = False) -> BenchRun:
    """Run benchmark ``suites`` (all by default) and write results into ``outdir``.

    Parameters
    ----------
    outdir : path
        Created if needed. Receives results.csv, results.json, one PNG per suite and report.md.
    suites : list of str, optional
        Names from :data:`SUITES`, run in the order given; by default every suite but the
        opt-in ones (:data:`~._suites.OPT_IN`: ``huge``), which run only when named.
    options : BenchOptions, optional
        Sizes, repeats, library...; see :class:`BenchOptions`.
    progress : callable, optional
        Called with one line of text per step.
    keep_work : bool
        Keep ``outdir/_work`` (decoded inputs, references, batch outputs) for inspection.

    Returns
    -------
    BenchRun

    Raises
    ------
    InvalidParameterError
        For an unknown suite or an option out of range (before anything runs).
    MissingDependencyError
        Without the ``bench`` extra's psutil or matplotlib (before anything runs).
    """
    require()
    started = time.perf_counter()
    options = options or BenchOptions()
    progress = progress or _quiet
    names = list(suites) if suites else list(DEFAULT_SUITES)
    modules = {name: suite_module(name) for name in names}
    # Suites that make their own inputs need neither the library nor the calibration.
    shared = any(not getattr(m, "STANDALONE", False) for m in modules.values())
    opts = options.resolved()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    workdir = outdir / "_work"

    header = {
        "tool": f"pixelmill {__version__} bench",
        "timestamp": now_iso(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
        "suites": names,
        "options": opts,
        "machine": machine_info(),
        "versions": library_versions(),
        "timing_method": TIMING_METHOD,
        "memory_method": MEMORY_METHOD,
        "isolation": ("each method in a fresh Python process (python -m pixelmill.bench._worker)"
                      if opts["isolate"] else "every method in the benchmarking process (isolate=False)"),
    }
    if shared:
        library, desc = ensure_library(opts["library"], count=opts["library_count"],
                                       max_pixels=opts["library_max_pixels"], seed=opts["seed"], progress=progress)
    else:
        library, desc = [], "not used (the suites run make their own inputs)"
    header["library"] = {"description": desc, "images": len(library)}
    if "invert-scaling" in names and max(opts["sizes"]) > len(library):
        raise InvalidParameterError(
            f"sizes go up to {max(opts['sizes'])} images but the library {desc!r} has {len(library)}; "
            "give smaller --sizes or a larger --library"
        )
    if shared and "auto" in opts["engines"]:
        # Measured afresh under this run's conditions; the suites' worker processes read it from the cache.
        from ..engines import calibrate, calibration_path, load_calibration

        # A quick run takes this machine's table as it is (measuring the quick one if there is
        # none yet: seconds); the full calibration took most of a quick run's time.
        cal = load_calibration(notify=progress) if opts.get("quick") else calibrate(notify=progress)
        header["calibration"] = {"path": str(calibration_path()), "seconds": round(cal.seconds, 2),
                                 "table": cal.table()}
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    ctx = Context(opts=opts, workdir=workdir, library=library, library_desc=desc, progress=progress)

    records: list[Record] = []
    suite_seconds = {}
    try:
        for name, module in modules.items():
            t0 = time.perf_counter()
            progress(f"[{name}] preparing inputs")
            try:
                groups = module.plan(ctx)
            except Exception as exc:  # noqa: BLE001 - one broken suite does not stop the others
                records.append(Record(suite=name, method="*", kind="engine", case="*", status="error",
                                      notes=f"preparing the suite failed: {type(exc).__name__}: {exc}"))
                groups = []
            for group in groups:
                t1 = time.perf_counter()
                got = run_group(group, workdir=workdir, isolate=opts["isolate"], timeout=options.group_timeout_s)
                bad = [r for r in got if r.status == "error"]
                progress(f"[{name}] {group.method}: {len(got)} records in {time.perf_counter() - t1:.1f} s"
                         + (f" ({len(bad)} errors: {bad[0].notes.splitlines()[0][:160]})" if bad else ""))
                records.extend(got)
            suite_seconds[name] = round(time.perf_counter() - t0, 2)
            progress(f"[{name}] done in {suite_seconds[name]:.1f} s")
    finally:
        if not keep_work:
            shutil.rmtree(workdir, ignore_errors=True)
    header["inputs"] = ctx.inputs
    header["suite_seconds"] = suite_seconds
    header["wall_seconds"] = round(time.perf_counter() - started, 2)

    document, files = write_outputs(outdir, header, records)
    return BenchRun(outdir=outdir, records=records, document=document, files=files,
                    seconds=time.perf_counter() - started)
