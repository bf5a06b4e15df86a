"""XB01, XB03-XB06: files written under backend A load under backend B.

The conformance runner calls `write_reference` in backend A's process and then
`check_reference` in backend B's process (each backend in its own process, never two
frameworks in one), for every ordered pair (A, B), B == A included.

Files written by backend ``A`` into ``folder`` (all safetensors, written by d2lcompat):

* ``A.params.safetensors`` — ``save_parameters`` of a seeded MLP;
* ``A.io.safetensors`` — ``save({'x': X, 'y': net(X)})``, the input and A's output;
* ``A.tensor.safetensors``, ``A.list.safetensors``, ``A.dict.safetensors`` — `save` of a
  tensor, a list and a dict with deterministic values in several dtypes;
* ``A.sharded/`` — the same MLP saved with ``max_shard_size`` (3 shards and
  ``model.safetensors.index.json``, the Hugging Face layout); XB01 loads it too.
* ``A.lenet.safetensors`` — a LeNet with BatchNorm (§8.5) trained a few SGD steps, so
  its running statistics moved; ``A.lenet_io.safetensors`` — an input batch and A's
  predictions (predict mode, the running statistics in use).
* ``A.curve.safetensors`` — XB05: the losses of 20 Adam steps of a seeded MLP.
* ``A.lstm.safetensors`` — RN06/XB06: a seeded two-layer LSTM language model
  (`models.CharLM`) as initialized; ``A.lstm_io.safetensors`` — an input batch and A's
  output; ``A.seq_curves.safetensors`` — XB06: 20 clipped Adam steps of each model of
  `SEQ_CURVES` (the LSTM and the encoder-decoder Transformer).

Examples
--------
Within one backend (what ``tests/test_xb.py`` does)::

    from d2lcompat_conformance.xb import check_reference, write_reference
    write_reference(folder)
    results = check_reference(folder, d2lcompat.backend())
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import d2lcompat
from d2lcompat import autograd, nn, ops, optim

from .models import CharLM, lenet_bn
from .xb_transformer import transformer_curve

__all__ = ["check_reference", "reference_tensors", "write_reference"]

RTOL, ATOL = 1e-5, 1e-6
#: Small enough for three shards of the MLP's 5,140 bytes.
SHARD_BYTES = 2200


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Dense(32, activation="relu"), nn.Dense(16, activation="relu"), nn.Dense(5))


def reference_tensors() -> dict[str, np.ndarray]:
    """The deterministic host values every backend saves for XB03 (dtypes every
    backend has: float32, float16, int32, bool)."""
    return {
        "a": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
        "b": (np.arange(6, dtype=np.float32) - 2.5).astype(np.float16),
        "c": np.arange(-3, 3, dtype=np.int32),
        "d": np.array([True, False, True]),
    }


def _native(arr: np.ndarray) -> Any:
    return ops.tensor(arr, dtype=str(arr.dtype))


def write_reference(dir: str | Path) -> list[str]:  # noqa: A002 - the runner's keyword
    """Write this backend's reference files into ``dir``; return their paths."""
    folder = Path(dir)
    folder.mkdir(parents=True, exist_ok=True)
    name = d2lcompat.backend()
    d2lcompat.seed(1234)
    net = _mlp()
    net.initialize(d2lcompat.init.Xavier())
    X = ops.random.uniform((4, 20), low=-1.0, high=1.0)
    Y = net(X)
    keys = ("params", "io", "tensor", "list", "dict", "lenet", "lenet_io")
    paths = {k: folder / f"{name}.{k}.safetensors" for k in keys}
    net.save_parameters(paths["params"])
    sharded = folder / f"{name}.sharded"
    net.save_parameters(sharded, max_shard_size=SHARD_BYTES)
    d2lcompat.save(paths["io"], {"x": X, "y": Y})
    ref = {k: _native(v) for k, v in reference_tensors().items()}
    d2lcompat.save(paths["tensor"], ref["a"])
    d2lcompat.save(paths["list"], [ref["a"], ref["b"], ref["c"]])
    d2lcompat.save(paths["dict"], {"d": ref["d"], "c": ref["c"], "b": ref["b"]})
    lenet, batch = trained_lenet()
    lenet.save_parameters(paths["lenet"])
    d2lcompat.save(paths["lenet_io"], {"x": batch, "y": lenet(batch)})
    curve = folder / f"{name}.curve.safetensors"
    d2lcompat.save(curve, {"loss": loss_curve()})
    return [str(p) for p in paths.values()] + [str(sharded), str(curve)] + write_sequence(folder)


