"""OP — optimizers and training (API §15): formulas, Trainer, compiled step, states, fit."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

import d2lcompat
from d2lcompat import autograd, init, loss, nn, ops, optim

from .._registry import Context, Unsupported, scenario
from ..models import to_np


def _numpy_step(kind: str, hp: dict[str, Any], w: np.ndarray, g: np.ndarray,
                st: dict[str, np.ndarray], t: int) -> np.ndarray:
    """The documented update rules (docs/training.md), in float64."""
    lr, wd = hp.get("lr", 0.01), hp.get("weight_decay", 0.0)
    if kind == "sgd":
        g = g + wd * w
        mu = hp.get("momentum", 0.0)
        if mu:
            st["v"] = mu * st.get("v", 0 * w) + g
            g = g + mu * st["v"] if hp.get("nesterov") else st["v"]
        return w - lr * g
    if kind in ("adam", "adamw"):
        b1, b2, eps = hp.get("beta1", 0.9), hp.get("beta2", 0.999), hp.get("eps", 1e-8)
        if kind == "adamw":
            w = w * (1 - lr * wd)
        else:
            g = g + wd * w
        st["m"] = b1 * st.get("m", 0 * w) + (1 - b1) * g
        st["v"] = b2 * st.get("v", 0 * w) + (1 - b2) * g * g
        mhat = st["m"] / (1 - b1**t)
        vhat = st["v"] / (1 - b2**t)
        return w - lr * mhat / (np.sqrt(vhat) + eps)
    if kind == "rmsprop":
        a, eps, mu = hp.get("alpha", 0.99), hp.get("eps", 1e-8), hp.get("momentum", 0.0)
        g = g + wd * w
        st["sq"] = a * st.get("sq", 0 * w) + (1 - a) * g * g
        if hp.get("centered"):
            st["ga"] = a * st.get("ga", 0 * w) + (1 - a) * g
            denom = np.sqrt(st["sq"] - st["ga"] ** 2) + eps
        else:
            denom = np.sqrt(st["sq"]) + eps
        if mu:
            st["b"] = mu * st.get("b", 0 * w) + g / denom
            return w - lr * st["b"]
        return w - lr * g / denom
    raise AssertionError(kind)


CASES: list[tuple[str, type[optim.Optimizer], dict[str, Any]]] = [
    ("sgd", optim.SGD, {"lr": 0.1}),
    ("sgd", optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    ("sgd", optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("adam", optim.Adam, {"lr": 0.01}),
    ("adam", optim.Adam, {"lr": 0.01, "weight_decay": 0.1, "beta1": 0.8, "beta2": 0.99}),
    ("adamw", optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
    ("rmsprop", optim.RMSProp, {"lr": 0.01}),
    ("rmsprop", optim.RMSProp, {"lr": 0.01, "momentum": 0.5, "centered": True, "weight_decay": 0.1}),
]


@scenario("OP01", "one step of SGD (momentum, nesterov, wd), Adam, AdamW, RMSProp = the formula")
def op01(ctx: Context) -> None:
    rng = np.random.default_rng(501)
    for kind, cls, hp in CASES:
        w0 = rng.normal(size=(3, 4)).astype(np.float32)
        p = d2lcompat.Parameter((3, 4), init=init.Constant(0.0))
        p.initialize()
        p.set_data(w0)
        opt = cls([p], **hp)
        w, st = w0.astype(np.float64), {}
        for t in (1, 2, 3):  # three steps: momentum and bias corrections at t > 1
            g = rng.normal(size=(3, 4)).astype(np.float32)
            opt.step({p.name: ops.tensor(g)})
            w = _numpy_step(kind, hp, w, g.astype(np.float64), st, t)
            np.testing.assert_allclose(to_np(p.data()), w, rtol=2e-5, atol=1e-6,
                                       err_msg=f"{cls.__name__}({hp}) step {t}")
        assert opt.num_update == 3


@scenario("OP02", "Trainer.step(batch_size) scales by 1/batch_size; tied parameters update once")
def op02(ctx: Context) -> None:
    lin = nn.Dense(1, in_units=2, use_bias=False)
    lin.initialize(init.Constant(1.0))
    net = nn.Sequential(lin, nn.Dense(2, in_units=1, use_bias=False), lin)
    net[1].initialize(init.Constant(1.0))
    params = net.collect_params()
    assert list(params) == ["0.weight", "1.weight"], list(params)
    trainer = d2lcompat.Trainer(params, "sgd", {"learning_rate": 0.1})
    X = ops.ones((4, 2))
    _, grads = autograd.grad(lambda: ops.sum(net(X)), params)
    g0 = to_np(grads["0.weight"]).copy()
    g1 = to_np(grads["1.weight"]).copy()
    # y = w0 · (W1 · (w0 · x)); each of 4 samples: x = (1, 1), w0 = (1, 1), W1 = (1, 1)ᵀ
    np.testing.assert_allclose(g0, [[16.0, 16.0]])  # both uses of the tied weight add
    trainer.step(batch_size=4)
    np.testing.assert_allclose(to_np(lin.weight.data()), 1.0 - 0.1 * g0 / 4, rtol=1e-6)
    np.testing.assert_allclose(to_np(net[1].weight.data()), 1.0 - 0.1 * g1 / 4, rtol=1e-6)
    assert to_np(net[0].weight.data()).tolist() == to_np(net[2].weight.data()).tolist()


def _mlp_data(seed: int = 7) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(16, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=16)
    return ops.tensor(X), ops.tensor(y)


def _mlp(seed: int) -> nn.Sequential:
    d2lcompat.seed(seed)
    net = nn.Sequential(nn.Dense(12, activation="relu"), nn.Dense(3))
    net.initialize(init.Xavier())
    return net


def _train(hybrid: bool, opt: str, hp: dict[str, Any], steps: int = 5) -> dict[str, np.ndarray]:
    X, y = _mlp_data()
    net = _mlp(77)
    net(X)
    if hybrid:
        net.hybridize()
    trainer = d2lcompat.Trainer(net.collect_params(), opt, hp)
    step = d2lcompat.train_step(net, loss.SoftmaxCrossEntropyLoss(), trainer)
    for _ in range(steps):
        step(X, y)
    return {k: to_np(p.data()).copy() for k, p in net.collect_params().items()}


@scenario("OP03", "train_step after hybridize() = the eager loop after 5 steps (within 1e-5)")
def op03(ctx: Context) -> None:
    for opt, hp in (("sgd", {"learning_rate": 0.1, "momentum": 0.9}), ("adam", {"learning_rate": 0.01})):
        eager = _train(False, opt, hp)
        compiled = _train(True, opt, hp)
        # and the eager train_step is the book's loop: grad + trainer.step(batch_size)
        X, y = _mlp_data()
        net = _mlp(77)
        trainer = d2lcompat.Trainer(net.collect_params(), opt, hp)
        ce = loss.SoftmaxCrossEntropyLoss()
        for _ in range(5):
            with autograd.record():
                autograd.grad(lambda: ops.sum(ce(net(X), y)), net.collect_params())  # noqa: B023
            trainer.step(16)
        for k, v in eager.items():
            np.testing.assert_allclose(compiled[k], v, rtol=1e-5, atol=1e-5, err_msg=f"{opt} {k}")
            np.testing.assert_allclose(to_np(net.collect_params()[k].data()), v, rtol=1e-5,
                                       atol=1e-6, err_msg=f"{opt} {k} (book loop)")
        start = _mlp(77)
        start(X)
        assert not np.allclose(eager["0.weight"], to_np(start[0].weight.data())), "no training"


@scenario("OP04", "optimizer state save/load: 3 steps, save, load, 3 more = 6 straight")
def op04(ctx: Context) -> None:
    X, y = _mlp_data()
    ce = loss.SoftmaxCrossEntropyLoss()
    for opt, hp in (("adam", {"learning_rate": 0.01}), ("sgd", {"learning_rate": 0.1, "momentum": 0.9})):
        straight = _mlp(91)
        tr = d2lcompat.Trainer(straight.collect_params(), opt, hp)
        step = d2lcompat.train_step(straight, ce, tr)
        for _ in range(6):
            step(X, y)
        first = _mlp(91)
        tr1 = d2lcompat.Trainer(first.collect_params(), opt, hp)
        step1 = d2lcompat.train_step(first, ce, tr1)
        for _ in range(3):
            step1(X, y)
        first.save_parameters(ctx.tmp / "net.safetensors")
        tr1.save_states(ctx.tmp / "trainer.safetensors")
        second = _mlp(5)  # other initial values: everything must come from the files
        second(X)
        second.load_parameters(ctx.tmp / "net.safetensors")
        tr2 = d2lcompat.Trainer(second.collect_params(), opt, {**hp, "learning_rate": 0.5})
        tr2.load_states(ctx.tmp / "trainer.safetensors")
        assert tr2.optimizer.num_update == 3
        assert abs(tr2.learning_rate - hp["learning_rate"]) < 1e-8, tr2.learning_rate
        step2 = d2lcompat.train_step(second, ce, tr2)
        for _ in range(3):
            step2(X, y)
        for k, p in straight.collect_params().items():
            np.testing.assert_allclose(to_np(second.collect_params()[k].data()), to_np(p.data()),
                                       rtol=1e-6, atol=1e-7, err_msg=f"{opt} {k}")
    # a state for other parameters is refused whole, changing nothing
    other = nn.Dense(4, in_units=3)
    other.initialize()
    tr3 = d2lcompat.Trainer(other.collect_params(), "adam")
    try:
        tr3.load_states(ctx.tmp / "trainer.safetensors")
    except d2lcompat.CheckpointError as exc:
        assert "missing" in str(exc) and "0.weight" in str(exc), str(exc)
    else:
        raise AssertionError("loading another model's trainer state did not raise")
    assert tr3.optimizer.num_update == 0


@scenario("OP05", "fit reaches 100% training accuracy on a separable problem; history; plot PNG")
def op05(ctx: Context) -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(128, 2)).astype(np.float32)
    y = (X[:, 0] + 2 * X[:, 1] > 0).astype(np.int64)
    X = X + np.where(y[:, None] == 1, 0.5, -0.5).astype(np.float32) * np.array([1, 2], np.float32)
    batches = [(X[i : i + 32], y[i : i + 32]) for i in range(0, 128, 32)]
    d2lcompat.seed(5)
    net = nn.Sequential(nn.Dense(8, activation="relu"), nn.Dense(2))
    net.initialize(init.Xavier())
    net.hybridize()
    trainer = d2lcompat.Trainer(net.collect_params(), "adam", {"learning_rate": 0.05})
    hist = d2lcompat.fit(net, batches, loss.SoftmaxCrossEntropyLoss(), trainer, epochs=12,
                         valid_iter=batches[:1], verbose=False)
    assert len(hist) == 12 and len(hist["loss"]) == 12, hist
    assert hist["accuracy"][-1] == 1.0, hist["accuracy"]
    assert hist["loss"][-1] < hist["loss"][0], hist["loss"]
    assert set(hist.keys()) >= {"loss", "accuracy", "val_loss", "val_accuracy", "samples_per_s"}
    if importlib.util.find_spec("matplotlib") is None:
        raise Unsupported("matplotlib is not installed (the optional extra [plot]); the "
                          "training part of OP05 passed, history.plot needs it")
    png = hist.plot(ctx.tmp / "history.png")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", "not a PNG"
