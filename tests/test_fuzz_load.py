"""Fuzzing the loaders: truncated, bit-flipped and random files only ever raise
`CheckpointError` (or load cleanly), never another exception, a crash or a hang.

The normal run tries 200 cases per target; ``D2LCOMPAT_FUZZ_EXAMPLES=10000`` (the
``fuzz`` tox env) runs the long version.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import d2lcompat
from d2lcompat import CheckpointError, nn, ops

EXAMPLES = int(os.environ.get("D2LCOMPAT_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 200,
                suppress_health_check=list(HealthCheck))


def _net() -> nn.Sequential:
    net = nn.Sequential(nn.Dense(4, activation="relu", in_units=3), nn.Dense(2, in_units=4))
    net.initialize(d2lcompat.init.One())
    return net


def _seeds() -> list[bytes]:
    folder = Path(tempfile.mkdtemp(prefix="d2lc-fuzz-"))
    _net().save_parameters(folder / "p")
    d2lcompat.save(folder / "o", {"x": ops.arange(5), "h": ops.cast(ops.ones((2, 3)), "float16"),
                                  "m": ops.tensor([True, False])})
    d2lcompat.save(folder / "l", [ops.zeros((0, 3)), ops.tensor(2.0)])
    return [(folder / n).read_bytes() for n in ("p", "o", "l")]


SEEDS = _seeds()
TARGET = Path(tempfile.mkdtemp(prefix="d2lc-fuzz-")) / "f"


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    how = draw(st.sampled_from(["truncate", "flip", "flip-header", "splice", "random"]))
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if how in ("flip", "flip-header"):
        n = len(data) if how == "flip" else min(len(data), 8 + int.from_bytes(data[:8], "little"))
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, n - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if how == "splice":
        i = draw(st.integers(0, len(data)))
        return bytes(data[:i]) + draw(st.binary(max_size=64)) + bytes(data[i:])
    return draw(st.binary(max_size=512))


def _check_net_unchanged_or_loaded(net: nn.Sequential) -> None:
    for p in net.collect_params().values():
        assert ops.shape(p.data()) == p.shape


@FUZZ
@given(damaged())
def test_load_parameters_only_raises_checkpoint_error(data: bytes) -> None:
    TARGET.write_bytes(data)
    net = _net()
    before = {k: ops.to_numpy(p.data()).copy() for k, p in net.collect_params().items()}
    try:
        net.load_parameters(TARGET)
    except CheckpointError:
        for k, p in net.collect_params().items():  # all or nothing
            np.testing.assert_array_equal(ops.to_numpy(p.data()), before[k])
    _check_net_unchanged_or_loaded(net)


@FUZZ
@given(damaged())
def test_load_only_raises_checkpoint_error(data: bytes) -> None:
    TARGET.write_bytes(data)
    try:
        d2lcompat.load(TARGET)
    except CheckpointError:
        pass


@FUZZ
@given(damaged())
def test_deferred_load_only_raises_checkpoint_error(data: bytes) -> None:
    TARGET.write_bytes(data)
    net = nn.Sequential(nn.Dense(4, activation="relu"), nn.Dense(2))
    try:
        net.load_parameters(TARGET, allow_missing=True, ignore_extra=True)
    except CheckpointError:
        assert not any(p.is_initialized for p in net.collect_params().values())


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_seeds_themselves_load(seed: int) -> None:
    TARGET.write_bytes(SEEDS[seed])
    d2lcompat.load(TARGET)


# ------------------------------------------------------------------ header bombs
def _safetensors(header: dict[str, object], data: bytes = b"", length: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    n = len(raw) if length is None else length
    return n.to_bytes(8, "little") + raw + data


def _meta(structure: object) -> dict[str, object]:
    text = structure if isinstance(structure, str) else json.dumps(structure)
    return {"__metadata__": {"d2lcompat.structure": text}}


# Files of about 1 KB whose header declares huge structures: each must raise
# CheckpointError at once (never MemoryError, never a long stall).
BOMBS = {
    "structure: list of 10**10": _safetensors(_meta({"type": "list", "length": 10**10})),
    "structure: tuple of 10**18": _safetensors(_meta({"type": "tuple", "length": 10**18})),
    "structure: dict keys beyond the tensors": _safetensors(_meta({"type": "dict", "keys": ["a"] * 100})),
    "deeply nested structure": _safetensors(_meta("[" * 100_000 + "]" * 100_000)),
    "header length of 1 TB": _safetensors({}, length=1 << 40),
    "header length just under the bound": _safetensors({}, length=99_999_999),
    "empty tensor of 10**30 columns": _safetensors(
        {"t": {"dtype": "F32", "shape": [0, 10**30], "data_offsets": [0, 0]}}),
    "1000 dimensions": _safetensors(
        {"t": {"dtype": "F32", "shape": [1] * 1000, "data_offsets": [0, 4]}}, b"\0" * 4),
    "deeply nested header": b"".join([
        (200_000).to_bytes(8, "little"), b"{" + b'"a":[' * 10_000 + b" " * (200_000 - 50_001)]),
}


def _index_bomb(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    d2lcompat.save(folder / "model-00001-of-00001.safetensors", {"x": ops.zeros((2,))})
    index = {"metadata": {"d2lcompat.structure": json.dumps({"type": "list", "length": 10**10})},
             "weight_map": {"x": "model-00001-of-00001.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_header_bombs_raise_checkpoint_error_at_once(bomb: str, tmp_path: Path) -> None:
    import time

    path = tmp_path / "bomb.safetensors"
    path.write_bytes(BOMBS[bomb])
    assert path.stat().st_size < 250_000
    net = _net()
    before = {k: ops.to_numpy(p.data()).copy() for k, p in net.collect_params().items()}
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    calls = {
        "load": lambda: d2lcompat.load(path),
        "load_parameters": lambda: net.load_parameters(path),
        "load_states": lambda: trainer.load_states(path),
        "convert": lambda: d2lcompat.convert(path, tmp_path / "out.safetensors"),
    }
    for what, call in calls.items():
        start = time.perf_counter()
        try:
            call()
        except CheckpointError:
            pass
        else:
            # convert ignores a d2lcompat structure it cannot use (it writes the tensors
            # the header lists, here none); everything else must refuse the file.
            assert what == "convert" and "structure" in bomb, f"{what} accepted {bomb}"
            assert d2lcompat.load(tmp_path / "out.safetensors") == {}
        assert time.perf_counter() - start < 5.0, f"{what} stalled on {bomb}"
    for k, p in net.collect_params().items():
        np.testing.assert_array_equal(ops.to_numpy(p.data()), before[k])


def test_sharded_index_bomb_is_refused_at_once(tmp_path: Path) -> None:
    import time

    folder = _index_bomb(tmp_path / "ck")
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="10000000000"):
        d2lcompat.load(folder)
    # The structure of an index is advisory for load_parameters (the weight_map decides).
    net = nn.Sequential()
    net.load_parameters(folder, ignore_extra=True)
    assert time.perf_counter() - start < 5.0
