"""Bad training input gets one named error on every backend (issue 19, items 5-8).

Each case runs eagerly and with a hybridized net (the compiled step on JAX and
TensorFlow): out-of-range, NaN and fractional class labels (`LabelError`), a NaN in
the features (the reported loss is NaN whenever the update used one; ``stop_on_nan``
stops before the parameters change), empty batches, integer features, and the data
pipeline's own arguments.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pytest

import d2lcompat
from d2lcompat import (
    DataError,
    DTypeError,
    LabelError,
    NonFiniteLossError,
    _trainer,
    data,
    loss,
    nn,
    ops,
)

MODES = pytest.mark.parametrize("hybridize", [False, True], ids=["eager", "hybridized"])


def _net(hybridize: bool, classes: int = 3) -> nn.Sequential:
    d2lcompat.seed(0)
    net = nn.Sequential(nn.Dense(8, activation="relu", in_units=4), nn.Dense(classes, in_units=8))
    net.initialize()
    if hybridize:
        net.hybridize()
    return net


def _setup(hybridize: bool, stop_on_nan: bool = False) -> tuple[nn.Sequential, Any]:
    net = _net(hybridize)
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    step = d2lcompat.train_step(net, loss.SoftmaxCrossEntropyLoss(), trainer,
                                stop_on_nan=stop_on_nan)
    return net, step


def _params(net: nn.Block) -> dict[str, np.ndarray]:
    return {k: ops.to_numpy(p.data()).copy() for k, p in net.collect_params().items()}


def _X(n: int = 6) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, 4)).astype(np.float32)


GOOD = np.array([0, 1, 2, 0, 1, 2])


# ------------------------------------------------------------------ labels (5, 6)
def test_loss_names_out_of_range_labels() -> None:
    ce = loss.SoftmaxCrossEntropyLoss()
    logits = ops.zeros((6, 3))
    with pytest.raises(LabelError) as info:
        ce(logits, ops.tensor(np.array([0, 1, 2, 3, 7, -1])))
    msg = str(info.value)
    assert "SoftmaxCrossEntropyLoss" in msg and "[-1, 3, 7]" in msg and "3 classes" in msg
    assert isinstance(info.value, DataError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("labels", "shown"),
    [
        (np.array([0, 1, np.nan, 2, 0, 1], np.float32), "nan"),
        (np.array([0, 1, 1.5, 2, 0, 1], np.float32), "1.5"),
        (np.array([0, 1, np.inf, 2, 0, 1], np.float32), "inf"),
    ],
    ids=["nan", "fractional", "inf"],
)
def test_loss_refuses_float_labels_that_are_not_class_indices(labels: np.ndarray, shown: str) -> None:
    with pytest.raises(LabelError, match=rf"SoftmaxCrossEntropyLoss.*\({'.*' + shown}.*3 classes"):
        loss.SoftmaxCrossEntropyLoss()(ops.zeros((6, 3)), ops.tensor(labels))


def test_whole_float_labels_and_other_axes_are_accepted() -> None:
    ce = loss.SoftmaxCrossEntropyLoss()
    a = ops.to_numpy(ce(ops.zeros((3, 4)), ops.tensor(np.array([0.0, 3.0, 1.0], np.float32))))
    np.testing.assert_allclose(a, np.full(3, np.log(4)), rtol=1e-6)
    ce1 = loss.SoftmaxCrossEntropyLoss(axis=1)
    out = ce1(ops.zeros((2, 5, 3)), ops.tensor(np.array([[0, 4, 2], [1, 1, 1]])))
    assert ops.shape(out) == (2,)
    with pytest.raises(LabelError, match=r"\[0, 5\).*\[5\]"):
        ce1(ops.zeros((2, 5, 3)), ops.tensor(np.array([[0, 5, 2], [1, 1, 1]])))
    # Dense (soft) labels are not class indices: no check.
    soft = loss.SoftmaxCrossEntropyLoss(sparse_label=False)
    assert ops.shape(soft(ops.zeros((2, 3)), ops.full((2, 3), 0.5))) == (2,)


@MODES
@pytest.mark.parametrize(
    "labels",
    [np.array([0, 1, 2, 3, 7, -1]), np.array([0, 1, np.nan, 2, 0, 1], np.float32),
     np.array([0, 1, 0.5, 2, 0, 1], np.float32)],
    ids=["out-of-range", "nan", "fractional"],
)
def test_train_step_refuses_bad_labels_before_any_update(hybridize: bool, labels: np.ndarray) -> None:
    net, step = _setup(hybridize)
    X = ops.tensor(_X())
    step(X, ops.tensor(GOOD))  # the first step (eager under hybridize) learns the classes
    step(X, ops.tensor(GOOD))  # a compiled step after hybridize
    before = _params(net)
    with pytest.raises(LabelError, match="SoftmaxCrossEntropyLoss"):
        step(X, ops.tensor(labels))
    after = _params(net)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)


@MODES
def test_first_step_checks_labels_too(hybridize: bool) -> None:
    net, step = _setup(hybridize)
    before = _params(net)
    with pytest.raises(LabelError, match=r"\[3\]"):
        step(ops.tensor(_X()), ops.tensor(np.array([0, 1, 2, 3, 0, 1])))
    for k, v in _params(net).items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


@MODES
def test_fit_refuses_bad_labels(hybridize: bool) -> None:
    net = _net(hybridize)
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    batches = [(_X(), GOOD), (_X(), np.array([0, 1, 2, 3, 7, -1]))]
    with pytest.raises(LabelError, match=r"3 classes.*\[-1, 3, 7\]"):
        d2lcompat.fit(net, batches, loss.SoftmaxCrossEntropyLoss(), trainer, 1, verbose=False)


# ------------------------------------------------------------------ NaN in X (7)
def _nan_batch() -> np.ndarray:
    X = _X()
    X[1, 2] = np.nan
    return X


@MODES
def test_nan_in_X_reports_a_nan_loss_when_the_update_used_it(hybridize: bool) -> None:
    net, step = _setup(hybridize)
    step(ops.tensor(_X()), ops.tensor(GOOD))
    step(ops.tensor(_X()), ops.tensor(GOOD))
    value = float(ops.item(step(ops.tensor(_nan_batch()), ops.tensor(GOOD))))
    poisoned = [k for k, v in _params(net).items() if not np.isfinite(v).all()]
    # The same outcome on every backend: the update used a NaN, and the loss says so.
    assert poisoned and np.isnan(value), (value, poisoned)


@pytest.fixture(params=["grads in temporaries", "grads kept"])
def keep_grads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Both ways a guarded compiled step can hold its gradients: as the compiled call's
    temporaries, or (where the adapter asks, `Backend.GUARDED_STEP_KEEPS_GRADS`, from
    `_trainer._KEEP_GRADS_BYTES` of gradients: forced here) in buffers donated back
    every step."""
    if request.param == "grads kept":
        monkeypatch.setattr(_trainer, "_KEEP_GRADS_BYTES", 0)
    return request.param == "grads kept"


