"""State and structure of compiled forward passes, on this process's backend.

* a tensor attribute that a forward pass writes (the book's from-scratch BatchNorm) is
  state: recorded inside `autograd.grad`, a compiled `train_step` or a hybridized
  forward, returned as an output and written back as a concrete tensor (GL07);
* a hybridized forward may ask ``device_of``; a child added after the first call makes
  the next call trace again (and never hangs); a compiler that runs parts as Python
  says so once (GL06);
* TensorFlow's relaxed batch axis: a hybridized ``Flatten`` and a compiled training step
  take a smaller last batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import d2lcompat
from d2lcompat import autograd, init, loss, nn, ops
from d2lcompat._registry import active
from d2lcompat_conformance.scenarios import gl_hybrid


def _np(x: Any) -> np.ndarray:
    return ops.to_numpy(x)


class FakeCompiler:
    """A stand-in for ``Backend.compile``: counts builds and calls."""

    def __init__(self) -> None:
        self.compiled = 0
        self.calls = 0

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.compiled += 1

        def run(values: list[Any], *args: Any) -> Any:
            self.calls += 1
            return fn(values, *args)

        return run


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCompiler]:
    compiler = FakeCompiler()
    monkeypatch.setattr(active(), "compile", compiler)
    yield compiler


# ------------------------------------------------------------------ GL07: state
@pytest.mark.parametrize("how", ["grad", "step", "hybrid"])
def test_book_batchnorm_trains_like_numpy(how: str) -> None:
    net, want = gl_hybrid.train_book_net(how)
    gl_hybrid.check_book_net(net, want)


class Counter(nn.Block):
    """Counts its calls in a tensor attribute (written in predict mode too)."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Dense(2, in_units=3)
        self.calls = ops.zeros(())

    def forward(self, x: Any) -> Any:
        self.calls = self.calls + 1
        return self.dense(x) * self.calls


def test_hybridized_forward_returns_and_commits_attribute_writes() -> None:
    d2lcompat.seed(3)
    net = Counter()
    net.initialize()
    x = ops.ones((2, 3))
    eager = [_np(net(x)) for _ in range(3)]
    net.calls = ops.zeros(())
    net.hybridize()
    hybrid = [_np(net(x)) for _ in range(3)]
    for h, e in zip(hybrid, eager):
        np.testing.assert_allclose(h, e, rtol=1e-5)
    b = active()
    assert b.is_tensor(net.calls) and not b.is_traced(net.calls)
    assert float(ops.item(net.calls)) == 3.0


def test_attribute_writes_inside_grad_come_back_concrete() -> None:
    d2lcompat.seed(4)
    net = Counter()
    net.initialize()
    x = ops.ones((2, 3))
    for k in range(1, 3):
        autograd.grad(lambda: ops.sum(net(x)), net.collect_params())
        assert not active().is_traced(net.calls)
        assert float(ops.item(net.calls)) == float(k)


class Failing(nn.Block):
    """Writes a tensor attribute, then fails."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Dense(1, in_units=2)
        self.seen = ops.zeros((1,))

    def forward(self, x: Any) -> Any:
        self.seen = self.seen + 1
        raise ValueError("boom")


def test_a_failing_traced_forward_leaves_the_old_attribute() -> None:
    net = Failing()
    net.initialize()
    before = net.seen
    with pytest.raises(ValueError, match="boom"):
        autograd.grad(lambda: ops.sum(net(ops.ones((1, 2)))), net.collect_params())
    assert net.seen is before  # nothing traced or half-written is left behind


class LazyState(nn.Block):
    """Creates its tensor attribute in the first forward pass (after construction)."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Dense(2, in_units=3)

    def forward(self, x: Any) -> Any:
        y = self.dense(x)
        if not hasattr(self, "total"):
            self.total = ops.zeros((2,))
        self.total = self.total + ops.sum(y, axis=0)
        return y


@pytest.mark.parametrize("hybrid", [False, True])
def test_a_tensor_attribute_created_during_training_is_kept(hybrid: bool) -> None:
    def run(hybridize: bool) -> tuple[list[float], np.ndarray]:
        d2lcompat.seed(6)
        net = LazyState()
        net.initialize(init.Normal(0.5))
        if hybridize:
            net.hybridize()
        trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
        step = d2lcompat.train_step(net, loss.L2Loss(), trainer)
        X, y = ops.ones((4, 3)), ops.zeros((4, 2))
        losses = [float(ops.item(step(X, y))) for _ in range(3)]
        return losses, _np(net.total)

    losses, total = run(hybrid)
    want_losses, want_total = run(False)
    np.testing.assert_allclose(losses, want_losses, rtol=1e-5)
    np.testing.assert_allclose(total, want_total, rtol=1e-5)


