"""engine='auto': the calibrated cost model, its cache, and what it delegates to."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pixelmill
from pixelmill import kernels
from pixelmill.batch._schedule import plan_batch
from pixelmill.batch._schedule import start_pays_off as _start_pays_off
from pixelmill.engines import _calibration as calibration
from pixelmill.engines import Calibration, Candidate
from pixelmill.engines import make_engine
from pixelmill.engines._auto import AutoEngine
from pixelmill.ops import Filter, Invert, SobelMagnitude

from conftest import random_image, scipy_filter


def _table(times_by_key, sizes=(0.1, 1.0, 10.0)):
    return Calibration(list(sizes), {"invert": times_by_key, "separable": times_by_key}, machine={})


def test_model_interpolates_log_log_and_extrapolates_linearly():
    cal = _table({"numpy:1:0": [0.001, 0.01, 0.1]})
    c = Candidate("numpy", 1)
    assert cal.predict("invert", c, 0.1) == pytest.approx(0.001)
    # Halfway between 0.1 and 1.0 MP on a log axis: halfway between the log times.
    assert cal.predict("invert", c, 10 ** -0.5) == pytest.approx(10 ** -2.5)
    assert cal.predict("invert", c, 40.0) == pytest.approx(0.4)
    assert cal.predict("invert", c, 0.01) == pytest.approx(0.001)  # per-call cost floor


def test_best_switches_where_the_measured_times_cross():
    # numpy is cheaper per call, threads cheaper per pixel: the crossing is between 0.1 and 1 MP.
    cal = _table({"numpy:1:0": [0.001, 0.010, 0.100], "threads:2:1048576": [0.004, 0.006, 0.050]})
    assert cal.best("invert", 0.05) == Candidate("numpy", 1)
    assert cal.best("invert", 5.0) == Candidate("threads", 2, 1 << 20)
    # A worker cap removes the candidates that need more workers.
    assert cal.best("invert", 5.0, max_workers=1) == Candidate("numpy", 1)


def test_auto_delegates_to_the_fastest_candidate_and_says_which():
    cal = _table({"numpy:1:0": [0.001, 0.010, 0.100], "threads:2:1048576": [0.004, 0.006, 0.050]})
    small = np.zeros((10, 10, 3), np.uint8)
    big = np.zeros((1500, 1500, 3), np.uint8)
    with AutoEngine(workers=2, calibration=cal) as eng:
        eng.run(Invert(), small)
        assert eng.last_choice == Candidate("numpy", 1)
        out = eng.run(Invert(), big)
        assert eng.last_choice == Candidate("threads", 2, 1 << 20)
        assert np.array_equal(out, 255 - big)
        # The threads engine got the calibrated tile size: about 1 MiB of output per tile.
        threads = eng._engines[("threads", 2)]
        assert threads.tile_shape[0] * big.shape[1] * 3 <= (1 << 20)


def test_bank_choice_sums_the_predicted_times():
    times = {"invert": {"numpy:1:0": [0.001], "numba:1:0": [0.002]},
             "separable": {"numpy:1:0": [0.050], "numba:1:0": [0.010]}}
    cal = Calibration([1.0], times, machine={})
    bank = [Invert(), Filter(kernels.gaussian(5, 1.0))]
    eng = AutoEngine(workers=1, calibration=cal)
    assert eng.choose(bank, (1000, 1000)) == Candidate("numba", 1)
    assert eng.choose(Invert(), (1000, 1000)) == Candidate("numpy", 1)


@pytest.mark.parametrize("op", [Invert(), Filter(kernels.get("sobel-x"), policy="abs"),
                                Filter(kernels.gaussian(7, 2.0), policy="clip"), SobelMagnitude()],
                         ids=["invert", "sobel-x", "gaussian", "sobel"])
def test_auto_equals_the_numpy_engine_with_the_real_calibration(rng, op, machine_calibration):
    image = random_image(rng, (37, 53, 3), np.uint8)
    with make_engine("auto", 2) as eng, make_engine("numpy") as ref:
        got = eng.run(op, image, border="reflect")
        assert eng.last_choice in [c for _, c in machine_calibration.ranked(calibration.work_class(op), 0.002)]
        np.testing.assert_array_equal(got, ref.run(op, image, border="reflect"))


def test_api_accepts_auto_and_matches_scipy(rng):
    image = random_image(rng, (40, 30), np.float32)
    w = rng.random((5, 5))
    got = pixelmill.convolve(image, w, engine="auto", border="mirror")
    np.testing.assert_allclose(got, scipy_filter(image, w, mode="mirror"), rtol=1e-5, atol=1e-5)


def test_calibration_is_cached_per_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELMILL_CACHE", str(tmp_path))
    made = calibration.calibrate(sizes_mp=(0.001, 0.003), classes=("invert", "separable", "general", "sobel"))
    path = calibration.cache_path()
    assert path.parent == tmp_path and path.exists()
    data = json.loads(path.read_text())
    assert set(data["times"]) == set(calibration.WORK_CLASSES)
    # Every candidate of the machine was timed (or extrapolated) at every size, with real times.
    for rows in data["times"].values():
        assert {Candidate.from_key(k) for k in rows} == set(calibration.candidates(
            made.machine["cores"], made.machine["engines"]))
        assert all(len(r) == 2 and all(t > 0 for t in r) for r in rows.values())
    if "numba" in made.machine["engines"]:
        # a fresh process's cost of numba's first result, measured once its kernels are cached
        assert 0 < data["startup_s"]["numba"] < 60
    notes = []
    again = calibration.load(notify=notes.append)
    assert notes == [] and again.times == made.times  # read back, not measured again
    assert again.startup_s == made.startup_s
    path.write_text("{not json")
    remeasured = calibration.load(notify=notes.append, sizes_mp=(0.001, 0.003))
    assert notes and set(remeasured.times) == set(calibration.WORK_CLASSES)
    assert remeasured.sizes_mp == [0.001, 0.003] and remeasured.created


def test_processes_started_at_once_calibrate_once(tmp_path, monkeypatch, machine_calibration):
    # While one process measures (it holds the lock beside the cache file), another waits and
    # then reads its table instead of timing the engines beside it.
    import threading

    from filelock import FileLock

    monkeypatch.setenv("PIXELMILL_CACHE", str(tmp_path))
    path = calibration.cache_path()
    got = []
    with FileLock(f"{path}.lock"):
        waiting = threading.Thread(target=lambda: got.append(calibration.load(sizes_mp=(0.001,))))
        waiting.start()
        waiting.join(timeout=1.0)
        assert waiting.is_alive() and not got
        path.write_text(json.dumps(machine_calibration.to_json()))
    waiting.join(timeout=60)
    assert got and got[0].created == machine_calibration.created and got[0].times == machine_calibration.times


def test_batch_plan_runs_whole_images_in_parallel_with_the_calibrated_inner_engine(machine_calibration):
    ops = [Filter(kernels.gaussian(5, 1.0), policy="clip")]
    across, across_workers, inner, inner_workers = plan_batch(ops, n_images=10, workers=2)
    assert (across_workers, inner_workers) == (2, 1)
    expected = AutoEngine(workers=1, calibration=machine_calibration).choose(ops, (2000, 3000)).engine
    if expected == "numba" and not _start_pays_off(machine_calibration, ops, "numba", 10, 2):
        expected = "numpy"
    assert inner == expected
    if inner == "numba":
        from pixelmill.engines._numba import threadsafe

        assert across == ("threads" if threadsafe() else "joblib")
    else:
        assert across == "threads"
    # Too few images to keep the workers busy: one at a time, each split by auto.
    assert plan_batch(ops, n_images=3, workers=2) == ("numpy", 1, "auto", 2)


def test_a_batch_starts_numba_only_when_the_library_wins_back_its_start(monkeypatch):
    import sys

    # 6 MP: numba saves 20 ms an image on the Gaussian, 0.1 ms on an inversion; starting it costs 1 s.
    cal = Calibration([1.0, 10.0], {"separable": {"numpy:1:0": [0.005, 0.05], "numba:1:0": [0.0017, 0.017]},
                                    "invert": {"numpy:1:0": [0.0003, 0.003], "numba:1:0": [0.00028, 0.0028]}},
                      machine={}, startup_s={"numba": 1.0})
    gauss, invert = [Filter(kernels.gaussian(5, 1.0), policy="clip")], [Invert()]
    monkeypatch.delitem(sys.modules, "pixelmill.ops._numba", raising=False)
    assert not _start_pays_off(cal, gauss, "numba", 50, 2)    # 50 x 20 ms / 2 workers = 0.5 s < 1 s
    assert _start_pays_off(cal, gauss, "numba", 200, 2)       # 2 s > 1 s
    assert not _start_pays_off(cal, invert, "numba", 10_000, 2)  # 10000 x 0.12 ms / 2 = 0.6 s
    # Already started in this process: any saving pays.
    monkeypatch.setitem(sys.modules, "pixelmill.ops._numba", object())
    assert _start_pays_off(cal, gauss, "numba", 50, 2) and _start_pays_off(cal, invert, "numba", 4, 2)
    assert _start_pays_off(cal, gauss, "numpy", 1, 2) is False  # nothing saved over itself


def _slow_square(x):
    import time

    time.sleep(0.005)
    return x * x


def test_map_uses_a_pool_only_for_items_worth_it():
    cal = _table({"numpy:1:0": [0.001, 0.010, 0.100]})
    with AutoEngine(workers=2, calibration=cal) as eng:
        assert sorted(eng.map(lambda x: x + 1, range(7))) == list(range(1, 8))
        assert not eng._engines  # a few microsecond items: one after the other
        assert sorted(eng.map(_slow_square, range(6))) == [x * x for x in range(6)]
        assert ("threads", 2) in eng._engines  # slow ones: the first here, the rest on the pool
    with AutoEngine(workers=2, calibration=cal) as eng:
        assert sorted(eng.map(lambda x: x + 1, range(8))) == list(range(1, 9))
        assert ("threads", 2) in eng._engines  # four items per worker: all on the pool


def test_the_manifest_says_how_auto_ran_the_batch(tmp_path, rng):
    from PIL import Image

    from pixelmill.batch import RunSettings, run_batch

    lib = tmp_path / "lib"
    lib.mkdir()
    for k in range(5):
        Image.fromarray(random_image(rng, (24, 31, 3), np.uint8)).save(lib / f"im{k}.png")
    ops = (Filter(kernels.gaussian(5, 1.0)),)
    result = run_batch([str(lib)], str(tmp_path / "out"), RunSettings(ops=ops, engine="auto", workers=2))
    assert result.count("done") == 5
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    across, across_workers, inner, inner_workers = plan_batch(ops, n_images=5, workers=2)
    assert manifest["schedule"] == {"across_images": {"engine": across, "workers": across_workers},
                                    "within_image": {"engine": inner, "workers": inner_workers}}
    assert manifest["schedule"]["across_images"]["workers"] == 2  # five images keep two workers busy