_CURVE: list[np.ndarray] = []


def loss_curve(steps: int = 20) -> np.ndarray:
    """XB05: the losses of ``steps`` Adam steps of a seeded MLP on fixed NumPy data
    (computed once per process)."""
    if _CURVE:
        return _CURVE[0]
    rng = np.random.default_rng(2024)
    X = ops.tensor(rng.normal(size=(32, 20)).astype(np.float32))
    y = ops.tensor(rng.integers(0, 5, size=32))
    d2lcompat.seed(2024)
    net = _mlp()
    net.initialize(d2lcompat.init.Xavier())
    trainer = d2lcompat.Trainer(net.collect_params(), "adam", {"learning_rate": 0.01})
    step = d2lcompat.train_step(net, d2lcompat.loss.SoftmaxCrossEntropyLoss(), trainer)
    curve = np.array([float(ops.item(step(X, y))) for _ in range(steps)], dtype=np.float32)
    _CURVE.append(curve)
    return curve


def trained_lenet(steps: int = 3) -> tuple[nn.Sequential, Any]:
    """XB04's model: a seeded LeNet with BatchNorm on 8x8 inputs after ``steps`` SGD steps
    of softmax cross-entropy in training mode (so every running statistic moved), and a
    held-out input batch."""
    d2lcompat.seed(4321)
    net = lenet_bn(pad=2)
    net.initialize(d2lcompat.init.Xavier())
    X = ops.random.uniform((16, 1, 8, 8))
    labels = np.arange(16) % 10
    onehot = ops.tensor(np.eye(10, dtype=np.float32)[labels])
    params = net.collect_params()
    sgd = optim.SGD(params, lr=0.5)

    def loss() -> Any:
        return -ops.mean(ops.sum(onehot * ops.log_softmax(net(X)), axis=1))

    for _ in range(steps):
        with autograd.record():
            _, grads = autograd.grad(loss, params)
        sgd.step(grads)
    return net, ops.random.uniform((6, 1, 8, 8))


# ------------------------------------------------------------------ XB06 / RN06
#: XB06's sequence models: name -> ``curve(steps)``, the losses of ``steps`` training
#: steps from a fixed seed. Each backend writes every curve; every reader compares the
#: curves both sides have (the LSTM and the Transformer of conformance/xb_transformer.py).
SEQ_CURVES: dict[str, Callable[[int], np.ndarray]] = {}
_SEQ_SEED = 606


def lstm_model() -> CharLM:
    """RN06/XB06's model, seeded: a two-layer LSTM language model (Xavier weights)."""
    d2lcompat.seed(_SEQ_SEED)
    net = CharLM(10, num_hiddens=24, embed=8, num_layers=2)
    net.initialize(d2lcompat.init.Xavier())
    return net


def _seq_data() -> tuple[Any, Any]:
    """8 sequences of 12 tokens of a 10-token vocabulary, and their next tokens."""
    ids = np.random.default_rng(_SEQ_SEED).integers(0, 10, size=(8, 13))
    return ops.tensor(ids[:, :-1]), ops.tensor(ids[:, 1:])


def lstm_curve(steps: int = 20) -> np.ndarray:
    """XB06: the losses of ``steps`` Adam steps (``clip_global_norm=1``) of `lstm_model`."""
    net = lstm_model()
    net.hybridize()
    trainer = d2lcompat.Trainer(net.collect_params(), "adam", {"learning_rate": 0.01},
                                clip_global_norm=1.0)
    step = d2lcompat.train_step(net, d2lcompat.loss.SoftmaxCrossEntropyLoss(), trainer)
    X, Y = _seq_data()
    return np.array([float(ops.item(step(X, Y))) for _ in range(steps)], dtype=np.float32)