# ------------------------------------------------------------ GL06: structure
def test_adding_a_child_after_the_first_call_traces_again(fake: FakeCompiler) -> None:
    net = nn.Sequential(nn.Dense(4, in_units=3)).hybridize()
    net.initialize()
    x = ops.ones((2, 3))
    net(x)
    net(x)
    assert (fake.compiled, fake.calls) == (1, 1)
    net.add(nn.Dense(2))  # deferred: the next (eager) call creates it
    out = _np(net(x))
    assert out.shape == (2, 2) and fake.compiled == 2 and fake.calls == 1
    np.testing.assert_allclose(_np(net(x)), out, rtol=1e-6)
    assert fake.calls == 2


def test_a_change_deep_in_the_tree_reaches_the_root() -> None:
    inner = nn.Sequential(nn.Dense(2, in_units=2))
    root = nn.Sequential(inner)
    before = root._version
    inner.add(nn.Dense(2, in_units=2))
    assert root._version > before
    assert len(root[0]) == 2 and [type(b).__name__ for b in root[0]] == ["Dense", "Dense"]


def test_adding_a_child_never_hangs_with_the_real_compiler() -> None:
    d2lcompat.seed(10)
    net = nn.Sequential(nn.Dense(4))
    net.initialize()
    net.hybridize()
    x = ops.random.uniform((3, 5))
    gl_hybrid.within(240, lambda: [net(x), net(x)])
    net.add(nn.Dense(2))
    out = gl_hybrid.within(240, lambda: [_np(net(x)) for _ in range(2)])
    net.hybridize(False)
    for o in out:
        np.testing.assert_allclose(o, _np(net(x)), rtol=1e-5, atol=1e-6)


def test_device_of_inside_a_hybridized_forward() -> None:
    seen: list[Any] = []

    class Where(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            self.dense = nn.Dense(2, in_units=3)

        def forward(self, x: Any) -> Any:
            seen.append(d2lcompat.device_of(x))
            return self.dense(x)

    net = Where()
    net.initialize()
    net.hybridize()
    x = ops.ones((2, 3))
    for _ in range(3):
        net(x)
    assert seen and all(d == d2lcompat.device_of(x) for d in seen)


def test_compiler_breaks_warn_once_and_the_block_keeps_compiling(
    fake: FakeCompiler, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = active()
    pending = [["a graph break: data-dependent control flow"]]
    monkeypatch.setattr(b, "REPORTS_COMPILE_BREAKS", True)
    monkeypatch.setattr(b, "compile_breaks", lambda: pending.pop() if pending else ())
    net = nn.Sequential(nn.Dense(2, in_units=3)).hybridize()
    net.initialize()
    x = ops.ones((1, 3))
    net(x)
    with pytest.warns(d2lcompat.CompileFallbackWarning, match="Sequential.*data-dependent"):
        net(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pending.append(["another break"])  # reported, but the warning is given once
        net(x)
        net(x)
    assert fake.calls == 3 and "forward" in net.__dict__


# -------------------------------------------------- smaller last batch (TensorFlow)
def test_hybridized_flatten_takes_every_batch_size() -> None:
    d2lcompat.seed(11)
    net = nn.Sequential(nn.Flatten(), nn.Dense(10))
    net.initialize()
    xs = [ops.random.uniform((n, 1, 8, 8)) for n in (4, 3, 5, 0)]
    eager = [_np(net(x)) for x in xs]
    net.hybridize()
    for x, e in zip(xs, eager):
        got = _np(net(x))
        assert got.shape == e.shape
        np.testing.assert_allclose(got, e, rtol=1e-5, atol=1e-6)


def _small_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2D(4, kernel_size=3, padding=1, activation="sigmoid"), nn.AvgPool2D(2, 2),
        nn.Flatten(), nn.Dense(8, activation="relu"), nn.Dense(3),
    )


@pytest.mark.parametrize("make_loss", [
    lambda: (loss.SoftmaxCrossEntropyLoss(), lambda n: ops.tensor(np.arange(n) % 3)),
    lambda: (loss.L2Loss(), lambda n: ops.ones((n, 3))),
], ids=["softmax_ce", "l2"])
def test_hybridized_train_step_takes_a_smaller_last_batch(make_loss: Callable[[], Any]) -> None:
    def run(hybridize: bool) -> tuple[list[float], dict[str, np.ndarray]]:
        d2lcompat.seed(12)
        net = _small_cnn()
        net.initialize(init.Xavier())
        if hybridize:
            net.hybridize()
        lossfn, labels = make_loss()
        trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
        step = d2lcompat.train_step(net, lossfn, trainer)
        rng = np.random.default_rng(0)
        losses = []
        for n in (6, 6, 4, 6, 5):  # an epoch's last, smaller batch, then the next epoch
            X = ops.tensor(rng.uniform(size=(n, 1, 6, 6)).astype(np.float32))
            losses.append(float(ops.item(step(X, labels(n)))))
        return losses, {k: _np(p.data()) for k, p in net.collect_params().items()}

    losses, params = run(True)
    want_losses, want_params = run(False)
    np.testing.assert_allclose(losses, want_losses, rtol=1e-4, atol=1e-6)
    for k, v in params.items():
        np.testing.assert_allclose(v, want_params[k], rtol=1e-4, atol=1e-5)
