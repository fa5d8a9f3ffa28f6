"""Atomic writes wait for the disk, except in a batch, which makes each output durable in the background."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelmill import io
from pixelmill.batch import JOURNAL_NAME, RunSettings, run_batch
from pixelmill.ops import Invert


@pytest.fixture
def fsynced(monkeypatch):
    """The real os.fsync, recording which files and folders it was called on."""
    seen: list[str] = []
    real = os.fsync

    def spy(fd):
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to name a file descriptor's file")
    monkeypatch.setattr(os, "fsync", spy)
    return seen


def test_atomic_write_is_durable_by_default(tmp_path, fsynced):
    target = tmp_path / "a.bin"
    io.atomic_write(target, lambda fh: fh.write(b"x" * 1000))
    assert target.read_bytes() == b"x" * 1000
    # The file (under its temporary name, before the rename) and then its folder.
    assert len(fsynced) == 2 and Path(fsynced[0]).name.startswith(".pixelmill-") and fsynced[1] == str(tmp_path)


def test_deferred_write_is_atomic_but_does_not_wait(tmp_path, fsynced):
    target = tmp_path / "b.bin"
    io.atomic_write(target, lambda fh: fh.write(b"y" * 1000), durable=False)
    assert target.read_bytes() == b"y" * 1000
    assert fsynced == []
    assert [p.name for p in tmp_path.iterdir()] == ["b.bin"]  # no temporary file left
    io.make_durable([target, tmp_path / "gone.bin"])  # a missing file is skipped
    assert fsynced == [str(target), str(tmp_path)]


def test_batch_makes_every_output_and_the_journal_durable_before_it_ends(tmp_path, rng, fsynced):
    lib = tmp_path / "lib"
    for k in range(3):
        (lib / ("sub" if k else "")).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(
            lib / ("sub" if k else "") / f"im{k}.png")
    out = tmp_path / "out"
    result = run_batch([str(lib)], str(out), RunSettings(ops=(Invert(),), engine="numpy", workers=1))
    assert result.count("done") == 3
    outputs = {str(p) for p in out.rglob("*.png")}
    assert len(outputs) == 3
    synced = set(fsynced)
    assert outputs <= synced
    assert str(out / JOURNAL_NAME) in synced
    assert {str(out), str(out / "sub")} <= synced
    # Each output once: the workers did not wait for the disk image by image.
    assert all(fsynced.count(p) == 1 for p in outputs)
    for p in outputs:
        assert np.array_equal(np.asarray(Image.open(p)),
                              255 - np.asarray(Image.open(lib / Path(p).relative_to(out))))


def test_durable_in_background_syncs_each_file_and_folder_before_the_block_ends(tmp_path, fsynced):
    (tmp_path / "sub").mkdir()
    targets = [tmp_path / "a.bin", tmp_path / "sub" / "b.bin", tmp_path / "sub" / "c.bin"]
    with io.durable_in_background() as make_durable_soon:
        for target in targets:
            io.atomic_write(target, lambda fh: fh.write(b"z" * 100), durable=False)
            make_durable_soon(target)
        make_durable_soon(tmp_path / "gone.bin")  # a missing file is skipped
    assert sorted(fsynced) == sorted([str(t) for t in targets] + [str(tmp_path), str(tmp_path / "sub")])
    # The folders after their files: the renames are durable once the files are.
    assert set(fsynced[-2:]) == {str(tmp_path), str(tmp_path / "sub")}


def test_durable_in_background_gives_up_when_the_block_fails(tmp_path, fsynced):
    target = tmp_path / "a.bin"
    io.atomic_write(target, lambda fh: fh.write(b"z"), durable=False)
    with pytest.raises(KeyboardInterrupt), io.durable_in_background() as make_durable_soon:
        make_durable_soon(target)
        raise KeyboardInterrupt
    assert str(tmp_path) not in fsynced  # no folder: the caller is not waiting for the disk
    assert target.read_bytes() == b"z"
