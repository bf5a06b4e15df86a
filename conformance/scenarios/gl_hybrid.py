"""GL06–GL07 — Gluon fidelity of hybridized blocks and traced forwards (API.md §3, §9, §13).

GL07 trains the book's from-scratch BatchNorm (§8.5, MXNet tab: moving statistics kept as
plain tensor attributes, reassigned in ``forward``) and checks every number against the
same training steps written in NumPy (`numpy_steps`).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

import d2lcompat
from d2lcompat import autograd, init, loss, nn, ops

from .._registry import Context, scenario
from ..models import assert_close, to_np

# --------------------------------------------------------------- the book's code


def batch_norm(X: Any, gamma: Any, beta: Any, moving_mean: Any, moving_var: Any,
               eps: float, momentum: float) -> tuple[Any, Any, Any]:
    """§8.5's ``batch_norm`` (MXNet tab), with ``ops`` for ``np``."""
    if not autograd.is_training():
        X_hat = (X - moving_mean) / ops.sqrt(moving_var + eps)
    else:
        assert len(X.shape) in (2, 4)
        if len(X.shape) == 2:
            mean = ops.mean(X, axis=0)
            var = ops.mean((X - mean) ** 2, axis=0)
        else:
            mean = ops.mean(X, axis=(0, 2, 3), keepdims=True)
            var = ops.mean((X - mean) ** 2, axis=(0, 2, 3), keepdims=True)
        X_hat = (X - mean) / ops.sqrt(var + eps)
        moving_mean = (1.0 - momentum) * moving_mean + momentum * mean
        moving_var = (1.0 - momentum) * moving_var + momentum * var
    Y = gamma * X_hat + beta
    return Y, moving_mean, moving_var


