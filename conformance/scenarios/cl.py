"""CL — custom layers (§5.4)."""

from __future__ import annotations

import numpy as np

import d2lcompat
from d2lcompat import nn, ops

from .._registry import Context, scenario
from ..models import CenteredLayer, MyDense, assert_close, to_np


@scenario("CL01", "CenteredLayer on [1, 2, 3, 4, 5] returns [-2, -1, 0, 1, 2]")
def cl01(ctx: Context) -> None:
    layer = CenteredLayer()
    y = layer(ops.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    np.testing.assert_array_equal(to_np(y), np.array([-2, -1, 0, 1, 2], np.float32))
    assert len(layer.collect_params()) == 0


@scenario("CL02", "Sequential(Dense(128), CenteredLayer()) output mean ~ 0")
def cl02(ctx: Context) -> None:
    d2lcompat.seed(42)
    net = nn.Sequential(nn.Dense(128), CenteredLayer())
    net.initialize()
    Y = net(ops.random.uniform((4, 8)))
    assert ops.shape(Y) == (4, 128)
    assert abs(ops.item(ops.mean(Y))) < 1e-6
    assert float(np.abs(to_np(Y)).max()) > 1e-4  # not trivially zero


@scenario("CL03", "MyDense with Parameters: listed, forward equals relu(x W + b) by hand")
def cl03(ctx: Context) -> None:
    d2lcompat.seed(43)
    dense = MyDense(3, in_units=5)
    assert list(dense.collect_params()) == ["weight", "bias"]
    assert dense.weight.shape == (5, 3)
    dense.initialize()
    X = ops.random.uniform((2, 5))
    Y = dense(X)
    w, b = to_np(dense.weight.data()), to_np(dense.bias.data())
    assert_close(Y, np.maximum(to_np(X) @ w + b, 0))
    assert (to_np(Y) == 0).any() or (to_np(Y) > 0).all()


@scenario("CL04", "two MyDense on (2, 64) give shape (2, 1)")
def cl04(ctx: Context) -> None:
    d2lcompat.seed(44)
    net = nn.Sequential(MyDense(8, in_units=64), MyDense(1, in_units=8))
    net.initialize()
    X = ops.random.uniform((2, 64))
    Y = net(X)
    assert ops.shape(Y) == (2, 1)
    h = np.maximum(to_np(X) @ to_np(net[0].weight.data()) + to_np(net[0].bias.data()), 0)
    assert_close(Y, np.maximum(h @ to_np(net[1].weight.data()) + to_np(net[1].bias.data()), 0))


@scenario("CL05", "MyDense with deferred in_units infers it at the first call")
def cl05(ctx: Context) -> None:
    d2lcompat.seed(45)
    net = nn.Sequential(MyDense(8), MyDense(1))
    net.initialize()
    assert net[0].weight.shape == (0, 8)
    try:
        net[0].weight.data()
    except d2lcompat.DeferredInitializationError as exc:
        assert "0.weight" in str(exc)
    else:
        raise AssertionError("data() before the first call must raise")
    Y = net(ops.random.uniform((2, 64)))
    assert net[0].weight.shape == (64, 8) and net[1].weight.shape == (8, 1)
    assert ops.shape(Y) == (2, 1)
