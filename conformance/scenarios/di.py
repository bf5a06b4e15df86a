"""DI — deferred initialization (§5.3)."""

from __future__ import annotations

import numpy as np

import d2lcompat
from d2lcompat import nn, ops

from .._registry import Context, scenario
from ..models import mlp_sequential, to_np


@scenario("DI01", "in_units=0: after initialize() the weight is (256, 0) and data() names 0.weight")
def di01(ctx: Context) -> None:
    net = mlp_sequential()
    net.initialize()
    assert net[0].weight.shape == (256, 0) and net[1].weight.shape == (10, 0)
    for p in (net[0].weight, net[1].weight):
        try:
            p.data()
        except d2lcompat.DeferredInitializationError as exc:
            msg = str(exc)
            assert p.name in msg and str(p.shape) in msg, msg
        else:
            raise AssertionError(f"{p.name}.data() must raise before the first forward")
    assert net[0].weight.name == "0.weight"


@scenario("DI02", "one forward pass on (2, 20) gives shapes (256, 20) and (10, 256)")
def di02(ctx: Context) -> None:
    d2lcompat.seed(32)
    net = mlp_sequential()
    net.initialize(d2lcompat.init.Normal(0.5))
    net(ops.random.uniform((2, 20)))
    shapes = {k: p.shape for k, p in net.collect_params().items()}
    assert shapes == {"0.weight": (256, 20), "0.bias": (256,), "1.weight": (10, 256), "1.bias": (10,)}
    w = to_np(net[0].weight.data())
    assert 0.4 < w.std() < 0.6  # the scheduled initializer was used, not the default
    np.testing.assert_array_equal(to_np(net[0].bias.data()), 0)


@scenario("DI03", "a never-initialized net initializes itself with the defaults at its first call")
def di03(ctx: Context) -> None:
    d2lcompat.seed(33)
    net = mlp_sequential()
    X = ops.random.uniform((2, 20))
    Y = net(X)
    assert ops.shape(Y) == (2, 10)
    w = to_np(net[0].weight.data())
    assert w.shape == (256, 20) and np.abs(w).max() <= 0.07 and w.std() > 0.01  # Uniform(0.07)
    np.testing.assert_array_equal(to_np(net[0].bias.data()), 0)
    expected = np.maximum(to_np(X) @ w.T, 0) @ to_np(net[1].weight.data()).T
    np.testing.assert_allclose(to_np(Y), expected, rtol=1e-5, atol=1e-6)


@scenario("DI04", "30 features into a Dense built for 20 raises ShapeError naming block and shapes")
def di04(ctx: Context) -> None:
    net = nn.Sequential(nn.Dense(8, activation="relu"), nn.Dense(2))
    net.initialize()
    net(ops.ones((2, 20)))
    before = to_np(net[0].weight.data()).copy()
    try:
        net(ops.ones((2, 30)))
    except d2lcompat.ShapeError as exc:
        msg = str(exc)
        assert "'0'" in msg and "20" in msg and "(2, 30)" in msg, msg
    else:
        raise AssertionError("feeding 30 features must raise ShapeError")
    np.testing.assert_array_equal(to_np(net[0].weight.data()), before)
    explicit = nn.Dense(4, in_units=20)
    explicit.initialize()
    try:
        explicit(ops.ones((1, 30)))
    except d2lcompat.ShapeError as exc:
        assert "20" in str(exc) and "(1, 30)" in str(exc)
    else:
        raise AssertionError("an explicit in_units must be checked too")
