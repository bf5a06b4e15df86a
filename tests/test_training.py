"""Losses, optimizers, Trainer, train_step and fit: behaviour and misuse, on this backend.

The formulas themselves are conformance scenarios (LS, OP); these tests cover the
API's edges: errors that name what is wrong, rebuilds of a compiled step, running
statistics under the compiled step, and the history.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import d2lcompat
from d2lcompat import autograd, init, loss, nn, ops, optim
from d2lcompat._registry import active
from d2lcompat._state import set_state


def _np(x: Any) -> np.ndarray:
    return ops.to_numpy(x)


def _net(seed: int = 0) -> nn.Sequential:
    d2lcompat.seed(seed)
    net = nn.Sequential(nn.Dense(8, activation="relu"), nn.Dense(3))
    net.initialize(init.Xavier())
    return net


def _batch(n: int = 8) -> tuple[Any, Any]:
    rng = np.random.default_rng(3)
    return ops.tensor(rng.normal(size=(n, 5)).astype(np.float32)), ops.tensor(rng.integers(0, 3, n))


# ------------------------------------------------------------------ errors
def test_unknown_optimizer_lists_the_valid_names() -> None:
    net = _net()
    net(_batch()[0])
    with pytest.raises(optim.OptimizerError, match="adamm.*adam, adamw, rmsprop, sgd"):
        d2lcompat.Trainer(net.collect_params(), "adamm")


@pytest.mark.parametrize(
    ("name", "hp", "key"),
    [
        ("sgd", {"learning_rate": -0.1}, "learning_rate"),
        ("sgd", {"learning_rate": 0.1, "momentum": 1.5}, "momentum"),
        ("adam", {"beta1": 1.0}, "beta1"),
        ("adam", {"epsilon": -1}, "epsilon"),
        ("rmsprop", {"gamma1": "x"}, "gamma1"),
        ("sgd", {"wd": float("nan")}, "wd"),
        ("sgd", {"nesterov": True}, "nesterov"),
    ],
)
def test_bad_hyper_parameter_names_the_key(name: str, hp: dict[str, Any], key: str) -> None:
    net = _net()
    net(_batch()[0])
    with pytest.raises(optim.OptimizerError, match=key):
        d2lcompat.Trainer(net.collect_params(), name, hp)


def test_unknown_hyper_parameter_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="learnin_rate"):
        optim.create("sgd", learnin_rate=0.1)


def test_gluon_and_keyword_spellings_agree() -> None:
    a = optim.create("adam", learning_rate=0.01, wd=0.1, beta1=0.8, beta2=0.9, epsilon=1e-6)
    b = optim.Adam(lr=0.01, weight_decay=0.1, betas=(0.8, 0.9), eps=1e-6)
    assert a.hyper_parameters() == b.hyper_parameters()
    with pytest.raises(optim.OptimizerError, match="both given"):
        optim.create("sgd", learning_rate=0.1, lr=0.2)


def test_step_without_gradients_says_what_to_do() -> None:
    net = _net()
    net(_batch()[0])
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    with pytest.raises(d2lcompat.D2LCompatError, match="no gradient.*autograd.grad"):
        trainer.step(8)
    before = _np(net[0].weight.data()).copy()
    trainer.step(8, ignore_stale_grad=True)  # nothing to do, nothing changes
    np.testing.assert_array_equal(_np(net[0].weight.data()), before)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "8", True])
def test_bad_batch_size(bad: Any) -> None:
    net = _net()
    X, y = _batch()
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    autograd.grad(lambda: ops.sum(net(X)), net.collect_params())
    with pytest.raises(d2lcompat.D2LCompatError, match="batch_size"):
        trainer.step(bad)


def test_trainer_needs_parameters_and_a_dict() -> None:
    with pytest.raises(optim.OptimizerError, match="no parameters"):
        d2lcompat.Trainer({}, "sgd")
    net = _net()
    with pytest.raises(optim.OptimizerError, match="optimizer_params must be a dict"):
        d2lcompat.Trainer(net.collect_params(), "sgd", 0.1)  # type: ignore[arg-type]
    with pytest.raises(optim.OptimizerError, match="not a Parameter"):
        d2lcompat.Trainer({"w": ops.ones((2,))}, "sgd")  # type: ignore[dict-item]


def test_loss_shape_mismatch_is_a_shape_error() -> None:
    with pytest.raises(d2lcompat.ShapeError, match="L2Loss"):
        loss.L2Loss()(ops.ones((4, 3)), ops.ones((4, 2)))
    with pytest.raises(d2lcompat.ShapeError, match="sparse labels"):
        loss.SoftmaxCrossEntropyLoss()(ops.ones((4, 3)), ops.ones((4, 2)))
    with pytest.raises(d2lcompat.D2LCompatError, match="rho"):
        loss.HuberLoss(rho=0)


def test_fit_errors() -> None:
    net = _net()
    X, y = _batch()
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    ce = loss.SoftmaxCrossEntropyLoss()
    with pytest.raises(d2lcompat.D2LCompatError, match="epochs"):
        d2lcompat.fit(net, [(X, y)], ce, trainer, 0, verbose=False)
    with pytest.raises(d2lcompat.D2LCompatError, match="Unknown metric 'f1'"):
        d2lcompat.fit(net, [(X, y)], ce, trainer, 1, metrics=("f1",), verbose=False)
    with pytest.raises(d2lcompat.D2LCompatError, match="no batches"):
        d2lcompat.fit(net, [], ce, trainer, 1, verbose=False)
    with pytest.raises(KeyError, match="has no 'val_loss'"):
        d2lcompat.History()["val_loss"]


# --------------------------------------------------------------- behaviour
def test_relu_gradient_at_zero_is_zero() -> None:
    # The fused Dense(relu) of an adapter must keep relu's gradient 0 at 0 (as torch).
    layer = nn.Dense(1, in_units=2, activation="relu", use_bias=False)
    layer.initialize(init.Constant(1.0))
    x = ops.tensor([[1.0, -1.0]])  # pre-activation exactly 0
    _, g = autograd.grad(lambda: ops.sum(layer(x)), layer.collect_params())
    np.testing.assert_array_equal(_np(g["weight"]), [[0.0, 0.0]])
    _, g = autograd.grad(lambda: ops.sum(ops.relu(layer.weight.data() - 1.0)), layer.collect_params())
    np.testing.assert_array_equal(_np(g["weight"]), [[0.0, 0.0]])


def test_compiled_step_sees_new_learning_rate_and_rebuilds_on_momentum() -> None:
    X, y = _batch()
    results = []
    for hybrid in (False, True):
        net = _net(1)
        net(X)
        if hybrid:
            net.hybridize()
        trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
        step = d2lcompat.train_step(net, loss.SoftmaxCrossEntropyLoss(), trainer)
        step(X, y)
        trainer.set_learning_rate(0.5)
        step(X, y)
        trainer.optimizer.momentum = 0.9  # a new slot, and a new compiled step
        step(X, y)
        step(X, y)
        assert trainer.optimizer.num_update == 4
        results.append({k: _np(p.data()) for k, p in net.collect_params().items()})
    for k in results[0]:
        np.testing.assert_allclose(results[1][k], results[0][k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_compiled_step_follows_batch_sizes_and_clip_changes_as_the_eager_step() -> None:
    # The compiled step checks a batch and computes its 1/batch_size once per shape
    # signature, and reads clip_global_norm on every call: batches of changing sizes,
    # Adam's slots and a clip set after the first compiled steps give the eager numbers.
    batches = [_batch(n) for n in (8, 3, 8, 3, 5)]
    results, losses = [], []
    for hybrid in (False, True):
        net = _net(2)
        net(batches[0][0])
        if hybrid:
            net.hybridize()
        trainer = d2lcompat.Trainer(net.collect_params(), "adam", {"learning_rate": 0.05})
        step = d2lcompat.train_step(net, loss.SoftmaxCrossEntropyLoss(), trainer)
        seen = []
        for i, (X, y) in enumerate(batches + batches):
            if i == 6:
                trainer.clip_global_norm = 0.01
            out = step.with_outputs(X, y)[0] if i % 4 == 1 else step(X, y)
            seen.append(float(ops.item(out)))
        assert trainer.optimizer.num_update == 10
        losses.append(seen)
        results.append({k: _np(p.data()) for k, p in net.collect_params().items()})
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for k in results[0]:
        np.testing.assert_allclose(results[1][k], results[0][k], rtol=1e-5, atol=1e-6, err_msg=k)


class _RunningMean(nn.Block):
    """A layer with a running statistic written through set_state (as BatchNorm)."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Dense(3)
        self.running = d2lcompat.Parameter((3,), init="zeros", grad_req="null")

    def forward(self, x: Any) -> Any:
        y = self.dense(x)
        if autograd.is_training():
            set_state(self.running, 0.5 * self.running.data() + 0.5 * ops.mean(y, axis=0))
        return y