@MODES
def test_stop_on_nan_raises_before_the_update(hybridize: bool, keep_grads: bool) -> None:
    net, step = _setup(hybridize, stop_on_nan=True)
    step(ops.tensor(_X()), ops.tensor(GOOD))
    step(ops.tensor(_X()), ops.tensor(GOOD))
    before = _params(net)
    with pytest.raises(NonFiniteLossError, match="not finite"):
        step(ops.tensor(_nan_batch()), ops.tensor(GOOD))
    after = _params(net)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    # The step still works afterwards and trains from the kept values.
    value = float(ops.item(step(ops.tensor(_X()), ops.tensor(GOOD))))
    assert np.isfinite(value)
    assert all(np.isfinite(v).all() for v in _params(net).values())


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_guarded_compiled_step_trains_as_the_unguarded_one(opt: str, keep_grads: bool) -> None:
    # The NaN guard only selects: on finite batches the guarded compiled step gives the
    # losses and parameters of the unguarded one, whichever way it holds its gradients,
    # and JAX uses every buffer it was donated (it warns of one it could not use).
    X = [ops.tensor(_X()) for _ in range(4)]
    runs = []
    for guard in (False, True):
        net = _net(True)
        trainer = d2lcompat.Trainer(net.collect_params(), opt, {"learning_rate": 0.05})
        step = d2lcompat.train_step(net, loss.SoftmaxCrossEntropyLoss(), trainer,
                                    stop_on_nan=guard)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            losses = [float(ops.item(step(x, ops.tensor(GOOD)))) for x in X]
        assert not [w for w in caught if "donated" in str(w.message)], caught
        runs.append((losses, _params(net)))
    (l0, p0), (l1, p1) = runs
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    assert l1[-1] < l1[0]
    for k in p0:
        np.testing.assert_allclose(p1[k], p0[k], rtol=1e-6, atol=1e-7, err_msg=k)


@MODES
def test_fit_stops_on_nan_naming_epoch_and_batch(hybridize: bool, keep_grads: bool) -> None:
    net = _net(hybridize)
    trainer = d2lcompat.Trainer(net.collect_params(), "adam", {"learning_rate": 0.01})
    batches = [(_X(), GOOD), (_X(), GOOD), (_nan_batch(), GOOD)]
    d2lcompat.fit(net, batches[:2], loss.SoftmaxCrossEntropyLoss(), trainer, 1, verbose=False)
    before = _params(net)
    slots_before = trainer.optimizer.num_update
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch 3") as info:
        d2lcompat.fit(net, batches, loss.SoftmaxCrossEntropyLoss(), trainer, 2, verbose=False)
    assert isinstance(info.value, d2lcompat.D2LCompatError)
    # Batches 1 and 2 of the failing run were applied; batch 3 changed nothing.
    assert trainer.optimizer.num_update == slots_before + 2
    assert all(np.isfinite(v).all() for v in _params(net).values())
    assert any(not np.array_equal(v, before[k]) for k, v in _params(net).items())


