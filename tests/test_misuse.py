"""The misuse catalogue: public functions called wrongly, on this process's backend.

Each case must raise a `D2LCompatError` subclass whose message names the thing at fault,
or a documented built-in ``TypeError``/``ValueError`` (docs/ops-semantics.md, "Errors"):
never a framework's own exception.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import d2lcompat
from d2lcompat import autograd, init, nn, ops
from d2lcompat._registry import active

ROOT = Path(__file__).resolve().parents[1]
X = ops.ones((2, 3))
V = ops.ones((3,))


def _net() -> nn.Block:
    net = nn.Sequential(nn.Dense(4, in_units=3), nn.Dense(2))
    net.initialize()
    return net


# (case id, call, expected exception type(s), regex the message must match)
CASES: list[tuple[str, Callable[[], Any], type[BaseException] | tuple[type[BaseException], ...], str]] = [
    # ---------------------------------------------------------------- ops: shapes
    ("add-broadcast", lambda: ops.add(X, ops.ones((4,))), d2lcompat.ShapeError, r"\(2, 3\).*\(4,\)"),
    ("where-broadcast", lambda: ops.where(ops.greater(X, 0), X, ops.ones((5,))), d2lcompat.ShapeError, r"where"),
    ("matmul-inner", lambda: ops.matmul(X, X), d2lcompat.ShapeError, r"matmul.*\(2, 3\).*\(2, 3\)"),
    ("dot-inner", lambda: ops.dot(V, ops.ones((4,))), d2lcompat.ShapeError, r"dot.*\(3,\).*\(4,\)"),
    ("matmul-0d", lambda: ops.matmul(ops.ones(()), X), d2lcompat.ShapeError, r"matmul"),
    ("linear-in", lambda: ops.linear(X, ops.ones((4, 5)), None), d2lcompat.ShapeError, r"linear.*\(2, 3\).*\(4, 5\)"),
    ("linear-bias", lambda: ops.linear(X, ops.ones((4, 3)), ops.ones((5,))), d2lcompat.ShapeError, r"bias"),
    ("reshape-size", lambda: ops.reshape(X, (4, 2)), d2lcompat.ShapeError, r"reshape.*\(2, 3\).*\(4, 2\)"),
    ("reshape-two-minus-one", lambda: ops.reshape(X, (-1, -1)), d2lcompat.ShapeError, r"reshape"),
    ("concat-mismatch", lambda: ops.concat([X, ops.ones((2, 4))], axis=0), d2lcompat.ShapeError, r"concat.*\(2, 4\)"),
    ("concat-rank", lambda: ops.concat([X, V], axis=0), d2lcompat.ShapeError, r"concat"),
    ("stack-mismatch", lambda: ops.stack([X, ops.ones((3, 2))]), d2lcompat.ShapeError, r"stack.*\(3, 2\)"),
    ("split-uneven", lambda: ops.split(X, 2, axis=1), d2lcompat.ShapeError, r"split.*size 3.*2 equal parts"),
    ("split-axis", lambda: ops.split(X, 3, axis=2), d2lcompat.ShapeError, r"split.*axis 2.*\(2, 3\)"),
    ("split-zero-parts", lambda: ops.split(X, 0), d2lcompat.ShapeError, r"split.*>= 1"),
    ("split-decreasing", lambda: ops.split(X, [2, 1], axis=1), d2lcompat.ShapeError, r"split.*decrease"),
    ("split-float", lambda: ops.split(X, 1.5), d2lcompat.ShapeError, r"split.*1\.5"),
    ("transpose-perm", lambda: ops.transpose(X, (0, 0)), d2lcompat.ShapeError, r"transpose.*permutation"),
    ("squeeze-wide", lambda: ops.squeeze(X, axis=0), d2lcompat.ShapeError, r"squeeze.*size 2"),
    ("squeeze-range", lambda: ops.squeeze(X, axis=4), d2lcompat.ShapeError, r"squeeze.*out of range"),
    ("sum-axis", lambda: ops.sum(X, axis=2), d2lcompat.ShapeError, r"sum.*axis 2.*\(2, 3\)"),
    ("mean-axis", lambda: ops.mean(X, axis=(0, 5)), d2lcompat.ShapeError, r"mean.*out of range"),
    ("softmax-axis", lambda: ops.softmax(X, axis=3), d2lcompat.ShapeError, r"softmax.*axis 3"),
    ("expand-dims-axis", lambda: ops.expand_dims(X, 7), d2lcompat.ShapeError, r"expand_dims.*axis 7"),
    ("max-empty", lambda: ops.max(ops.zeros((0, 3)), axis=0), d2lcompat.ShapeError, r"max.*empty.*\(0, 3\)"),
    ("item-many", lambda: ops.item(X), d2lcompat.ShapeError, r"item.*\(2, 3\)"),
    # ------------------------------------------------------- ops: creation, dtypes
    ("zeros-negative", lambda: ops.zeros((-1, 2)), d2lcompat.ShapeError, r"-1"),
    ("zeros-str", lambda: ops.zeros("abc"), d2lcompat.ShapeError, r"abc"),
    ("ones-float-dim", lambda: ops.ones((2.5,)), d2lcompat.ShapeError, r"2\.5"),
    ("arange-step0", lambda: ops.arange(0, 5, 0), ValueError, r"step"),
    ("dtype-unknown", lambda: ops.zeros((2,), dtype="complex64"), d2lcompat.DTypeError, r"complex64"),
    ("cast-unknown", lambda: ops.cast(X, "float8"), d2lcompat.DTypeError, r"float8"),
    ("tensor-object", lambda: ops.tensor([object()]), d2lcompat.DTypeError, r"object"),
    ("tensor-ctx-and-device", lambda: ops.tensor([1.0], device="cpu", ctx="cpu"), TypeError, r"not both"),
    # ------------------------------------------------------------------ devices
    ("device-garbage", lambda: ops.zeros((2,), device="tpu:x"), d2lcompat.DeviceError, r"tpu"),
    ("device-missing-gpu", lambda: ops.zeros((2,), device="gpu:99"), d2lcompat.DeviceError, r"gpu"),
    ("to-device-garbage", lambda: d2lcompat.to_device(X, "nowhere"), d2lcompat.DeviceError, r"nowhere"),
    ("data-wrong-device", lambda: _net()[0].weight.data(device="gpu:99"), d2lcompat.DeviceError, r"gpu"),
    ("to-numpy-list", lambda: ops.to_numpy([1.0]), TypeError, r"ops.to_numpy.*list"),
    ("param-shape-str", lambda: d2lcompat.Parameter(shape="ab"), d2lcompat.ShapeError, r"'ab'"),
    ("grad-not-callable", lambda: autograd.grad(3, _NET.collect_params()), TypeError, r"closure.*int"),
    # --------------------------------------------------------------- parameters
    ("param-uninitialized", lambda: d2lcompat.Parameter((2,)).data(), d2lcompat.DeferredInitializationError, r"initialize"),
    ("param-deferred", lambda: nn.Dense(3).weight.data(), d2lcompat.DeferredInitializationError, r"weight"),
    ("param-grad-req", lambda: setattr(d2lcompat.Parameter((2,)), "grad_req", "sometimes"), ValueError, r"grad_req"),
    ("param-set-data-shape", lambda: _net()[0].weight.set_data(np.ones((9, 9), np.float32)), d2lcompat.ShapeError, r"weight"),
    ("param-bad-dtype", lambda: d2lcompat.Parameter((2,), dtype="int128"), d2lcompat.DTypeError, r"int128"),
    ("init-unknown", lambda: nn.Dense(2, in_units=2).initialize("gaussian-ish"), d2lcompat.D2LCompatError, r"gaussian-ish"),
    ("init-not-callable", lambda: nn.Dense(2, in_units=2).initialize(object()), d2lcompat.D2LCompatError, r"initializer"),
    ("initialize-ctx-and-device", lambda: nn.Dense(2).initialize(device="cpu", ctx="cpu"), TypeError, r"not both"),
    # -------------------------------------------------------------------- blocks
    ("dense-features", lambda: _net()(ops.ones((2, 5))), d2lcompat.ShapeError, r"Dense '0'.*3 features.*\(2, 5\)"),
    ("activation-unknown", lambda: nn.Dense(2, activation="swishy"), d2lcompat.D2LCompatError, r"swishy"),
    ("dropout-rate", lambda: nn.Dropout(1.5), d2lcompat.D2LCompatError, r"1\.5"),
    ("register-non-block", lambda: nn.Sequential().register_child(lambda x: x), d2lcompat.D2LCompatError, r"Lambda"),
    ("children-non-block", lambda: nn.Sequential()._children.__setitem__("a", 3), d2lcompat.D2LCompatError, r"int"),
    ("sequential-index", lambda: nn.Sequential(nn.Dense(1))[3], IndexError, r"3"),
    ("functional-call-name", lambda: _net().functional_call({"nope": X}, X), d2lcompat.D2LCompatError, r"nope"),
    ("share-not-param", lambda: nn.Dense(2).share_parameters({"weight": 3}), d2lcompat.D2LCompatError, r"weight"),
    ("gluon-copyto", lambda: _net().copyto, AttributeError, r"copy_to"),
    ("gluon-ctx", lambda: _net().ctx, AttributeError, r"device_of"),
    ("params-get-unknown-kw", lambda: nn.Dense(2).params.get("w", shape=(2,), lr_mult=2), TypeError, r"lr_mult"),
    # ------------------------------------------------------------------ autograd
    ("grad-not-scalar", lambda: autograd.grad(lambda: _NET(X), _NET.collect_params()), d2lcompat.ShapeError, r"shape \(2, 2\)"),
    ("grad-not-tensor", lambda: autograd.grad(lambda: 3.0, _NET.collect_params()), TypeError, r"float"),
    ("grad-uninitialized", lambda: autograd.grad(lambda: ops.sum(X), nn.Dense(2, in_units=3).collect_params()), d2lcompat.DeferredInitializationError, r"initialize"),
    # --------------------------------------------------------------------- files
    ("load-missing", lambda: _net().load_parameters("/nonexistent/x.safetensors"), d2lcompat.CheckpointError, r"nonexistent"),
]

_NET = _net()


@pytest.mark.parametrize("call, exc, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_misuse(call: Callable[[], Any], exc: Any, pattern: str) -> None:
    with pytest.raises(exc, match=pattern) as info:
        call()
    err = info.value
    assert isinstance(err, d2lcompat.D2LCompatError) or type(err) in (TypeError, ValueError, AttributeError, IndexError, KeyError), type(err)


def test_block_that_contains_itself() -> None:
    a = nn.Sequential(nn.Dense(2))
    with pytest.raises(d2lcompat.D2LCompatError, match="cannot contain itself"):
        a.add(a)
    b = nn.Sequential(a)
    with pytest.raises(d2lcompat.D2LCompatError, match="cycle"):
        a.add(b)  # a grandchild cycle
    with pytest.raises(d2lcompat.D2LCompatError, match="contain itself"):
        a.inner = a


def test_sharing_a_parameter_with_an_incompatible_shape() -> None:
    a = nn.Dense(4, in_units=3)
    b = nn.Dense(5, in_units=3)
    with pytest.raises(d2lcompat.ShapeError, match=r"\(5, 3\).*\(4, 3\)"):
        b.share_parameters(a.collect_params())
    with pytest.raises(d2lcompat.ShapeError, match=r"\(5, 3\).*\(4, 3\)"):
        nn.Dense(5, in_units=3, params=a.params)
    # Tied by hand (attribute assignment): the forward pass names the block and shapes.
    c = nn.Dense(5, in_units=2)
    c.weight = a.weight
    c.initialize()
    with pytest.raises(d2lcompat.ShapeError, match=r"Dense.*features"):
        c(ops.ones((1, 2)))


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "backends"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-c", "import d2lcompat; d2lcompat.ops.zeros((1,))"],
        env=full, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.parametrize("env, pattern", [
    ({"D2LCOMPAT_BACKEND": "mxnet-please"}, r"BackendError.*mxnet-please"),
    ({"D2LCOMPAT_BACKEND": ""}, None),  # empty: the default choice, no error
    ({"D2LCOMPAT_CPU_DEVICES": "lots"}, r"BackendError.*D2LCOMPAT_CPU_DEVICES.*lots"),
    ({"D2LCOMPAT_CPU_DEVICES": "-3"}, r"BackendError.*D2LCOMPAT_CPU_DEVICES"),
    ({"D2LCOMPAT_CPU_DEVICES": "0"}, r"BackendError.*D2LCOMPAT_CPU_DEVICES"),
], ids=["backend-garbage", "backend-empty", "cpu-devices-word", "cpu-devices-negative", "cpu-devices-zero"])
def test_garbage_environment(env: dict[str, str], pattern: str | None) -> None:
    base = {"D2LCOMPAT_BACKEND": active().name}
    proc = _run({**base, **env})
    if pattern is None:
        assert proc.returncode == 0, proc.stderr[-2000:]
        return
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    import re

    assert re.search(pattern, last), last


def test_in_place_update_inside_grad() -> None:
    """The chapter's ``X /= 2`` on a ReLU output: an InPlaceUpdateError on torch, where the
    framework refuses it; the portable ``X = X / 2`` works everywhere."""
    net = nn.Dense(3, activation="relu", in_units=4)
    net.initialize(init.Constant(0.5))
    x = ops.ones((2, 4))

    def in_place() -> Any:
        h = net(x)
        h /= 2
        return ops.sum(h)

    def portable() -> Any:
        h = net(x)
        h = h / 2
        return ops.sum(h)

    value, grads = autograd.grad(portable, net.collect_params())
    assert ops.item(value) == pytest.approx(2 * 3 * 2.0 / 2)
    np.testing.assert_allclose(ops.to_numpy(grads["weight"]), np.full((3, 4), 1.0))
    try:
        v2, g2 = autograd.grad(in_place, net.collect_params())
    except d2lcompat.InPlaceUpdateError as e:
        assert "X = X / 2" in str(e) and "docs/divergences.md" in str(e)
    else:  # the framework allows it: then it means the same
        assert ops.item(v2) == pytest.approx(ops.item(value))
        np.testing.assert_allclose(ops.to_numpy(g2["weight"]), np.full((3, 4), 1.0))


def test_item_in_grad_closure_control_flow() -> None:
    """Python control flow on ``ops.item`` inside autograd.grad works on every backend."""
    net = nn.Dense(1, in_units=2, use_bias=False)
    net.initialize(init.Constant(1.0))
    x = ops.ones((1, 2))

    def f() -> Any:
        y = ops.sum(net(x))
        return y * 3 if ops.item(y) > 0 else y

    value, grads = autograd.grad(f, net.collect_params())
    assert ops.item(value) == pytest.approx(6.0)
    np.testing.assert_allclose(ops.to_numpy(grads["weight"]), [[3.0, 3.0]])


def test_host_value_inside_grad_is_a_clear_error_or_works() -> None:
    """``np.asarray(tensor)`` inside the closure: torch and JAX refuse it (TracedValueError
    naming ops.to_numpy / ops.item); the other backends give the value. ``ops.to_numpy``
    works on every backend."""
    net = nn.Dense(1, in_units=2)
    net.initialize()
    x = ops.ones((1, 2))

    def f() -> Any:
        y = net(x)
        _ = np.asarray(y).sum()
        return ops.sum(y)

    def portable() -> Any:
        y = net(x)
        assert ops.to_numpy(y).shape == (1, 1)
        return ops.sum(y)

    autograd.grad(portable, net.collect_params())
    try:
        autograd.grad(f, net.collect_params())
    except d2lcompat.TracedValueError as e:
        assert "ops.item" in str(e) and "ops.to_numpy" in str(e)


def test_item_in_a_hybridized_block() -> None:
    """``ops.item`` in a hybridized forward: compiled where the compiler copes, else one
    warning and eager (JAX: `TracedValueError` is a fallback error); same values."""
    import warnings

    class Gate(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            self.d = nn.Dense(2, in_units=3)

        def forward(self, x: Any) -> Any:
            y = self.d(x)
            return y * 2 if ops.item(ops.sum(y)) > 0 else y

    net = Gate()
    net.initialize(init.Constant(0.5))
    x = ops.ones((1, 3))
    eager = ops.to_numpy(net(x))
    net.hybridize()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", d2lcompat.D2LCompatWarning)
        for _ in range(3):
            np.testing.assert_allclose(ops.to_numpy(net(x)), eager)
        value, _ = autograd.grad(lambda: ops.sum(net(x)), net.collect_params())
    assert ops.item(value) == pytest.approx(float(eager.sum()))


def test_to_numpy_is_a_snapshot_of_a_parameter() -> None:
    """Issue 13: on torch, ops.to_numpy used to alias the parameter's memory."""
    net = nn.Dense(2, in_units=2, use_bias=False)
    net.initialize(init.One())
    w = ops.to_numpy(net.weight.data())
    w[0, 0] = 42.0  # writing to the copy leaves the parameter alone
    assert ops.to_numpy(net.weight.data())[0, 0] == 1.0
    snapshot = ops.to_numpy(net.weight.data())
    net.weight.set_data(ops.full((2, 2), 0.5))  # an update after the snapshot ...
    assert snapshot[0, 0] == 1.0  # ... is not seen in it
    view = ops.to_numpy(net.weight.data(), copy=False)  # the explicit zero-copy path
    np.testing.assert_array_equal(view, np.full((2, 2), 0.5, np.float32))
    from d2lcompat import optim

    before = ops.to_numpy(net.weight.data())
    params = net.collect_params()
    _, g = autograd.grad(lambda: ops.sum(net(ops.ones((1, 2)))), params)
    optim.SGD(params, lr=0.5).step(g)  # the chapter's SGD step: 0.5 -> 0.0
    np.testing.assert_array_equal(before, np.full((2, 2), 0.5, np.float32))
    np.testing.assert_array_equal(ops.to_numpy(net.weight.data()), np.zeros((2, 2), np.float32))
