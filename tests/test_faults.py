"""Faults a batch must survive with its promises kept (issue 26): nothing written outside
OUTDIR, no traceback where a clear error and a record are promised, no hangs, one run per
OUTDIR, interruption with a manifest, bounded resources."""

from __future__ import annotations

import json
import os

import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SRC = os.environ.get("FAULTS_SRC") or str(Path(__file__).resolve().parents[1] / "src")
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (mount / setpriv)")


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=SRC)
    env.update(extra)
    return env


def cli(*args, env=None, timeout=60, user=None, **kw):
    cmd = [sys.executable, "-m", "pixelmill", *map(str, args)]
    if user:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env or _env(), timeout=timeout, **kw)


def no_traceback(proc):
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout


def library(folder: Path, n=3, size=(40, 50), name="a{i}.png", seed=0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(folder / name.format(i=i))
    return folder


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


@contextmanager
def tmpfs(folder: Path, size="2m"):
    folder.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def public_tmp():
    """A folder the unprivileged user can read (pytest's tmp_path is root's alone)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="pixelmill-faults-"))
    os.chmod(folder, 0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- outputs never leave OUTDIR ----------------------------------------------------------------


@pytest.mark.parametrize("several", [False, True])
def test_symlinked_folder_in_outdir_is_refused(tmp_path, several):
    inp = library(tmp_path / "in" / "sub", n=1, name="keep.png").parent
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.png").write_bytes(b"the user's file")
    out = tmp_path / "out"
    out.mkdir()
    ops = ["--op", "invert"] + (["--op", "sobel"] if several else [])
    (out / ("invert" if several else "sub")).symlink_to(elsewhere, target_is_directory=True)
    if several:
        (elsewhere / "sub").mkdir()
        (elsewhere / "sub" / "keep.png").write_bytes(b"the user's file")
    proc = cli("run", inp, "-o", out, *ops, "--engine", "numpy", "-q")
    no_traceback(proc)
    assert proc.returncode == 1
    target = elsewhere / ("sub/keep.png" if several else "keep.png")
    assert target.read_bytes() == b"the user's file"
    failed = [i for i in manifest(out)["items"] if i["status"] == "failed"]
    assert len(failed) == 1 and "outside the output folder" in failed[0]["error"]


# -- usage errors before any work --------------------------------------------------------------


def test_outdir_that_is_a_file_is_a_usage_error(tmp_path):
    inp = library(tmp_path / "in", n=1)
    f = tmp_path / "f"
    f.write_text("x")
    for out in (f, f / "sub"):
        proc = cli("run", inp, "-o", out, "--op", "invert", "--engine", "numpy")
        no_traceback(proc)
        assert proc.returncode == 2 and proc.stderr.startswith("pixelmill: error:"), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


@needs_root
def test_read_only_outdir_is_a_usage_error(public_tmp):
    tmp_path = public_tmp
    inp = library(tmp_path / "in", n=1)
    # A folder the (unprivileged) user may not write, and one it cannot create.
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(inp, 0o755)
    for out in (locked, locked / "new"):
        proc = cli("run", inp, "-o", out, "--op", "invert", "--engine", "numpy", user=True)
        no_traceback(proc)
        assert proc.returncode == 2 and "pixelmill: error:" in proc.stderr, proc.stderr
    # A read-only mount (root writes anywhere else).
    ro = tmp_path / "ro"
    ro.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ro)], check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot mount: {exc.stderr}")
    try:
        proc = cli("run", inp, "-o", ro, "--op", "invert", "--engine", "numpy")
        no_traceback(proc)
        assert proc.returncode == 2 and "not writable" in proc.stderr, proc.stderr
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


# -- a full disk -------------------------------------------------------------------------------


@needs_root
def test_full_disk_stops_records_and_resumes(tmp_path):
    # Noise PNGs of ~120 KB each: a 2 MB tmpfs holds about 15 of 40.
    inp = library(tmp_path / "in", n=40, size=(200, 200))
    with tmpfs(tmp_path / "out") as out:
        proc = cli("run", inp, "-o", out, "--op", "invert", "--engine", "numpy", "--workers", "1", "-q")
        no_traceback(proc)
        assert proc.returncode == 1
        assert "disk is full" in proc.stderr or "could not write the manifest" in proc.stderr, proc.stderr
        if (out / "manifest.json").exists():
            items = manifest(out)["items"]
            failed = [i for i in items if i["status"] == "failed"]
            assert 1 <= len(failed) <= 2 and all("No space" in i["error"] for i in failed)
            assert sum(i["status"] == "not_done" for i in items) > 10  # stopped early
        done_first = len(list(out.glob("a*.png")))
        assert 0 < done_first < 40
        subprocess.run(["mount", "-o", "remount,size=16m", str(out)], check=True)
        proc = cli("run", inp, "-o", out, "--op", "invert", "--engine", "numpy", "--workers", "1", "-q", "--json")
        no_traceback(proc)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["skipped"] >= done_first - 1 and summary["done"] + summary["skipped"] == 40
        assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


# -- the calibration and numba caches ------------------------------------------------------------


def test_unwritable_calibration_cache_falls_back(tmp_path, monkeypatch):
    from pixelmill.engines import _calibration as calibration

    f = tmp_path / "file"
    f.write_text("x")
    monkeypatch.setenv("PIXELMILL_CACHE", str(f / "cache"))  # cannot be created, even by root
    seen = {}

    def fake_calibrate(*, notify=None, sizes_mp=None, save=True, **kw):
        seen["save"] = save
        return calibration.Calibration(sizes_mp=[1.0], times={}, machine={})

    monkeypatch.setattr(calibration, "calibrate", fake_calibrate)
    monkeypatch.setattr(calibration, "_UNCACHED", {})
    notes = []
    cal = calibration.load(notify=notes.append)
    assert cal is not None and seen["save"] is False
    assert any("cannot write the calibration cache" in n for n in notes)
    calibration.load(notify=notes.append)  # measured once per process
    assert len([n for n in notes if "cannot write" in n]) == 1


@needs_root
def test_numba_without_a_writable_cache(public_tmp):
    pytest.importorskip("numba")
    shared = public_tmp / "shared"
    inp = library(shared / "in", n=1, size=(20, 30))
    out = shared / "out"
    out.mkdir()
    for p in (shared, inp, *inp.iterdir()):
        os.chmod(p, 0o755)
    os.chmod(out, 0o777)
    # The worktree's sources are root's (not writable by nobody), HOME is unwritable.
    env = {k: v for k, v in _env().items() if not k.startswith(("NUMBA_", "PIXELMILL_CACHE", "XDG_"))}
    env["HOME"] = "/nonexistent"
    env["TMPDIR"] = str(out)  # a fresh private temp folder for this test
    proc = cli("run", inp, "-o", out, "--op", "invert", "--engine", "numba", "-q", env=env, user=True, timeout=300)
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    assert manifest(out)["summary"]["done"] == 1


# -- the journal ---------------------------------------------------------------------------------


def test_corrupt_journal_lines_are_ignored_and_counted(tmp_path):
    inp = library(tmp_path / "in", n=3)
    out = tmp_path / "out"
    proc = cli("run", inp, "-o", out, "--op", "invert", "--engine", "numpy", "-q")
    assert proc.returncode == 0
    journal = out / ".pixelmill-journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    bad = [b"\xff\xfe not utf-8\n", b'{"output": 5, "key": [], "status": "done", "op": "invert", "input": "x"}\n',
           b"[1, 2]\n", b'{"output": "a0.png", "key": "k", "status": "done", "op": "invert", "input": "x", "size": "big"}\n']
    journal.write_bytes(b"".join(bad) + lines[1] + b'{"half": ')
    proc = cli("run", inp, "-o", out, "--op", "invert", "--engine", "numpy", "-q", "--json")
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["ignored_journal_lines"] == 5
    assert summary["skipped"] == 1 and summary["done"] == 2
    # Appending after the half line started a new line: the third run skips everything.
    proc = cli("run", inp, "-o", out, "--op", "invert", "--engine", "numpy", "-q", "--json")
    assert json.loads(proc.stdout)["skipped"] == 3


# -- a lying .npy kernel ---------------------------------------------------------------------------


def test_npy_kernel_with_a_huge_header_is_refused(tmp_path):
    path = tmp_path / "k.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (100000, 100000)})
        fh.write(b"\0" * 64)
    inp = library(tmp_path / "in", n=1)
    proc = cli("run", inp, "-o", tmp_path / "out", "--op", f"kernel:{path}", "--engine", "numpy")
    no_traceback(proc)
    assert proc.returncode == 2 and "(100000, 100000)" in proc.stderr, proc.stderr


# -- schedulers that are not there -------------------------------------------------------------


def _server(garbage: bool, lifetime: float = 8.0):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(lifetime)
    deadline = time.monotonic() + lifetime

    def serve():
        conns = []
        try:
            while time.monotonic() < deadline:
                conn, _ = srv.accept()
                conns.append(conn)
                if garbage:
                    conn.sendall(b"\xff" * 64)
        except OSError:
            pass
        finally:
            for c in conns:
                c.close()
            srv.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"tcp://127.0.0.1:{srv.getsockname()[1]}"


@pytest.mark.parametrize("garbage", [False, True], ids=["silent", "garbage"])
def test_scheduler_that_never_answers_times_out(tmp_path, garbage):
    pytest.importorskip("distributed")
    address = _server(garbage)
    inp = library(tmp_path / "in", n=1)
    t0 = time.monotonic()
    proc = cli("run", inp, "-o", tmp_path / "out", "--op", "invert", "--scheduler", address,
               "--scheduler-timeout", "2", timeout=40)
    no_traceback(proc)
    assert proc.returncode == 2 and address in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("pixelmill: error:")]
    assert len(errors) == 1 and address in errors[0]
    assert time.monotonic() - t0 < 30


def test_scheduler_with_engine_auto_plans_dask():
    from pixelmill.batch import RunSettings, plan_schedule
    from pixelmill.batch._schedule import plan_run
    from pixelmill.errors import InvalidParameterError
    from pixelmill.ops import Invert

    s = RunSettings((Invert(),), engine="auto", scheduler="tcp://127.0.0.1:1")
    schedule, notes = plan_run(s, 3)
    assert schedule.across == "dask" and notes and "dask" in notes[0]
    assert plan_schedule(s, 3).across == "dask"
    with pytest.raises(InvalidParameterError, match="--engine dask"):
        RunSettings((Invert(),), engine="threads", scheduler="tcp://127.0.0.1:1").check()


# -- one run per OUTDIR -------------------------------------------------------------------------


def test_second_run_into_a_busy_outdir_fails_naming_the_holder(tmp_path):
    from pixelmill.batch._lock import outdir_lock

    inp = library(tmp_path / "in", n=1)
    out = tmp_path / "out"
    out.mkdir()
    with outdir_lock(out):
        proc = cli("run", inp, "-o", out, "--op", "invert", "--engine", "numpy")
        no_traceback(proc)
        assert proc.returncode == 2 and f"pid {os.getpid()}" in proc.stderr, proc.stderr
        waiting = subprocess.Popen([sys.executable, "-m", "pixelmill", "run", str(inp), "-o", str(out), "--op",
                                    "invert", "--engine", "numpy", "--wait", "-q"], env=_env(),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert waiting.poll() is None  # waits for the holder
    assert waiting.wait(timeout=60) == 0
    assert manifest(out)["summary"]["done"] == 1


def test_manifest_lists_earlier_runs_outputs(tmp_path):
    inp = library(tmp_path / "in", n=2)
    out = tmp_path / "out"
    assert cli("run", inp, "-o", out, "--op", "invert", "--op", "sobel", "--engine", "numpy", "-q").returncode == 0
    assert cli("run", inp, "-o", out, "--op", "gaussian", "--op", "sobel", "--engine", "numpy", "-q").returncode == 0
    items = manifest(out)["items"]
    by_op = {}
    for i in items:
        by_op.setdefault(i["op"], []).append(i)
    assert len(by_op["invert"]) == 2 and all(i["status"] == "done" and i["earlier_run"] for i in by_op["invert"])
    assert {i["status"] for i in by_op["sobel"]} == {"skipped"}
    assert all((out / i["output"]).is_file() for i in items)


# -- temporaries ----------------------------------------------------------------------------------


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path):
    inp = library(tmp_path / "in", n=1)
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = out / "sub" / f".pixelmill-{dead.pid}-0123abcd.tmp"
    live = out / f".pixelmill-{os.getpid()}-89abcdef.tmp"
    other = out / ".pixelmill-x-0123abcd.tmp"
    for p in (stale, live, other):
        p.write_bytes(b"")
    proc = cli("run", inp, "-o", out, "--op", "invert", "--engine", "numpy", "-q")
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists() and live.exists() and other.exists()


def test_long_file_names(tmp_path):
    name = "n" * 246 + "{i}.png"  # 251 bytes: fits, but not with 14 more
    inp = library(tmp_path / "in", n=1, name=name)
    out = tmp_path / "out"
    proc = cli("run", inp, "-o", out, "--op", "invert", "--engine", "numpy", "-q")
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    assert (out / name.format(i=0)).is_file()


# -- interruption ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_run_writes_its_manifest(tmp_path, sig, code):
    inp = library(tmp_path / "in", n=200, size=(120, 160))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "pixelmill", "run", str(inp), "-o", str(out), "--op",
                             "gaussian:size=31,sigma=8", "--engine", "numpy", "--workers", "1", "-q"],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # As a terminal starts it: a test runner's worker may ignore SIGINT, and
                            # an ignored disposition is inherited (Python then never raises on it).
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    journal = out / ".pixelmill-journal.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (journal.exists() and journal.stat().st_size > 0):
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert proc.returncode == code, err
    assert "interrupted" in err and len(err.strip().splitlines()) == 1, err
    items = manifest(out)["items"]
    statuses = [i["status"] for i in items]
    assert len(items) == 200 and statuses.count("done") >= 1 and statuses.count("not_done") >= 1
    assert set(statuses) <= {"done", "not_done"}


# -- resources ---------------------------------------------------------------------------------


def test_workers_are_capped_with_a_note(tmp_path):
    from pixelmill.engines import usable_cores

    inp = library(tmp_path / "in", n=4, size=(16, 16))
    out = tmp_path / "out"
    proc = cli("run", inp, "-o", out, "--op", "invert", "--engine", "processes", "--workers", "10000", "-q")
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    schedule = manifest(out)["schedule"]
    assert schedule["within_image"]["workers"] <= usable_cores()
    assert schedule["across_images"]["workers"] <= usable_cores()
    assert any("lowered from 10000" in n for n in schedule["notes"])


def test_jpeg_with_a_huge_tail_is_not_read_whole(tmp_path):
    path = tmp_path / "tail.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(path, quality=90)
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size + (1 << 30))  # a sparse 1 GiB tail
    # VmHWM, the peak of this process's own memory: ru_maxrss would carry over the forking
    # test worker's (hundreds of MB in a full run) through exec.
    code = ("import sys; from pixelmill import read_image; im = read_image(sys.argv[1]); "
            "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')); "
            "print(im.data.shape, hwm.split()[1])")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=_env(),
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    shape, peak_kb = proc.stdout.rsplit(" ", 1)
    assert "(64, 80, 3)" in shape
    assert int(peak_kb) < 400 * 1024, f"peak {int(peak_kb) >> 10} MB"  # reading the tail: over 1 GiB



