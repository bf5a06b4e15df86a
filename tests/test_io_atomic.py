"""The long atomicity proof: kill a writer process mid-save many times; the previous
file must always load, whole (IO08 runs a 5-kill version)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import d2lcompat
from d2lcompat import CheckpointError, ops
from d2lcompat_conformance.scenarios.io import kill_during_saves

KILLS = int(os.environ.get("D2LCOMPAT_ATOMIC_KILLS", "25"))


def test_killed_writers_never_tear_the_file(tmp_path: Path) -> None:
    path = tmp_path / "atomic.params"
    seen = kill_during_saves(path, kills=KILLS, units=256, seed=1)
    assert len(seen) == KILLS
    assert max(seen) > 0, "the writer never completed a save: the test proved nothing"


def test_failed_save_removes_its_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.safetensors"
    d2lcompat.save(path, ops.ones((3,)))
    before = path.read_bytes()

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(CheckpointError, match="No space left"):
        d2lcompat.save(path, ops.zeros((3,)))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["x.safetensors"]


def test_new_file_mode_follows_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        d2lcompat.save(tmp_path / "m", ops.ones((1,)))
    finally:
        os.umask(old)
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o640
