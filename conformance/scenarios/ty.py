"""TY — parameter tying and gradients (§5.2)."""

from __future__ import annotations

import numpy as np

import d2lcompat
from d2lcompat import autograd, init, nn, ops, optim

from .._registry import Context, scenario
from ..models import assert_close, to_np


def _tied_net() -> tuple[nn.Sequential, nn.Dense]:
    shared = nn.Dense(8, activation="relu")
    net = nn.Sequential(nn.Dense(8, activation="relu"), nn.Activation("relu"), shared,
                        nn.Activation("relu"), shared, nn.Dense(1))
    return net, shared


@scenario("TY01", "the same Dense twice in a Sequential: one parameter set, the same object")
def ty01(ctx: Context) -> None:
    d2lcompat.seed(51)
    net, shared = _tied_net()
    net.initialize()
    X = ops.random.uniform((2, 20))
    net(X)
    names = list(net.collect_params())
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias", "5.weight", "5.bias"], names
    assert net[2].weight is net[4].weight and net[2] is net[4]
    w = to_np(net[2].weight.data()).copy()
    w[0, 0] = 100.0
    net[2].weight.set_data(w)
    assert float(to_np(net[4].weight.data())[0, 0]) == 100.0
    np.testing.assert_array_equal(to_np(net[2].weight.data()), to_np(net[4].weight.data()))


@scenario("TY02", "share_parameters: two distinct Dense blocks with one weight and bias")
def ty02(ctx: Context) -> None:
    d2lcompat.seed(52)
    first = nn.Dense(8, activation="relu")
    second = nn.Dense(8, activation="relu").share_parameters(first.collect_params())
    net = nn.Sequential(nn.Dense(8, activation="relu"), first, second, nn.Dense(1))
    assert first is not second
    assert second.weight is first.weight and second.bias is first.bias
    net.initialize()
    X = ops.random.uniform((2, 20))
    Y = net(X)
    assert list(net.collect_params()) == ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]
    first.weight.set_data(ops.ones((8, 8)))
    np.testing.assert_array_equal(to_np(second.weight.data()), 1.0)
    assert not np.allclose(to_np(net(X)), to_np(Y))
    # sharing after initialization works the same way
    third = nn.Dense(8, in_units=8)
    third.initialize()
    third.share_parameters(first.collect_params())
    assert third.weight is first.weight
    assert_close(third(ops.ones((1, 8))), ops.ones((1, 8)) @ ops.transpose(first.weight.data()) + first.bias.data())


@scenario("TY03", "gradients add: Sequential(lin, lin), w = 3, x = 1 -> y = 9, dy/dw = 6")
def ty03(ctx: Context) -> None:
    lin = nn.Dense(1, in_units=1, use_bias=False)
    lin.initialize(init.Constant(3.0))
    net = nn.Sequential(lin, lin)
    x = ops.ones((1, 1))
    y, grads = autograd.grad(lambda: ops.sum(net(x)), net.collect_params())
    assert ops.item(y) == 9.0
    assert list(grads) == ["0.weight"]
    assert ops.item(grads["0.weight"]) == 6.0
    assert ops.item(lin.weight.grad()) == 6.0
    # 'write' overwrites: a second call gives 6 again, not 12
    autograd.grad(lambda: ops.sum(net(x)), net.collect_params())
    assert ops.item(lin.weight.grad()) == 6.0


@scenario("TY04", "training an MLP with a tied layer: tied weights stay identical, the loss goes down")
def ty04(ctx: Context) -> None:
    d2lcompat.seed(54)
    net, shared = _tied_net()
    net.initialize(init.Xavier())
    X = ops.random.normal((64, 20))
    true_w = ops.random.normal((20, 1))
    y = ops.matmul(X, true_w)
    params = net.collect_params()
    trainer = optim.SGD(params, lr=0.05)

    def loss() -> object:
        return ops.mean(ops.square(net(X) - y))

    losses = []
    for _ in range(20):
        value, grads = autograd.grad(loss, params)
        trainer.step(grads)
        losses.append(ops.item(value))
    assert losses[-1] < losses[0] * 0.5, losses
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert net[2].weight is net[4].weight
    np.testing.assert_array_equal(to_np(net[2].weight.data()), to_np(net[4].weight.data()))
    assert ops.item(loss()) < losses[0]


@scenario("TY05", "grad_req='add' accumulates over two calls to 12; zero_grad resets it")
def ty05(ctx: Context) -> None:
    lin = nn.Dense(1, in_units=1, use_bias=False)
    lin.initialize(init.Constant(3.0))
    net = nn.Sequential(lin, lin)
    lin.weight.grad_req = "add"
    x = ops.ones((1, 1))
    autograd.grad(lambda: ops.sum(net(x)), net.collect_params())
    assert ops.item(lin.weight.grad()) == 6.0
    autograd.grad(lambda: ops.sum(net(x)), net.collect_params())
    assert ops.item(lin.weight.grad()) == 12.0
    lin.weight.zero_grad()
    assert ops.item(lin.weight.grad()) == 0.0  # zeros of its shape (Gluon; GL05)
    _, g = autograd.grad(lambda: ops.sum(net(x)), net.collect_params())
    assert ops.item(g["0.weight"]) == 6.0
    lin.weight.grad_req = "null"
    _, g = autograd.grad(lambda: ops.sum(net(x)), net.collect_params())
    assert g == {} and lin.weight.grad() is None
