"""The eager training step's non-finite probe and global-norm clip, whichever computes
them (the adapter's multi-tensor kernels, `Backend.nonfinite_mean` and
`Backend.clip_by_global_norm`, or the core's ops): values against NumPy, the
gradients left as they were, and the edge cases an adapter's kernel must hand back
to the core (an expanded gradient, mixed dtypes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import d2lcompat
from d2lcompat import Parameter, autograd, init, loss, nn, ops
from d2lcompat._clip import clip_scaled
from d2lcompat._registry import active
from d2lcompat._trainer import _checked_mean, _nonfinite_probe, _probe_concatenates


def _np(x: Any) -> np.ndarray:
    return ops.to_numpy(x)


def _t(g: np.ndarray) -> Any:
    return ops.tensor(g, dtype=g.dtype.name)  # float64 stays float64


def _grads(dtypes: tuple[str, ...] = ("float32", "float32", "float32")) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    shapes = [(5, 4), (4,), (3, 2, 2)]
    return [rng.normal(size=s).astype(d) for s, d in zip(shapes, dtypes)]


def _clip_np(grads: list[np.ndarray], max_norm: float, scale: float) -> tuple[float, list[np.ndarray]]:
    """Gluon's clip_global_norm of ``g * scale``, in float64: (norm, each g times the factor)."""
    norm = float(np.sqrt(sum(((g.astype(np.float64) * scale) ** 2).sum() for g in grads)))
    factor = min(max_norm / (norm + 1e-8), 1.0)
    return norm, [g.astype(np.float64) * factor for g in grads]


# ------------------------------------------------------------------ the probe
_TOTAL = 6.0  # a loss sum; times 1/3 below


def _mean(grads: list[Any], concat: bool | tuple[int, ...] | None = False) -> float:
    return float(ops.item(_checked_mean(ops.tensor(_TOTAL), 1.0 / 3.0, grads, concat)))


@pytest.mark.parametrize("concat", [False, True, (0, 2), (1, 2)], ids=["each", "all", "0+2", "1+2"])
@pytest.mark.parametrize(
    "poison",
    [None, np.nan, np.inf, -np.inf, 1e30],
    ids=["finite", "nan", "inf", "-inf", "huge-finite"],
)
def test_mean_is_the_loss_for_finite_gradients_and_nan_otherwise(
    poison: float | None, concat: bool | tuple[int, ...]
) -> None:
    host = _grads()
    if poison is not None:
        host[1][2] = poison
    grads = [ops.tensor(g) for g in host]
    value = _mean(grads, concat)
    if poison is None or np.isfinite(poison):
        # 1e30 squared overflows float32: the probe must not square (it is not a norm).
        assert value == pytest.approx(_TOTAL / 3.0, rel=1e-7), value
    else:
        assert np.isnan(value), value
    for g, h in zip(grads, host):  # the probe leaves every gradient as it was
        np.testing.assert_array_equal(_np(g), h)
    # The core's own probe, whatever the adapter does: 0, or NaN.
    probe = float(ops.item(_nonfinite_probe(grads, concat)))
    assert (probe == 0.0) if poison is None or np.isfinite(poison) else np.isnan(probe)


@pytest.mark.parametrize("poison", [None, np.nan, np.inf], ids=["finite", "nan", "inf"])
def test_adapter_hook_where_it_answers(poison: float | None) -> None:
    # The hook itself (None where the adapter leaves the probe to the core's ops).
    host = _grads()
    if poison is not None:
        host[0][1, 1] = poison
    grads = [ops.tensor(g) for g in host]
    mean = active().nonfinite_mean(ops.tensor(_TOTAL), 0.25, grads)
    if mean is None:
        return
    assert ops.dtype(mean) == "float32" and ops.shape(mean) == ()
    value = float(ops.item(mean))
    assert (value == _TOTAL * 0.25) if poison is None else np.isnan(value), value
    for g, h in zip(grads, host):
        np.testing.assert_array_equal(_np(g), h)


@pytest.mark.parametrize("at", [0, 1, 2])
def test_grouped_probe_sees_a_poison_in_or_out_of_the_group(at: int) -> None:
    # Positions 0 and 2 concatenated, 1 on its own (`_probe_concatenates`' plan).
    for poison in (np.nan, np.inf, -np.inf):
        host = _grads()
        host[at].reshape(-1)[1] = poison
        grads = [ops.tensor(g) for g in host]
        assert np.isnan(float(ops.item(_nonfinite_probe(grads, (0, 2))))), (at, poison)
    # A group member missing: the others are still probed.
    host = _grads()
    host[2].reshape(-1)[0] = np.nan
    grads = [None, ops.tensor(host[1]), ops.tensor(host[2])]
    assert np.isnan(float(ops.item(_nonfinite_probe(grads, (0, 2)))))
    assert float(ops.item(_nonfinite_probe([None, *grads[1:2], None], (0, 2)))) == 0.0


