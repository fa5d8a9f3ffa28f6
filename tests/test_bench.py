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
from pixelmill.bench import DEFAULT_SUITES, RECORD_FIELDS, BenchOptions, Record, rerender, run_bench
from pixelmill.bench._convolve_speedup import amdahl_fit
from pixelmill.bench._harness import Group, MemoryProbe, measure, run_group
from pixelmill.bench._records import timing_stats
from pixelmill.tools import write_sample_library

PEERS = ("cv2", "scipy", "skimage", "pillow", "pyvips")
TINY = dict(sizes=(1, 2, 3), workers=(1, 2), repeats=2, image_mp=0.04, bank_mp=0.03, batch_images=4, budget_s=1.0)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench-library")
    write_sample_library(folder, count=4, max_pixels=15_000, seed=3)
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
    assert suites == set(DEFAULT_SUITES)  # huge is opt-in: test_bench_huge.py runs it
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
        if r.kind == "program":  # measured from outside: its process tree's peak, no "before"
            assert r.peak_rss_mb > 0
        elif not r.extrapolated and r.case != "startup":
            assert r.peak_rss_mb >= r.rss_before_mb > 0


def test_every_method_was_checked_against_the_reference(run):
    for r in _timed(run.records):
        assert r.checked, (r.suite, r.method, r.case)
        assert r.reference, (r.suite, r.method, r.case)
        value = r.max_abs_err if r.tolerance_on == "max_abs_err" else r.mean_abs_err
        assert value <= r.tolerance and r.match, (r.suite, r.method, r.case, r.max_abs_err, r.tolerance)


def test_references_are_independent_where_they_should_be(run):
    for r in _timed(run.records):
        if r.suite in ("convolve-speedup", "filter-bank") and r.kind == "engine":
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
    engines = [r for r in rs if r.kind == "engine"]
    assert {r.workers for r in engines} == {1, 2}
    assert {r.case for r in engines} == {"gaussian-5-1", "sobel"}
    # The memory-bandwidth baseline: the same copy split over 1 and 2 threads.
    copies = [r for r in rs if r.kind == "baseline"]
    assert {(r.method, r.case, r.workers) for r in copies} == {("memcpy", "memory-copy", w) for w in (1, 2)}
    speedups = run.document["analysis"]["convolve-speedup"]["speedup"]
    assert speedups and all("amdahl" in s for s in speedups.values())
    # every worker count was also timed in turn with the one-worker run
    assert all(r.speedup_paired > 0 for r in rs if r.workers == 2)
    assert all(r.speedup_paired is None for r in rs if r.workers == 1)


def test_speedup_and_efficiency_come_from_the_worker_counts_timed_in_turn():
    from pixelmill.bench._convolve_speedup import analyse

    def rec(workers, median, paired=None):
        r = Record(suite="convolve-speedup", method="threads", kind="engine", case="sobel", size=24.0,
                   size_unit="MP", workers=workers, speedup_paired=paired).set_times([median])
        r.set_check((0.0, 0.0), tolerance=0, reference="x")
        return r

    # apart, 1.0 s and 0.8 s (1.25x); in turn in one process, 1.9x
    rows = analyse([rec(1, 1.0), rec(2, 0.8, paired=1.9)], {})["speedup"]["threads|sobel"]["by_workers"]
    assert rows[2]["speedup"] == pytest.approx(1.9) and rows[2]["efficiency"] == pytest.approx(0.95)
    assert rows[2]["speedup_apart"] == pytest.approx(1.25) and rows[1]["speedup"] == pytest.approx(1.0)
    # Amdahl's law fitted to those same speedups: 1.9x at 2 workers is a parallel fraction of 2 - 2 / 1.9
    fit = analyse([rec(1, 1.0), rec(2, 0.8, paired=1.9)], {})["speedup"]["threads|sobel"]["amdahl"]
    assert fit["parallel_fraction"] == pytest.approx(2 - 2 / 1.9)
    # without the pairing, the two medians
    rows = analyse([rec(1, 1.0), rec(2, 0.8)], {})["speedup"]["threads|sobel"]["by_workers"]
    assert rows[2]["efficiency"] == pytest.approx(0.625)


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
    for suite in DEFAULT_SUITES:
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
    import time

    from pixelmill.bench._harness import MAX_REPEAT_FACTOR, MIN_TIMED_S

    calls = []
    # A run that takes no time at all repeats MAX_REPEAT_FACTOR times as often as asked.
    m = measure(lambda: calls.append(1) or len(calls), repeats=4, warmup=2)
    assert len(m.times) == 4 * MAX_REPEAT_FACTOR and len(calls) == 2 + len(m.times)
    assert m.result == len(calls) and m.warmup_s is not None
    # Long enough runs are repeated as asked...
    steady = measure(lambda: time.sleep(MIN_TIMED_S / 3), repeats=4, warmup=0)
    assert len(steady.times) == 4
    # ...fast ones until they add up to MIN_TIMED_S, and the budget cuts both.
    quick = measure(lambda: time.sleep(MIN_TIMED_S / 20), repeats=4, warmup=0)
    assert 4 < len(quick.times) <= 20
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