def transformer_loss_curve(steps: int) -> np.ndarray:
    """XB06's Transformer: the losses of ``steps`` Adam steps of the seeded encoder-decoder
    (`xb_transformer.transformer_curve`)."""
    return transformer_curve(steps)["loss"]


SEQ_CURVES["lstm"] = lstm_curve
SEQ_CURVES["transformer"] = transformer_loss_curve
_SEQ_DONE: dict[str, np.ndarray] = {}


def seq_curves(steps: int = 20) -> dict[str, np.ndarray]:
    """Every curve of `SEQ_CURVES` (each computed once per process)."""
    for name, fn in SEQ_CURVES.items():
        if name not in _SEQ_DONE:
            _SEQ_DONE[name] = np.asarray(fn(steps), dtype=np.float32)
    return dict(_SEQ_DONE)


def write_sequence(folder: Path) -> list[str]:
    """Write RN06/XB06's files: the seeded LSTM, an input and its output, the curves."""
    name = d2lcompat.backend()
    net = lstm_model()
    X, _ = _seq_data()
    paths = [folder / f"{name}.{k}.safetensors" for k in ("lstm", "lstm_io", "seq_curves")]
    net.save_parameters(paths[0])
    d2lcompat.save(paths[1], {"x": X, "y": net(X)})
    d2lcompat.save(paths[2], seq_curves())
    return [str(p) for p in paths]


def _xb06(folder: Path, writer: str) -> None:
    stored = d2lcompat.load(folder / f"{writer}.lstm.safetensors")
    names = [k for k in stored if k.startswith("rnn.")]
    assert "rnn.r1_h2h_bias" not in names and len(names) == 8, f"LSTM parameters: {names}"
    ours = lstm_model()  # the same seed here: the same parameters, bit for bit
    for k, p in ours.collect_params().items():
        np.testing.assert_array_equal(ops.to_numpy(p.data()), ops.to_numpy(stored[k]),
                                      err_msg=f"seeded {k}")
    io = d2lcompat.load(folder / f"{writer}.lstm_io.safetensors")
    loaded = CharLM(10, num_hiddens=24, embed=8, num_layers=2)
    loaded.load_parameters(folder / f"{writer}.lstm.safetensors")  # RN06: A's file under B
    np.testing.assert_allclose(ops.to_numpy(loaded(io["x"])), ops.to_numpy(io["y"]), rtol=1e-4,
                               atol=1e-5, err_msg=f"{writer}'s LSTM output vs this backend's")
    theirs = d2lcompat.load(folder / f"{writer}.seq_curves.safetensors")
    mine = seq_curves()
    common = sorted(set(theirs) & set(mine))
    assert {"lstm", "transformer"} <= set(common), (
        f"curves: {writer} wrote {sorted(theirs)}, here {sorted(mine)}"
    )
    for key in common:
        curve = ops.to_numpy(theirs[key])
        assert curve[-1] < 0.9 * curve[0], f"{writer}'s {key} curve does not descend: {curve}"
        np.testing.assert_allclose(mine[key], curve, rtol=CURVE_RTOL, atol=0,
                                   err_msg=f"{writer}'s {key} loss curve vs this backend's")


def _result(sid: str, writer: str, status: str, message: str = "") -> dict[str, str]:
    return {"id": sid, "writer": writer, "reader": d2lcompat.backend(), "status": status,
            "message": message}


def _equal(got: Any, want: np.ndarray, what: str) -> None:
    have = ops.to_numpy(got)
    assert ops.dtype(got) == str(want.dtype), f"{what}: dtype {ops.dtype(got)}, expected {want.dtype}"
    assert have.shape == want.shape, f"{what}: shape {have.shape}, expected {want.shape}"
    np.testing.assert_array_equal(have, want, err_msg=what)