def test_probe_plan_concatenates_the_small_gradients_only() -> None:
    b = active()
    big = ops.zeros((300, 300))  # 90,000 elements: above _PROBE_CONCAT_EACH
    small = [ops.zeros((4,)), ops.zeros((10, 10)), ops.zeros((1,))]
    assert _probe_concatenates(b, [big, *small]) == (1, 2, 3)
    assert _probe_concatenates(b, [small[0], big, small[1]]) == (0, 2)
    assert _probe_concatenates(b, [big, small[0]]) == ()  # one small gradient: nothing to join
    assert _probe_concatenates(b, [big, big]) == ()
    other = ops.zeros((4,), dtype=_other_float())
    assert _probe_concatenates(b, [small[0], other]) == ()  # two dtypes: no concatenation


class _Roots(nn.Block):
    """``pred = Σ x · 0 + Σ √w + Σ √v``: finite while ``w, v ≥ 0``; a zero in ``w`` or
    ``v`` makes that gradient infinite (``d√w/dw = 1/(2√w)``) and leaves the loss finite.
    ``w`` (90,000 elements) is probed on its own, ``v`` and ``u`` concatenated."""

    def __init__(self) -> None:
        super().__init__()
        self.w = Parameter((300, 300))
        self.v = Parameter((5,))
        self.u = Parameter((3,))

    def forward(self, x: Any) -> Any:
        s = ops.sum(ops.sqrt(self.w.data())) + ops.sum(ops.sqrt(self.v.data()))
        return ops.reshape(ops.sum(x, axis=1), (-1, 1)) * 0.0 + s + ops.sum(self.u.data())


@pytest.mark.parametrize("hybridize", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("where", ["w", "v"])
@pytest.mark.parametrize("stop_on_nan", [False, True])
def test_infinite_gradient_with_a_finite_loss(hybridize: bool, where: str, stop_on_nan: bool) -> None:
    # The probe, not the loss, must see it: in the large gradient probed on its own and
    # in one of the concatenated small ones, eagerly and inside the compiled step.
    net = _Roots()
    net.initialize(init.Constant(1.0))
    if hybridize:
        net.hybridize()
    # pred ≈ 9e4, each gradient of w ≈ 4.5e4: a tiny rate keeps every w near 1.
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 1e-9})
    step = d2lcompat.train_step(net, loss.L2Loss(), trainer, stop_on_nan=stop_on_nan)
    X, y = ops.ones((4, 2)), ops.zeros((4, 1))
    for _ in range(2):  # the first step runs eagerly under hybridize; the second compiled
        assert np.isfinite(float(ops.item(step(X, y))))
    param = getattr(net, where)
    host = _np(param.data()).copy()
    host.reshape(-1)[3] = 0.0
    param.set_data(ops.tensor(host))
    before = {k: _np(p.data()).copy() for k, p in net.collect_params().items()}
    # The loss itself is finite: Σ√w + Σ√v + Σu with one root 0.
    pred = float(np.sqrt(_np(net.w.data())).sum() + np.sqrt(_np(net.v.data())).sum()
                 + _np(net.u.data()).sum())
    assert np.isfinite(0.5 * pred**2)
    if stop_on_nan:
        with pytest.raises(d2lcompat.NonFiniteLossError):
            step(X, y)
        for k, p in net.collect_params().items():
            np.testing.assert_array_equal(_np(p.data()), before[k], err_msg=k)
    else:
        assert np.isnan(float(ops.item(step(X, y))))
        assert not np.isfinite(_np(param.data())).all()


def test_probe_with_missing_gradients() -> None:
    host = _grads()
    grads: list[Any] = [ops.tensor(g) for g in host] + [None]
    assert _mean(grads) == pytest.approx(_TOTAL / 3.0, rel=1e-7)
    host[2][0, 0, 0] = np.inf
    grads = [None, *(ops.tensor(g) for g in host)]
    assert np.isnan(_mean(grads))
    assert float(ops.item(_checked_mean(ops.tensor(_TOTAL), 0.5, [None, None]))) == _TOTAL * 0.5


def _other_float() -> str:
    """A second float dtype this backend computes with on this machine."""
    return "float64" if "float64" in active().SUPPORTED_DTYPES else "float16"


def test_hook_with_mixed_dtypes_answers_right_or_not_at_all() -> None:
    # The hook's contract: never raise, never a wrong answer; None hands the probe to
    # the core's ops.
    for poison in (None, np.nan):
        host = _grads(("float32", _other_float(), "float32"))
        if poison is not None:
            host[1][0] = poison
        mean = active().nonfinite_mean(ops.tensor(_TOTAL), 0.5, [_t(g) for g in host])
        if mean is not None:
            value = float(ops.item(mean))
            assert (value == _TOTAL * 0.5) if poison is None else np.isnan(value), value


def test_probe_on_a_gradient_the_framework_broadcast() -> None:
    # d sum(w) / dw is a broadcast of one value (torch hands back an expanded tensor,
    # which no in-place kernel may write): the probe still answers, and changes nothing.
    w = Parameter((3, 4))
    w.initialize(init.Constant(2.0))
    _, g = autograd.grad(lambda: ops.sum(w.data()), [w])
    grads = list(g.values())
    assert _mean(grads) == pytest.approx(_TOTAL / 3.0, rel=1e-7)
    np.testing.assert_array_equal(_np(grads[0]), np.ones((3, 4), np.float32))