# -- the batch suite: invert and the Gaussian, its targets, its memory budget --------------------------------------

BATCH_CASES = ("invert", "gaussian-5-1")  # TINY keeps the default Gaussian (size 5, sigma 1)


def _batch_records(run):
    return [r for r in run.records if r.suite == "batch"]


def test_batch_runs_both_cases_and_every_output_is_checked(run):
    ok = [r for r in _batch_records(run) if r.status == "ok"]
    engines = set(pixelmill.available_engines()) - {"loops"}
    for case in BATCH_CASES:
        rows = [r for r in ok if r.case == case]
        assert {r.method for r in rows if r.kind == "engine"} == engines, case
        assert {r.method for r in rows if r.kind == "peer"} == {"cv2", "pillow", "pyvips", "pyvips-threads"}, case
        # Whole programs, as users run them: pixelmill run and every peer's script, in turn.
        assert {r.method for r in rows if r.kind == "program"} == {"pixelmill run", "cv2", "pillow", "pyvips",
                                                                   "pyvips-threads"}, case
        # Paired in one process: the default run and OpenCV of each case (and the floor, below),
        # and the engine whose batch runs the schedule auto's does, if one does.
        paired_auto = next(r for r in rows if r.kind == "paired" and r.method == "auto")
        twin = {paired_auto.auto_ran.split(" (")[0]} if paired_auto.auto_ran else set()
        assert {r.method for r in rows if r.kind == "paired"} == {"auto", "cv2"} | twin, case
        for r in rows:
            assert r.checked and r.match, (case, r.method, r.max_abs_err, r.mean_abs_err, r.notes)
            assert r.megapixels > 0 and r.peak_rss_mb > 0
            if r.method in engines or r.method == "pixelmill run":  # the numpy engine's outputs, exactly
                assert r.max_abs_err == 0 and r.tolerance == 0, (case, r.method)
            else:  # another encoder: held to a mean difference
                assert r.mean_abs_err <= 2.0 and r.tolerance_on == "mean_abs_err"
            assert "Python process" in r.notes
    # Every record says its case; the floor is one (no operation) and the memory baselines are there.
    assert all(r.case and r.case != "*" for r in _batch_records(run))
    assert {r.case for r in ok if r.method == "floor"} == {"decode+encode", "decode+encode:threads",
                                                           "decode+encode:processes"}
    programs = [r for r in ok if r.kind == "program"]
    assert len({r.repeats for r in programs}) == 1 and all(r.warmup_s > 0 for r in programs)
    assert all("whole program" in r.notes and "rounds after an untimed one" in r.notes for r in programs)
    paired = [r for r in ok if r.kind == "paired"]
    assert {(r.method, r.case) for r in paired if r.method == "floor"} == {("floor", "decode+encode:threads")}
    # Every member ran the same rounds (at least 3), timed after one warm-up round each.
    assert len({r.repeats for r in paired}) == 1 and paired[0].repeats >= 3
    assert all(r.warmup_s > 0 and "rounds in one process" in r.notes for r in paired)
    assert {(r.method, r.case) for r in ok if r.method in ("python-process", "largest-image")} == {
        ("python-process", "startup"), ("largest-image", "decode:largest")}
    # When auto's inversion runs whole photos on threads with NumPy in each (as the threads
    # engine's batch does; the test calibration may pick numba inside), the two ran in turn.
    from pixelmill.batch import plan_schedule as _plan_schedule
    from pixelmill.bench._batch import _engine_settings

    planned = _plan_schedule(_engine_settings("invert", "auto", 2, 95), TINY["batch_images"])
    twin = "threads (2 workers)" if planned == ("threads", 2, "numpy", 1) else ""
    assert next(r for r in paired if r.method == "auto" and r.case == "invert").auto_ran == twin


