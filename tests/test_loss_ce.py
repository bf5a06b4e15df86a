"""Sparse softmax cross-entropy (`SoftmaxCrossEntropyLoss`, `Backend.sparse_softmax_cross_entropy`)
on this process's backend, against NumPy's one-hot formula ``-Σ_c one_hot_c · log_softmax_c``.

The adapter's fused kernel (``F.cross_entropy``, ``tf.nn.sparse_softmax_cross_entropy_with_logits``,
Paddle's ``cross_entropy_with_softmax``, JAX's gather) and the core's generic composition
(`Backend.sparse_softmax_cross_entropy` of the base class) must both equal it, for any class
axis, label dtype and layout, eagerly, inside the framework's compiler and in the gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import d2lcompat
from d2lcompat import autograd, loss, ops
from d2lcompat._backend import Backend
from d2lcompat._registry import active

EXAMPLES = 30
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
    suppress_health_check=list(HealthCheck),
)
LABEL_DTYPES = [d for d in ("int32", "int64", "float32", "uint8") if d in active().SUPPORTED_DTYPES]
FLOAT = "float64" if "float64" in active().SUPPORTED_DTYPES else "float32"


def _log_softmax(p: np.ndarray, axis: int) -> np.ndarray:
    z = p - p.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _one_hot(label: np.ndarray, classes: int, axis: int) -> np.ndarray:
    """``label`` (class indices) as a one-hot array with the classes along ``axis``."""
    hot = (label.astype(np.int64)[..., None] == np.arange(classes)).astype(np.float64)
    return np.moveaxis(hot, -1, axis)


def _reference(p: np.ndarray, label: np.ndarray, axis: int, from_logits: bool) -> np.ndarray:
    """Gluon's element-wise sparse cross-entropy, the one-hot formula in float64."""
    p = p.astype(np.float64)
    logp = p if from_logits else _log_softmax(p, axis)
    return -(logp * _one_hot(label, p.shape[axis], axis)).sum(axis=axis)


@st.composite
def cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    axis = draw(st.integers(0, len(shape) - 1))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    p = rng.normal(0, 3, shape).astype(np.float32)
    label = rng.integers(0, shape[axis], shape[:axis] + shape[axis + 1 :])
    return p, label, axis


@pytest.mark.parametrize("generic", [False, True], ids=["adapter", "generic"])
@SETTINGS
@given(case=cases(), dtype=st.sampled_from(LABEL_DTYPES), from_logits=st.booleans())
def test_hook_equals_the_one_hot_formula(
    generic: bool, case: tuple[np.ndarray, np.ndarray, int], dtype: str, from_logits: bool
) -> None:
    p, label, axis = case
    b = active()
    hook = Backend.sparse_softmax_cross_entropy.__get__(b) if generic else b.sparse_softmax_cross_entropy
    out = hook(ops.tensor(p), ops.tensor(label, dtype=dtype), axis, from_logits)
    assert ops.dtype(out) == "float32"
    got = ops.to_numpy(out)
    want = _reference(p, label, axis, from_logits)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@SETTINGS