@MODES
def test_fit_without_stop_on_nan_records_the_nan(hybridize: bool) -> None:
    net = _net(hybridize)
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    h = d2lcompat.fit(net, [(_X(), GOOD), (_nan_batch(), GOOD)], loss.SoftmaxCrossEntropyLoss(),
                      trainer, 1, verbose=False, stop_on_nan=False)
    assert np.isnan(h["loss"][0])


# ------------------------------------------------------------------ bad batches (8)
@MODES
def test_empty_batch_is_a_data_error(hybridize: bool) -> None:
    net, step = _setup(hybridize)
    before = _params(net)
    with pytest.raises(DataError, match=r"shape \(0, 4\).*at least one row"):
        step(ops.zeros((0, 4)), ops.tensor(np.zeros(0, np.int64)))
    with pytest.raises(DataError, match="X has 6 rows but y has 5"):
        step(ops.tensor(_X()), ops.tensor(GOOD[:5]))
    for k, v in _params(net).items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


@MODES
def test_bad_batch_after_compiled_steps_is_a_data_error(hybridize: bool) -> None:
    # The compiled step checks a batch once per shape signature: a bad one after
    # good ones of other shapes is still refused, before the update and the step count.
    net = _net(hybridize)
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    step = d2lcompat.train_step(net, loss.SoftmaxCrossEntropyLoss(), trainer)
    X, y = ops.tensor(_X()), ops.tensor(GOOD)
    step(X, y)
    step(X, y)  # compiled under hybridize
    before = _params(net)
    count = trainer.optimizer.num_update
    for call in (step, step.with_outputs, step):
        with pytest.raises(DataError, match="X has 6 rows but y has 5"):
            call(X, ops.tensor(GOOD[:5]))
        with pytest.raises(DataError, match=r"shape \(0, 4\).*at least one row"):
            call(ops.zeros((0, 4)), ops.tensor(np.zeros(0, np.int64)))
    assert trainer.optimizer.num_update == count
    for k, v in _params(net).items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    step(X, y)
    assert trainer.optimizer.num_update == count + 1
    assert any(not np.array_equal(v, before[k]) for k, v in _params(net).items())


def test_fit_validation_batches_are_checked_too() -> None:
    net = _net(False)
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    with pytest.raises(DataError, match="at least one row"):
        d2lcompat.fit(net, [(_X(), GOOD)], loss.SoftmaxCrossEntropyLoss(), trainer, 1,
                      valid_iter=[empty], verbose=False)


@MODES
def test_fit_with_integer_features_is_a_dtype_error(hybridize: bool) -> None:
    net = _net(hybridize)
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    before = _params(net)
    X = np.ones((6, 4), np.int64)
    with pytest.raises(DTypeError, match=r"Dense '.*'.*int(32|64).*float32.*ops.cast"):
        d2lcompat.fit(net, [(X, GOOD)], loss.SoftmaxCrossEntropyLoss(), trainer, 1, verbose=False)
    for k, v in _params(net).items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    with pytest.raises(DTypeError, match="int(32|64)"):
        net(ops.tensor(X))


def test_conv_with_integer_features_is_a_dtype_error() -> None:
    conv = nn.Conv2D(2, 3, in_channels=1)
    conv.initialize()
    with pytest.raises(DTypeError, match=r"Conv2D.*int32"):
        conv(ops.ones((1, 1, 5, 5), dtype="int32"))


@pytest.mark.parametrize("bad", [2.5, "x", 0, -1, True, None])
def test_loader_batch_size_must_be_a_positive_int(bad: Any) -> None:
    with pytest.raises(DataError, match=r"batch_size.*positive int.*" + repr(bad)[:3].replace(".", r"\.")):
        data.DataLoader(data.ArrayDataset(np.zeros(4)), batch_size=bad)
    assert len(data.DataLoader(data.ArrayDataset(np.zeros(4)), batch_size=np.int64(3))) == 2


def test_array_dataset_names_the_lengths() -> None:
    with pytest.raises(DataError, match=r"lengths \[4, 3\]"):
        data.ArrayDataset(np.zeros((4, 2)), np.zeros(3))
    with pytest.raises(DataError, match=r"lengths \[2, 3\]"):
        data.ArrayDataset([1, 2], ops.zeros((3,)))
    with pytest.raises(DataError, match="array 1 cannot be made one NumPy array"):
        data.ArrayDataset(np.zeros(2), [[1, 2], [3]])


# ------------------------------------------------------------------ cost of the checks
def test_label_check_cost_is_small() -> None:
    """The host check of a compiled step's labels (one to_numpy, one min/max) costs
    little next to the step; measured here so a regression shows."""
    ce = loss.SoftmaxCrossEntropyLoss()
    y = ops.tensor(np.arange(64) % 10)
    ce.check_labels((64, 10), y)
    n = 200
    start = time.perf_counter()
    for _ in range(n):
        ce.check_labels((64, 10), y)
    per_call = (time.perf_counter() - start) / n
    assert per_call < 2e-3, per_call  # ~10-30 µs measured; 2 ms bounds a loaded machine
