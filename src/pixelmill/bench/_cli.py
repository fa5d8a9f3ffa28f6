"""The ``pixelmill bench`` command (registered in :mod:`pixelmill.cli`); imports only click up front."""

from __future__ import annotations

import sys
import time

import click

SUITE_NAMES = ("invert-scaling", "convolve-speedup", "filter-bank", "peers", "batch")


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


@click.command("bench")
@click.argument("suites", nargs=-1, type=click.Choice(SUITE_NAMES))
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Results folder: results.csv, results.json, one PNG per suite, report.md.")
@click.option("--library", type=click.Path(exists=True, file_okay=False, path_type=str), default=None,
              help="Folder of images [default: the sample library, generated once into ~/.cache/pixelmill].")
@click.option("--sizes", multiple=True, callback=_int_list, metavar="N,N,...",
              help="invert-scaling sample sizes in images [default: 10,50,100,200; quick 1,2,4,8,12].")
@click.option("--workers", multiple=True, callback=_int_list, metavar="N,N,...",
              help="convolve-speedup worker counts; the largest is used elsewhere [default: 1..usable cores].")
@click.option("--repeat", "repeats", type=click.IntRange(min=1), default=None,
              help="Timed runs per measurement, after one warm-up [default: 5; quick 3]; runs "
                   "shorter than 0.1 s repeat more, until 0.5 s (at most ten times as many).")
@click.option("--quick", is_flag=True, help="Small sizes: every suite in about two minutes on two cores.")
@click.option("--engine", "engines", multiple=True, help="Only these pixelmill engines (repeatable) [default: all available].")
@click.option("--gaussian-size", type=click.IntRange(min=1), default=5, show_default=True, help="Gaussian kernel size (odd).")
@click.option("--sigma", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True, help="Gaussian sigma.")
@click.option("--image-mp", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Megapixels of the large image (convolve-speedup, peers) [default: 24; quick 2].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed for picking images.")
@click.option("--no-isolate", is_flag=True, help="Run every method in this process (faster, less isolated).")
@click.option("--keep-work", is_flag=True, help="Keep OUTPUT/_work (decoded inputs, references, outputs).")
@click.option("--rerender", is_flag=True, help="Only rebuild plots, targets and report.md from OUTPUT/results.json.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def bench(suites, outdir, library, sizes, workers, repeats, quick, engines, gaussian_size, sigma, image_mp, seed,
          no_isolate, keep_work, rerender, quiet):
    """Benchmark engines and peer libraries; write CSV, JSON, PNG plots and report.md.

    SUITES: any of invert-scaling, convolve-speedup, filter-bank, peers, batch [default: all].
    """
    from ..errors import PixelmillError

    def say(msg):
        if not quiet:
            click.echo(f"{time.strftime('%H:%M:%S')} {msg}", err=True)

    try:
        if rerender:
            from ._report import rerender as _rerender

            _, files = _rerender(outdir)
            click.echo(f"report: {files['report']}")
            return
        from ._harness import BenchOptions
        from ._runner import run_bench

        options = BenchOptions(
            quick=quick, library=library, sizes=sizes, workers=workers, repeats=repeats,
            gaussian_size=gaussian_size, sigma=sigma, image_mp=image_mp, engines=tuple(engines) or None,
            isolate=not no_isolate, seed=seed,
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
    click.echo(f"report: {run.files['report']}")
    sys.exit(1 if errors or mismatches else 0)
