"""The tiled parallel engines (threads, processes, joblib) against the numpy engine and SciPy.

Bit for bit against the untiled ``numpy`` engine (same float32 arithmetic per pixel), within
1e-3 (of the 8-bit range) against ``scipy.ndimage``; tiles that do not divide the image and
tiles smaller than the kernel radius; filter banks; ``map``; and for ``processes``, that a
worker killed mid-run gives a clear error and leaves no shared memory behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass

import numpy as np
import pytest

import pixelmill
from pixelmill import kernels
from pixelmill.engines import make_engine
from pixelmill.errors import EngineError, InvalidParameterError, PixelmillError
from pixelmill.ops import Filter, Invert, Operation, SobelMagnitude
from pixelmill.tiling import BORDER_MODES

from conftest import random_image, scipy_filter

ENGINES = ["threads", "processes", "joblib"]
DTYPES = [np.uint8, np.uint16, np.float32]
#: Tiles that do not divide 13 x 11, several smaller than the kernels' radius, one wider than the image.
TILE_SHAPES = [(1, 1), (3, 2), (7, 5), (4, 100), None]
CVAL = 7.5


@pytest.fixture(scope="module")
def engines():
    """One engine per (name, workers) for the whole module: process pools are slow to start.

    ``tile_shape`` is a plain attribute, set per call.
    """
    made = {}

    def get(name, workers=2, tile_shape=None):
        if (name, workers) not in made:
            made[name, workers] = make_engine(name, workers=workers)
        eng = made[name, workers]
        eng.tile_shape = tile_shape
        return eng

    yield get
    for eng in made.values():
        eng.close()


def numpy_run(op, image, border="nearest", cval=0.0):
    with make_engine("numpy") as ref:
        return ref.run(op, image, border=border, cval=cval)


def unit_kernel(rng, shape, *, separable):
    """Random weights with ``sum(|w|) == 1`` (results stay in the image's range)."""
    w = np.outer(rng.random(shape[0]) + 0.1, rng.random(shape[1]) - 0.3) if separable else rng.normal(size=shape)
    return kernels.from_array(w / np.abs(w).sum())


def oracle_tolerance(image):
    # The 1e-3 promise is in the 8-bit range; scale it for 16-bit images (float32 arithmetic).
    return 1e-3 * max(1.0, float(np.abs(image.astype(np.float64)).max()) / 255.0)


def shm_entries(pid):
    """This process's pixelmill shared-memory segments (the engine names them pixelmill_<pid>_...)."""
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(f"pixelmill_{pid}_"))


# -- correctness -------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("border", BORDER_MODES)
@pytest.mark.parametrize("channels", [None, 3], ids=["gray", "rgb"])
@pytest.mark.parametrize("flip", [True, False], ids=["convolve", "correlate"])
def test_filters_match_numpy_bitwise_and_scipy(engines, engine, dtype, border, channels, flip, rng):
    shape = (13, 11) if channels is None else (13, 11, channels)
    image = random_image(rng, shape, dtype)
    # A separable kernel (row pass + column pass) and a general one with even sides.
    for kernel in (unit_kernel(rng, (5, 3), separable=True), unit_kernel(rng, (4, 6), separable=False)):
        op = Filter(kernel, flip=flip)
        want = numpy_run(op, image, border, CVAL)
        oracle = scipy_filter(image, kernel.weights, mode=border, cval=CVAL, convolve=flip)
        for tile_shape in [(1, 1), (3, 2), None]:
            got = engines(engine, 2, tile_shape).run(op, image, border=border, cval=CVAL)
            assert got.dtype == np.float32 and got.shape == image.shape
            assert np.array_equal(got, want), f"{kernel} tile_shape={tile_shape}: differs from numpy"
            np.testing.assert_allclose(got, oracle, rtol=0, atol=oracle_tolerance(image))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("channels", [None, 3], ids=["gray", "rgb"])
def test_invert_matches_numpy_bitwise_and_formula(engines, engine, dtype, channels, rng):
    shape = (13, 11) if channels is None else (13, 11, channels)
    image = random_image(rng, shape, dtype)
    formula = np.iinfo(dtype).max - image if np.dtype(dtype).kind == "u" else 1 - image
    for workers in (1, 2):
        for tile_shape in TILE_SHAPES:
            got = engines(engine, workers, tile_shape).run(Invert(), image)
            assert got.dtype == image.dtype
            assert np.array_equal(got, numpy_run(Invert(), image))
            assert np.array_equal(got, formula)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("tile_shape", TILE_SHAPES, ids=str)