def test_batch_gaussian_matches_an_independent_blur(library, tmp_path):
    """The Gaussian batch's reference (the numpy engine) against scipy.ndimage on the decoded inputs."""
    import scipy.ndimage as ndi

    from pixelmill.batch import RunSettings, run_batch
    from pixelmill.bench._batch import cases_for, gaussian_spec
    from pixelmill.bench._ops import make_op
    from pixelmill.io import read_image

    opts = BenchOptions(library=str(library), **TINY).resolved()
    spec = gaussian_spec(opts)
    assert list(cases_for(opts)) == list(BATCH_CASES) and cases_for(opts)["gaussian-5-1"] == spec
    out = tmp_path / "gauss"
    run_batch([str(library)], str(out), RunSettings(ops=(make_op(spec),), engine="numpy", workers=1, quality=100))
    x = np.arange(-2, 3)
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / 2.0)
    g /= g.sum()
    for src in sorted(library.rglob("*.jpg")):
        img = read_image(src).data.astype(np.float64)
        want = np.stack([ndi.convolve(img[..., c], g, mode="nearest") for c in range(3)], axis=-1)
        want = np.clip(np.rint(want), 0, 255)
        got = read_image(out / src.relative_to(library)).data.astype(np.float64)
        assert np.abs(got - want).mean() < 1.0  # JPEG at quality 100, 4:2:0: small loss only


def test_batch_targets_are_measured(run):
    rows = {t["id"]: t for t in run.document["targets"]}
    for tid in ("batch-vs-floor", "batch-vs-peers", "batch-gaussian-vs-peers", "batch-memory"):
        t = rows[tid]
        assert t["status"] in ("pass", "miss") and t["measured"] > 0, (tid, t["detail"])
    assert "gaussian-5-1" in rows["batch-gaussian-vs-peers"]["detail"]
    analysis = run.document["analysis"]["batch"]
    assert set(analysis["cases"]) == set(BATCH_CASES)
    text = " ".join(run.document["conclusions"]["batch"])
    assert "invert:" in text and "gaussian-5-1:" in text and "Memory:" in text
    report = (run.outdir / "report.md").read_text(encoding="utf-8")
    assert "| gaussian-5-1 | cv2 | peer |" in report and "RSS bound MB" in report


def test_batch_memory_budget_from_the_library(run, library):
    """The bound's parts: the largest image measured from the files, the constant from each
    engine run's own tiny-image run (at least a fresh Python process's memory)."""
    from pixelmill.bench._batch import python_processes

    mem = run.document["analysis"]["batch"]["memory"]
    largest = 0
    for p in library.rglob("*.jpg"):  # TINY's batch takes every image of the tiny library
        with Image.open(p) as im:
            largest = max(largest, im.size[0] * im.size[1] * 3 / 2**20)
    assert mem["largest_image_mb"] == pytest.approx(largest)
    constant = next(r for r in run.records if r.method == "python-process")
    assert constant.checked and constant.match and 10 < constant.peak_rss_mb < 2000
    assert mem["per_process_mb"] == constant.peak_rss_mb
    engines = [r for r in _batch_records(run) if r.kind == "engine" and r.status == "ok"]
    assert len(mem["rows"]) == len(engines)
    for row in mem["rows"]:
        rec = next(r for r in engines if (r.method, r.case) == (row["method"], row["case"]))
        assert row["processes"] == python_processes(rec) >= 1
        assert row["measured_constant"] and constant.peak_rss_mb < rec.constant_rss_mb < 2000
        assert row["bound_mb"] == pytest.approx(2 * largest + rec.constant_rss_mb)
        assert row["ratio"] == pytest.approx(rec.peak_rss_mb / row["bound_mb"])
    worst = max(mem["rows"], key=lambda x: x["ratio"])
    target = next(t for t in run.document["targets"] if t["id"] == "batch-memory")
    assert target["measured"] == pytest.approx(worst["ratio"]) and worst["method"] in target["detail"]