@given(
    case=cases(), dtype=st.sampled_from(LABEL_DTYPES), from_logits=st.booleans(),
    trailing_one=st.booleans(), sample_weight=st.booleans(), weight=st.sampled_from([None, 0.5]),
)
def test_loss_equals_gluon_formula(
    case: tuple[np.ndarray, np.ndarray, int], dtype: str, from_logits: bool,
    trailing_one: bool, sample_weight: bool, weight: float | None,
) -> None:
    p, label, axis = case
    ce = loss.SoftmaxCrossEntropyLoss(axis=axis - p.ndim if axis % 2 else axis,
                                      from_logits=from_logits, weight=weight)
    lab = label[..., None] if trailing_one else label
    elem = _reference(p, label, axis, from_logits)
    sw = None
    if sample_weight:
        sw = np.random.default_rng(3).uniform(0.5, 2.0, elem.shape).astype(np.float32)
        elem = elem * sw
    if weight is not None:
        elem = elem * weight
    want = elem.reshape(elem.shape[:1] + (-1,)).mean(axis=1) if elem.ndim > 1 else elem
    got = ops.to_numpy(ce(ops.tensor(p), ops.tensor(lab, dtype=dtype),
                          None if sw is None else ops.tensor(sw)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gradient_equals_softmax_minus_one_hot_and_finite_differences(
    axis: int, from_logits: bool
) -> None:
    rng = np.random.default_rng(7)
    p = rng.normal(0, 2, (3, 4, 5))
    ax = axis % 3
    label = rng.integers(0, p.shape[ax], p.shape[:ax] + p.shape[ax + 1 :])
    ce = loss.SoftmaxCrossEntropyLoss(axis=axis, from_logits=from_logits)
    x = d2lcompat.Parameter(p.shape, dtype=FLOAT, init=d2lcompat.init.Constant(0.0))
    x.initialize()
    x.set_data(ops.tensor(p, dtype=FLOAT))
    y = ops.tensor(label)
    _, g = autograd.grad(lambda: ops.sum(ce(x.data(), y)), [x])
    got = ops.to_numpy(next(iter(g.values()))).astype(np.float64)
    hot = _one_hot(label, p.shape[ax], ax)
    want = -hot if from_logits else np.exp(_log_softmax(p, ax)) - hot
    # Each sample's value is the mean over its element-wise values (label's axes but the first).
    want = want / np.prod(label.shape[1:])
    tol = 1e-9 if FLOAT == "float64" else 1e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)

    def f(q: np.ndarray) -> float:  # the NumPy loss, for central differences
        e = _reference(q, label, ax, from_logits)
        return float(e.reshape(e.shape[0], -1).mean(axis=1).sum())

    eps = 1e-5
    for idx in [(0, 0, 0), (1, 2, 3), (2, 3, 4)]:
        q1, q2 = p.copy(), p.copy()
        q1[idx] += eps
        q2[idx] -= eps
        assert abs((f(q1) - f(q2)) / (2 * eps) - got[idx]) < 1e-4, idx


def test_from_logits_reads_only_the_labels_class() -> None:
    # Gluon's pick: -inf log-probabilities in the other classes do not make it NaN.
    logp = np.array([[0.0, -np.inf, -np.inf], [-np.inf, np.log(0.25), np.log(0.75)]], np.float32)
    ce = loss.SoftmaxCrossEntropyLoss(from_logits=True)
    got = ops.to_numpy(ce(ops.tensor(logp), ops.tensor(np.array([0, 2]))))
    np.testing.assert_allclose(got, [0.0, -np.log(0.75)], rtol=1e-6)
    b = active()
    generic = Backend.sparse_softmax_cross_entropy(b, ops.tensor(logp), ops.tensor(np.array([0, 2])),
                                                  1, True)
    np.testing.assert_allclose(ops.to_numpy(generic), [0.0, -np.log(0.75)], rtol=1e-6)


class _LossBlock(d2lcompat.nn.Block):
    """A block whose forward is the loss of a parameter's logits: compiled by hybridize."""

    def __init__(self, shape: tuple[int, ...], axis: int, from_logits: bool) -> None:
        super().__init__()
        self.logits = self.params.get("logits", shape=shape)
        self.ce = loss.SoftmaxCrossEntropyLoss(axis=axis, from_logits=from_logits)

    def forward(self, label: Any) -> Any:
        return self.ce(self.logits.data(), label)


@pytest.mark.parametrize("dtype", ["int32", "int64", "float32"])
@pytest.mark.parametrize(("axis", "from_logits"), [(-1, False), (1, True), (0, False)])
def test_compiled_loss_equals_the_formula(dtype: str, axis: int, from_logits: bool) -> None:
    if dtype not in active().SUPPORTED_DTYPES:
        dtype = "int32"
    shape = (4, 3, 5)
    rng = np.random.default_rng(11)
    p = rng.normal(0, 2, shape).astype(np.float32)
    ax = axis % 3
    block = _LossBlock(shape, axis, from_logits)
    block.initialize()
    block.logits.set_data(ops.tensor(p))
    block.hybridize()
    for seed in (1, 2, 3):  # the first call may run eagerly; the later ones compiled
        label = np.random.default_rng(seed).integers(0, shape[ax], shape[:ax] + shape[ax + 1 :])
        got = ops.to_numpy(block(ops.tensor(label, dtype=dtype)))
        want = _reference(p, label, ax, from_logits)
        np.testing.assert_allclose(got, want.reshape(want.shape[0], -1).mean(axis=1),
                                   rtol=1e-5, atol=1e-6)
    breaks = list(active().compile_breaks())
    assert not any("cross_entropy" in str(r) for r in breaks), breaks


# ------------------------------------------------------------------ L2Loss's hook
@pytest.mark.parametrize("generic", [False, True], ids=["adapter", "generic"])
def test_squared_difference_equals_the_product_and_its_gradient(generic: bool) -> None:
    b = active()
    hook = Backend.squared_difference.__get__(b) if generic else b.squared_difference
    rng = np.random.default_rng(5)
    a_np = rng.normal(size=(3, 4)).astype(np.float32)
    c_np = rng.normal(size=(3, 4)).astype(np.float32)
    d = a_np - c_np
    np.testing.assert_array_equal(ops.to_numpy(hook(ops.tensor(a_np), ops.tensor(c_np))), d * d)
    a = d2lcompat.Parameter((3, 4), init=d2lcompat.init.Constant(0.0))
    c = d2lcompat.Parameter((3, 4), init=d2lcompat.init.Constant(0.0))
    a.initialize()
    c.initialize()
    a.set_data(ops.tensor(a_np))
    c.set_data(ops.tensor(c_np))
    _, g = autograd.grad(lambda: ops.sum(hook(a.data(), c.data())), {"a": a, "c": c})
    ga, gc = ops.to_numpy(g["a"]), ops.to_numpy(g["c"])
    np.testing.assert_allclose(ga, 2 * d, rtol=1e-6)
    np.testing.assert_allclose(gc, -2 * d, rtol=1e-6)


def test_l2loss_equals_the_formula_for_equal_and_mixed_dtypes() -> None:
    rng = np.random.default_rng(6)
    p = rng.normal(size=(4, 3)).astype(np.float32)
    y = rng.normal(size=(4, 3)).astype(np.float32)
    want = (0.5 * (p.astype(np.float64) - y) ** 2).mean(axis=1)
    l2 = loss.L2Loss()
    np.testing.assert_allclose(ops.to_numpy(l2(ops.tensor(p), ops.tensor(y))), want, rtol=1e-6)
    # Integer labels of shape (N,) against (N, 1) predictions: promotion, reshape.
    yi = np.array([0, 1, 2, 3])
    got = ops.to_numpy(l2(ops.tensor(p[:, :1]), ops.tensor(yi)))
    np.testing.assert_allclose(got, 0.5 * (p[:, 0].astype(np.float64) - yi) ** 2, rtol=1e-6)