class _Summed(nn.Block):
    """``pred = x[:, :1] · 0 + Σ w``: the gradient of ``w`` is a broadcast."""

    def __init__(self) -> None:
        super().__init__()
        self.w = Parameter((3,))

    def forward(self, x: Any) -> Any:
        return ops.reshape(ops.sum(x, axis=1), (-1, 1)) * 0.0 + ops.sum(self.w.data())


@pytest.mark.parametrize("stop_on_nan", [False, True])
def test_train_step_with_a_broadcast_gradient(stop_on_nan: bool) -> None:
    net = _Summed()
    net.initialize(init.Constant(0.5))  # Σ w = 1.5
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    step = d2lcompat.train_step(net, loss.L2Loss(), trainer, stop_on_nan=stop_on_nan)
    X = ops.ones((4, 2))
    y = np.array([[1.0], [2.0], [0.0], [3.0]], np.float32)
    value = float(ops.item(step(X, ops.tensor(y))))
    assert value == pytest.approx(float(np.mean(0.5 * (1.5 - y) ** 2)), rel=1e-6)
    # dL/dw_j = mean(Σw - y) for every j; SGD lr 0.1.
    want = 0.5 - 0.1 * float(np.mean(1.5 - y))
    np.testing.assert_allclose(_np(net.w.data()), np.full(3, want, np.float32), rtol=1e-6)
    before = _np(net.w.data())
    bad = y.copy()
    bad[2, 0] = np.nan
    if stop_on_nan:
        with pytest.raises(d2lcompat.NonFiniteLossError):
            step(X, ops.tensor(bad))
        np.testing.assert_array_equal(_np(net.w.data()), before)
    else:
        assert np.isnan(float(ops.item(step(X, ops.tensor(bad)))))


# ------------------------------------------------------------------- the clip
@pytest.mark.parametrize("scale", [1.0, 1.0 / 3.0, 1.0 / 32.0])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_scaled_equals_gluons_formula(scale: float, max_norm: float) -> None:
    host = _grads()
    grads = [ops.tensor(g) for g in host]
    norm, clipped = clip_scaled(grads, max_norm, scale)
    want_norm, want = _clip_np(host, max_norm, scale)
    assert float(ops.item(norm)) == pytest.approx(want_norm, rel=1e-6)
    assert isinstance(clipped, list) and len(clipped) == len(host)
    for c, w in zip(clipped, want):
        assert ops.dtype(c) == "float32"
        np.testing.assert_allclose(_np(c), w, rtol=1e-6, atol=1e-7)
    for g, h in zip(grads, host):  # the inputs are not clipped in place
        np.testing.assert_array_equal(_np(g), h)


def test_clip_scaled_mixed_dtypes_keeps_each_dtype() -> None:
    other = _other_float()
    host = _grads(("float32", other, "float32"))
    norm, clipped = clip_scaled([_t(g) for g in host], 0.5, 0.25)
    want_norm, want = _clip_np(host, 0.5, 0.25)
    assert float(ops.item(norm)) == pytest.approx(want_norm, rel=1e-3)
    assert [ops.dtype(c) for c in clipped] == ["float32", other, "float32"]
    for c, w in zip(clipped, want):
        np.testing.assert_allclose(_np(c).astype(np.float64), w, rtol=2e-3, atol=1e-3)


def test_trainer_clips_the_mean_gradients_and_keeps_the_stored_ones() -> None:
    # Batch 3 (scale 1/3, not a power of two), clipped SGD, against NumPy: the update
    # uses the clipped gradients of the mean loss; param.grad() keeps the raw sums.
    d2lcompat.seed(0)
    net = nn.Dense(2, in_units=3)
    net.initialize(init.Normal(1.0))
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3, 3)).astype(np.float32)
    y = rng.normal(size=(3, 2)).astype(np.float32)
    w0, b0 = _np(net.weight.data()), _np(net.bias.data())
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5},
                                clip_global_norm=0.2)
    step = d2lcompat.train_step(net, loss.L2Loss(), trainer)
    step(ops.tensor(x), ops.tensor(y))
    # L = Σ_i mean_j 0.5 (x_i w^T + b - y)_ij^2: dL/dpred = (pred - y) / 2.
    d = (x @ w0.T + b0 - y) / 2.0
    gw, gb = d.T @ x, d.sum(axis=0)
    np.testing.assert_allclose(_np(net.weight.grad()), gw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(net.bias.grad()), gb, rtol=1e-5, atol=1e-6)
    _, (cw, cb) = _clip_np([gw, gb], 0.2, 1.0 / 3.0)
    np.testing.assert_allclose(_np(net.weight.data()), w0 - 0.5 * cw / 3.0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(net.bias.data()), b0 - 0.5 * cb / 3.0, rtol=1e-5, atol=1e-6)
