"""Native Paddle checkpoints: a model built with Paddle itself -> paddle.save(state_dict)
-> d2lcompat load_parameters(trusted=True) / convert -> the same outputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import paddle
import pytest
from _native_reference import DATA, HIDDEN, IN, OUT, reference

import d2lcompat
from d2lcompat import CheckpointError, nn, ops

pytestmark = pytest.mark.skipif(d2lcompat.backend() != "paddle", reason="paddle only")


class PaddleMLP(paddle.nn.Sequential):
    def __init__(self) -> None:
        super().__init__(paddle.nn.Linear(IN, HIDDEN), paddle.nn.Linear(HIDDEN, OUT))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self[1](paddle.nn.functional.relu(self[0](x)))


def reference_model() -> PaddleMLP:
    ref = reference()
    model = PaddleMLP()
    model.set_state_dict({  # Paddle's Linear weight is (in, out)
        k: paddle.to_tensor(ref[k].T if k.endswith("weight") else ref[k]) for k in
        ("0.weight", "0.bias", "1.weight", "1.bias")
    })
    return model


def test_fixture_is_current() -> None:
    path = DATA / "mlp.pdparams"
    if os.environ.get("D2LCOMPAT_REGEN_FIXTURES") or not path.exists():
        paddle.save(reference_model().state_dict(), str(path))
    state = paddle.load(str(path), return_numpy=True)
    ref = reference()
    for k, v in state.items():
        np.testing.assert_array_equal(v.T if k.endswith("weight") else v, ref[k])


def test_pdparams_needs_trusted_and_then_matches(tmp_path: Path) -> None:
    model = reference_model()
    path = tmp_path / "model.pdparams"
    paddle.save(model.state_dict(), str(path))
    net = nn.Sequential(nn.Dense(HIDDEN, activation="relu"), nn.Dense(OUT))
    with pytest.raises(CheckpointError, match="trusted=True"):
        net.load_parameters(path)
    assert not net[0].weight.is_initialized
    net.load_parameters(path, trusted=True)
    x = np.random.default_rng(0).standard_normal((7, IN)).astype(np.float32)
    np.testing.assert_allclose(ops.to_numpy(net(ops.tensor(x))),
                               model(paddle.to_tensor(x)).numpy(), rtol=1e-5, atol=1e-6)


def test_convert(tmp_path: Path) -> None:
    model = paddle.nn.Sequential(paddle.nn.Linear(IN, HIDDEN), paddle.nn.ReLU(),
                                 paddle.nn.Linear(HIDDEN, OUT))
    paddle.save(model.state_dict(), str(tmp_path / "m.pdparams"))
    with pytest.raises(CheckpointError):
        d2lcompat.convert(tmp_path / "m.pdparams", tmp_path / "m.safetensors")
    d2lcompat.convert(tmp_path / "m.pdparams", tmp_path / "m.safetensors", trusted=True)
    net = nn.Sequential(nn.Dense(HIDDEN), nn.Activation("relu"), nn.Dense(OUT))
    net.load_parameters(tmp_path / "m.safetensors")
    x = np.ones((2, IN), np.float32)
    np.testing.assert_allclose(ops.to_numpy(net(ops.tensor(x))),
                               model(paddle.to_tensor(x)).numpy(), rtol=1e-5, atol=1e-6)