def test_tiles_smaller_than_the_kernel_are_exact(engines, engine, workers, tile_shape, rng):
    # A 7 x 5 kernel has a halo of 3 rows and 2 columns: larger than most of these tiles.
    kernel = unit_kernel(rng, (7, 5), separable=False)
    for shape in [(13, 11, 3), (5, 4), (2, 3), (1, 1)]:
        image = random_image(rng, shape, np.uint8)
        for border in ("reflect", "wrap", "constant"):
            op = Filter(kernel, flip=True)
            got = engines(engine, workers, tile_shape).run(op, image, border=border, cval=CVAL)
            assert np.array_equal(got, numpy_run(op, image, border, CVAL)), (shape, border)
            oracle = scipy_filter(image, kernel.weights, mode=border, cval=CVAL)
            np.testing.assert_allclose(got, oracle, rtol=0, atol=1e-3)


@pytest.mark.parametrize("engine", ENGINES)
def test_public_api_uses_the_engine(engine, rng):
    image = random_image(rng, (9, 8, 3), np.uint16)
    got = pixelmill.convolve(image, "gaussian", border="mirror", engine=engine, workers=2, tile_shape=(2, 3))
    assert np.array_equal(got, pixelmill.convolve(image, "gaussian", border="mirror"))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("workers", [1, 2])
def test_run_many_equals_separate_runs(engines, engine, workers, rng):
    image = random_image(rng, (15, 12, 3), np.uint8)
    ops = [
        Invert(),
        Filter(kernels.get("gaussian")),
        Filter(unit_kernel(rng, (4, 6), separable=False), flip=False),
        Filter(kernels.get("edge-x")),
        SobelMagnitude(),
    ]
    eng = engines(engine, workers, (4, 5))
    for border in ("constant", "wrap", "reflect"):
        got = eng.run_many(ops, image, border=border, cval=CVAL)
        assert len(got) == len(ops)
        for op, result in zip(ops, got):
            alone = eng.run(op, image, border=border, cval=CVAL)
            assert np.array_equal(result, alone), (op.label, border)
            assert np.array_equal(result, numpy_run(op, image, border, CVAL)), (op.label, border)


def square(x):
    """A picklable top-level function for map()."""
    return x, x * x


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("workers", [1, 2])
def test_map_returns_every_result(engines, engine, workers):
    items = (i for i in range(23))  # a generator: map must not need len()
    got = list(engines(engine, workers).map(square, items))
    assert sorted(got) == [(i, i * i) for i in range(23)]


def test_engine_options_are_checked():
    with pytest.raises(InvalidParameterError, match="start_method"):
        make_engine("processes", start_method="fork")
    assert issubclass(EngineError, PixelmillError) and issubclass(EngineError, RuntimeError)


def test_joblib_removes_its_temporary_files(tmp_path, rng):
    image = random_image(rng, (10, 9), np.float32)
    with make_engine("joblib", workers=2, tile_shape=(3, 3), temp_folder=str(tmp_path)) as eng:
        got = eng.run_many([Invert(), Filter(kernels.get("laplacian"))], image, border="mirror")
        assert np.array_equal(got[1], numpy_run(Filter(kernels.get("laplacian")), image, "mirror"))
    assert list(tmp_path.iterdir()) == []


# -- processes: a worker dies -------------------------------------------------------------------

#: A sample value that makes the tile containing it kill (or fail) its worker.
MARKER = -12345.0


@dataclass(frozen=True)
class KillOnMarker(Operation):
    """Copies its input, except on the tile with MARKER in it: its worker is killed
    (``action="kill"``), raises ValueError (``"raise"``) or KeyboardInterrupt (``"interrupt"``)."""

    label: str = "kill"
    action: str = "kill"

    def compute(self, block, out, flavour):
        if (block == MARKER).any():
            if self.action == "raise":
                raise ValueError("marker tile")
            if self.action == "interrupt":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGKILL)
        out[...] = block


