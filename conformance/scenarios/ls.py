"""LS — losses (API §14): each loss against its NumPy formula, per sample."""

from __future__ import annotations

import numpy as np

from d2lcompat import loss, ops

from .._registry import Context, scenario
from ..models import to_np


def _log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def _close(got: object, want: np.ndarray, what: str) -> None:
    have = to_np(got)
    assert have.shape == want.shape, f"{what}: shape {have.shape}, expected {want.shape}"
    np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-6, err_msg=what)


@scenario("LS01", "each loss equals its NumPy formula on the same inputs, per sample")
def ls01(ctx: Context) -> None:
    rng = np.random.default_rng(401)
    pred = rng.normal(size=(6, 3, 2)).astype(np.float32)
    label = rng.normal(size=(6, 3, 2)).astype(np.float32)
    d = pred.astype(np.float64) - label
    P, L = ops.tensor(pred), ops.tensor(label)
    _close(loss.L2Loss()(P, L), (0.5 * d**2).mean(axis=(1, 2)), "L2Loss")
    _close(loss.L1Loss()(P, L), np.abs(d).mean(axis=(1, 2)), "L1Loss")
    a = np.abs(d)
    huber = np.where(a > 0.7, a - 0.35, 0.5 / 0.7 * d**2)
    _close(loss.HuberLoss(rho=0.7)(P, L), huber.mean(axis=(1, 2)), "HuberLoss(rho=0.7)")
    w = rng.uniform(size=(6, 1, 1)).astype(np.float32)
    _close(loss.L2Loss(weight=2.0)(P, L, ops.tensor(w)), (2.0 * w * 0.5 * d**2).mean(axis=(1, 2)),
           "L2Loss with weight and sample_weight")
    # softmax cross-entropy: sparse labels (int and float, with a trailing 1), dense labels
    logits = rng.normal(size=(5, 4)).astype(np.float32) * 3
    cls = rng.integers(0, 4, size=5)
    lsm = _log_softmax(logits)
    want = -lsm[np.arange(5), cls]
    ce = loss.SoftmaxCrossEntropyLoss()
    _close(ce(ops.tensor(logits), ops.tensor(cls)), want, "SoftmaxCE sparse int64")
    _close(ce(ops.tensor(logits), ops.tensor(cls.reshape(5, 1).astype(np.float32))), want,
           "SoftmaxCE sparse float (5, 1)")
    soft = rng.dirichlet(np.ones(4), size=5).astype(np.float32)
    dense = loss.SoftmaxCrossEntropyLoss(sparse_label=False)
    _close(dense(ops.tensor(logits), ops.tensor(soft)), -(soft * lsm).sum(axis=1), "SoftmaxCE dense")
    from_logits = loss.SoftmaxCrossEntropyLoss(from_logits=True)
    _close(from_logits(ops.tensor(lsm.astype(np.float32)), ops.tensor(cls)), want,
           "SoftmaxCE from_logits")
    chan = rng.normal(size=(3, 4, 5)).astype(np.float32)  # classes on axis 1 (NCW)
    idx = rng.integers(0, 4, size=(3, 5))
    lsm1 = _log_softmax(chan, axis=1)
    want1 = -np.take_along_axis(lsm1, idx[:, None, :], axis=1)[:, 0, :].mean(axis=1)
    _close(loss.SoftmaxCrossEntropyLoss(axis=1)(ops.tensor(chan), ops.tensor(idx)), want1,
           "SoftmaxCE axis=1")
    # sigmoid binary cross-entropy, from logits and from probabilities
    x = rng.normal(size=(4, 3)).astype(np.float32) * 4
    z = rng.integers(0, 2, size=(4, 3)).astype(np.float32)
    s = 1 / (1 + np.exp(-x.astype(np.float64)))
    bce = -(z * np.log(s) + (1 - z) * np.log(1 - s))
    _close(loss.SigmoidBinaryCrossEntropyLoss()(ops.tensor(x), ops.tensor(z)), bce.mean(axis=1),
           "SigmoidBCE logits")
    p = s.astype(np.float32)
    eps = 1e-12
    bce_p = -(z * np.log(p + eps) + (1 - z) * np.log(1 - p + eps))
    _close(loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=True)(ops.tensor(p), ops.tensor(z)),
           bce_p.mean(axis=1), "SigmoidBCE from_sigmoid")


@scenario("LS02", "softmax cross-entropy stays finite for logits of ±1e4")
def ls02(ctx: Context) -> None:
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [0.0, 0.0, 0.0]], dtype=np.float32)
    cls = np.array([0, 0, 2])
    got = to_np(loss.SoftmaxCrossEntropyLoss()(ops.tensor(logits), ops.tensor(cls)))
    assert np.all(np.isfinite(got)), f"not finite: {got}"
    want = -_log_softmax(logits)[np.arange(3), cls]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got[0] == 0.0 and abs(got[1] - (2e4 + np.log(2))) < 1.0, got
    x = np.array([1e4, -1e4], dtype=np.float32)
    bce = to_np(loss.SigmoidBinaryCrossEntropyLoss()(ops.tensor(x), ops.tensor([0.0, 1.0])))
    assert np.all(np.isfinite(bce)), bce
    np.testing.assert_allclose(bce, [1e4, 1e4], rtol=1e-6)
