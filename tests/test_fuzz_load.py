"""Fuzzing the loaders: truncated, bit-flipped and random files only ever raise
`CheckpointError` (or load cleanly), never another exception, a crash or a hang.

The normal run tries 200 cases per target; ``D2LCOMPAT_FUZZ_EXAMPLES=10000`` (the
``fuzz`` tox env) runs the long version.
"""

from __future__ import annotations

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