def test_running_statistics_under_eager_and_compiled_steps_agree() -> None:
    X, y = _batch()
    out = []
    for hybrid in (False, True):
        d2lcompat.seed(9)
        net = _RunningMean()
        net.initialize()
        net(X)  # predict mode: no update
        assert _np(net.running.data()).tolist() == [0.0, 0.0, 0.0]
        if hybrid:
            net.hybridize()
        trainer = d2lcompat.Trainer(net.collect_params(), "adam", {"learning_rate": 0.01})
        assert list(trainer.optimizer.params) == ["running", "dense.weight", "dense.bias"]
        step = d2lcompat.train_step(net, loss.SoftmaxCrossEntropyLoss(), trainer)
        for _ in range(3):
            step(X, y)
        out.append(_np(net.running.data()).copy())
    assert np.abs(out[0]).sum() > 0
    np.testing.assert_allclose(out[1], out[0], rtol=1e-5, atol=1e-6)


def test_compiled_step_first_call_creates_deferred_parameters() -> None:
    X, y = _batch()
    net = _net(2)
    net.hybridize()  # before any call: parameters are still deferred
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    step = d2lcompat.train_step(net, loss.SoftmaxCrossEntropyLoss(), trainer)
    first = float(ops.item(step(X, y)))
    second = float(ops.item(step(X, y)))
    assert net[0].weight.shape == (8, 5) and second < first
    assert trainer.optimizer.num_update == 2