class BatchNorm(nn.Block):
    """§8.5's ``BatchNorm`` (MXNet tab) line for line: ``moving_mean`` and ``moving_var``
    are plain tensor attributes that ``forward`` moves and reassigns."""

    def __init__(self, num_features: int, num_dims: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = self.params.get("gamma", shape=shape, init=init.One())
        self.beta = self.params.get("beta", shape=shape, init=init.Zero())
        self.moving_mean = ops.zeros(shape)
        self.moving_var = ops.ones(shape)

    def forward(self, X: Any) -> Any:
        # Gluon's `self.moving_mean.ctx != X.ctx`.
        if d2lcompat.device_of(self.moving_mean) != d2lcompat.device_of(X):
            self.moving_mean = d2lcompat.to_device(self.moving_mean, d2lcompat.device_of(X))
            self.moving_var = d2lcompat.to_device(self.moving_var, d2lcompat.device_of(X))
        Y, self.moving_mean, self.moving_var = batch_norm(
            X, self.gamma.data(), self.beta.data(), self.moving_mean,
            self.moving_var, eps=1e-12, momentum=0.1)
        return Y


EPS, MOMENTUM, LR = 1e-12, 0.1, 0.5


def book_net() -> nn.Sequential:
    """The from-scratch BatchNorm on the raw features, then a Dense layer."""
    return nn.Sequential(BatchNorm(3, num_dims=2), nn.Dense(2, in_units=3))


def batches() -> list[tuple[np.ndarray, np.ndarray]]:
    """Three batches, the last one smaller (the end of an epoch)."""
    rng = np.random.default_rng(7)
    return [
        (rng.normal(1.0, 2.0, (n, 3)).astype(np.float32), rng.normal(size=(n, 2)).astype(np.float32))
        for n in (6, 6, 4)
    ]


def numpy_steps(W: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """`book_net`'s training under ``L2Loss`` and SGD (gradient of the summed loss over
    the batch size, Gluon's ``trainer.step(batch_size)``), in float64 NumPy."""
    gamma, beta = np.ones((1, 3)), np.zeros((1, 3))
    mm, mv = np.zeros((1, 3)), np.ones((1, 3))
    W, b = W.astype(np.float64), b.astype(np.float64)
    for X, y in batches():
        X, y = X.astype(np.float64), y.astype(np.float64)
        n = X.shape[0]
        mean = X.mean(axis=0)
        var = ((X - mean) ** 2).mean(axis=0)
        xhat = (X - mean) / np.sqrt(var + EPS)
        h = gamma * xhat + beta
        z = h @ W.T + b
        dz = (z - y) / z.shape[1]  # L2Loss: mean over the features of (z - y)^2 / 2
        dW, db = dz.T @ h, dz.sum(axis=0)
        dh = dz @ W
        dgamma, dbeta = (dh * xhat).sum(axis=0, keepdims=True), dh.sum(axis=0, keepdims=True)
        W, b = W - LR * dW / n, b - LR * db / n
        gamma, beta = gamma - LR * dgamma / n, beta - LR * dbeta / n
        mm = (1 - MOMENTUM) * mm + MOMENTUM * mean
        mv = (1 - MOMENTUM) * mv + MOMENTUM * var
    return {"0.gamma": gamma, "0.beta": beta, "1.weight": W, "1.bias": b,
            "moving_mean": mm, "moving_var": mv}


def train_book_net(how: str) -> tuple[nn.Sequential, dict[str, np.ndarray]]:
    """Train `book_net` on `batches` with ``how``: ``'grad'`` (``autograd.grad`` and
    ``Trainer.step``, the book's loop), ``'step'`` (eager `train_step`) or ``'hybrid'``
    (`train_step` of the hybridized net). Returns the net and the NumPy reference."""
    d2lcompat.seed(5)
    net = book_net()
    net.initialize(init.Normal(0.5))
    want = numpy_steps(to_np(net[1].weight.data()), to_np(net[1].bias.data()))
    l2 = loss.L2Loss()
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": LR})
    if how == "hybrid":
        net.hybridize()
        net(ops.tensor(batches()[0][0]))  # a predict-mode call first: traced before training
    step = d2lcompat.train_step(net, l2, trainer)
    for Xh, yh in batches():
        X, y = ops.tensor(Xh), ops.tensor(yh)
        if how == "grad":
            with autograd.record():
                autograd.grad(lambda X=X, y=y: ops.sum(l2(net(X), y)), net.collect_params())
            trainer.step(Xh.shape[0])
        else:
            step(X, y)
    return net, want


def check_book_net(net: nn.Sequential, want: dict[str, np.ndarray]) -> None:
    """Every parameter and moving statistic equals the NumPy reference, the statistics are
    concrete tensors of the backend, and predict mode reads their new values."""
    b = d2lcompat._registry.active()
    bn = net[0]
    for name, p in net.collect_params().items():
        assert_close(p.data(), want[name], rtol=1e-4, atol=1e-5)
    for name in ("moving_mean", "moving_var"):
        value = getattr(bn, name)
        assert b.is_tensor(value) and not b.is_traced(value), type(value)
        assert_close(value, want[name], rtol=1e-4, atol=1e-6)
    X = batches()[0][0]
    h = (want["0.gamma"] * (X - want["moving_mean"]) / np.sqrt(want["moving_var"] + EPS)
         + want["0.beta"])
    assert_close(net(ops.tensor(X)), h @ want["1.weight"].T + want["1.bias"], rtol=1e-4, atol=1e-5)


@scenario("GL07", "the book's from-scratch BatchNorm (tensor attributes) trains under grad and train_step, hybridized too")
def gl07(ctx: Context) -> None:
    for how in ("grad", "step", "hybrid"):
        net, want = train_book_net(how)
        check_book_net(net, want)


# ------------------------------------------------------------------------ GL06


class OnInputDevice(nn.Block):
    """A forward that asks for devices (Gluon's ``x.ctx``), as the book's code does."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Dense(3, in_units=4)

    def forward(self, x: Any) -> Any:
        here = d2lcompat.device_of(self.dense.weight.data())
        if d2lcompat.device_of(x) != here:
            x = d2lcompat.to_device(x, here)
        return self.dense(x)


class Branchy(nn.Block):
    """Python control flow on a tensor's value: some compilers trace it, some break the
    graph (Paddle's SOT), some refuse it (``jax.jit``)."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Dense(4, in_units=3)

    def forward(self, x: Any) -> Any:
        y = self.dense(x)
        if ops.sum(y) > 0:
            return y * 2
        return -y


def within(seconds: float, fn: Callable[[], Any]) -> Any:
    """``fn()``, or an AssertionError when it has not returned after ``seconds`` (a hang;
    the stuck daemon thread is left behind)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["out"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["err"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise AssertionError(f"did not return within {seconds} s (a hang)")
    if "err" in box:
        raise box["err"]
    return box.get("out")


@scenario("GL06", "a hybridized block calls device_of, grows a child after its first call, warns once on a compiler fallback; none hangs")
def gl06(ctx: Context) -> None:
    # device_of inside a compiled forward: the device the computation runs on.
    d2lcompat.seed(8)
    net = OnInputDevice()
    net.initialize()
    X = ops.random.uniform((2, 4))
    eager = to_np(net(X))
    net.hybridize()
    for _ in range(3):
        assert_close(net(X), eager, rtol=1e-5)

    # A child added after the first call: the next call re-traces with it.
    def grow() -> None:
        seq = nn.Sequential(nn.Dense(4, activation="relu"))
        seq.initialize()
        seq.hybridize()
        x = ops.random.uniform((3, 5))
        seq(x)
        seq(x)
        seq.add(nn.Dense(2))  # deferred: created by the next call, outside any trace
        out = [to_np(seq(x)) for _ in range(2)]
        assert out[0].shape == (3, 2)
        seq.hybridize(False)
        for o in out:
            assert_close(o, seq(x), rtol=1e-5)

    within(240, grow)

    # Value-dependent Python: same numbers, at most one warning (naming the block), and the
    # block stays hybridized where the compiler keeps compiling the rest.
    d2lcompat.seed(9)
    br = Branchy()
    br.initialize()
    # From host data: a native operator outside a forward (`-x`) runs on the framework's
    # default device, not d2lcompat's (TensorFlow with several devices).
    Xp, Xn = ops.tensor(np.ones((2, 3), np.float32)), ops.tensor(-np.ones((2, 3), np.float32))
    want = [to_np(br(Xp)), to_np(br(Xn))]
    br.hybridize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            for x, w in zip((Xp, Xn), want):
                assert_close(within(240, lambda x=x: br(x)), w, rtol=1e-5)
    ours = [w for w in caught if issubclass(w.category, d2lcompat.D2LCompatWarning)]
    assert len(ours) <= 1, [str(w.message) for w in ours]
    for w in ours:
        assert issubclass(w.category, d2lcompat.CompileFallbackWarning), w.category
        assert "Branchy" in str(w.message), str(w.message)