def _rec(method, kind, case, mp_per_s, *, workers=2, peak=None, notes="", match=True, **kw):
    r = Record(suite="batch", method=method, kind=kind, case=case, workers=workers, size=4, size_unit="images",
               notes=notes, **kw).set_times([10.0 / mp_per_s], megapixels=10.0)
    r.peak_rss_mb = peak
    r.set_check((0.0, 0.5 if match else 9.0), tolerance=2.0, tolerance_on="mean_abs_err", reference="x")
    return r


def test_batch_targets_judge_the_default_run():
    """With an 'auto' record the targets judge it, not the fastest engine; without one, the fastest."""
    from pixelmill.bench import compute_targets

    opts = BenchOptions(quick=True).resolved()
    g = "gaussian-5-1"
    records = [
        _rec("floor", "baseline", "decode+encode:threads", 100.0),
        _rec("floor", "baseline", "decode+encode", 60.0, workers=1),
        _rec("numba", "engine", "invert", 95.0, peak=300.0, notes="1 Python process at once"),
        _rec("auto", "engine", "invert", 80.0, peak=150.0, notes="1 Python process at once"),
        _rec("processes", "engine", g, 50.0, peak=450.0, notes="3 Python processes at once (this one and 2 workers)"),
        _rec("auto", "engine", g, 40.0, peak=120.0),
        _rec("cv2", "peer", "invert", 70.0),
        _rec("pyvips", "peer", "invert", 90.0, match=False),  # a peer whose output is wrong does not count
        _rec("cv2", "peer", g, 64.0),
        _rec("python-process", "baseline", "startup", 1.0, workers=None, peak=100.0),
        _rec("largest-image", "baseline", "decode:largest", 24.0, workers=1),  # 10 MP per run
    ]
    rows = {t["id"]: t for t in compute_targets(records, {}, opts)}
    assert rows["batch-vs-floor"]["measured"] == pytest.approx(0.80) and "'auto'" in rows["batch-vs-floor"]["detail"]
    assert rows["batch-vs-peers"]["measured"] == pytest.approx(80 / 70) and "cv2" in rows["batch-vs-peers"]["detail"]
    assert rows["batch-gaussian-vs-peers"]["measured"] == pytest.approx(40 / 64)
    assert rows["batch-gaussian-vs-peers"]["status"] == "miss"
    image_mb = 10e6 * 3 / 2**20
    # processes: 3 counted processes; the gaussian auto record has no count: 1 (not a process-pool engine).
    want = max(300 / (2 * image_mb + 100), 150 / (2 * image_mb + 100), 450 / (2 * image_mb + 300),
               120 / (2 * image_mb + 100))
    assert rows["batch-memory"]["measured"] == pytest.approx(want)
    assert rows["batch-memory"]["status"] == ("miss" if want > 1 else "pass")
    # Without 'auto', the fastest engine is the default run and the detail says so.
    rows = {t["id"]: t for t in compute_targets([r for r in records if r.method != "auto"], {}, opts)}
    assert rows["batch-vs-floor"]["measured"] == pytest.approx(0.95)
    assert "no 'auto' engine" in rows["batch-vs-floor"]["detail"] and "numba" in rows["batch-vs-floor"]["detail"]
    # Without the memory baselines the memory target is not measured.
    rows = {t["id"]: t for t in compute_targets([r for r in records if r.kind != "baseline"], {}, opts)}
    assert rows["batch-memory"]["status"] == "not measured"


def _paired(method, case, times):
    return Record(suite="batch", method=method, kind="paired", case=case, workers=2, size=4,
                  size_unit="images").set_times(times, megapixels=10.0)


