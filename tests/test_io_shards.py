"""Sharded checkpoints (API.md §18) and streaming loads."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import d2lcompat
from d2lcompat import CheckpointError, nn, ops
from d2lcompat._io.shards import parse_size, plan
from d2lcompat_conformance.models import to_np


def _net(seed: int = 0) -> nn.Sequential:
    d2lcompat.seed(seed)
    net = nn.Sequential(nn.Dense(64, activation="relu", in_units=32), nn.Dense(8, in_units=64))
    net.initialize()
    return net


def _values(net: nn.Block) -> dict[str, np.ndarray]:
    return {k: to_np(p.data()).copy() for k, p in net.collect_params().items()}


def test_parse_size_and_plan() -> None:
    assert parse_size("2GB") == 2 * 10**9 and parse_size("2GiB") == 2 * 2**30
    assert parse_size("500MB") == 500 * 10**6 and parse_size(" 1.5 KiB ") == 1536
    for bad in ("two GB", "0", -3, "5XB"):
        with pytest.raises(CheckpointError, match="max_shard_size"):
            parse_size(bad)  # type: ignore[arg-type]
    assert plan({"a": 10, "b": 1, "c": 5}, 8) == [["a"], ["b", "c"]]
    assert plan({}, 8) == []


def test_hugging_face_sharded_checkpoint_with_our_names_loads_unchanged(tmp_path: Path) -> None:
    # What safetensors' own save_file plus a hand-written index (the transformers
    # convention: shard metadata {"format": "pt"}, weight_map sorted by name) produce.
    from safetensors.numpy import save_file

    net = _net(1)
    want = _values(net)
    names = list(want)
    groups = [names[:1], names[1:3], names[3:]]
    weight_map = {}
    for k, group in enumerate(groups, start=1):
        file = f"model-{k:05d}-of-00003.safetensors"
        save_file({n: want[n] for n in group}, str(tmp_path / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(group, file))
    index = {"metadata": {"total_size": sum(v.nbytes for v in want.values())},
             "weight_map": dict(sorted(weight_map.items()))}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    for path in (tmp_path, tmp_path / "model.safetensors.index.json"):
        clone = _net(2)
        clone.load_parameters(path)
        for k, v in _values(clone).items():
            np.testing.assert_array_equal(v, want[k], err_msg=k)


def test_index_and_shards_must_agree_and_nothing_changes(tmp_path: Path) -> None:
    net = _net(1)
    net.save_parameters(tmp_path / "ck", max_shard_size=8_000)
    index_path = tmp_path / "ck" / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    target = _net(3)
    before = _values(target)

    def fails(match: str) -> None:
        with pytest.raises(CheckpointError, match=match):
            target.load_parameters(tmp_path / "ck")
        for k, v in _values(target).items():
            np.testing.assert_array_equal(v, before[k], err_msg=f"{k} changed by a failed load")

    good = index_path.read_text()
    wm = dict(index["weight_map"])
    first, second = sorted(set(wm.values()))[:2]
    moved = next(k for k, f in wm.items() if f == first)
    index_path.write_text(json.dumps({**index, "weight_map": {**wm, moved: second}}))
    fails("disagree")
    index_path.write_text(json.dumps({**index, "weight_map": {**wm, moved: "../evil.safetensors"}}))
    fails("not a file name in the same folder")
    index_path.write_text("{not json")
    fails("not valid JSON")
    index_path.write_text(good)
    (tmp_path / "ck" / first).write_bytes(b"PK\x03\x04 truncated")
    fails(first)


def test_sharded_save_into_a_file_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not a folder"):
        _net().save_parameters(tmp_path / "f", max_shard_size="1MB")
    assert (tmp_path / "f").read_bytes() == b"x"


def test_folder_with_a_single_model_file_loads(tmp_path: Path) -> None:
    net = _net(4)
    (tmp_path / "m").mkdir()
    net.save_parameters(tmp_path / "m" / "model.safetensors")
    clone = _net(5)
    clone.load_parameters(tmp_path / "m")
    for k, v in _values(clone).items():
        np.testing.assert_array_equal(v, _values(net)[k])
    with pytest.raises(CheckpointError, match="folder without"):
        clone.load_parameters(tmp_path)


def test_load_streams_one_tensor_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 4 tensors of 4 MB: the load may hold about one tensor on the host besides the
    # parameters (two under TensorFlow, whose tf.constant makes its own host copy before
    # the assign), never the whole 16 MB file (NumPy's allocations are traced). A load
    # above KEEP_OLD_BYTES (API §18: larger than memory), here set to 0.
    from d2lcompat._io import source as io_source

    monkeypatch.setattr(io_source, "KEEP_OLD_BYTES", 0)
    net = nn.Sequential(*[nn.Dense(1000, in_units=1000, use_bias=False) for _ in range(4)])
    net.initialize()
    path = tmp_path / "big.safetensors"
    net.save_parameters(path)
    folder = tmp_path / "shards"
    net.save_parameters(folder, max_shard_size="5MB")
    assert len([n for n in os.listdir(folder) if n.endswith(".safetensors")]) == 4
    for source in (path, folder):
        clone = nn.Sequential(*[nn.Dense(1000, in_units=1000, use_bias=False) for _ in range(4)])
        clone.initialize()
        clone(ops.zeros((1, 1000)))
        tracemalloc.start()
        try:
            clone.load_parameters(source)
            kept, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # What is still allocated after the load is the parameters' own storage, not held
        # by the load: TensorFlow's assign may adopt the host copy tf.constant made of a
        # read-only array (a NumPy copy, so traced) as the variable's buffer.
        held = peak - kept
        assert held < 2 * 4_000_000 + 1_000_000, f"{source.name}: the load held {held} bytes"
        assert kept <= 4 * 4_000_000 + 1_000_000, f"{source.name}: {kept} bytes kept after the load"
        np.testing.assert_array_equal(to_np(clone[3].weight.data()), to_np(net[3].weight.data()))


def test_load_writes_into_the_existing_variables(tmp_path: Path) -> None:
    # Mutable frameworks keep their variable objects (optimizers and compiled graphs
    # hold them); the values are the file's.
    from d2lcompat._registry import active

    src = _net(6)
    src.save_parameters(tmp_path / "a.safetensors")
    dst = _net(7)
    before = {k: p.native() for k, p in dst.collect_params().items()}
    dst.load_parameters(tmp_path / "a.safetensors")
    for k, p in dst.collect_params().items():
        if active().SUPPORTS_MUTABLE_VARIABLES:
            assert p.native() is before[k], k
        np.testing.assert_array_equal(to_np(p.data()), _values(src)[k])
