"""The command line: a thin layer that maps options onto library calls.

Exit codes: 0 all items done or skipped; 1 some items failed or were not done (the rest still
done), or the manifest could not be written; 2 a usage error (bad option, missing input, unsafe,
unwritable or busy output folder, unreachable scheduler); 130 interrupted by Ctrl-C (SIGINT),
143 by SIGTERM (the manifest of what was done is written).
"""

from __future__ import annotations

import json
import sys
import time

import click

from ._version import __version__
from .bench import SUITES
from .errors import PixelmillError
from .io import SUPPORTED_FORMATS
from .ops import POLICIES
from .tiling import BORDER_MODES

FORMATS = tuple(f.lower() for f in SUPPORTED_FORMATS)


def _fail(message: str) -> "NoReturn":  # noqa: F821
    click.echo(f"pixelmill: error: {message}", err=True)
    sys.exit(2)


def _tile_shape(text: str | None):
    if not text:
        return None
    try:
        parts = [int(p) for p in text.lower().replace("x", ",").split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise click.BadParameter(f"{text!r}: give ROWSxCOLS, e.g. 512x512, or one number", param_hint="--tile-size")
    return tuple(parts)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pixelmill")
def main():
    """Exact pixel operations and kernel filters for one image or a whole library."""


@main.command()
@click.argument("inputs", nargs=-1, required=False, type=click.Path(path_type=str))
@click.option("-o", "--output", "outdir", required=True, type=click.Path(path_type=str),
              help="Output folder (mirrors the input tree); must not be inside an input folder.")
@click.option("--op", "ops", multiple=True, required=True, metavar="OP",
              help="invert, sobel, a kernel name, gaussian[:size=9,sigma=2], kernel:PATH[,normalize], "
                   "kernel:\"1 2 1; 2 4 2; 1 2 1\"[,normalize]; a chain, one output: \"gaussian | invert\". "
                   "Repeat for a filter bank (one output folder per op).")
@click.option("--include", "include", multiple=True, metavar="GLOB",
              help="Only files (in the input folders) whose path relative to the folder matches GLOB "
                   "(fnmatch: '*.jpg', '2023/*'). Repeatable.")
@click.option("--exclude", "exclude", multiple=True, metavar="GLOB",
              help="Leave out files and folders whose relative path matches GLOB ('thumbs', '*/cache/*'). Repeatable.")
@click.option("--files-from", "files_from", default=None, metavar="LIST",
              help="Also read the paths in LIST, one a line ('-': stdin); relative ones are relative to LIST's "
                   "folder (stdin: the current folder); blank lines and '#' comments are skipped.")
@click.option("--dry-run", is_flag=True,
              help="Say what would be done, skipped and refused, and write nothing (not even OUTDIR).")
@click.option("--engine", default="auto", show_default=True,
              help="Engine name (see `pixelmill engines`); auto picks per image from this machine's calibration.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Parallel workers [default: usable cores].")
@click.option("--border", default="nearest", show_default=True,
              type=click.Choice(BORDER_MODES))
@click.option("--cval", type=float, default=0.0, show_default=True, help="Value outside the image for --border constant.")
@click.option("--policy", default=None, type=click.Choice(POLICIES),
              help="Conversion back to the image dtype [default: clip for smoothing, abs for edge kernels].")
@click.option("--format", "fmt", default=None, type=click.Choice(FORMATS, case_sensitive=False),
              help="Output format [default: the input's].")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality.")
@click.option("--overwrite", is_flag=True, help="Redo every output, even those already complete and up to date.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Refuse images with more pixels than this (decompression-bomb guard).")
@click.option("--tile-size", default=None, help="Tile size ROWSxCOLS for tiled engines [default: automatic].")
@click.option("--scheduler", default=None,
              help="Address of a running Dask distributed scheduler (runs on the cluster with engine dask).")
@click.option("--scheduler-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds to wait for --scheduler to answer.")
@click.option("--memory-limit", default=None, metavar="SIZE",
              help="Memory a streamed image may use, all workers together, e.g. 1GB [default: a quarter of RAM]; "
                   "tiled TIFFs larger than a tenth of it are streamed tile row by tile row.")
@click.option("--wait", is_flag=True, help="If another run is writing into OUTDIR, wait for it instead of failing.")
@click.option("--sheet", is_flag=True, help="Also write OUTDIR/contact-sheet.png.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout.")
def run(inputs, outdir, ops, include, exclude, files_from, dry_run, engine, workers, border, cval, policy, fmt,
        quality, overwrite, max_pixels, tile_size, scheduler, scheduler_timeout, memory_limit, wait, sheet, quiet,
        as_json):
    """Apply OPs to every image under INPUTS, writing into OUTDIR with a manifest.json."""
    from ._opspec import parse_ops
    from ._progress import make_progress
    from .batch import RunSettings, run_batch
    from .io import DEFAULT_MAX_PIXELS

    if not inputs and files_from is None:
        _fail("no input given: name files or folders, or give --files-from LIST")
    try:
        settings = RunSettings(
            ops=parse_ops(ops),
            engine=engine,
            workers=workers,
            border=border,
            cval=cval,
            policy=policy,
            format=fmt.upper() if fmt else None,
            quality=quality,
            max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
            overwrite=overwrite,
            tile_shape=_tile_shape(tile_size),
            scheduler=scheduler,
            scheduler_timeout=scheduler_timeout,
            memory_limit=memory_limit,
        )
        with make_progress("pixelmill run", quiet=quiet or as_json or dry_run) as progress:
            result = run_batch(list(inputs), outdir, settings, progress=progress, notify=progress.note, wait=wait,
                               include=include, exclude=exclude, files_from=files_from, dry_run=dry_run)
    except PixelmillError as exc:
        _fail(str(exc))
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: 128 + the signal, as shells expect
        _interrupted(exc)
    except OSError as exc:  # not a usage error, but never a traceback
        click.echo(f"pixelmill: error: {exc}", err=True)
        sys.exit(1)
    if dry_run:
        _print_dry_run(result, as_json)
        sys.exit(0)
    summary = result.summary
    # Library warnings are kept per image in the manifest, never printed: here only counted.
    summary["images_with_warnings"] = len({item["input"] for item in result.items if item.get("warnings")})
    summary["failures"] = result.failures
    if sheet:
        from .tools import write_contact_sheet

        summary["contact_sheet"] = str(write_contact_sheet(outdir))
    if as_json:
        click.echo(json.dumps(summary, indent=1))
    else:
        for item in result.items:
            if item["status"] == "failed" and not quiet:
                click.echo(f"failed: {item['input']} [{item['op']}]: {item['error']}", err=True)
        warned = summary["images_with_warnings"]
        click.echo(
            f"done {summary['done']}, skipped {summary['skipped']}, failed {summary['failed']}"
            f" (ignored {summary['ignored_non_images']} non-image files"
            + (f"; {warned} with library warnings, listed in the manifest" if warned else "")
            + f") in {summary['seconds']:.1f} s"
            + _one_time_text(result.one_time)
            + (f", {summary['megapixels_per_second']:.1f} MP/s" if summary["megapixels_per_second"] else "")
        )
        if not result.manifest_error:
            click.echo(f"manifest: {summary['manifest']}")
        if sheet:
            click.echo(f"contact sheet: {summary['contact_sheet']}")
    if result.stopped:
        click.echo(f"pixelmill: stopped: {result.stopped}", err=True)
    if result.manifest_error:
        click.echo(f"pixelmill: error: {result.manifest_error}", err=True)
    sys.exit(result.exit_code)


def _one_time_text(one_time: dict) -> str:
    """`` (of which 3.1 s one-time: calibration 2.0 s, numba kernels 1.1 s)``, or nothing."""
    if not one_time or sum(one_time.values()) < 0.05:
        return ""
    parts = ", ".join(f"{what} {seconds:.1f} s" for what, seconds in one_time.items())
    return f" (of which {sum(one_time.values()):.1f} s one-time: {parts})"


def _print_dry_run(result, as_json: bool) -> None:
    counts = {status: result.count(status) for status in ("would-do", "skip", "refuse")}
    if as_json:
        click.echo(json.dumps({
            "dry_run": True, **{k.replace("-", "_"): v for k, v in counts.items()},
            "ignored_non_images": result.ignored, "duplicate_inputs": result.duplicates,
            "excluded": result.excluded,
            "items": [{"input": i["input"], "op": i["op"], "output": i["output"], "status": i["status"],
                       "reason": i["error"]} for i in result.items],
        }, indent=1))
        return
    for item in result.items:
        why = f": {item['error']}" if item["error"] else ""
        click.echo(f"{item['status']}: {item['input']} [{item['op']}] -> {item['output']}{why}")
    click.echo(f"dry run: would do {counts['would-do']}, skip {counts['skip']}, refuse {counts['refuse']}"
               f" (ignored {result.ignored} non-image files); nothing was written")


def _interrupted(exc: KeyboardInterrupt) -> "NoReturn":  # noqa: F821
    import signal

    signum = getattr(exc, "signal", signal.SIGINT)
    result = getattr(exc, "result", None)
    if result is None:
        written = "before any work"
    elif getattr(exc, "manifest_error", None):
        written = exc.manifest_error
    else:
        written = (f"{result.count('done')} done, {result.count('not_done')} not done; "
                   f"manifest: {result.summary['manifest']}")
    click.echo(f"pixelmill: interrupted by {signal.Signals(signum).name}: {written}", err=True)
    sys.exit(128 + signum)


@main.command("kernels")
@click.argument("name", required=False)
def kernels_cmd(name):
    """List the named kernels, or show one's weights."""
    from . import kernels

    try:
        if name is None:
            for n in kernels.names():
                k = kernels.get(n)
                click.echo(f"{n:10s} {k.shape[0]}x{k.shape[1]}  {kernels.describe(n)}")
            click.echo("gaussian:size=N,sigma=S and kernel:PATH make others.")
            return
        if name.startswith("gaussian:"):
            from ._opspec import parse_op

            k = parse_op(name).kernel
        else:
            k = kernels.get(name)
    except PixelmillError as exc:
        _fail(str(exc))
    kind = "separable" if k.separable else "not separable"
    click.echo(f"{k.name}: {k.shape[0]}x{k.shape[1]}, {kind}, sum {k.weights.sum():g}")
    for row in k.weights:
        click.echo("  " + " ".join(f"{v:9.6g}" for v in row))


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(images, as_json):
    """Format, size, mode, bit depth and orientation of IMAGES (a folder: every image under it,
    as `run` walks it)."""
    import os

    from .batch import discover
    from .io import describe

    status = 0
    described = []
    paths = []
    for path in images:
        if os.path.isdir(path):
            found = [str(p) for p, _ in discover([path])[0]]
            if not found:
                click.echo(f"pixelmill: error: no image files under {path!r}", err=True)
                status = 1
            paths += found
        else:
            paths.append(path)
    several = len(paths) > 1 or any(os.path.isdir(p) for p in images)
    for path in paths:
        try:
            described.append(describe(path))
        except PixelmillError as exc:
            click.echo(f"pixelmill: error: {exc}", err=True)
            status = 1 if several else 2
    if as_json:
        click.echo(json.dumps(described, indent=1, default=str))
    else:
        for d in described:
            click.echo(" ".join(f"{k}={v}" for k, v in d.items()))
    sys.exit(status)


@main.command("formats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def formats_cmd(as_json):
    """List every format: read/write, bit depths, alpha, frames, metadata kept, package."""
    from .io import format_rows, formats_table

    if as_json:
        click.echo(json.dumps(format_rows(), indent=1))
    else:
        click.echo(formats_table())


@main.command()
def engines():
    """List the engines and whether each is installed."""
    from .engines import ENGINES, available_engines, get_engine_class

    available = set(available_engines())
    for name, spec in ENGINES.items():
        if name in available:
            doc = (get_engine_class(name).__doc__ or "").strip().splitlines()[0]
            click.echo(f"{name:10s} {doc}")
        else:
            click.echo(f"{name:10s} (not installed: pip install 'pixelmill[{spec.extra}]')")


@main.command()
@click.option("--refresh", is_flag=True, help="Measure again even if this machine has a cached calibration.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def calibrate(refresh, quiet):
    """Time the engines on this machine for engine 'auto' (once; cached) and show what it picks."""
    from .engines import calibrate as measure, calibration_path, load_calibration
    from ._text import md_table

    notify = None if quiet else (lambda line: click.echo(line, err=True))
    cal = measure(notify=notify) if refresh else load_calibration(notify=notify, full=True)
    click.echo(f"calibration: {calibration_path()} (measured in {cal.seconds:.1f} s, {cal.created})")
    click.echo(md_table(["work", "megapixels", "fastest", "its ms", "numpy ms"], cal.table()))


@main.command("sample-library")
@click.argument("directory", type=click.Path(path_type=str))
@click.option("--count", type=click.IntRange(min=1), default=733, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-pixels", type=click.IntRange(min=1), default=None, help="Cap each image's size (for quick demos).")
@click.option("--quiet", "-q", is_flag=True)
def sample_library(directory, count, seed, max_pixels, quiet):
    """Write a deterministic library of photo-like JPEGs with a realistic spread of sizes."""
    from ._progress import make_progress
    from .tools import write_sample_library

    try:
        with make_progress("sample-library", quiet=quiet) as progress:
            paths = write_sample_library(
                directory, count=count, seed=seed, max_pixels=max_pixels,
                progress=lambda i, total, path: progress(i, total, None),
            )
    except PixelmillError as exc:
        _fail(str(exc))
    click.echo(f"{len(paths)} images in {directory}")


@main.command()
@click.argument("outdir", type=click.Path(path_type=str))
@click.option("--max-rows", type=click.IntRange(min=1), default=48, show_default=True)
def sheet(outdir, max_rows):
    """Write OUTDIR/contact-sheet.png: originals beside their outputs."""
    from .tools import write_contact_sheet

    try:
        path = write_contact_sheet(outdir, max_rows=max_rows)
    except PixelmillError as exc:
        _fail(str(exc))
    click.echo(f"contact sheet: {path}")


# -- pixelmill bench: the harness itself loads on use --------------------------------------------


def _int_list(ctx, param, values):
    """``--sizes 10,50 --sizes 100`` -> (10, 50, 100)."""
    out = []
    for value in values or ():
        for part in str(value).replace(" ", ",").split(","):
            if not part:
                continue
            try:
                n = int(part)
            except ValueError:
                raise click.BadParameter(f"{part!r} is not a whole number; give e.g. 1,2,4") from None
            if n < 1:
                raise click.BadParameter(f"{n} must be 1 or more")
            out.append(n)
    return tuple(out) or None


@main.command("bench")
@click.argument("suites", nargs=-1, type=click.Choice(list(SUITES)))
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Results folder: results.csv, results.json, one PNG per suite, report.md.")
@click.option("--library", type=click.Path(exists=True, file_okay=False, path_type=str), default=None,
              help="Folder of images [default: the sample library, generated once into ~/.cache/pixelmill].")
@click.option("--sizes", multiple=True, callback=_int_list, metavar="N,N,...",
              help="invert-scaling sample sizes in images [default: 10,50,100,200; quick 1,4,12].")
@click.option("--workers", multiple=True, callback=_int_list, metavar="N,N,...",
              help="convolve-speedup worker counts; the largest is used elsewhere [default: 1..usable cores].")
@click.option("--repeat", "repeats", type=click.IntRange(min=1), default=None,
              help="Timed runs per measurement, after one warm-up [default: 5; quick 3]; runs "
                   "shorter than 0.1 s repeat more, until 0.5 s (at most ten times as many).")
@click.option("--quick", is_flag=True, help="Small sizes, fewer engines, all in this process: every suite in about a minute and "
              "a half on 2 cores; only indicative.")
@click.option("--engine", "engines", multiple=True, help="Only these pixelmill engines (repeatable) [default: all available].")
@click.option("--gaussian-size", type=click.IntRange(min=1), default=5, show_default=True, help="Gaussian kernel size (odd).")
@click.option("--sigma", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True, help="Gaussian sigma.")
@click.option("--image-mp", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Megapixels of the large image (convolve-speedup, peers) [default: 24; quick 2].")
@click.option("--huge-gp", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Gigapixels of the huge suite's RGB TIFF; its zarr image is 10x as large [default: 1; quick 0.05].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed for picking images.")
@click.option("--isolate/--no-isolate", default=None,
              help="Each method in a fresh Python process, or all in this one (faster, less isolated) "
                   "[default: isolated; quick: in this one].")
@click.option("--keep-work", is_flag=True, help="Keep OUTPUT/_work (decoded inputs, references, outputs).")
@click.option("--rerender", is_flag=True, help="Only rebuild plots, targets and report.md from OUTPUT/results.json.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def bench(suites, outdir, library, sizes, workers, repeats, quick, engines, gaussian_size, sigma, image_mp, huge_gp,
          seed, isolate, keep_work, rerender, quiet):
    """Benchmark engines and peer libraries; write CSV, JSON, PNG plots and report.md.

    SUITES: any of invert-scaling, convolve-speedup, filter-bank, peers, batch, huge [default: all but huge].

    huge runs only when named (`pixelmill bench -o DIR huge`): images larger than memory, a 1 GP
    TIFF and a 10 GP zarr by default, tens of GB of disk in OUTPUT/_work and most of an hour.
    """
    def say(msg):
        if not quiet:
            click.echo(f"{time.strftime('%H:%M:%S')} {msg}", err=True)

    try:
        if rerender:
            from .bench import rerender as _rerender

            _, files = _rerender(outdir)
            click.echo(f"report: {files['report']}")
            return
        from .bench import BenchOptions, run_bench

        options = BenchOptions(
            quick=quick, library=library, sizes=sizes, workers=workers, repeats=repeats,
            gaussian_size=gaussian_size, sigma=sigma, image_mp=image_mp, engines=tuple(engines) or None,
            isolate=isolate, seed=seed, huge_gp=huge_gp,
        )
        run = run_bench(outdir, suites=list(suites) or None, options=options, progress=say, keep_work=keep_work)
    except PixelmillError as exc:
        click.echo(f"pixelmill: error: {exc}", err=True)
        sys.exit(2)
    except FileNotFoundError as exc:
        click.echo(f"pixelmill: error: {exc}", err=True)
        sys.exit(2)
    errors = [r for r in run.records if r.status == "error"]
    mismatches = [r for r in run.records if r.checked and r.match is False]
    for conclusions in run.document.get("conclusions", {}).values():
        for sentence in conclusions:
            click.echo(f"- {sentence}")
    click.echo(f"{len(run.records)} records in {run.seconds:.0f} s"
               + (f"; {len(errors)} errors" if errors else "") + (f"; {len(mismatches)} mismatches" if mismatches else ""))
    targets = run.document.get("targets", [])
    counts = {k: sum(1 for t in targets if t["status"] == k) for k in ("pass", "miss", "not measured")}
    click.echo(f"targets: {counts['pass']} of {len(targets)} pass, {counts['miss']} miss, "
               f"{counts['not measured']} not measured")
    if quick:
        from .bench import QUICK_CAVEAT

        click.echo(QUICK_CAVEAT)
    click.echo(f"report: {run.files['report']}")
    sys.exit(1 if errors or mismatches else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