def test_batch_targets_take_the_paired_ratio_when_the_run_has_it():
    """Timed in turn in one process, the ratio is the median over rounds of the time ratios; the
    separate records' ratio stays beside it in the detail. A peer counts only if it is the same."""
    from pixelmill.bench import compute_targets

    opts = BenchOptions(quick=True).resolved()
    g = "gaussian-5-1"
    records = [
        _rec("floor", "baseline", "decode+encode:threads", 100.0),
        _rec("auto", "engine", "invert", 80.0),
        _rec("auto", "engine", g, 40.0),
        _rec("cv2", "peer", "invert", 70.0),
        _rec("cv2", "peer", g, 64.0),
        # Round by round, auto takes 1.0, 2.0, 1.0 s; the others as below.
        _paired("auto", "invert", [1.0, 2.0, 1.0]),
        _paired("floor", "decode+encode:threads", [0.9, 1.9, 0.95]),
        _paired("cv2", "invert", [1.2, 1.8, 1.1]),
        _paired("auto", g, [2.0, 2.0, 2.0]),
        _paired("cv2", g, [2.1, 1.9, 2.2]),
    ]
    rows = {t["id"]: t for t in compute_targets(records, {}, opts)}
    assert rows["batch-vs-floor"]["measured"] == pytest.approx(0.95)  # median of 0.9, 0.95, 0.95
    assert "in turn in one process, 3 rounds" in rows["batch-vs-floor"]["detail"]
    assert "in separate processes" in rows["batch-vs-floor"]["detail"] and "= 0.80" in rows["batch-vs-floor"]["detail"]
    assert rows["batch-vs-peers"]["measured"] == pytest.approx(1.1)  # median of 1.2, 0.9, 1.1
    assert rows["batch-gaussian-vs-peers"]["measured"] == pytest.approx(1.05)
    assert rows["batch-gaussian-vs-peers"]["status"] == "pass"
    # The floor is the paired one even when the separate records found the other pool faster.
    rows = {t["id"]: t for t in compute_targets(records + [_rec("floor", "baseline", "decode+encode:processes",
                                                                110.0)], {}, opts)}
    assert rows["batch-vs-floor"]["measured"] == pytest.approx(0.95)
    assert "(processes)" in rows["batch-vs-floor"]["detail"] and "the floor (threads)" in rows["batch-vs-floor"]["detail"]
    # A faster peer that was not paired: its separate record decides.
    rows = {t["id"]: t for t in compute_targets(records + [_rec("pyvips", "peer", g, 80.0)], {}, opts)}
    assert rows["batch-gaussian-vs-peers"]["measured"] == pytest.approx(40 / 80)
    assert "in turn" not in rows["batch-gaussian-vs-peers"]["detail"]
    # The paired records are no floor, engine or peer of their own.
    from pixelmill.bench._batch import best_floors, default_run, fastest_peer

    assert best_floors(records)[2].kind == "baseline" and default_run(records, g)[0].kind == "engine"
    assert fastest_peer(records, g).kind == "peer"


def _program(method, case, times, match=True):
    r = Record(suite="batch", method=method, kind="program", case=case, workers=2, size=4,
               size_unit="images").set_times(times, megapixels=10.0)
    r.set_check((0.0, 0.5 if match else 9.0), tolerance=2.0, tolerance_on="mean_abs_err", reference="x")
    return r


def test_batch_peer_targets_take_the_whole_programs_when_the_run_has_them():
    """Users run whole programs: with ``program`` records the peer targets are the median over
    rounds of the fastest checked peer script's time over ``pixelmill run``'s, the in-process
    ratio beside it in the detail; a peer whose outputs failed their check does not count."""
    from pixelmill.bench import compute_targets

    opts = BenchOptions(quick=True).resolved()
    g = "gaussian-5-1"
    base = [_rec("auto", "engine", "invert", 80.0), _rec("cv2", "peer", "invert", 70.0),
            _rec("auto", "engine", g, 40.0), _rec("cv2", "peer", g, 64.0)]
    programs = [
        _program("pixelmill run", "invert", [2.0, 2.0, 4.0]),
        _program("cv2", "invert", [1.8, 2.4, 4.4]),      # median 2.4: the fastest checked peer
        _program("pyvips", "invert", [3.0, 3.0, 3.0]),
        _program("pillow", "invert", [1.0, 1.0, 1.0], match=False),
        _program("pixelmill run", g, [3.0, 3.0, 3.0]),
        _program("pyvips-threads", g, [2.7, 2.4, 3.3]),
    ]
    rows = {t["id"]: t for t in compute_targets(base + programs, {}, opts)}
    assert rows["batch-vs-peers"]["measured"] == pytest.approx(1.1)  # median of 0.9, 1.2, 1.1
    assert "whole programs in turn, 3 rounds" in rows["batch-vs-peers"]["detail"]
    assert "cv2's script" in rows["batch-vs-peers"]["detail"] and "in process" in rows["batch-vs-peers"]["detail"]
    assert rows["batch-gaussian-vs-peers"]["measured"] == pytest.approx(0.9)
    assert rows["batch-gaussian-vs-peers"]["status"] == "miss"
    assert "pyvips-threads's script" in rows["batch-gaussian-vs-peers"]["detail"]
    # Without program records, the in-process records decide as before.
    rows = {t["id"]: t for t in compute_targets(base, {}, opts)}
    assert rows["batch-vs-peers"]["measured"] == pytest.approx(80 / 70)


