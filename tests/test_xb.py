"""XB01/XB03/XB04 within this process's backend: what the conformance runner does across
processes for every ordered pair of backends (A writes, B reads)."""

from __future__ import annotations

from pathlib import Path

import d2lcompat
from d2lcompat_conformance.xb import check_reference, write_reference


def test_round_trip_same_backend(tmp_path: Path) -> None:
    paths = write_reference(tmp_path)
    assert len(paths) == 12 and all(Path(p).is_file() for p in paths[:7] + paths[8:])
    assert (Path(paths[7]) / "model.safetensors.index.json").is_file()
    results = check_reference(tmp_path, d2lcompat.backend())
    assert [r["id"] for r in results] == ["XB01", "XB03", "XB04", "XB05", "XB06"]
    for r in results:
        assert r["writer"] == r["reader"] == d2lcompat.backend()
        assert r["status"] == "pass", r["message"]


def test_missing_writer_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    results = check_reference(tmp_path, "nobody")
    assert [r["status"] for r in results] == ["fail"] * 5
    assert "nobody" in results[0]["message"]
