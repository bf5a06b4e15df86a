"""Native PyTorch checkpoints: a model built with torch itself -> torch.save(state_dict)
-> d2lcompat load_parameters / convert -> the same outputs as the torch model."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from _native_reference import DATA, reference

import d2lcompat
from d2lcompat import CheckpointError, nn, ops

pytestmark = pytest.mark.skipif(d2lcompat.backend() != "torch", reason="torch backend only")


class TorchMLP(torch.nn.Sequential):
    """Two Linear layers named 0 and 1, relu in forward: the d2lcompat
    ``Sequential(Dense(8, activation='relu'), Dense(3))``."""

    def __init__(self) -> None:
        super().__init__(torch.nn.Linear(4, 8), torch.nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self[1](torch.relu(self[0](x)))


def reference_model() -> TorchMLP:
    ref = reference()
    model = TorchMLP()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(ref[name]))
    return model


def write_fixture(path: Path) -> None:
    torch.save(reference_model().state_dict(), path)


def test_fixture_is_current() -> None:
    path = DATA / "mlp.pt"
    if os.environ.get("D2LCOMPAT_REGEN_FIXTURES") or not path.exists():
        write_fixture(path)
    state = torch.load(path, weights_only=True)
    ref = reference()
    for k, v in state.items():
        np.testing.assert_array_equal(v.numpy(), ref[k])


def test_state_dict_loads_with_same_outputs(tmp_path: Path) -> None:
    model = reference_model()
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    x = torch.randn(7, 4)
    expected = model(x).detach().numpy()
    net = nn.Sequential(nn.Dense(8, activation="relu"), nn.Dense(3))  # still deferred
    net.load_parameters(str(path))
    np.testing.assert_allclose(ops.to_numpy(net(x)), expected, rtol=1e-6, atol=1e-6)


def test_standard_sequential_with_relu_module(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    path = tmp_path / "model.pth"
    torch.save(model.state_dict(), path)
    net = nn.Sequential(nn.Dense(8), nn.Activation("relu"), nn.Dense(3))
    net.load_parameters(str(path))
    x = torch.randn(2, 4)
    np.testing.assert_allclose(ops.to_numpy(net(x)), model(x).detach().numpy(), rtol=1e-6, atol=1e-6)


def test_convert_then_load_portable(tmp_path: Path) -> None:
    model = reference_model()
    torch.save({"model": model.state_dict()}, tmp_path / "ckpt.pt")
    names = d2lcompat.convert(tmp_path / "ckpt.pt", tmp_path / "out.safetensors",
                              mapping={"model.": ""})
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias"]
    net = nn.Sequential(nn.Dense(8, activation="relu"), nn.Dense(3))
    net.load_parameters(tmp_path / "out.safetensors")
    x = torch.randn(3, 4)
    np.testing.assert_allclose(ops.to_numpy(net(x)), model(x).detach().numpy(), rtol=1e-6, atol=1e-6)


def test_bfloat16_state_dict(tmp_path: Path) -> None:
    lin = torch.nn.Linear(3, 2).to(torch.bfloat16)
    torch.save(lin.state_dict(), tmp_path / "bf.pt")
    d = nn.Dense(2, dtype="bfloat16")
    d.load_parameters(tmp_path / "bf.pt")
    assert torch.equal(d.weight.data(), lin.weight.detach())


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, ("/tmp/d2lcompat-pwned", "w"))


def test_whole_model_and_malicious_pickles_are_refused(tmp_path: Path) -> None:
    torch.save(reference_model(), tmp_path / "whole.pt")  # pickles the class: not weights
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"0.weight": _Evil()}))
    net = nn.Sequential(nn.Dense(8, activation="relu"), nn.Dense(3))
    for name in ("whole.pt", "evil.pt"):
        with pytest.raises(CheckpointError, match=name):
            net.load_parameters(tmp_path / name)
    assert not Path("/tmp/d2lcompat-pwned").exists()
    assert not net[0].weight.is_initialized
