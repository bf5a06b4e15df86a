"""Native Keras weights: a model built with Keras itself -> model.save_weights(.weights.h5)
-> d2lcompat load_parameters / convert -> the same outputs as the Keras model."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import pytest
from _native_reference import DATA, HIDDEN, IN, OUT, reference

import d2lcompat
from d2lcompat import CheckpointError, nn, ops

pytestmark = pytest.mark.skipif(d2lcompat.backend() != "tensorflow", reason="tensorflow only")


def reference_model() -> keras.Sequential:
    ref = reference()
    model = keras.Sequential([keras.Input((IN,)), keras.layers.Dense(HIDDEN, activation="relu"),
                              keras.layers.Dense(OUT)])
    for i, layer in enumerate(model.layers):  # Keras kernels are (in, out)
        layer.set_weights([ref[f"{i}.weight"].T, ref[f"{i}.bias"]])
    return model


def test_fixture_is_current() -> None:
    path = DATA / "mlp.weights.h5"
    if os.environ.get("D2LCOMPAT_REGEN_FIXTURES") or not path.exists():
        reference_model().save_weights(str(path))
    model = reference_model()
    model.load_weights(str(path))
    ref = reference()
    np.testing.assert_allclose(model(ref["x"]).numpy(), ref["y"], rtol=1e-5, atol=1e-6)


def test_keras_weights_load_with_same_outputs(tmp_path: Path) -> None:
    model = reference_model()
    path = tmp_path / "model.weights.h5"
    model.save_weights(str(path))
    x = np.random.default_rng(0).standard_normal((7, IN)).astype(np.float32)
    net = nn.Sequential(nn.Dense(HIDDEN, activation="relu"), nn.Dense(OUT))  # deferred
    net.load_parameters(path)
    np.testing.assert_allclose(ops.to_numpy(net(ops.tensor(x))), model(x).numpy(), rtol=1e-5,
                               atol=1e-6)
    assert net[0].weight.shape == (HIDDEN, IN)  # transposed from Keras' (in, out)


def test_convert_with_explicit_mapping(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((IN,)), keras.layers.Dense(HIDDEN),
                              keras.layers.Activation("relu"), keras.layers.Dense(OUT)])
    model.save_weights(str(tmp_path / "m.weights.h5"))
    # Keras numbers layers per class, so the layer after an Activation needs a mapping
    names = d2lcompat.convert(tmp_path / "m.weights.h5", tmp_path / "m.safetensors",
                              mapping={"layers/dense_1/vars/0": "2.weight",
                                       "layers/dense_1/vars/1": "2.bias"})
    assert sorted(names) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    net = nn.Sequential(nn.Dense(HIDDEN), nn.Activation("relu"), nn.Dense(OUT))
    net.load_parameters(tmp_path / "m.safetensors")
    x = np.ones((2, IN), np.float32)
    np.testing.assert_allclose(ops.to_numpy(net(ops.tensor(x))), model(x).numpy(), rtol=1e-5,
                               atol=1e-6)


def test_wrong_architecture_lists_problems(tmp_path: Path) -> None:
    reference_model().save_weights(str(tmp_path / "m.weights.h5"))
    net = nn.Sequential(nn.Dense(HIDDEN + 1, activation="relu"), nn.Dense(OUT))
    with pytest.raises(CheckpointError, match="keras"):
        net.load_parameters(tmp_path / "m.weights.h5")
    assert not net[0].weight.is_initialized


def _crafted(tmp_path: Path, how: str) -> Path:
    """A Keras-like weights file whose one dataset reads bytes from outside the file."""
    import h5py

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(8, dtype=np.float32).tobytes())
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("data", data=np.arange(8, dtype=np.float32))
    path = tmp_path / f"{how}.weights.h5"
    with h5py.File(path, "w") as f:
        vars_ = f.create_group("layers/dense/vars")
        vars_.create_dataset("1", data=np.zeros(8, np.float32))
        if how == "external storage":
            vars_.create_dataset("0", shape=(8,), dtype=np.float32, external=[(str(secret), 0, 32)])
        elif how == "external link":
            vars_["0"] = h5py.ExternalLink(str(other), "/data")
        elif how == "soft link":
            vars_["0"] = h5py.SoftLink("/layers/dense/vars/1")
        elif how == "virtual dataset":
            layout = h5py.VirtualLayout(shape=(8,), dtype=np.float32)
            layout[:] = h5py.VirtualSource(str(other), "data", shape=(8,))
            vars_.create_virtual_dataset("0", layout)
    return path


@pytest.mark.parametrize("how", ["external storage", "external link", "soft link", "virtual dataset"])
def test_hdf5_data_outside_the_file_is_refused(tmp_path: Path, how: str) -> None:
    import h5py

    path = _crafted(tmp_path, how)
    with h5py.File(path, "r") as f:  # the crafted file does read the outside bytes
        assert np.array_equal(f["layers/dense/vars/0"][()], np.arange(8) if how != "soft link" else np.zeros(8))
    with pytest.raises(CheckpointError, match="/layers/dense/vars/0") as info:
        d2lcompat.convert(path, tmp_path / "out.safetensors")
    assert how.split()[0] in str(info.value)
    assert not (tmp_path / "out.safetensors").exists()
    net = nn.Dense(8, in_units=1)
    net.initialize()
    before = ops.to_numpy(net.weight.data()).copy()
    with pytest.raises(CheckpointError, match="/layers/dense/vars/0"):
        net.load_parameters(path)
    np.testing.assert_array_equal(ops.to_numpy(net.weight.data()), before)
    # The command line says the same, exit status 1.
    from d2lcompat_cli import main

    assert main(["convert", str(path), str(tmp_path / "out.safetensors")]) == 1
