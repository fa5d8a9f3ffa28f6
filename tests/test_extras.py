"""The core library needs no extra; the bench and the sample library name the extra they need.

Each check runs in a fresh interpreter in which the optional modules are blocked
(``sys.modules[name] = None`` makes their import fail), as on an install without extras.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")
EXTRAS_ONLY = ("matplotlib", "psutil", "skimage")


def _run(code: str, blocked=EXTRAS_ONLY) -> subprocess.CompletedProcess:
    block = "".join(f"sys.modules[{name!r}] = None; " for name in blocked)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p))
    return subprocess.run([sys.executable, "-c", f"import sys; {block}\n{code}"], capture_output=True, text=True,
                          env=env, timeout=300)


def test_the_core_library_and_cli_need_no_extra():
    got = _run("import numpy as np, pixelmill, pixelmill.cli\n"
               "print(pixelmill.convolve(np.zeros((3, 3), np.uint8), 'gaussian').shape)\n"
               "print(pixelmill.invert(np.zeros((2, 2), np.uint8))[0, 0])")
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == ["(3,", "3)", "255"]


def test_the_cli_help_needs_no_extra():
    got = _run("from pixelmill.cli import main\nmain(['--help'])")
    assert "Usage" in got.stdout, got.stderr


@pytest.mark.parametrize("missing", ["psutil", "matplotlib"])
def test_the_bench_names_its_extra(tmp_path, missing):
    got = _run(f"from pixelmill.cli import main\nmain(['bench', '-o', {str(tmp_path)!r}, '--quick', '-q'])",
               blocked=(missing,))
    assert got.returncode == 2, got.stderr
    assert got.stderr.strip().splitlines() == [
        f"pixelmill: error: the benchmark needs {missing}: pip install 'pixelmill[bench]'"]


def test_the_sample_library_names_its_extra(tmp_path):
    got = _run(f"from pixelmill.cli import main\nmain(['sample-library', {str(tmp_path / 'lib')!r}, '--count', '2', '-q'])",
               blocked=("skimage", "matplotlib"))
    assert got.returncode == 2, got.stderr
    assert got.stderr.strip().splitlines()[-1].startswith("pixelmill: error: no sample photographs found")
    assert "pip install 'pixelmill[sample]'" in got.stderr
