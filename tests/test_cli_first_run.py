"""Issue 23: the first ten minutes and the command line a user lives in -- every case the issue
lists, each with no traceback and the exit code the README gives."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import pixelmill
from pixelmill import kernels
from pixelmill.cli import main

from conftest import save_png


@pytest.fixture
def library(tmp_path, rng):
    lib = tmp_path / "lib"
    save_png(lib / "a.png", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    save_png(lib / "nested" / "b.png", rng.integers(0, 256, (17, 9), dtype=np.uint8))
    save_png(lib / "thumbs" / "c.png", rng.integers(0, 256, (5, 5), dtype=np.uint8))
    (lib / "notes.txt").write_text("not an image")
    return lib


def run_cli(*args, input=None):
    res = CliRunner().invoke(main, [str(a) for a in args], input=input)
    assert "Traceback" not in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res


def manifest(out):
    return json.loads((out / "manifest.json").read_text())


# -- tracebacks and wrong messages ---------------------------------------------------------------


def test_scheduler_that_does_not_answer_with_engine_auto(library, tmp_path):
    pytest.importorskip("distributed")
    res = run_cli("run", library, "-o", tmp_path / "o", "--op", "invert", "--scheduler", "tcp://127.0.0.1:1",
                  "--scheduler-timeout", "1", "-q")
    assert res.exit_code == 2 and "pixelmill: error:" in res.output and "127.0.0.1:1" in res.output


def test_output_that_is_an_existing_file(library, tmp_path):
    (tmp_path / "taken").write_text("x")
    res = run_cli("run", library, "-o", tmp_path / "taken", "--op", "invert", "-q")
    assert res.exit_code == 2 and "is a file" in res.output


@pytest.mark.parametrize("target,says", [("/dev/null", "not a regular file"), ("{tmp}", "is a folder"),
                                         ("{tmp}/empty.csv", "is empty"), ("{tmp}/nope.csv", "does not exist")])
def test_kernel_file_errors_say_what_is_wrong(library, tmp_path, target, says):
    (tmp_path / "empty.csv").write_text("")
    res = run_cli("run", library, "-o", tmp_path / "o", "--op", "kernel:" + target.format(tmp=tmp_path))
    assert res.exit_code == 2 and says in res.output, res.output
    assert not (tmp_path / "o").exists()


def test_kernel_files_with_the_same_name_get_distinct_labels(library, tmp_path):
    for folder, weights in (("a", "1 1 1"), ("b", "1 2 1")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "box.txt").write_text(weights)
    out = tmp_path / "o"
    res = run_cli("run", library / "a.png", "-o", out, "--op", f"kernel:{tmp_path}/a/box.txt,normalize",
                  "--op", f"kernel:{tmp_path}/b/box.txt,normalize", "-q")
    assert res.exit_code == 0, res.output
    assert manifest(out)["ops"] == ["box-a", "box-b"]
    assert (out / "box-a" / "a.png").exists() and (out / "box-b" / "a.png").exists()
    # The same file twice is still the same op twice.
    res = run_cli("run", library / "a.png", "-o", out, "--op", f"kernel:{tmp_path}/a/box.txt",
                  "--op", f"kernel:{tmp_path}/a/../a/box.txt")
    assert res.exit_code == 2 and "twice" in res.output


def test_parent_names_alike_fall_back_to_a_hash(tmp_path):
    from pixelmill._opspec import parse_ops

    for top in ("x", "y"):
        (tmp_path / top / "k").mkdir(parents=True)
        (tmp_path / top / "k" / "box.txt").write_text("1 1 1")
    specs = [f"kernel:{tmp_path}/x/k/box.txt", f"kernel:{tmp_path}/y/k/box.txt"]
    labels = [op.label for op in parse_ops(specs)]
    assert len(set(labels)) == 2 and all(label.startswith("box-") for label in labels)
    assert labels == [op.label for op in parse_ops(specs)]  # deterministic


def test_the_same_folder_twice_processes_each_file_once(library, tmp_path):
    out = tmp_path / "o"
    res = run_cli("run", library, library, "-o", out, "--op", "invert", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert (summary["done"], summary["failed"], summary["duplicate_inputs"]) == (3, 0, 3)


def test_a_named_file_that_is_not_an_image_is_a_failed_item(library, tmp_path):
    out = tmp_path / "o"
    res = run_cli("run", library / "notes.txt", library / "a.png", "-o", out, "--op", "invert", "--json")
    assert res.exit_code == 1
    summary = json.loads(res.output)
    assert (summary["done"], summary["failed"]) == (1, 1)
    (failure,) = summary["failures"]
    assert failure["input"].endswith("notes.txt") and failure["op"] == "invert"
    assert "not an image file" in failure["reason"]
    assert {i["status"] for i in manifest(out)["items"]} == {"done", "failed"}


def test_sheet_without_a_manifest_names_the_real_option(tmp_path):
    (tmp_path / "empty").mkdir()
    res = run_cli("sheet", tmp_path / "empty")
    assert res.exit_code == 2 and "--out" not in res.output.replace("--output", "") and "-o" in res.output


def test_float32_on_tiff_inputs_keeps_their_extension(tmp_path, rng):
    lib = tmp_path / "lib"
    lib.mkdir()
    src = rng.integers(0, 256, (12, 10), dtype=np.uint8)
    Image.fromarray(src).save(lib / "scan.tiff")
    Image.fromarray(src).save(lib / "photo.JPG")
    out = tmp_path / "o"
    # Only a TIFF: float results kept, in scan.tiff (not renamed .tif).
    res = run_cli("run", lib / "scan.tiff", "-o", out, "--op", "gaussian", "--policy", "float32", "-q")
    assert res.exit_code == 0, res.output
    assert pixelmill.read_image(out / "scan.tiff").data.dtype == np.float32
    # A TIFF and a JPEG: the TIFF done, the JPEG a failed item saying why.
    res = run_cli("run", lib, "-o", tmp_path / "o2", "--op", "gaussian", "--policy", "float32", "--json")
    assert res.exit_code == 1
    (failure,) = json.loads(res.output)["failures"]
    assert failure["input"].endswith("photo.JPG") and "--format tiff" in failure["reason"]
    # Only non-TIFF inputs: a usage error before any work.
    res = run_cli("run", lib / "photo.JPG", "-o", tmp_path / "o3", "--op", "gaussian", "--policy", "float32")
    assert res.exit_code == 2 and "--format tiff" in res.output and not (tmp_path / "o3").exists()
    # The same format keeps the input's spelling: .tiff, .JPG.
    res = run_cli("run", lib / "scan.tiff", "-o", tmp_path / "o4", "--op", "invert", "--format", "tiff", "-q")
    assert res.exit_code == 0 and (tmp_path / "o4" / "scan.tiff").exists()
    res = run_cli("run", lib / "photo.JPG", "-o", tmp_path / "o5", "--op", "invert", "--format", "jpeg", "-q")
    assert res.exit_code == 0 and (tmp_path / "o5" / "photo.JPG").exists()
    res = run_cli("run", lib / "photo.JPG", "-o", tmp_path / "o6", "--op", "invert", "--format", "png", "-q")
    assert res.exit_code == 0 and (tmp_path / "o6" / "photo.png").exists()


def test_info_on_a_folder_describes_every_image(library):
    res = run_cli("info", "--json", library)
    assert res.exit_code == 0, res.output
    paths = sorted(os.path.relpath(d["path"], library) for d in json.loads(res.output))
    assert paths == ["a.png", os.path.join("nested", "b.png"), os.path.join("thumbs", "c.png")]


def test_info_on_a_folder_without_images_says_so(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("x")
    res = run_cli("info", tmp_path / "d")
    assert res.exit_code == 1 and "no image files under" in res.output


# -- chains, inline kernels ----------------------------------------------------------------------


def test_a_chain_equals_its_ops_one_after_another_through_the_library(library, tmp_path):
    out = tmp_path / "o"
    res = run_cli("run", library, "-o", out, "--op", "gaussian:size=5,sigma=2 | invert", "--op", "sobel|gaussian",
                  "--border", "reflect", "-q")
    assert res.exit_code == 0, res.output
    assert manifest(out)["ops"] == ["gaussian-5-2+invert", "sobel+gaussian-5-1"]
    for rel in ("a.png", "nested/b.png"):
        src = np.asarray(Image.open(library / rel))
        blurred = pixelmill.convolve(src, kernels.gaussian(5, 2.0), border="reflect", policy="clip")
        np.testing.assert_array_equal(np.asarray(Image.open(out / "gaussian-5-2+invert" / rel)),
                                      pixelmill.invert(blurred))
        edges = pixelmill.sobel(src, border="reflect", policy="clip")
        expected = pixelmill.convolve(edges, kernels.gaussian(5, 1.0), border="reflect", policy="clip")
        np.testing.assert_array_equal(np.asarray(Image.open(out / "sobel+gaussian-5-1" / rel)), expected)


def test_a_single_op_chain_writes_the_mirrored_tree(library, tmp_path):
    out = tmp_path / "o"
    res = run_cli("run", library / "a.png", "-o", out, "--op", "invert | invert", "-q")
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a.png")), np.asarray(Image.open(library / "a.png")))


@pytest.mark.parametrize("spec", ['kernel:"1 2 1; 2 4 2; 1 2 1",normalize', "kernel:1 2 1;2 4 2;1 2 1,normalize",
                                  "kernel:'1,2,1; 2,4,2; 1,2,1',normalize"])
def test_inline_kernels(library, tmp_path, spec):
    out = tmp_path / "o"
    res = run_cli("run", library / "a.png", "-o", out, "--op", spec, "-q")
    assert res.exit_code == 0, res.output
    src = np.asarray(Image.open(library / "a.png"))
    w = kernels.parse("1 2 1; 2 4 2; 1 2 1", normalize=True)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a.png")), pixelmill.convolve(src, w, policy="clip"))
    (label,) = manifest(out)["ops"]
    assert label.startswith("kernel-3x3-")


@pytest.mark.parametrize("spec,says", [("invert |", "empty step"), ('kernel:"1 2; x"', "non-numeric"),
                                       ("kernel:", "give a kernel file")])
def test_bad_chains_and_inline_kernels_are_usage_errors(library, tmp_path, spec, says):
    res = run_cli("run", library, "-o", tmp_path / "o", "--op", spec)
    assert res.exit_code == 2 and says in res.output, res.output


# -- selecting files -------------------------------------------------------------------------------


def test_include_and_exclude(library, tmp_path):
    out = tmp_path / "o"
    res = run_cli("run", library, "-o", out, "--op", "invert", "--exclude", "thumbs", "--json")
    assert res.exit_code == 0
    assert sorted(i["output"] for i in manifest(out)["items"]) == ["a.png", "nested/b.png"]
    assert json.loads(res.output)["excluded"] == 1
    out = tmp_path / "o2"
    res = run_cli("run", library, "-o", out, "--op", "invert", "--include", "*/*.png", "--exclude", "*/c.png", "-q")
    assert res.exit_code == 0
    assert sorted(i["output"] for i in manifest(out)["items"]) == ["nested/b.png"]


def test_files_from_a_list_and_from_stdin(library, tmp_path, monkeypatch):
    listing = library / "list.txt"
    listing.write_text("# the ones to redo\na.png\n\nnested/b.png\nmissing.png\n")
    out = tmp_path / "o"
    res = run_cli("run", "-o", out, "--op", "invert", "--files-from", listing, "--json")
    assert res.exit_code == 1  # the stale line is a failed item, the rest is done
    summary = json.loads(res.output)
    assert summary["done"] == 2 and [f["input"] for f in summary["failures"]] == [str(library / "missing.png")]
    assert sorted(i["output"] for i in manifest(out)["items"] if i["status"] == "done") == ["a.png", "nested/b.png"]
    monkeypatch.chdir(library)
    out = tmp_path / "o2"
    res = run_cli("run", "-o", out, "--op", "invert", "--files-from", "-", "-q", input="nested/b.png\n")
    assert res.exit_code == 0, res.output
    assert [i["output"] for i in manifest(out)["items"]] == ["nested/b.png"]


def test_no_input_at_all_is_a_usage_error(tmp_path):
    res = run_cli("run", "-o", tmp_path / "o", "--op", "invert")
    assert res.exit_code == 2 and "--files-from" in res.output


def test_dry_run_writes_nothing_and_says_what_would_happen(library, tmp_path):
    out = tmp_path / "o"
    res = run_cli("run", library, library / "notes.txt", "-o", out, "--op", "invert", "--dry-run")
    assert res.exit_code == 0, res.output
    assert not out.exists()
    assert "would-do:" in res.output and "refuse:" in res.output and "would do 3, skip 0, refuse 1" in res.output
    run_cli("run", library / "a.png", "-o", out, "--op", "invert", "-q")
    before = sorted(p.name for p in out.iterdir())
    res = run_cli("run", library, "-o", out, "--op", "invert", "--dry-run", "--json")
    data = json.loads(res.output)
    assert (data["would_do"], data["skip"], data["refuse"]) == (2, 1, 0)
    assert {i["status"] for i in data["items"]} == {"would-do", "skip"}
    assert sorted(p.name for p in out.iterdir()) == before  # no lock, no journal line, no manifest change


# -- one-time work: progress, summary, calibration ---------------------------------------------------


def test_the_eta_does_not_count_the_first_image():
    import io

    from pixelmill._progress import PlainProgress, eta_seconds

    assert eta_seconds(1, 10, 40.0, (40.0, 1)) != eta_seconds(1, 10, 40.0, (40.0, 1))  # NaN: no pace yet
    # The first image took 40 s (compiling), the next ones 1 s each: 8 left, 8 s.
    assert eta_seconds(2, 10, 41.0, (40.0, 1)) == pytest.approx(8.0)
    stream = io.StringIO()
    progress = PlainProgress("run", every=0.0, stream=stream)
    progress(0, 3, 0.0)
    progress(1, 3, 1.0)
    progress(3, 3, 3.0)
    lines = stream.getvalue().splitlines()
    assert "ETA after the next image" in lines[0] and lines[-1].endswith("ETA 0 s")


def test_the_bar_starts_with_the_images():
    from pixelmill._progress import RichProgress

    with RichProgress("run") as progress:
        progress.note("calibrating")
        progress(0, 3, 0.0)  # the images start: the bar (and its clock) begins here
        start = progress.start
        progress(1, 3, 1.0)
        progress(3, 3, 3.0)
        assert progress.progress.tasks[0].completed == 3 and progress.start == start


def test_the_summary_gives_the_whole_time_and_the_one_time_part(library, tmp_path):
    from pixelmill.cli import _one_time_text

    assert _one_time_text({"calibration": 2.0, "numba kernels": 1.25}) == (
        " (of which 3.2 s one-time: calibration 2.0 s, numba kernels 1.2 s)")
    res = run_cli("run", library, "-o", tmp_path / "o", "--op", "invert", "--engine", "numba", "--json")
    summary = json.loads(res.output)
    assert set(summary["one_time_seconds"]) == {"numba kernels"}
    assert summary["seconds"] >= summary["one_time_seconds"]["numba kernels"]


def test_a_first_run_measures_a_quick_table_for_its_work_only(tmp_path, monkeypatch):
    from pixelmill.engines import _calibration as calibration

    monkeypatch.setenv("PIXELMILL_CACHE", str(tmp_path))
    notes = []
    cal = calibration.load(notify=notes.append, classes=("invert",))
    assert cal.quick and set(cal.times) == {"invert"} and cal.sizes_mp == list(calibration.QUICK_SIZES_MP)
    assert not any(key.startswith("numba:") for key in cal.times["invert"])  # nothing to compile
    assert notes and "quick" in notes[0]
    notes.clear()
    assert calibration.load(notify=notes.append, classes=("invert",)).times == cal.times and not notes
    more = calibration.load(classes=("invert", "sobel"))  # the missing kind is added
    assert set(more.times) == {"invert", "sobel"} and more.times["invert"] == cal.times["invert"]
    # `pixelmill calibrate` wants the full table: a quick one does not serve it.
    assert calibration._cached(calibration.cache_path(), ("invert",), True) is None


def test_a_full_table_is_used_as_it_is(machine_calibration, monkeypatch, tmp_path):
    # In a cache of its own: other tests (the bench's) may replace the shared table meanwhile.
    from pixelmill.engines import _calibration as calibration

    monkeypatch.setenv("PIXELMILL_CACHE", str(tmp_path))
    calibration.cache_path().write_text(json.dumps(machine_calibration.to_json()))
    notes = []
    got = calibration.load(notify=notes.append, classes=("sobel",))
    assert not notes and got.times == machine_calibration.times