def _xb01(folder: Path, writer: str) -> None:
    net = _mlp()
    net.load_parameters(folder / f"{writer}.params.safetensors")
    io = d2lcompat.load(folder / f"{writer}.io.safetensors")
    stored = d2lcompat.load(folder / f"{writer}.params.safetensors")
    for k, p in net.collect_params().items():  # the values themselves: bit-identical
        np.testing.assert_array_equal(ops.to_numpy(p.data()), ops.to_numpy(stored[k]), err_msg=k)
    np.testing.assert_allclose(ops.to_numpy(net(io["x"])), ops.to_numpy(io["y"]), rtol=RTOL,
                               atol=ATOL, err_msg=f"{writer}'s output vs this backend's")
    sharded = _mlp()
    sharded.load_parameters(folder / f"{writer}.sharded")
    shards = sorted(p.name for p in (folder / f"{writer}.sharded").iterdir())
    assert shards == [f"model-0000{k}-of-00003.safetensors" for k in (1, 2, 3)] + [
        "model.safetensors.index.json"], f"sharded layout: {shards}"
    for k, p in sharded.collect_params().items():
        np.testing.assert_array_equal(ops.to_numpy(p.data()), ops.to_numpy(stored[k]),
                                      err_msg=f"sharded {k}")


def _xb03(folder: Path, writer: str) -> None:
    ref = reference_tensors()
    t = d2lcompat.load(folder / f"{writer}.tensor.safetensors")
    _equal(t, ref["a"], "tensor")
    lst = d2lcompat.load(folder / f"{writer}.list.safetensors")
    assert isinstance(lst, list) and len(lst) == 3, f"list: got {type(lst).__name__} of {len(lst)}"
    for got, key in zip(lst, "abc"):
        _equal(got, ref[key], f"list item {key}")
    dct = d2lcompat.load(folder / f"{writer}.dict.safetensors")
    assert isinstance(dct, dict) and list(dct) == ["d", "c", "b"], f"dict keys {list(dct)}"
    for key, got in dct.items():
        _equal(got, ref[key], f"dict[{key!r}]")


def _xb04(folder: Path, writer: str) -> None:
    net = lenet_bn(pad=2)
    net.load_parameters(folder / f"{writer}.lenet.safetensors")
    stored = d2lcompat.load(folder / f"{writer}.lenet.safetensors")
    moved = [k for k in stored if k.endswith(("running_mean", "running_var"))]
    assert len(moved) == 8, f"expected 4 BatchNorm layers' statistics, got {moved}"
    for k, p in net.collect_params().items():  # running statistics included: bit-identical
        np.testing.assert_array_equal(ops.to_numpy(p.data()), ops.to_numpy(stored[k]), err_msg=k)
    for k in moved:
        start = 0.0 if k.endswith("mean") else 1.0
        assert np.abs(ops.to_numpy(stored[k]) - start).max() > 1e-4, f"{k} never moved"
    io = d2lcompat.load(folder / f"{writer}.lenet_io.safetensors")
    got, want = ops.to_numpy(net(io["x"])), ops.to_numpy(io["y"])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5,
                               err_msg=f"{writer}'s LeNet predictions vs this backend's")
    assert (got.argmax(axis=1) == want.argmax(axis=1)).all(), "predicted classes differ"


def _xb05(folder: Path, writer: str) -> None:
    theirs = ops.to_numpy(d2lcompat.load(folder / f"{writer}.curve.safetensors")["loss"])
    ours = loss_curve(len(theirs))
    assert theirs[-1] < 0.5 * theirs[0], f"{writer}'s curve does not descend: {theirs}"
    np.testing.assert_allclose(ours, theirs, rtol=CURVE_RTOL, atol=0,
                               err_msg=f"{writer}'s loss curve vs this backend's (20 Adam steps)")


#: XB05's tolerance: the same formula on float32, different kernels, 20 steps.
CURVE_RTOL = 1e-4


def check_reference(dir: str | Path, writer: str) -> list[dict[str, str]]:  # noqa: A002
    """Load the files ``writer`` wrote into ``dir`` under this process's backend; return
    one result per scenario: ``{id, writer, reader, status, message}``, ``status`` in
    ``pass`` / ``fail``."""
    folder = Path(dir)
    out = []
    for sid, fn in (("XB01", _xb01), ("XB03", _xb03), ("XB04", _xb04), ("XB05", _xb05),
                    ("XB06", _xb06)):
        try:
            fn(folder, writer)
        except Exception as exc:  # noqa: BLE001 - every failure is a result
            tb = traceback.format_exc(limit=4)
            out.append(_result(sid, writer, "fail", f"{type(exc).__name__}: {exc}\n{tb}"))
        else:
            out.append(_result(sid, writer, "pass"))
    return out