def test_peer_scripts_run_as_standalone_programs(tmp_path, library):
    """Each peer's script is the in-process one-file function and a pool: run as `python SCRIPT
    JOBS` it writes every output, as the in-process pipeline does."""
    import importlib.util
    import subprocess
    import sys

    from pixelmill.bench._batch import PEERS, PEER_MODULES, peer_job, peer_script

    srcs = sorted(library.rglob("*.jpg"))
    for method in PEERS:
        if importlib.util.find_spec(PEER_MODULES[method]) is None:
            continue
        for op in ("invert", "gaussian:size=5,sigma=1"):
            _, params, how = peer_job(method, op, 2)
            out = tmp_path / f"{method}-{op[:6]}"
            out.mkdir()
            script, jobs = tmp_path / f"peer-{method}-batch.py", tmp_path / "jobs.json"
            script.write_text(peer_script(method, 2), encoding="utf-8")
            jobs.write_text(json.dumps([(str(p), str(out / p.name), 95, 2, params) for p in srcs]), encoding="utf-8")
            subprocess.run([sys.executable, str(script), str(jobs)], check=True, timeout=120, cwd=tmp_path)
            for p in srcs:
                with Image.open(p) as a, Image.open(out / p.name) as b:
                    assert a.size == b.size, (method, op, p.name)
            assert ("integer mask" in how) == (method.startswith("pyvips") and op != "invert")


def test_auto_target_takes_a_batchs_overhead_from_the_engine_paired_with_it():
    """A batch's auto record has no pairing of its own: the paired records give it, when auto
    ran in turn with the engine whose batch runs its schedule."""
    from pixelmill.bench._auto import _auto_vs_best

    def engine(method, median):
        r = Record(suite="batch", method=method, kind="engine", case="invert", size=4, size_unit="images",
                   workers=2).set_times([median], megapixels=10.0)
        r.set_check((0.0, 0.0), tolerance=0, reference="x")
        return r

    separate = [engine("threads", 1.6), engine("processes", 2.5), engine("auto", 1.9)]
    ratio, detail = _auto_vs_best(separate, {}, {})
    assert ratio == pytest.approx(1.9 / 1.6)  # the medians of separate processes
    auto = _paired("auto", "invert", [2.0, 2.1, 1.9])
    auto.auto_ran = "threads (2 workers)"
    paired = [auto, _paired("threads", "invert", [1.9, 2.0, 2.0]), _paired("cv2", "invert", [1.0, 1.0, 1.0])]
    ratio, detail = _auto_vs_best(separate + paired, {}, {})
    assert ratio == pytest.approx(2.1 / 2.0)  # median of 2.0/1.9, 2.1/2.0, 1.9/2.0
    assert "auto ran threads (2 workers), 1.05x" in detail and "the best engine itself" in detail
    # Paired with a slower engine than the best: the choice costs what the separate records say.
    ratio, _ = _auto_vs_best([engine("threads", 1.6), engine("processes", 1.2), engine("auto", 1.9)] + paired, {}, {})
    assert ratio == pytest.approx(2.1 / 2.0 * 1.6 / 1.2)
    # Without the twin's paired record, the medians again.
    ratio, _ = _auto_vs_best(separate + [auto], {}, {})
    assert ratio == pytest.approx(1.9 / 1.6)