def marked_image():
    image = np.zeros((24, 10), dtype=np.float32)
    image[17, 3] = MARKER
    return image


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs POSIX shared memory in /dev/shm")
def test_processes_worker_killed_mid_run(engines):
    eng = engines("processes", 2, (2, 10))
    kept = shm_entries(os.getpid())  # idle segments of this engine's earlier calls, if any
    with pytest.raises(PixelmillError, match=r"worker died \(killed by signal SIGKILL\)") as info:
        eng.run(KillOnMarker(), marked_image())
    assert isinstance(info.value, EngineError)
    assert set(shm_entries(os.getpid())) <= set(kept)  # the failed call's segments are gone
    # The next call starts new workers and works.
    image = np.arange(24 * 10, dtype=np.float32).reshape(24, 10)
    assert np.array_equal(eng.run(KillOnMarker(), image), image)


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs POSIX shared memory in /dev/shm")
@pytest.mark.parametrize("action, error", [("raise", ValueError), ("interrupt", KeyboardInterrupt)])
def test_processes_worker_error_propagates_and_cleans_up(engines, action, error):
    # A KeyboardInterrupt raised in a worker comes back to the parent like Ctrl-C would arrive.
    eng = engines("processes", 2, (2, 10))
    kept = shm_entries(os.getpid())
    with pytest.raises(error):
        eng.run(KillOnMarker(action=action), marked_image())
    assert set(shm_entries(os.getpid())) <= set(kept)
    assert np.array_equal(eng.run(Invert(), np.zeros((3, 3), np.uint8)), np.full((3, 3), 255, np.uint8))


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs POSIX shared memory in /dev/shm")
def test_processes_reuse_segments_between_calls_and_remove_them_on_close(rng):
    # Shared pages are costly to fault in, so a call's segments serve the next call; a result
    # is its call's output segment, never reused while the result (or a view of it) lives;
    # only a bounded number stay idle, and close removes every name.
    import gc

    from pixelmill.engines._shm import Segments as _Segments

    op = Filter(kernels.gaussian(5, 1.0))
    others = set(shm_entries(os.getpid()))  # other engines of this test process

    def mine():
        gc.collect()
        return set(shm_entries(os.getpid())) - others

    with make_engine("processes", 2) as eng, make_engine("numpy") as ref:
        first_image = random_image(rng, (40, 30, 3), np.uint8)
        first = eng.run(op, first_image, border="reflect")
        after_first = mine()
        assert len(after_first) == 2  # the padded input and the output, lent as `first`
        image = random_image(rng, (37, 29, 3), np.uint8)  # smaller: fits the same segments
        got = eng.run(op, image, border="reflect")
        assert len(mine()) == 3  # the input again, and a new output: `first` still holds its own
        np.testing.assert_array_equal(got, ref.run(op, image, border="reflect"))
        np.testing.assert_array_equal(first, ref.run(op, first_image, border="reflect"))
        del got
        view = first[5:, 2:]  # keeps `first`'s segment lent
        del first
        again = eng.run(op, image, border="reflect")
        assert len(mine()) == 3  # served by the segments that came back
        np.testing.assert_array_equal(view, ref.run(op, first_image, border="reflect")[5:, 2:])
        np.testing.assert_array_equal(again, ref.run(op, image, border="reflect"))
        del view, again
        bank = eng.run_many([Invert(), op], random_image(rng, (90, 70, 3), np.uint8))
        del bank
        eng.run(op, random_image(rng, (40, 30, 3), np.uint8))
        assert len(mine()) <= 3 * _Segments.KEEP
        into = np.empty((40, 30, 3), np.float32)
        assert eng.run(op, first_image, border="reflect", out=into) is into  # copied into `out`
        np.testing.assert_array_equal(into, ref.run(op, first_image, border="reflect"))
        kept = eng.run(op, image, border="reflect")
    assert mine() == set()  # closed: every name is gone, even the one `kept` still maps
    expected = ref.run(op, image, border="reflect")
    np.testing.assert_array_equal(kept, expected)
    with eng:  # used again after close: a result from before comes back and is let go
        np.testing.assert_array_equal(eng.run(op, image, border="reflect"), expected)
        del kept
        np.testing.assert_array_equal(eng.run(op, image, border="reflect"), expected)
    assert mine() == set()


def test_processes_refuses_more_than_dev_shm_holds(monkeypatch):
    # Writing past a full tmpfs would SIGBUS; the engine checks the free space first.
    from collections import namedtuple

    from pixelmill.engines import _shm as _processes

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(_processes.shutil, "disk_usage", lambda path: usage(1000, 1000, 100))
    with make_engine("processes", workers=2) as eng:
        with pytest.raises(EngineError, match=r"/dev/shm.*'threads'"):
            eng.run(Invert(), np.zeros((20, 20), np.uint8))
        assert eng._pool is None  # refused before any worker started


