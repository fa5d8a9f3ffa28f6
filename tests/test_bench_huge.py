"""The ``huge`` bench suite at a few megapixels, through the real runner and a real cluster.

As in test_bench.py, no time is asserted: what is asserted is that every step ran as a whole
program with its wall time and peak memory, that the outputs were compared (pyvips' within a
grey level, the cluster's equal to the local run's), that the cluster's counters were read,
and that every target of the suite has a row with a status. The suite is opt-in: a run that
does not name it neither runs it nor lists its targets.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from click.testing import CliRunner

from pixelmill.bench import DEFAULT_SUITES, OPT_IN, SUITES, BenchOptions, run_bench
from pixelmill.bench._harness import run_process
from pixelmill.bench._huge import TARGETS, pattern, side_for, stream_limit
from pixelmill.bench._suites import targets

pytest.importorskip("zarr")
pytest.importorskip("tifffile")
pytest.importorskip("distributed")

#: 1536 x 1536 RGB (2.4 MP) and its 10x grey zarr: seconds per step, most of it start-up.
TINY_GP = 0.002
HUGE_IDS = {t.id for t in TARGETS}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-huge")
    with pytest.MonkeyPatch.context() as mp:
        # The steps' programs share one bytecode cache (outside the installed packages), so
        # this test compiles their imports once, not once per program.
        mp.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
        mp.setenv("PYTHONPYCACHEPREFIX", str(tmp_path_factory.mktemp("pycache")))
        # isolate=False: each step still runs as its own program; only their driver is this process.
        return run_bench(out, suites=["huge"], options=BenchOptions(huge_gp=TINY_GP, isolate=False))


def _rec(run, method, case):
    found = [r for r in run.records if r.method == method and r.case == case]
    assert len(found) == 1, (method, case, [(r.method, r.case, r.status) for r in run.records])
    return found[0]


def test_every_step_ran_as_a_whole_program(run):
    errors = [(r.method, r.case, r.notes[:300]) for r in run.records if r.status == "error"]
    assert errors == []
    steps = {(r.method, r.case) for r in run.records}
    assert {("generate", "tiff"), ("pixelmill", "gaussian"), ("pixelmill", "sobel"), ("generate", "zarr-copy"),
            ("dask-cluster", "gaussian"), ("generate", "zarr-10x"), ("pixelmill-api", "gaussian-10x")} <= steps
    for r in run.records:
        if r.status == "ok":
            assert r.repeats == 1 and r.median_s > 0 and r.peak_rss_mb > 0, (r.method, r.case)
            assert r.figures["processes"] >= 1
    side = side_for(TINY_GP)
    assert _rec(run, "generate", "tiff").figures["shape"] == [side, side, 3]
    assert _rec(run, "generate", "zarr-10x").figures["shape"] == [side_for(10 * TINY_GP)] * 2


def test_pixelmill_streamed_and_matches_the_oracle(run):
    for case in ("gaussian", "sobel"):
        r = _rec(run, "pixelmill", case)
        assert r.status == "ok" and r.checked and r.match, (case, r.notes)
        assert "scipy.ndimage" in r.reference
        assert r.figures["memory_limit"] == stream_limit(side_for(TINY_GP) ** 2 * 3)
    big = _rec(run, "pixelmill-api", "gaussian-10x")
    assert big.checked and big.match and big.figures["complete"]


def test_peers_were_compared_with_pixelmills_outputs(run):
    if importlib.util.find_spec("pyvips") is None:
        pytest.skip("pyvips is not installed")
    for case in ("gaussian", "sobel"):
        r = _rec(run, "pyvips", case)
        assert r.checked and r.match and r.max_abs_err <= 1, (case, r.max_abs_err, r.notes)
        assert "interior" in r.reference
    builtin = _rec(run, "pyvips", "sobel-builtin")
    assert builtin.status == "ok" and not builtin.checked and "not the magnitude" in builtin.notes
    di = _rec(run, "dask-image", "gaussian")
    if importlib.util.find_spec("dask_image") is None:
        assert di.status == "not installed"
    else:
        assert di.checked and di.match


def test_the_cluster_output_is_the_local_one_and_its_counters_were_read(run):
    r = _rec(run, "dask-cluster", "gaussian")
    assert r.checked and r.max_abs_err == 0 and r.match
    fig = r.figures
    assert fig["complete"] and fig["tasks"] >= 1 and fig["workers"] == 2
    assert fig["bytes_between_workers"] >= 0 and fig["transfers"] >= 0
    assert "LocalCluster" in r.notes


def test_every_target_has_a_row_with_a_status(run):
    rows = {t["id"]: t for t in run.document["targets"]}
    assert HUGE_IDS <= set(rows)
    for tid in HUGE_IDS:
        assert rows[tid]["status"] in ("pass", "miss"), (tid, rows[tid])
    assert rows["huge-cluster-identical"]["status"] == "pass"


def test_files_and_report(run):
    report = (run.outdir / "report.md").read_text(encoding="utf-8")
    assert "## huge:" in report and "](huge.png)" in report
    assert (run.outdir / "huge.png").stat().st_size > 10_000
    doc = json.loads((run.outdir / "results.json").read_text(encoding="utf-8"))
    assert doc["header"]["suites"] == ["huge"]
    assert "not used" in doc["header"]["library"]["description"]
    cluster = next(r for r in doc["records"] if r["method"] == "dask-cluster")
    assert cluster["figures"]["tasks"] >= 1  # the JSON keeps what results.csv has no column for
    assert "figures" not in (run.outdir / "results.csv").read_text(encoding="utf-8").splitlines()[0]
    assert not (run.outdir / "_work").exists()


def test_huge_is_opt_in():
    assert "huge" in SUITES and "huge" in OPT_IN and "huge" not in DEFAULT_SUITES
    assert not HUGE_IDS & {t.id for t in targets(ran={"batch"})}
    assert HUGE_IDS <= {t.id for t in targets(ran={"huge"})}


def test_cli_names_it_and_checks_its_size(tmp_path):
    from pixelmill.cli import main

    result = CliRunner().invoke(main, ["bench", "--help"])
    assert result.exit_code == 0 and "huge" in result.output and "--huge-gp" in result.output
    result = CliRunner().invoke(main, ["bench", "huge", "--huge-gp", "0", "-o", str(tmp_path)])
    assert result.exit_code == 2 and "--huge-gp" in result.output


def test_run_process_measures_the_programs_tree_not_this_one(tmp_path):
    code = ("import subprocess, sys\n"
            "kid = subprocess.Popen([sys.executable, '-c', 'import time; b = bytearray(150 << 20); time.sleep(0.5)'])\n"
            "b = bytearray(100 << 20)\nkid.wait()\n")
    got = run_process([sys.executable, "-c", code], stderr_path=tmp_path / "err.txt")
    assert got.returncode == 0 and not got.failed
    assert 250 <= got.peak_mb < 600, got.peak_mb  # both processes' buffers, and not the test process
    assert got.seconds >= 0.5 and got.processes == 2


def test_pattern_bands_are_reproducible_and_noisy():
    band = pattern(256, 512, 300, 3, seed=1)
    assert band.shape == (256, 300, 3) and band.dtype.name == "uint8"
    assert (pattern(256, 512, 300, 3, seed=1) == band).all()
    assert (pattern(256, 512, 300, 3, seed=2) != band).any()
    assert 5 < band.std() and len(set(band[100, :50, 0].tolist())) > 10  # smooth plus noise, not flat
    assert pattern(0, 8, 50, 1, seed=1).shape == (8, 50)
