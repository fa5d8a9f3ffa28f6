"""A batch gives the same outputs on every engine, in both parallel shapes, and on a real cluster."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import pixelmill
from pixelmill.batch import RunSettings
from pixelmill.batch import plan_schedule as _plan_schedule
from pixelmill.cli import main
from pixelmill.ops import Invert


def _library(root, rng, count, shape=(33, 41, 3)):
    for i in range(count):
        path = root / ("sub" if i % 2 else "") / f"im{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return root


def _outputs(out):
    return {p.relative_to(out).as_posix(): np.asarray(Image.open(p)) for p in sorted(out.rglob("*.png"))
            if p.name != "contact-sheet.png"}


OPS = ["--op", "gaussian:size=5,sigma=1", "--op", "sobel", "--op", "invert", "--border", "reflect"]


@pytest.fixture(scope="module")
def numpy_run(tmp_path_factory):
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("engines")
    lib = _library(root / "lib", rng, 6)
    big = _library(root / "big", rng, 1, shape=(300, 257, 3))
    results = {}
    for name, src in (("many", lib), ("one", big)):
        out = root / f"numpy-{name}"
        res = CliRunner().invoke(main, ["run", str(src), "-o", str(out), "--engine", "numpy", "-q"] + OPS)
        assert res.exit_code == 0, res.output
        results[name] = (src, _outputs(out))
    return root, results


@pytest.mark.parametrize("name", [e for e in pixelmill.available_engines() if e not in ("numpy",)])
@pytest.mark.parametrize("shape", ["many", "one"])
def test_every_engine_writes_the_numpy_outputs(name, shape, numpy_run):
    root, results = numpy_run
    src, expected = results[shape]
    out = root / f"{name}-{shape}"
    res = CliRunner().invoke(main, ["run", str(src), "-o", str(out), "--engine", name, "--workers", "2", "-q"] + OPS)
    assert res.exit_code == 0, res.output
    got = _outputs(out)
    assert got.keys() == expected.keys()
    for key in expected:
        diff = np.abs(got[key].astype(int) - expected[key].astype(int))
        # loops computes in float64: a rounding tie may land one level apart, never more
        assert diff.max() <= (1 if name == "loops" else 0), key


@pytest.mark.parametrize("border", ["wrap", "reflect"])
@pytest.mark.parametrize("op", ["gaussian:size=5,sigma=1", "sobel", "laplacian", "invert"])
def test_one_op_batches_equal_numpy_whether_written_over_the_image_or_not(op, border, tmp_path, monkeypatch):
    # One operation: the batch writes over the decoded pixels, band by band (bands of a few
    # rows here), row by row (numba's separable filters and Sobel), or through a padded copy
    # (wrap). Every way the outputs are those of the numpy engine padding the whole image.
    from pixelmill.engines import _base

    src = _library(tmp_path / "lib", np.random.default_rng(11), 3)
    outputs = {}
    for name in ("whole-pad", "numpy", "numba", "auto"):
        out = tmp_path / name
        monkeypatch.setattr(_base, "BAND_BYTES", 1 << 30 if name == "whole-pad" else 1000)
        res = CliRunner().invoke(main, ["run", str(src), "-o", str(out), "--engine", name.replace("whole-pad", "numpy"),
                                        "--workers", "1", "--op", op, "--border", border, "-q"])
        assert res.exit_code == 0, res.output
        outputs[name] = _outputs(out)
    for name in ("numpy", "numba", "auto"):
        assert outputs[name].keys() == outputs["whole-pad"].keys()
        for key, want in outputs["whole-pad"].items():
            np.testing.assert_array_equal(outputs[name][key], want, err_msg=f"{name} {key}")


def test_schedule_images_in_parallel_or_tiles_when_few():
    ops = (Invert(),)
    assert _plan_schedule(RunSettings(ops, engine="processes", workers=2), 100) == ("processes", 2, "numpy", 1)
    assert _plan_schedule(RunSettings(ops, engine="processes", workers=2), 1) == ("numpy", 1, "processes", 2)
    assert _plan_schedule(RunSettings(ops, engine="numba", workers=2), 100) == ("numpy", 1, "numba", 2)
    assert _plan_schedule(RunSettings(ops, engine="threads", workers=1), 100) == ("numpy", 1, "threads", 1)


def test_cli_batch_on_a_real_local_cluster(numpy_run):
    distributed = pytest.importorskip("distributed")
    root, results = numpy_run
    src, expected = results["many"]
    out = root / "cluster"
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, death_timeout=60,
    ) as cluster:
        res = CliRunner().invoke(main, ["run", str(src), "-o", str(out), "--engine", "dask",
                                        "--scheduler", cluster.scheduler_address, "--json"] + OPS)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["done"] == 3 * 6
    got = _outputs(out)
    assert got.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_unreachable_scheduler_is_a_usage_error(numpy_run, tmp_path):
    root, results = numpy_run
    src, _ = results["many"]
    res = CliRunner().invoke(main, ["run", str(src), "-o", str(tmp_path / "o"), "--op", "invert",
                                    "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9"])
    assert res.exit_code == 2
    assert "127.0.0.1:9" in res.output
