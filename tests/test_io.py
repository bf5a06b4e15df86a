"""Unit tests of the portable file format (d2lcompat._io)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

import d2lcompat
from d2lcompat import CheckpointError, nn, ops
from d2lcompat._io import FORMAT_VERSION, _keras_names, convert_cli


def test_file_is_plain_safetensors_with_metadata(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Dense(3, in_units=2))
    net.initialize()
    net.save_parameters(tmp_path / "p.safetensors")
    with safe_open(str(tmp_path / "p.safetensors"), framework="np") as f:
        meta = f.metadata()
        assert sorted(f.keys()) == ["0.bias", "0.weight"]
        assert f.get_tensor("0.weight").shape == (3, 2)  # (out, in)
    assert meta["d2lcompat.format"] == str(FORMAT_VERSION)
    assert meta["d2lcompat.backend"] == d2lcompat.backend()
    assert meta["d2lcompat.version"] == d2lcompat.__version__
    assert json.loads(meta["d2lcompat.structure"])["keys"] == ["0.weight", "0.bias"]


def test_bfloat16_round_trip_bit_exact(tmp_path: Path) -> None:
    x = ops.cast(ops.tensor([1.0, -2.5, 3.140625, 1e-3]), "bfloat16")
    d2lcompat.save(tmp_path / "b", {"x": x})
    y = d2lcompat.load(tmp_path / "b")["x"]
    assert ops.dtype(y) == "bfloat16"
    np.testing.assert_array_equal(ops.to_numpy(ops.cast(y, "float32")),
                                  ops.to_numpy(ops.cast(x, "float32")))
    with safe_open(str(tmp_path / "b"), framework="np") as f:
        assert "bfloat16" not in str(f.metadata())  # the dtype lives in the header: BF16


def test_newer_format_is_refused(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"a": np.ones(2, np.float32)}, str(tmp_path / "n"),
              metadata={"d2lcompat.format": "99"})
    with pytest.raises(CheckpointError, match="Upgrade d2lcompat"):
        d2lcompat.load(tmp_path / "n")


def test_foreign_safetensors_loads_as_dict(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, str(tmp_path / "f"))
    got = d2lcompat.load(tmp_path / "f")
    assert list(got) == ["w"] and ops.shape(got["w"]) == (2, 3)


def test_save_rejects_other_objects(tmp_path: Path) -> None:
    for bad in (3, "x", {1: ops.ones((1,))}, [[ops.ones((1,))]]):
        with pytest.raises(CheckpointError):
            d2lcompat.save(tmp_path / "x", bad)
    assert not (tmp_path / "x").exists()


def test_uninitialized_net_cannot_be_saved(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Dense(3))
    net.initialize()
    with pytest.raises(CheckpointError, match="0.weight"):
        net.save_parameters(tmp_path / "p")


def test_load_parameters_onto_device(tmp_path: Path) -> None:
    net = nn.Dense(2, in_units=3)
    net.initialize()
    net.save_parameters(tmp_path / "p")
    clone = nn.Dense(2)
    clone.load_parameters(tmp_path / "p", device=d2lcompat.cpu())
    assert clone.weight.list_devices() == [d2lcompat.cpu()]
    t = d2lcompat.load(tmp_path / "p", device=d2lcompat.cpu())
    assert d2lcompat.device_of(t["weight"]) == d2lcompat.cpu()


def test_keras_names() -> None:
    names = _keras_names(["layers/dense/vars/0", "layers/dense/vars/1", "layers/dense_10/vars/0",
                          "layers/dense_2/vars/0", "hidden/vars/0",
                          "layers/sequential/layers/dense/vars/1"])
    # one counter per class: dense, dense_2, dense_10 are positions by number; the
    # `sequential` sub-model (also number 0) sorts after `dense` by class name
    assert names == {
        "layers/dense/vars/0": "0.weight", "layers/dense/vars/1": "0.bias",
        "layers/sequential/layers/dense/vars/1": "1.0.bias",
        "layers/dense_2/vars/0": "2.weight", "layers/dense_10/vars/0": "3.weight",
        "hidden/vars/0": "hidden.weight",
    }


def test_convert_cli_and_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = nn.Dense(2, in_units=3)
    net.initialize()
    net.save_parameters(tmp_path / "a")
    args = argparse.Namespace(src=str(tmp_path / "a"), dst=str(tmp_path / "b"),
                              map=["weight=0.weight", "bias=0.bias"], trusted=False)
    assert convert_cli(args) == 0
    assert "0.weight" in capsys.readouterr().out
    assert list(d2lcompat.load(tmp_path / "b")) == ["0.weight", "0.bias"]
    bad = argparse.Namespace(src=str(tmp_path / "a"), dst=str(tmp_path / "c"),
                             map=["nope=0.weight"], trusted=False)
    assert convert_cli(bad) == 1
    assert "nope" in capsys.readouterr().err
    assert convert_cli(argparse.Namespace(src="a", dst="b", map=["x"], trusted=False)) == 2
