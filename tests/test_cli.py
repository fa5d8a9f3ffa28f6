"""The command line, end to end through real subprocess-free click invocations and one real process."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import pixelmill
from pixelmill.cli import main

from conftest import save_png, scipy_filter


@pytest.fixture
def library(tmp_path, rng):
    lib = tmp_path / "lib"
    save_png(lib / "a.png", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    save_png(lib / "nested" / "b.png", rng.integers(0, 256, (17, 9), dtype=np.uint8))
    (lib / "notes.txt").write_text("not an image")
    return lib


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_run_single_op_mirrors_tree_and_writes_manifest(library, tmp_path):
    out = tmp_path / "out"
    res = invoke("run", library, "-o", out, "--op", "invert", "--quiet")
    assert res.exit_code == 0, res.output
    a = np.asarray(Image.open(library / "a.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a.png")), 255 - a)
    b = np.asarray(Image.open(library / "nested" / "b.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "nested" / "b.png")), 255 - b)
    manifest = json.loads((out / "manifest.json").read_text())
    assert {i["status"] for i in manifest["items"]} == {"done"}
    assert len(manifest["items"]) == 2
    assert manifest["summary"]["ignored_non_images"] == 1
    for item in manifest["items"]:
        assert set(item) >= {"input", "op", "output", "status", "error"}
        assert set(item["timings"]) == {"decode", "compute", "encode"}


def test_run_filter_bank_writes_one_folder_per_op(library, tmp_path):
    out = tmp_path / "out"
    res = invoke("run", library, "-o", out, "--op", "gaussian:size=7,sigma=1.5", "--op", "sobel-x",
                 "--op", "sobel", "--border", "reflect", "--quiet")
    assert res.exit_code == 0, res.output
    src = np.asarray(Image.open(library / "a.png"))
    gauss = pixelmill.kernels.gaussian(7, 1.5).weights
    expected = np.clip(np.rint(scipy_filter(src, gauss, mode="reflect")), 0, 255)
    got = np.asarray(Image.open(out / "gaussian-7-1.5" / "a.png")).astype(np.float64)
    # float32 vs float64 rounding may flip a .5 case by one level, nothing more
    assert np.abs(got - expected).max() <= 1
    assert np.mean(got != expected) < 1e-3
    sx = scipy_filter(src, pixelmill.kernels.get("sobel-x").weights, mode="reflect")
    got = np.asarray(Image.open(out / "sobel-x" / "a.png")).astype(np.float64)
    assert np.abs(got - np.clip(np.rint(np.abs(sx)), 0, 255)).max() <= 1
    assert (out / "sobel" / "nested" / "b.png").exists()


def test_kernel_file_op(library, tmp_path):
    kfile = tmp_path / "box.csv"
    kfile.write_text("1,1,1\n1,1,1\n1,1,1\n")
    out = tmp_path / "out"
    res = invoke("run", library / "a.png", "-o", out, "--op", f"kernel:{kfile},normalize", "--quiet")
    assert res.exit_code == 0, res.output
    src = np.asarray(Image.open(library / "a.png"))
    expected = np.clip(np.rint(scipy_filter(src, np.ones((3, 3)) / 9)), 0, 255)
    assert np.abs(np.asarray(Image.open(out / "a.png")) - expected).max() <= 1


@pytest.mark.parametrize(
    "args,match",
    [
        (["run", "{lib}/missing", "-o", "{tmp}/o", "--op", "invert"], "missing' does not exist"),
        (["run", "{lib}", "-o", "{tmp}/o", "--op", "blur"], "unknown op 'blur'"),
        (["run", "{lib}", "-o", "{tmp}/o", "--op", "kernel:{tmp}/bad.csv"], "bad.csv"),
        (["run", "{lib}", "-o", "{tmp}/o", "--op", "gaussian:size=4"], "odd"),
        (["run", "{lib}", "-o", "{lib}", "--op", "invert"], "inside it"),
        (["run", "{lib}", "-o", "{lib}/sub/out", "--op", "invert"], "inside it"),
        (["run", "{lib}/a.png", "-o", "{lib}", "--op", "invert"], "overwrite the input"),
        (["run", "{lib}", "-o", "{tmp}/o", "--op", "invert", "--engine", "gpu"], "engine 'gpu'"),
        (["run", "{lib}", "-o", "{tmp}/o", "--op", "invert", "--border", "edge"], "--border"),
        (["kernels", "nope"], "unknown kernel name 'nope'"),
        (["info", "{tmp}/nothing.png"], "nothing.png"),
    ],
)
def test_usage_errors_exit_2_with_one_clear_line(library, tmp_path, args, match):
    (tmp_path / "bad.csv").write_text("1,2\n3,oops\n")
    args = [a.format(lib=library, tmp=tmp_path) for a in args]
    before = {p: p.read_bytes() for p in library.rglob("*") if p.is_file()}
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    assert match in res.output
    assert "Traceback" not in res.output
    assert {p: p.read_bytes() for p in library.rglob("*") if p.is_file()} == before


def test_kernels_and_info_commands(library):
    res = invoke("kernels")
    assert res.exit_code == 0 and "sobel-x" in res.output and "laplacian" in res.output
    res = invoke("kernels", "edge-x")
    assert "0.5" in res.output and "-0.5" in res.output
    res = invoke("info", "--json", library / "a.png")
    assert res.exit_code == 0
    d = json.loads(res.output)[0]
    assert (d["format"], d["width"], d["height"], d["mode"]) == ("PNG", 30, 20, "RGB")


def test_engines_command_lists_registry():
    res = invoke("engines")
    for name in pixelmill.available_engines():
        assert name in res.output


def test_python_dash_m_entry_point(library, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pixelmill", "run", str(library), "-o", str(tmp_path / "o"), "--op", "invert", "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["done"] == 2 and summary["failed"] == 0


@pytest.mark.parametrize("channels,mode", [(4, "RGBA"), (2, "LA")])
def test_filters_leave_alpha_untouched(tmp_path, rng, channels, mode):
    src = rng.integers(0, 256, (15, 12, channels), dtype=np.uint8)
    Image.fromarray(src, mode=mode).save(tmp_path / "a.png")
    out = tmp_path / "out"
    res = invoke("run", tmp_path / "a.png", "-o", out, "--op", "gaussian", "--op", "invert", "-q")
    assert res.exit_code == 0, res.output
    color = src[..., :-1] if channels == 4 else src[..., 0]
    blurred = np.asarray(Image.open(out / "gaussian-5-1" / "a.png"))
    inverted = np.asarray(Image.open(out / "invert" / "a.png"))
    for got in (blurred, inverted):
        assert got.shape == src.shape
        np.testing.assert_array_equal(got[..., -1], src[..., -1])
    np.testing.assert_array_equal(inverted[..., :-1].squeeze(-1) if channels == 2 else inverted[..., :-1],
                                  255 - color)
    expected = np.clip(np.rint(scipy_filter(color, pixelmill.kernels.gaussian(5, 1.0).weights)), 0, 255)
    got_color = blurred[..., 0] if channels == 2 else blurred[..., :-1]
    assert np.abs(got_color.astype(float) - expected).max() <= 1
