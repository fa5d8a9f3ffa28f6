"""The benchmark harness on a tiny library: records, checks, files, CLI.

Timing numbers are never asserted (DESIGN.md: timing lives in benchmarks); what is asserted is
that every method ran, that its output was compared with an independent reference and matched,
that the records carry their fields, and that the files a user reads are written.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import pixelmill
from pixelmill.bench import RECORD_FIELDS, SUITES, BenchOptions, Record, rerender, run_bench
from pixelmill.bench._convolve_speedup import amdahl_fit
from pixelmill.bench._harness import Group, MemoryProbe, measure, run_group
from pixelmill.bench._records import timing_stats
from pixelmill.sample import write_sample_library

PEERS = ("cv2", "scipy", "skimage", "pillow", "pyvips")
TINY = dict(sizes=(1, 2, 3), workers=(1, 2), repeats=2, image_mp=0.04, bank_mp=0.03, batch_images=3, budget_s=1.0)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench-library")
    write_sample_library(folder, count=3, max_pixels=15_000, seed=3)
    return folder


@pytest.fixture(scope="module")
def run(library, tmp_path_factory):
    """Every suite, every available engine, in this process (isolate=False keeps the test fast)."""
    out = tmp_path_factory.mktemp("bench-out")
    options = BenchOptions(library=str(library), isolate=False, **TINY)
    return run_bench(out, options=options)


def _timed(records):
    return [r for r in records if r.status == "ok"]


def test_every_suite_produced_ok_records(run):
    suites = {r.suite for r in _timed(run.records)}
    assert suites == set(SUITES)
    errors = [(r.suite, r.method, r.case, r.notes[:200]) for r in run.records if r.status == "error"]
    assert errors == []


def test_record_fields(run):
    for r in _timed(run.records):
        assert r.repeats >= 1 and len(r.times_s) == r.repeats or r.extrapolated
        assert r.min_s <= r.median_s <= r.max_s
        assert r.iqr_s >= 0 and r.stdev_s >= 0
        assert r.median_s > 0 and math.isfinite(r.median_s)
        assert r.size_unit in ("images", "MP")
        if r.case != "startup":
            assert r.megapixels > 0 and r.mp_per_s == pytest.approx(r.megapixels / r.median_s)
            assert r.warmup_s is not None
        if not r.extrapolated and r.case != "startup":
            assert r.peak_rss_mb >= r.rss_before_mb > 0


def test_every_method_was_checked_against_the_reference(run):
    for r in _timed(run.records):
        assert r.checked, (r.suite, r.method, r.case)
        assert r.reference, (r.suite, r.method, r.case)
        value = r.max_abs_err if r.tolerance_on == "max_abs_err" else r.mean_abs_err
        assert value <= r.tolerance and r.match, (r.suite, r.method, r.case, r.max_abs_err, r.tolerance)


def test_references_are_independent_where_they_should_be(run):
    for r in _timed(run.records):
        if r.suite in ("convolve-speedup", "filter-bank"):
            assert "scipy.ndimage" in r.reference
        if r.suite == "invert-scaling" and r.kind == "engine":
            assert r.reference.startswith("exact inversion") and r.max_abs_err == 0
        if r.suite == "peers":
            assert "pixelmill" in r.reference  # the issue: peers are checked against pixelmill's output


def test_every_engine_and_peer_appears(run):
    engines = pixelmill.available_engines()
    invert = {r.method for r in _timed(run.records) if r.suite == "invert-scaling" and r.case == "invert"}
    assert set(engines) | {"memcpy"} <= invert
    peers = {r.method: r.status for r in run.records if r.suite == "peers" and r.kind == "peer"}
    assert set(PEERS) <= set(peers)
    batch = {r.method for r in run.records if r.suite == "batch"}
    assert {"floor", "cv2", "pillow", "pyvips"} <= batch
    floor = [r for r in _timed(run.records) if r.method == "floor"]
    assert {(r.workers, r.case) for r in floor} == {(1, "decode+encode"), (2, "decode+encode:threads"),
                                                   (2, "decode+encode:processes")}


def test_loops_is_extrapolated_and_says_so(run):
    loops = [r for r in run.records if r.method == "loops" and r.case == "invert"]
    assert loops and all(r.extrapolated and "extrapolated" in r.notes for r in loops)
    report = (run.outdir / "report.md").read_text(encoding="utf-8")
    assert "extrapolated" in report


def test_convolve_speedup_covers_the_worker_counts(run):
    rs = [r for r in _timed(run.records) if r.suite == "convolve-speedup" and r.method != "numpy"]
    assert {r.workers for r in rs} == {1, 2}
    assert {r.case for r in rs} == {"gaussian-5-1", "sobel"}
    speedups = run.document["analysis"]["convolve-speedup"]["speedup"]
    assert speedups and all("amdahl" in s for s in speedups.values())


def test_files_written(run):
    out = run.outdir
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(run.records)
    assert list(rows[0]) == RECORD_FIELDS
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    machine = doc["header"]["machine"]
    assert machine["usable_cores"] >= 1 and machine["memory_total_gb"] > 0
    assert doc["header"]["versions"]["numpy"] == np.__version__
    assert len(doc["records"]) == len(run.records)
    assert {t["status"] for t in doc["targets"]} <= {"pass", "miss", "not measured"}
    report = (out / "report.md").read_text(encoding="utf-8")
    for suite in SUITES:
        png = out / f"{suite}.png"
        with Image.open(png) as im:
            assert im.format == "PNG" and im.size[0] > 400 and im.size[1] > 300
        assert f"## {suite}:" in report and f"]({suite}.png)" in report
        assert doc["conclusions"][suite], suite
    assert "## Targets" in report and "## Conclusions" in report
    assert not (out / "_work").exists()


def test_rerender_rebuilds_the_report(run):
    (run.outdir / "report.md").unlink()
    document, files = rerender(run.outdir)
    assert files["report"].exists()
    assert document["conclusions"] == run.document["conclusions"]


def test_a_wrong_result_is_caught(library, tmp_path, monkeypatch):
    """The check is real: a peer returning a wrong image gets match == False."""
    from pixelmill.bench import _peers

    def broken(spec):
        return (lambda im: np.zeros_like(im)), 0, "always black"

    monkeypatch.setitem(_peers.IMPLS, "cv2", broken)
    options = BenchOptions(library=str(library), isolate=False, engines=("numpy",), **TINY)
    bad = run_bench(tmp_path, suites=["peers"], options=options)
    cv2 = [r for r in bad.records if r.method == "cv2"]
    assert cv2 and all(r.checked and r.match is False and r.max_abs_err > 1 for r in cv2)
    assert "do not match" in " ".join(bad.document["conclusions"]["peers"])


def test_isolated_groups_run_in_a_fresh_process(library, tmp_path):
    options = BenchOptions(library=str(library), engines=("numpy", "threads"), isolate=True, **TINY)
    result = run_bench(tmp_path, suites=["invert-scaling"], options=options)
    ok = _timed(result.records)
    assert {r.method for r in ok} == {"memcpy", "numpy", "threads"}
    assert all(r.checked and r.match for r in ok)


def test_a_failing_group_becomes_an_error_record(tmp_path):
    group = Group("invert-scaling", "nope", "engine", "pixelmill.bench._invert_scaling:no_such_function", {})
    for isolate in (True, False):
        recs = run_group(group, workdir=tmp_path, isolate=isolate)
        assert len(recs) == 1 and recs[0].status == "error" and "no_such_function" in recs[0].notes


def test_measure_warmup_repeats_and_budget():
    calls = []
    m = measure(lambda: calls.append(1) or len(calls), repeats=4, warmup=2)
    assert len(calls) == 6 and len(m.times) == 4 and m.result == 6 and m.warmup_s is not None
    import time

    slow = measure(lambda: time.sleep(0.05), repeats=10, warmup=0, budget_s=0.12)
    assert 1 <= len(slow.times) <= 3


def test_memory_probe_sees_an_allocation():
    with MemoryProbe() as probe:
        block = np.ones(64 * 2**20 // 8)  # 64 MB, touched
        block[::512] += 1
        del block
    assert probe.peak_mb - probe.before_mb > 48


def test_timing_stats_against_numpy():
    rng = np.random.default_rng(5)
    times = list(rng.random(9))
    s = timing_stats(times)
    q1, q3 = np.percentile(times, [25, 75])
    assert s["median_s"] == pytest.approx(np.median(times))
    assert s["iqr_s"] == pytest.approx(q3 - q1)
    assert s["stdev_s"] == pytest.approx(np.std(times, ddof=1))


def test_amdahl_fit_recovers_the_parallel_fraction():
    t1, f = 3.0, 0.9
    ws = [1, 2, 3, 4, 8]
    fit = amdahl_fit(ws, [t1 * ((1 - f) + f / p) for p in ws])
    assert fit["parallel_fraction"] == pytest.approx(f)
    assert fit["max_speedup"] == pytest.approx(10.0)
    assert fit["r2"] == pytest.approx(1.0)


def test_record_round_trip():
    r = Record(suite="s", method="m", case="c").set_times([0.3, 0.1, 0.2], megapixels=2.0)
    r.set_check((0.5, 0.1), tolerance=1.0, reference="x")
    assert Record.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert r.mp_per_s == pytest.approx(10.0) and r.match


def test_cli_runs_a_suite(library, tmp_path):
    from pixelmill.cli import main

    out = tmp_path / "cli"
    result = CliRunner().invoke(main, [
        "bench", "invert-scaling", "--library", str(library), "--sizes", "1,2", "--repeat", "1",
        "--engine", "numpy", "--engine", "loops", "--no-isolate", "-q", "-o", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert "report:" in result.output
    for name in ("results.csv", "results.json", "report.md", "invert-scaling.png"):
        assert (out / name).exists()


def test_cli_rejects_bad_options(library, tmp_path):
    from pixelmill.cli import main

    result = CliRunner().invoke(main, ["bench", "--library", str(library), "--sizes", "0", "-o", str(tmp_path)])
    assert result.exit_code == 2 and "--sizes" in result.output
    result = CliRunner().invoke(main, ["bench", "--library", str(library), "--engine", "warp-drive", "-o", str(tmp_path)])
    assert result.exit_code == 2 and "warp-drive" in result.output
    result = CliRunner().invoke(main, ["bench", "invert-scaling", "--library", str(library), "--sizes", "99",
                                       "--no-isolate", "-o", str(tmp_path)])
    assert result.exit_code == 2 and "99" in result.output