def test_eager_step_stores_gradients_as_the_book_loop() -> None:
    X, y = _batch()
    net = _net(4)
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    d2lcompat.train_step(net, loss.SoftmaxCrossEntropyLoss(), trainer)(X, y)
    assert net[0].weight.grad() is not None
    assert ops.shape(net[0].weight.grad()) == (8, 5)


def test_fit_history_and_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the optional [plot] extra is not installed")
    X, y = _batch(32)
    net = _net(5)
    trainer = d2lcompat.Trainer(net.collect_params(), "adam", {"learning_rate": 0.05})
    hist = d2lcompat.fit(net, [(X, y)], loss.SoftmaxCrossEntropyLoss(), trainer, 3,
                         valid_iter=[(ops.to_numpy(X), ops.to_numpy(y))], verbose=False)
    assert len(hist) == 3 and hist.keys()[:2] == ["loss", "accuracy"]
    assert "val_accuracy" in hist.keys() and all(0 <= a <= 1 for a in hist["accuracy"])
    png = Path(hist.plot(tmp_path / "h.png", title="test"))
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000


def test_fit_progress_bar_prints_epochs(capsys: pytest.CaptureFixture[str]) -> None:
    X, y = _batch()
    net = _net(6)
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    d2lcompat.fit(net, [(X, y)], loss.SoftmaxCrossEntropyLoss(), trainer, 2)
    out = capsys.readouterr().out
    assert "epoch 1/2" in out and "epoch 2/2" in out and "accuracy" in out


def test_fit_in_a_log_prints_each_epoch_once(capsys: pytest.CaptureFixture[str]) -> None:
    # capsys's stdout is not a terminal, as in a log or CI: no live bar re-rendered at
    # the end, one line per epoch
    import sys

    assert not sys.stdout.isatty()
    X, y = _batch()
    net = _net(6)
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    hist = d2lcompat.fit(net, [(X, y)], loss.SoftmaxCrossEntropyLoss(), trainer, 4)
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("  ")[0] for ln in lines] == [f"epoch {k}/4" for k in range(1, 5)]
    for line, loss_value in zip(lines, hist["loss"]):
        assert f"loss {loss_value:.4f}" in line
    assert not any("━" in ln or "samples/s" in ln for ln in lines)  # no bar in a log


def test_history_plot_labels_whole_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("matplotlib", reason="the optional [plot] extra is not installed")
    import matplotlib.pyplot as plt

    h = d2lcompat.History()
    for k in range(5):
        h.append({"loss": 1.0 / (k + 1), "accuracy": 0.5 + 0.1 * k})
    figures: list[Any] = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    h.plot(tmp_path / "h.png")
    try:
        (fig,) = figures
        for ax in fig.axes:
            lo, hi = ax.get_xlim()
            shown = [t for t in ax.get_xticks() if lo <= t <= hi]
            assert shown == [1.0, 2.0, 3.0, 4.0, 5.0], shown
            assert [t.get_text() for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi] \
                == ["1", "2", "3", "4", "5"]
    finally:
        for fig in figures:
            real_close(fig)