def test_joblib_worker_killed_mid_run(engines, tmp_path):
    with make_engine("joblib", workers=2, tile_shape=(2, 10), temp_folder=str(tmp_path)) as eng:
        with pytest.raises(EngineError, match=r"(?s)joblib worker died.*SIGKILL"):
            eng.run(KillOnMarker(), marked_image())
        assert list(tmp_path.iterdir()) == []
        image = np.arange(24 * 10, dtype=np.float32).reshape(24, 10)
        assert np.array_equal(eng.run(KillOnMarker(), image), image)


SCRIPT = """
import os, signal, sys
from dataclasses import dataclass
import numpy as np
from pixelmill.engines import make_engine
from pixelmill.errors import EngineError
from pixelmill.ops import Filter, Operation
from pixelmill import kernels


@dataclass(frozen=True)
class KillOnMarker(Operation):
    label: str = "kill"

    def compute(self, block, out, flavour):
        if (block == -1.0).any():
            os.kill(os.getpid(), signal.SIGKILL)
        out[...] = block


def listing():
    return [n for n in os.listdir("/dev/shm") if n.startswith(f"pixelmill_{os.getpid()}_")]


if __name__ == "__main__":
    image = np.zeros((30, 8), np.float32)
    image[25, 1] = -1.0
    with make_engine("processes", workers=2, tile_shape=(3, 8)) as eng:
        # Normal work first: a bank, whose segments stay for reuse until the engine closes.
        eng.run_many([Filter(kernels.get("gaussian")), Filter(kernels.get("sobel-x"))], np.ones((9, 9), np.uint8))
        kept = sorted(listing())
        try:
            eng.run(KillOnMarker(), image)
        except EngineError as exc:
            print("ERROR", exc)
        print("FAILED CALL LEFT", len(set(listing()) - set(kept)), "KEPT", len(kept))
        # A result held past close: its name goes with the engine, its memory with the array.
        held = eng.run(Filter(kernels.get("laplacian")), np.ones((9, 9), np.uint8), border="wrap")
    print("AFTER CLOSE", len(listing()), "HELD", float(np.abs(held).sum()))
"""


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs POSIX shared memory in /dev/shm")
def test_processes_no_leaked_shared_memory_warning(tmp_path):
    # A fresh interpreter: the resource tracker reports leaks on stderr when it shuts down.
    script = tmp_path / "kill_worker.py"
    script.write_text(textwrap.dedent(SCRIPT))
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "ERROR a processes worker died (killed by signal SIGKILL)" in proc.stdout
    assert "FAILED CALL LEFT 0 KEPT 3" in proc.stdout, proc.stdout
    assert "AFTER CLOSE 0 HELD 0.0" in proc.stdout, proc.stdout
    assert "leaked" not in proc.stderr and "resource_tracker" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


PARENT_KILLED_SCRIPT = """
import os, signal, threading
import numpy as np
from pixelmill.engines import make_engine
from pixelmill.ops import Filter
from pixelmill import kernels


def worker_pid(_):
    return os.getpid()


if __name__ == "__main__":
    image = np.ones((600, 600), np.float32)
    op = Filter(kernels.from_array(np.ones((9, 9))))
    eng = make_engine("processes", workers=2)
    print(os.getpid(), *sorted(set(eng.map(worker_pid, range(16)))), flush=True)
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGKILL)).start()
    while True:
        eng.run(op, image)
"""


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs POSIX shared memory in /dev/shm")
def test_processes_workers_exit_when_the_parent_is_killed(tmp_path):
    # No finally block runs in a SIGKILLed parent: the workers must notice and exit, so that the
    # resource tracker (which lives until they do) unlinks the parent's segments.
    psutil = pytest.importorskip("psutil")
    script = tmp_path / "kill_parent.py"
    script.write_text(textwrap.dedent(PARENT_KILLED_SCRIPT))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    parent, *pids = (int(p) for p in proc.stdout.split())

    def alive(pid):
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 20
    while (any(map(alive, pids)) or shm_entries(parent)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids and not any(map(alive, pids)), "workers outlived their parent"
    assert shm_entries(parent) == []


