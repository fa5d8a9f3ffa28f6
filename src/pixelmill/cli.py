"""The command line: a thin layer that maps options onto library calls.

Exit codes: 0 all items done or skipped; 1 some items failed (the rest still done);
2 a usage error (bad option, missing input, unsafe output folder).
"""

from __future__ import annotations

import json
import sys

import click

from ._version import __version__
from .errors import PixelmillError
from .io import SUPPORTED_FORMATS

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
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-o", "--output", "outdir", required=True, type=click.Path(path_type=str),
              help="Output folder (mirrors the input tree); must not be inside an input folder.")
@click.option("--op", "ops", multiple=True, required=True, metavar="OP",
              help="invert, sobel, a kernel name, gaussian[:size=9,sigma=2], kernel:PATH[,normalize]. Repeat for a filter bank.")
@click.option("--engine", default="auto", show_default=True,
              help="Engine name (see `pixelmill engines`); auto picks per image from this machine's calibration.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Parallel workers [default: usable cores].")
@click.option("--border", default="nearest", show_default=True,
              type=click.Choice(["reflect", "mirror", "nearest", "constant", "wrap"]))
@click.option("--cval", type=float, default=0.0, show_default=True, help="Value outside the image for --border constant.")
@click.option("--policy", default=None, type=click.Choice(["clip", "abs", "shift", "normalize", "float32"]),
              help="Conversion back to the image dtype [default: clip for smoothing, abs for edge kernels].")
@click.option("--format", "fmt", default=None, type=click.Choice(FORMATS, case_sensitive=False),
              help="Output format [default: the input's].")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality.")
@click.option("--overwrite", is_flag=True, help="Redo every output, even those already complete and up to date.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Refuse images with more pixels than this (decompression-bomb guard).")
@click.option("--tile-size", default=None, help="Tile size ROWSxCOLS for tiled engines [default: automatic].")
@click.option("--scheduler", default=None, help="Address of a running Dask distributed scheduler (with --engine dask).")
@click.option("--sheet", is_flag=True, help="Also write OUTDIR/contact-sheet.png.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout.")
def run(inputs, outdir, ops, engine, workers, border, cval, policy, fmt, quality, overwrite, max_pixels,
        tile_size, scheduler, sheet, quiet, as_json):
    """Apply OPs to every image under INPUTS, writing into OUTDIR with a manifest.json."""
    from ._opspec import parse_op
    from ._progress import make_progress
    from .batch import RunSettings, run_batch
    from .io import DEFAULT_MAX_PIXELS

    try:
        settings = RunSettings(
            ops=tuple(parse_op(op) for op in ops),
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
        )
        with make_progress("pixelmill run", quiet=quiet or as_json) as progress:
            result = run_batch(list(inputs), outdir, settings, progress=progress, notify=progress.note)
    except PixelmillError as exc:
        _fail(str(exc))
    summary = result.summary
    # Library warnings are kept per image in the manifest, never printed: here only counted.
    summary["images_with_warnings"] = len({item["input"] for item in result.items if item.get("warnings")})
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
            + (f", {summary['megapixels_per_second']:.1f} MP/s" if summary["megapixels_per_second"] else "")
        )
        click.echo(f"manifest: {summary['manifest']}")
        if sheet:
            click.echo(f"contact sheet: {summary['contact_sheet']}")
    sys.exit(result.exit_code)


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
    """Format, size, mode, bit depth and orientation of IMAGES."""
    from .io import describe

    status = 0
    described = []
    for path in images:
        try:
            described.append(describe(path))
        except PixelmillError as exc:
            click.echo(f"pixelmill: error: {exc}", err=True)
            status = 1 if len(images) > 1 else 2
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
    from .engines import _calibration as calibration
    from .bench._report import md_table

    notify = None if quiet else (lambda line: click.echo(line, err=True))
    cal = calibration.calibrate(notify=notify) if refresh else calibration.load(notify=notify)
    click.echo(f"calibration: {calibration.cache_path()} (measured in {cal.seconds:.1f} s, {cal.created})")
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


from .bench._cli import bench as _bench  # noqa: E402 - click only; the harness loads on use

main.add_command(_bench)


if __name__ == "__main__":  # pragma: no cover
    main()