def test_plot_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_mpl(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    h = d2lcompat.History()
    h.append({"loss": 1.0})
    with pytest.raises(d2lcompat.D2LCompatError, match=r"\[plot\]"):
        h.plot("x.png")


def test_trainer_state_refuses_a_wrong_shape(tmp_path: Path) -> None:
    X, y = _batch()
    net = _net(7)
    trainer = d2lcompat.Trainer(net.collect_params(), "adam")
    d2lcompat.train_step(net, loss.SoftmaxCrossEntropyLoss(), trainer)(X, y)
    trainer.save_states(tmp_path / "s.safetensors")
    d2lcompat.seed(7)
    wide = nn.Sequential(nn.Dense(9, activation="relu"), nn.Dense(3))
    wide.initialize()
    wide(X)
    other = d2lcompat.Trainer(wide.collect_params(), "adam")
    with pytest.raises(d2lcompat.CheckpointError, match="shape"):
        other.load_states(tmp_path / "s.safetensors")
    assert other.optimizer.num_update == 0


@pytest.mark.parametrize(
    ("name", "hp"),
    [("sgd", {"learning_rate": 0.1}), ("sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 0.01}),
     ("sgd", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
     ("adam", {"learning_rate": 0.01, "wd": 0.01}), ("adamw", {"learning_rate": 0.01}),
     ("rmsprop", {"learning_rate": 0.01}),
     ("rmsprop", {"learning_rate": 0.01, "centered": True, "momentum": 0.5, "wd": 0.01})],
)
def test_fused_update_equals_the_rule(name: str, hp: dict[str, Any]) -> None:
    # An adapter's multi-tensor kernels (Backend.fused_update) or its one compiled call
    # of the rule (Backend.fused_update_values, JAX) against the core's rule applied
    # parameter by parameter, with the learning rate changed between steps.
    X, y = _batch()
    out = []
    for fused in (True, False):
        net = _net(8)
        trainer = d2lcompat.Trainer(net.collect_params(), name, hp)
        trainer.optimizer.fused = fused
        step = d2lcompat.train_step(net, loss.SoftmaxCrossEntropyLoss(), trainer)
        for i in range(4):
            step(X, y)
            trainer.set_learning_rate(hp["learning_rate"] / (i + 2))
        out.append({k: _np(p.data()) for k, p in net.collect_params().items()})
        out.append({k: [_np(v) for v in s] for k, s in trainer.optimizer._slots.items()})
    assert out[1].keys() == out[3].keys() and all(len(v) for v in out[1].values()) == bool(
        trainer.optimizer.slot_names)
    for k in out[0]:
        np.testing.assert_allclose(out[0][k], out[2][k], rtol=1e-5, atol=1e-7, err_msg=k)
    for k in out[1]:
        for i, (a, b) in enumerate(zip(out[1][k], out[3][k], strict=True)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=f"{k} slot {i}")


@pytest.mark.parametrize(("name", "hp"), [("sgd", {"momentum": 0.9, "wd": 0.01}), ("adam", {})])
def test_fused_update_with_tied_frozen_clipped_and_held_parameters(name: str, hp: dict[str, Any]) -> None:
    # The fused update (every adapter's) against the rule parameter by parameter, through
    # Trainer.step with a tied weight (one entry, both uses' gradients), a frozen
    # parameter (grad_req 'null': unchanged) and Gluon's global-norm clip; an array read
    # from data() before a step stays readable: under JAX it keeps its values (nothing
    # is donated), elsewhere it may be the variable, updated in place (Gluon's NDArray).
    X, y = ops.ones((4, 2)), ops.zeros((4, 2))
    out = []
    for fused in (True, False):
        d2lcompat.seed(5)
        shared = nn.Dense(2, in_units=2)
        net = nn.Sequential(shared, nn.Dense(2, in_units=2), shared)
        net.initialize(init.Constant(0.5))
        frozen = net[1].bias
        frozen.grad_req = "null"
        trainer = d2lcompat.Trainer(net.collect_params(), name,
                                    {"learning_rate": 0.1, **hp}, clip_global_norm=0.05)
        trainer.optimizer.fused = fused
        before = frozen.data()
        for i in range(3):
            held = shared.weight.data()
            values = _np(held).copy()
            autograd.grad(lambda: ops.sum(loss.L2Loss()(net(X), y)),  # noqa: B023
                          dict(trainer.optimizer.trainable()))
            trainer.step(4)
            new = _np(shared.weight.data())
            assert not np.array_equal(new, values)
            if active().SUPPORTS_MUTABLE_VARIABLES:  # the variable itself, or a snapshot
                assert np.array_equal(_np(held), new) or np.array_equal(_np(held), values)
            else:  # JAX: the old array, intact (not donated)
                np.testing.assert_array_equal(_np(held), values)
            trainer.set_learning_rate(0.1 / (i + 2))
        np.testing.assert_array_equal(_np(frozen.data()), _np(before))
        out.append({k: _np(p.data()) for k, p in net.collect_params().items()})
    assert len(out[0]) == 4  # the tied weight and bias once
    for k in out[0]:
        np.testing.assert_allclose(out[0][k], out[1][k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_eager_step_follows_grad_req_changes_and_tied_parameters() -> None:
    # The eager step decides its parameter list once per structure (issue 22): a
    # grad_req change between steps is a new structure; tied weights still add.
    d2lcompat.seed(5)
    shared = nn.Dense(2, in_units=2, use_bias=False)
    net = nn.Sequential(shared, nn.Dense(2, in_units=2), shared)
    net.initialize(init.Constant(0.5))
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    step = d2lcompat.train_step(net, loss.L2Loss(), trainer)
    X, y = ops.ones((4, 2)), ops.zeros((4, 2))
    w0 = _np(shared.weight.data()).copy()

    # The tied weight's gradient against autograd.grad's (the sum of both uses).
    def objective() -> Any:
        return ops.sum(loss.L2Loss()(net(X), y))

    with autograd.train_mode():
        _, want = autograd.grad(objective, net.collect_params())
    step(X, y)
    np.testing.assert_allclose(_np(shared.weight.data()), w0 - 0.1 * _np(want["0.weight"]) / 4,
                               rtol=1e-5, atol=1e-6)
    frozen = net[1].weight
    before = _np(frozen.data()).copy()
    frozen.grad_req = "null"
    step(X, y)
    np.testing.assert_array_equal(_np(frozen.data()), before)
    assert not np.allclose(_np(shared.weight.data()), w0)
    frozen.grad_req = "write"
    step(X, y)
    assert not np.allclose(_np(frozen.data()), before)



def _three_dense(seed: int) -> nn.Sequential:
    d2lcompat.seed(seed)
    net = nn.Sequential(nn.Dense(4, in_units=3, activation="relu"), nn.Dense(2, in_units=4),
                        nn.Dense(2, in_units=2))
    net.initialize(init.Xavier())
    return net


def test_eager_step_leaves_other_parameters_without_gradient() -> None:
    # The eager step gives gradients to the trainer's trainable parameters only (issue
    # 22: Paddle's backward() path holds the others out of the graph): a frozen
    # parameter and one the trainer does not know keep their values and grad() None,
    # and the gradients are autograd.grad's step after step, grad_req 'add' summing them.
    net, twin = _three_dense(7), _three_dense(7)
    frozen, outside, added = net[0].bias, net[2].weight, net[1].weight
    frozen.grad_req = "null"  # after creation: the native variable still wants a gradient
    added.grad_req = "add"
    params = {k: p for k, p in net.collect_params().items() if p is not outside}
    trainer = d2lcompat.Trainer(params, "sgd", {"learning_rate": 0.1})
    step = d2lcompat.train_step(net, loss.L2Loss(), trainer)
    rng = np.random.default_rng(1)
    X = ops.tensor(rng.normal(size=(5, 3)).astype(np.float32))
    y = ops.tensor(rng.normal(size=(5, 2)).astype(np.float32))
    total = np.zeros((2, 4), np.float32)
    for _ in range(3):
        before = {k: _np(p.data()).copy() for k, p in net.collect_params().items()}
        for k, p in twin.collect_params().items():
            p.set_data(ops.tensor(before[k]))
        with autograd.train_mode():
            _, want = autograd.grad(lambda: ops.sum(loss.L2Loss()(twin(X), y)),
                                    twin.collect_params())
        total += _np(want["1.weight"])
        step(X, y)
        for k, p in net.collect_params().items():
            if p is frozen or p is outside:
                np.testing.assert_array_equal(_np(p.data()), before[k], err_msg=k)
                assert p.grad() is None, k
        np.testing.assert_allclose(_np(net[1].bias.grad()), _np(want["1.bias"]),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_np(added.grad()), total, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_np(added.data()), before["1.weight"] - 0.1 * total / 5,
                                   rtol=1e-5, atol=1e-6)