def test_memory_probe_counts_pool_workers():
    import multiprocessing
    import time as _time

    from pixelmill.bench._harness import MemoryProbe

    with MemoryProbe() as before:
        _time.sleep(0.1)
    with MemoryProbe() as counted, multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_time.sleep, [0.15, 0.15])
    assert counted.most_processes - before.most_processes >= 2


def _engine_rec(suite, method, median, *, workers=2, auto_ran="", auto_paired=None):
    r = Record(suite=suite, method=method, kind="engine", case="gaussian-5-1", size=24.0, size_unit="MP",
               workers=workers, auto_ran=auto_ran, auto_paired=auto_paired).set_times([median])
    r.set_check((0.0, 0.0), tolerance=0, reference="x")
    return r


def test_auto_target_takes_autos_own_cost_from_the_paired_runs():
    """auto against the best engine: the chosen engine's record over the best one's, times
    auto's overhead measured in turn with that engine; without a pairing, the medians."""
    from pixelmill.bench._auto import _auto_vs_best

    best = _engine_rec("s", "numba", 1.0)
    slower = _engine_rec("s", "threads", 1.5)
    # auto ran the best engine; its separate process drifted 30% but in turn it cost 2% more
    ratio, detail = _auto_vs_best([best, slower, _engine_rec("s", "auto", 1.3, auto_ran="numba (2 workers)",
                                                               auto_paired=1.02)], {}, {})
    assert ratio == pytest.approx(1.02) and "the best engine itself" in detail and "1.30" in detail
    # auto ran the slower engine: its choice costs the 1.5x, whatever its own process measured
    ratio, detail = _auto_vs_best([best, slower, _engine_rec("s", "auto", 1.0, auto_ran="threads (2 workers)",
                                                               auto_paired=1.1)], {}, {})
    assert ratio == pytest.approx(1.65) and "threads (2 workers)" in detail
    # no pairing (or tiles the rival did not use): the two medians as they are
    for auto in (_engine_rec("s", "auto", 1.3),
                 _engine_rec("s", "auto", 1.3, auto_ran="numba (2 workers, 4 MiB tiles)", auto_paired=1.0)):
        ratio, _ = _auto_vs_best([best, slower, auto], {}, {})
        assert ratio == pytest.approx(1.3)


def test_auto_target_takes_the_fastest_engine_timed_in_the_same_rounds():
    """Timed in turn with its rivals in one process, auto is judged against the fastest of
    them there, not against a separate process's outlying record of the engine it ran."""
    from pixelmill.bench._auto import _auto_vs_best

    best = _engine_rec("s", "numba", 1.0)
    outlier = _engine_rec("s", "threads", 2.0)  # what auto ran; its own process was slow
    auto = _engine_rec("s", "auto", 1.0, auto_ran="threads (2 workers)", auto_paired=1.0)
    ratio, _ = _auto_vs_best([best, outlier, auto], {}, {})
    assert ratio == pytest.approx(2.0)
    auto.auto_vs_paired_best, auto.paired_best = 1.04, "numba (2 workers)"
    ratio, detail = _auto_vs_best([best, outlier, auto], {}, {})
    assert ratio == pytest.approx(1.04) and "1.04x the time of the fastest of them, numba (2 workers)" in detail


def test_pairing_times_the_suites_other_engines_in_the_same_rounds():
    import time as _time

    from pixelmill.bench._harness import MIN_PAIRS, pair_with_delegate
    from pixelmill.engines import Calibration
    from pixelmill.engines import make_engine
    from pixelmill.ops import Invert

    table = Calibration([1.0], {"invert": {"threads:2:0": [0.01], "numpy:1:0": [0.02]}}, machine={})
    image = np.zeros((16, 16, 3), np.uint8)
    # auto takes 30 ms, the engine it runs 20, numpy 10; numba 200, out of reach after one
    # round; processes 1.1 s, out of reach from its first run
    delay = {"AutoEngine": 0.03, "ThreadsEngine": 0.02, "NumpyEngine": 0.01, "NumbaEngine": 0.2,
             "ProcessesEngine": 1.1}
    calls = []

    def work(engine):
        name = type(engine).__name__
        calls.append(name)
        engine.run(Invert(), image)
        _time.sleep(delay[name])

    with make_engine("auto", 2, calibration=table) as auto:
        work(auto)
        calls.clear()
        rec = pair_with_delegate(Record(suite="s", method="auto", case="invert"), auto, work, runs=1,
                                 rivals=["loops", "numpy", "threads", "numba", "processes", "auto"])
    # loops and auto are not rivals; threads is timed once a round as auto's delegate
    assert calls.count("ProcessesEngine") == 1  # its warm-up only
    assert calls.count("NumbaEngine") == 2  # its warm-up and the first round
    assert calls.count("NumpyEngine") == MIN_PAIRS + 1 and calls.count("AutoEngine") == MIN_PAIRS + 1
    assert calls.count("ThreadsEngine") == MIN_PAIRS
    assert rec.auto_ran == "threads (2 workers)" and 1.2 < rec.auto_paired < 2.0
    assert rec.paired_best == "numpy (1 worker)" and 2.0 < rec.auto_vs_paired_best < 4.0


