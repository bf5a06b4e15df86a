"""The eager training step's loss sum (`Loss._summed`, `Backend.squared_difference_sum`)
and its differentiation of the parameters' own variables (torch's
`Backend.value_and_grad_step`), on this process's backend: values and gradients
against NumPy, the general path where the shortcut does not apply, and the step's
results against the per-sample loop it replaces."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import d2lcompat
from d2lcompat import autograd, init, loss, nn, ops
from d2lcompat._backend import Backend
from d2lcompat._registry import active


def _np(x: Any) -> np.ndarray:
    return np.asarray(ops.to_numpy(x), dtype=np.float64)


def _l2_sum_np(p: np.ndarray, y: np.ndarray, weight: float | None) -> float:
    """Σ over samples of the mean over the other axes of 0.5·w·(p − y)², in float64."""
    d2 = 0.5 * (1.0 if weight is None else weight) * (p.astype(np.float64) - y) ** 2
    return float(d2.reshape(d2.shape[0], -1).mean(axis=1).sum())


# ------------------------------------------------------------- the hook itself
@pytest.mark.parametrize("generic", [False, True], ids=["adapter", "generic"])
def test_squared_difference_sum_equals_numpy_and_its_gradient(generic: bool) -> None:
    b = active()
    hook = Backend.squared_difference_sum.__get__(b) if generic else b.squared_difference_sum
    rng = np.random.default_rng(11)
    a_np = rng.normal(size=(3, 4)).astype(np.float32)
    c_np = rng.normal(size=(3, 4)).astype(np.float32)
    d = a_np.astype(np.float64) - c_np
    got = hook(ops.tensor(a_np), ops.tensor(c_np))
    assert tuple(ops.shape(got)) == ()
    np.testing.assert_allclose(float(ops.item(got)), float((d * d).sum()), rtol=1e-6)
    a = d2lcompat.Parameter((3, 4), init=init.Constant(0.0))
    c = d2lcompat.Parameter((3, 4), init=init.Constant(0.0))
    a.initialize()
    c.initialize()
    a.set_data(ops.tensor(a_np))
    c.set_data(ops.tensor(c_np))
    _, g = autograd.grad(lambda: hook(a.data(), c.data()), {"a": a, "c": c})
    np.testing.assert_allclose(_np(g["a"]), 2 * d, rtol=1e-6)
    np.testing.assert_allclose(_np(g["c"]), -2 * d, rtol=1e-6)


# ------------------------------------------------------------- L2Loss's sum
@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 4)])
@pytest.mark.parametrize("weight", [None, 2.5])
def test_l2_summed_is_the_sum_of_the_per_sample_losses(shape: tuple[int, ...], weight: float | None) -> None:
    rng = np.random.default_rng(12)
    p = rng.normal(size=shape).astype(np.float32)
    y = rng.normal(size=shape).astype(np.float32)
    l2 = loss.L2Loss(weight=weight)
    summed = l2._summed()
    assert summed is not None
    want = _l2_sum_np(p, y, weight)
    np.testing.assert_allclose(float(ops.item(summed(ops.tensor(p), ops.tensor(y)))), want, rtol=1e-5)
    np.testing.assert_allclose(float(ops.item(ops.sum(l2(ops.tensor(p), ops.tensor(y))))), want, rtol=1e-5)
    # Its gradient in the prediction: w·(p − y) / k, k the non-batch size.
    k = int(np.prod(shape[1:]))
    w = 1.0 if weight is None else weight
    x = d2lcompat.Parameter(shape, init=init.Constant(0.0))
    x.initialize()
    x.set_data(ops.tensor(p))
    _, g = autograd.grad(lambda: summed(x.data(), ops.tensor(y)), {"x": x})
    np.testing.assert_allclose(_np(g["x"]), w * (p.astype(np.float64) - y) / k, rtol=1e-5, atol=1e-7)


def test_l2_summed_takes_the_general_path_for_other_labels() -> None:
    rng = np.random.default_rng(13)
    p = rng.normal(size=(4, 1)).astype(np.float32)
    summed = loss.L2Loss()._summed()
    assert summed is not None
    # A label of shape (N,) against (N, 1) predictions (reshaped), integer labels
    # (promoted): the same number as the per-sample loss summed.
    for label in (ops.tensor(p[:, 0] + 1.0), ops.tensor(np.array([0, 1, 2, 3]))):
        lab = np.asarray(ops.to_numpy(label))
        want = _l2_sum_np(p, lab.reshape(4, 1).astype(np.float64), None)
        np.testing.assert_allclose(float(ops.item(summed(ops.tensor(p), label))), want, rtol=1e-5)
    with pytest.raises(d2lcompat.D2LCompatError):  # ShapeError: sizes differ
        summed(ops.tensor(p), ops.tensor(np.zeros(3, np.float32)))


class _Cubed(loss.L2Loss):
    """An L2Loss subclass with its own element-wise loss: no shortcut may skip it."""

    def elementwise(self, pred: Any, label: Any) -> Any:
        d = pred - self._like(pred, label)
        return d * d * d


class _Twice(loss.L2Loss):
    def forward(self, pred: Any, label: Any, sample_weight: Any = None) -> Any:
        return 2.0 * super().forward(pred, label, sample_weight)


def test_subclasses_with_their_own_code_get_no_shortcut() -> None:
    assert _Cubed()._summed() is None
    assert _Twice()._summed() is None
    assert loss.L1Loss()._summed() is None


# ------------------------------------------------------------- the step
def _net_and_data(seed: int = 0) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(3, 5)).astype(np.float32)
    bias = rng.normal(size=(3,)).astype(np.float32)
    X = rng.normal(size=(4, 5)).astype(np.float32)
    Y = rng.normal(size=(4, 3)).astype(np.float32)
    net = nn.Dense(3, in_units=5)
    net.initialize()
    net.weight.set_data(ops.tensor(w))
    net.bias.set_data(ops.tensor(bias))
    return net, w, bias, X, Y


@pytest.mark.parametrize("loss_kind", ["l2", "weighted", "cubed"])
def test_eager_step_equals_numpy_sgd(loss_kind: str) -> None:
    net, w, bias, X, Y = _net_and_data()
    lr = 0.1
    l2 = {"l2": loss.L2Loss(), "weighted": loss.L2Loss(weight=3.0), "cubed": _Cubed()}[loss_kind]
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": lr})
    step = d2lcompat.train_step(net, l2, trainer)
    w64, b64, x64, y64 = (a.astype(np.float64) for a in (w, bias, X, Y))
    for _ in range(3):
        d = x64 @ w64.T + b64 - y64
        if loss_kind == "cubed":
            per_sample, dd = (d ** 3).mean(axis=1), 3 * d ** 2 / 3
        else:
            c = 3.0 if loss_kind == "weighted" else 1.0
            per_sample, dd = (0.5 * c * d ** 2).mean(axis=1), c * d / 3
        gw, gb = dd.T @ x64, dd.sum(axis=0)  # gradients of the summed loss
        mean = step(ops.tensor(X), ops.tensor(Y))
        np.testing.assert_allclose(float(ops.item(mean)), per_sample.mean(), rtol=1e-5)
        np.testing.assert_allclose(_np(net.weight.grad()), gw, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(_np(net.bias.grad()), gb, rtol=1e-4, atol=1e-6)
        w64, b64 = w64 - lr * gw / 4, b64 - lr * gb / 4
        np.testing.assert_allclose(_np(net.weight.data()), w64, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(_np(net.bias.data()), b64, rtol=1e-4, atol=1e-6)


def test_eager_step_leaves_no_framework_gradient_and_tied_weights_sum() -> None:
    b = active()
    d2lcompat.seed(0)
    shared = nn.Dense(4, in_units=4, use_bias=False)
    net = nn.Sequential(shared, shared)
    net.initialize(init.Xavier())
    w0 = _np(shared.weight.data())
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2, 4)).astype(np.float32)
    Y = rng.normal(size=(2, 4)).astype(np.float32)
    before = b.native_grad(shared.weight._var) is None
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.05})
    step = d2lcompat.train_step(net, loss.L2Loss(), trainer)
    step(ops.tensor(X), ops.tensor(Y))
    if before:  # the step differentiates without accumulating into the framework's .grad
        assert b.native_grad(shared.weight._var) is None
    # y = X W W^T... here y = (X Wᵀ) Wᵀ: the gradient of both uses, summed.
    x, y, w = X.astype(np.float64), Y.astype(np.float64), w0.astype(np.float64)
    h = x @ w.T
    d = (h @ w.T - y) / 4  # d/dout of Σ_i mean_j 0.5·d²
    gw = d.T @ h + (d @ w).T @ x
    np.testing.assert_allclose(_np(shared.weight.grad()), gw, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(_np(shared.weight.data()), w - 0.05 * gw / 2, rtol=1e-4, atol=1e-6)
