"""Batches a person can trust: bad files isolated, kill-and-resume, safe names, progress."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pixelmill.cli import main


def _digest_tree(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _save(path, array, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)
    return path


@pytest.fixture
def messy_library(tmp_path, rng):
    lib = tmp_path / "lib"
    good = {
        "good1.png": rng.integers(0, 256, (24, 31, 3), dtype=np.uint8),
        "nested/deeper/good2.png": rng.integers(0, 256, (19, 22), dtype=np.uint8),
        "nested/good3.png": rng.integers(0, 256, (16, 16, 4), dtype=np.uint8),
        "blocked.png": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
    }
    for rel, arr in good.items():
        _save(lib / rel, arr)
    jpeg = _save(tmp_path / "whole.jpg", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), quality=90)
    data = jpeg.read_bytes()
    (lib / "truncated.jpg").write_bytes(data[: len(data) // 2])
    png = _save(tmp_path / "whole.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).read_bytes()
    corrupt = bytearray(png)
    for i in range(60, len(corrupt) - 20, 7):
        corrupt[i] ^= 0x5A
    (lib / "corrupt.png").write_bytes(bytes(corrupt))
    (lib / "empty.jpg").write_bytes(b"")
    _save(lib / "liar.jpg", rng.integers(0, 256, (10, 10, 3), dtype=np.uint8), format="PNG")
    _save(lib / "bomb.png", np.zeros((100, 120), dtype=np.uint8))
    import tifffile

    tifffile.imwrite(lib / "complex.tif", np.zeros((8, 8), dtype=np.complex64))
    (lib / "README.txt").write_text("not an image")
    os.symlink(lib, lib / "nested" / "loop")
    return lib, good


BAD = {
    "truncated.jpg": "truncat",
    "corrupt.png": "corrupt",
    "empty.jpg": "empty",
    "liar.jpg": "says JPEG but the content is PNG",
    "bomb.png": "12,000 pixels",
    "complex.tif": "complex64",
    "blocked.png": "directory",
}


def test_bad_files_fail_alone_and_inputs_stay_unchanged(messy_library, tmp_path):
    lib, good = messy_library
    before = _digest_tree(lib)
    out = tmp_path / "out"
    (out / "blocked.png").mkdir(parents=True)  # an output that cannot be written
    res = CliRunner().invoke(main, ["run", str(lib), "-o", str(out), "--op", "invert", "--max-pixels", "5000"])
    assert res.exit_code == 1, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    by_name = {os.path.basename(i["input"]): i for i in manifest["items"]}
    for name, hint in BAD.items():
        item = by_name[name]
        assert item["status"] == "failed", item
        assert item["error"] and "\n" not in item["error"]
        assert hint.lower() in item["error"].lower(), item["error"]
    for rel, arr in good.items():
        if rel == "blocked.png":
            continue
        assert by_name[os.path.basename(rel)]["status"] == "done"
        got = np.asarray(Image.open(out / rel))
        np.testing.assert_array_equal(got, 255 - arr if arr.shape[-1:] != (4,) else
                                      np.concatenate([255 - arr[..., :3], arr[..., 3:]], axis=-1))
    # the symlink loop was walked once, not forever: each good image appears once
    assert sum(1 for i in manifest["items"] if i["status"] == "done") == len(good) - 1
    assert manifest["summary"]["failed"] == len(BAD)
    assert "done 3, skipped 0, failed 7" in res.output
    assert _digest_tree(lib) == before


def test_rerun_skips_complete_outputs_and_overwrite_redoes(messy_library, tmp_path):
    lib, good = messy_library
    out = tmp_path / "out"
    args = ["run", str(lib), "-o", str(out), "--op", "sobel", "--max-pixels", "5000", "--quiet"]
    CliRunner().invoke(main, args)
    first = _digest_tree(out / "nested")
    res = CliRunner().invoke(main, args + ["--json"])
    summary = json.loads(res.output)
    assert (summary["done"], summary["skipped"]) == (0, len(good))
    assert _digest_tree(out / "nested") == first
    # new options change the outputs: nothing is stale-skipped
    res = CliRunner().invoke(main, args + ["--json", "--border", "wrap"])
    assert json.loads(res.output)["done"] == len(good)
    res = CliRunner().invoke(main, args + ["--json", "--border", "wrap", "--overwrite"])
    assert json.loads(res.output)["done"] == len(good)
    # a touched input is redone
    os.utime(lib / "good1.png", ns=(time.time_ns(), time.time_ns()))
    res = CliRunner().invoke(main, args + ["--json", "--border", "wrap"])
    assert (json.loads(res.output)["done"], json.loads(res.output)["skipped"]) == (1, len(good) - 1)


def test_output_folder_containing_inputs_never_touches_them(tmp_path, rng):
    parent = tmp_path / "photos"
    lib = parent / "in"
    _save(lib / "x.png", rng.integers(0, 256, (9, 9, 3), dtype=np.uint8))
    before = _digest_tree(parent)
    res = CliRunner().invoke(main, ["run", str(lib), "-o", str(parent), "--op", "invert", "--op", "sobel", "-q"])
    assert res.exit_code == 0, res.output
    assert (parent / "invert" / "x.png").exists()
    after = _digest_tree(parent)
    assert {k: v for k, v in after.items() if k in before} == before
    # with the op named like the input folder, an output would land on the input: refused
    res = CliRunner().invoke(main, ["run", str(lib / "x.png"), "-o", str(lib), "--op", "invert"])
    assert res.exit_code == 2 and "overwrite the input" in res.output


def test_an_output_that_is_a_symlink_to_an_input_is_refused(tmp_path, rng, monkeypatch):
    from pixelmill.batch._walk import RealPaths as _RealPaths

    lib, out = tmp_path / "lib", tmp_path / "out"
    _save(lib / "x.png", rng.integers(0, 256, (9, 9, 3), dtype=np.uint8))
    out.mkdir()
    os.symlink(lib / "x.png", out / "x.png")  # writing out/x.png would write through it
    os.symlink(lib, tmp_path / "lib-link")
    before = _digest_tree(lib)
    res = CliRunner().invoke(main, ["run", str(lib), "-o", str(out), "--op", "invert"])
    assert res.exit_code == 2 and "overwrite the input" in res.output
    assert _digest_tree(lib) == before
    # The real paths resolved folder by folder are os.path.realpath's, symlinks or not.
    monkeypatch.chdir(tmp_path)
    realpath = _RealPaths()
    for path in (lib / "x.png", out / "x.png", tmp_path / "lib-link" / "x.png", tmp_path / "lib-link" / "new.png",
                 out / "new.png", Path("lib-link") / "x.png", "x.png", out / "missing" / "y.png"):
        assert realpath(path) == os.path.realpath(path), path


def test_odd_file_names_stay_inside_outdir(tmp_path, rng):
    lib = tmp_path / "lib"
    names = ["a..b.png", "..hidden.png", "with space.png", "ünïcødé 名前.png", "sub dir/..x.png"]
    for n in names:
        _save(lib / n, rng.integers(0, 256, (5, 5), dtype=np.uint8))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", str(lib), "-o", str(out), "--op", "invert", "-q"])
    assert res.exit_code == 0, res.output
    for n in names:
        assert (out / n).is_file()
    outside = [p for p in tmp_path.rglob("*.png") if not (str(p).startswith(str(lib)) or str(p).startswith(str(out)))]
    assert outside == []


def test_progress_plain_lines_off_terminal_and_quiet(messy_library, tmp_path):
    lib, _ = messy_library
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "pixelmill", "run", str(lib), "-o", str(tmp_path / "o"), "--op", "invert"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "pixelmill run: " in proc.stderr and "MP/s" in proc.stderr and "ETA" in proc.stderr
    assert "manifest:" in proc.stdout
    proc = subprocess.run(cmd + ["--quiet", "--overwrite"], capture_output=True, text=True, timeout=120, env=env)
    assert "pixelmill run:" not in proc.stderr


def _write_library(root, rng, count):
    for i in range(count):
        _save(root / f"img_{i:03d}.png", rng.integers(0, 256, (260, 300, 3), dtype=np.uint8))


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, rng):
    lib = tmp_path / "lib"
    _write_library(lib, rng, 40)
    op = ["--op", "gaussian:size=15,sigma=3", "--engine", "numpy", "--workers", "1", "--quiet"]
    reference = tmp_path / "reference"
    subprocess.run([sys.executable, "-m", "pixelmill", "run", str(lib), "-o", str(reference)] + op,
                   check=True, timeout=300, capture_output=True)

    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "pixelmill", "run", str(lib), "-o", str(out)] + op,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / ".pixelmill-journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_text().count("\n") >= 5:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (out / "manifest.json").exists(), "the run finished before it could be killed"

    finals = sorted(p for p in out.glob("*.png"))
    assert 5 <= len(finals) < 40
    for p in finals:  # nothing half-written under a final name
        with Image.open(p) as im:
            im.load()
        assert p.read_bytes() == (reference / p.name).read_bytes()
    journaled = journal.read_text().count("\n")

    res = subprocess.run([sys.executable, "-m", "pixelmill", "run", str(lib), "-o", str(out), "--json"] + op,
                         capture_output=True, text=True, timeout=300)
    summary = json.loads(res.stdout)
    assert summary["failed"] == 0
    assert summary["skipped"] >= journaled and summary["skipped"] <= len(finals)
    assert summary["done"] == 40 - summary["skipped"]
    assert _digest_tree(reference).keys() - {"manifest.json", ".pixelmill-journal.jsonl"} <= set(_digest_tree(out))
    for p in reference.glob("*.png"):
        assert p.read_bytes() == (out / p.name).read_bytes()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc arenas")
def test_thread_pool_batches_allocate_from_one_malloc_arena(tmp_path, rng):
    # glibc gives each worker thread its own arena unless told otherwise; malloc_info lists them.
    import ctypes

    try:
        ctypes.CDLL(None).malloc_info
    except AttributeError:
        pytest.skip("not glibc")
    lib = tmp_path / "lib"
    for k in range(6):
        _save(lib / f"p{k}.png", rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    code = f"""
import ctypes, os, sys
from pixelmill.batch import RunSettings, run_batch
from pixelmill.ops import Invert
result = run_batch([{str(lib)!r}], {str(tmp_path / "out")!r}, RunSettings(ops=(Invert(),), engine="threads", workers=2))
assert result.count("done") == 6
libc = ctypes.CDLL(None)
libc.fdopen.restype = ctypes.c_void_p
fh = libc.fdopen(os.dup(1), b"w")
libc.malloc_info(0, ctypes.c_void_p(fh))
libc.fflush(ctypes.c_void_p(fh))
"""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("<heap nr=") == 1, out.stdout[:2000]