def test_auto_filter_bank_is_timed_beside_the_engine_it_ran(run):
    # The bank at once always goes to one engine; one filter after the other is paired only
    # when every filter went to the same one.
    auto = {r.case: r for r in _timed(run.records) if r.suite == "filter-bank" and r.method == "auto"}
    assert auto["bank:at-once"].auto_paired > 0 and auto["bank:at-once"].auto_ran
    sequential = auto["bank:sequential"]
    assert (sequential.auto_paired is None) == (sequential.auto_ran == "")
    # wherever auto was paired, the suite's other engines ran in the same rounds
    for rec in (r for r in _timed(run.records) if r.method == "auto" and r.auto_paired is not None):
        assert rec.paired_best and rec.auto_vs_paired_best >= rec.auto_paired


def test_pairing_times_auto_in_turn_with_the_engine_it_ran():
    from pixelmill.bench._harness import MIN_PAIRS, pair_with_delegate
    from pixelmill.engines import Calibration
    from pixelmill.engines import make_engine
    from pixelmill.ops import Invert

    table = Calibration([1.0], {"invert": {"threads:2:0": [0.01], "numpy:1:0": [0.02]}}, machine={})
    image = np.zeros((64, 64, 3), np.uint8)
    calls = []

    def work(engine):
        calls.append(type(engine).__name__)
        return engine.run(Invert(), image)

    with make_engine("auto", 2, calibration=table) as auto, make_engine("numpy") as numpy_engine:
        work(auto)
        calls.clear()
        rec = pair_with_delegate(Record(suite="s", method="auto", case="invert"), auto, work, runs=10)
        assert rec.auto_ran == "threads (2 workers)" and rec.auto_paired > 0
        # auto once untimed (its time decides which rivals are out of reach), then in turn, each
        # round's order the previous one's reversed (ABBA), each side as many times
        assert calls[0] == "AutoEngine"
        rounds = calls[1:]
        assert sorted(rounds) == ["AutoEngine"] * 10 + ["ThreadsEngine"] * 10
        assert all(rounds[k:k + 2] == rounds[k + 2:k + 4][::-1] for k in range(0, 20, 4))
        calls.clear()
        pair_with_delegate(Record(suite="s", method="auto", case="invert"), auto, work, runs=2)
        assert len(calls) == 1 + 2 * MIN_PAIRS  # never fewer pairs than that
        other = pair_with_delegate(Record(suite="s", method="numpy", case="invert"), numpy_engine, work, runs=4)
        assert other.auto_ran == "" and other.auto_paired is None


def test_a_quick_run_is_lighter_than_a_full_one_and_says_so_in_its_options():
    """A quick run measures in the bench's own process, over shorter spans and fewer rounds in
    turn; a full run isolates every method; either can be overridden."""
    from pixelmill.bench._harness import MIN_PAIRS, MIN_TIMED_S

    quick, full = BenchOptions(quick=True).resolved(), BenchOptions().resolved()
    assert quick["isolate"] is False and full["isolate"] is True
    assert BenchOptions(quick=True, isolate=True).resolved()["isolate"] is True
    assert quick["min_pairs"] < full["min_pairs"] == MIN_PAIRS
    assert quick["min_timed_s"] < full["min_timed_s"] == MIN_TIMED_S
    assert quick["batch_images"] < full["batch_images"] and quick["image_mp"] < full["image_mp"]
