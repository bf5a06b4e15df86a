"""GL01–GL05 — Gluon fidelity: Dense flatten, attribute rules, ParameterList spelling,
activation names, zero_grad and initializer equality (API.md §3, §13)."""

from __future__ import annotations

from typing import Any

import numpy as np

import d2lcompat
from d2lcompat import Parameter, autograd, init, nn, ops

from .._registry import Context, scenario
from ..models import assert_close, to_np


def _host(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


@scenario("GL01", "Dense flattens a rank > 2 input by default; flatten=False maps the last axis")
def gl01(ctx: Context) -> None:
    d2lcompat.seed(101)
    host = _host((2, 16, 5, 5), 1)
    net = nn.Sequential(nn.Dense(120))  # the book's LeNet: Dense straight after a conv
    net.initialize()
    y = net(ops.tensor(host))
    assert ops.shape(y) == (2, 120), ops.shape(y)
    assert net[0].weight.shape == (120, 400), net[0].weight.shape  # deferred: flattened size
    w, b = to_np(net[0].weight.data()), to_np(net[0].bias.data())
    assert_close(y, host.reshape(2, -1) @ w.T + b, rtol=1e-5, atol=1e-5)

    seq = _host((2, 4, 5), 2)
    last = nn.Dense(3, flatten=False)
    last.initialize(init.Normal(0.5))
    z = last(ops.tensor(seq))
    assert ops.shape(z) == (2, 4, 3) and last.weight.shape == (3, 5)
    assert_close(z, seq @ to_np(last.weight.data()).T, rtol=1e-5, atol=1e-5)

    # On a 2-D input both spellings are one layer: same weight, same result.
    flat = nn.Dense(3, in_units=5)
    flat.initialize()
    flat.weight.set_data(last.weight.data())
    two_d = seq[:, 0, :]
    assert_close(flat(ops.tensor(two_d)), to_np(last(ops.tensor(two_d))), rtol=1e-6, atol=1e-6)


@scenario("GL02", "reassigning a child block or Parameter attribute to another type raises TypeError")
def gl02(ctx: Context) -> None:
    class Net(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Dense(2, in_units=3)
            self.scale = Parameter((2,), init="ones")

        def forward(self, x: Any) -> Any:
            return self.layer(x) * self.scale.data()

    net = Net()
    for attr, value in (("layer", 3.0), ("layer", None), ("scale", nn.Dense(2)), ("scale", None),
                        ("layer", Parameter((2,)))):
        try:
            setattr(net, attr, value)
        except TypeError as exc:
            assert attr in str(exc), str(exc)
        else:
            raise AssertionError(f"net.{attr} = {type(value).__name__} did not raise TypeError")
    # nothing changed: both are still registered
    assert list(net.collect_params()) == ["scale", "layer.weight", "layer.bias"]
    net.layer = nn.Dense(4, in_units=3)  # a block of the same type replaces it
    assert net.collect_params()["layer.weight"].shape == (4, 3)
    del net.scale
    net.scale = 2.0  # after del, any value
    assert list(net.collect_params()) == ["layer.weight", "layer.bias"]


@scenario("GL03", "self.params = ParameterList/ParameterDict registers params.0 ...; block.params.get still works")
def gl03(ctx: Context) -> None:
    class MyListDense(nn.Block):  # the chapter-5 course notes' spelling
        def __init__(self) -> None:
            super().__init__()
            self.params = nn.ParameterList([Parameter((4, 4), init="ones") for _ in range(3)])
            self.params.append(Parameter((4, 1), init="ones"))

        def forward(self, x: Any) -> Any:
            for i in range(len(self.params)):
                x = ops.matmul(x, self.params[i].data())
            return x

    class MyDictDense(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            self.params = nn.ParameterDict({
                "linear1": Parameter((4, 4), init="ones"),
                "linear2": Parameter((4, 1), init="ones"),
            })

        def forward(self, x: Any, choice: str = "linear1") -> Any:
            return ops.matmul(x, self.params[choice].data())

    a = MyListDense()
    a.initialize()
    assert list(a.collect_params()) == ["params.0", "params.1", "params.2", "params.3"]
    assert_close(a(ops.ones((1, 4))), np.full((1, 1), 256.0, np.float32))
    d = MyDictDense()
    d.initialize()
    assert list(d.collect_params()) == ["params.linear1", "params.linear2"]
    assert_close(d(ops.ones((1, 4)), "linear2"), np.full((1, 1), 4.0, np.float32))

    class GluonDense(nn.Block):  # nothing assigned: Gluon's self.params.get
        def __init__(self, units: int, in_units: int) -> None:
            super().__init__()
            self.weight = self.params.get("weight", shape=(in_units, units), init="ones")

        def forward(self, x: Any) -> Any:
            return ops.matmul(x, self.weight.data())

    g = GluonDense(2, 3)
    g.initialize()
    assert list(g.params) == ["weight"] and g.params.get("weight") is g.weight
    assert_close(g(ops.ones((1, 3))), np.full((1, 2), 3.0, np.float32))


@scenario("GL04", "Activation('softrelu'/'softsign'), Lambda('tanh') and Dropout(1.0)")
def gl04(ctx: Context) -> None:
    host = np.array([[-30.0, -1.0, 0.0, 0.5, 40.0]], np.float32)
    x = ops.tensor(host)
    assert_close(nn.Activation("softrelu")(x), np.logaddexp(0.0, host), rtol=1e-6, atol=1e-6)
    assert_close(nn.Activation("softsign")(x), host / (1 + np.abs(host)), rtol=1e-6, atol=1e-6)
    assert_close(nn.Lambda("tanh")(x), np.tanh(host), rtol=1e-6, atol=1e-6)
    dense = nn.Dense(2, activation="softrelu", in_units=5)
    dense.initialize(init.One())
    assert_close(dense(x), np.logaddexp(0.0, host.sum(1, keepdims=True)).repeat(2, 1), rtol=1e-5)

    drop = nn.Dropout(1.0)
    assert_close(drop(x), host)  # predict mode: the identity
    with autograd.record():
        assert_close(drop(x), np.zeros_like(host))
    p = Parameter((5,), init="ones")
    p.initialize()
    with autograd.train_mode():
        autograd.grad(lambda: ops.sum(drop(p.data())), [p])
    assert_close(p.grad(), np.zeros(5, np.float32))


@scenario("GL05", "zero_grad() leaves zeros of the parameter's shape; initializers equal by value")
def gl05(ctx: Context) -> None:
    net = nn.Dense(3, in_units=2)
    net.initialize(init.One())
    autograd.grad(lambda: ops.sum(net(ops.ones((4, 2)))), net.collect_params())
    assert_close(net.weight.grad(), np.full((3, 2), 4.0, np.float32))
    net.collect_params().zero_grad()
    for name, p in net.collect_params().items():
        g = p.grad()
        assert g is not None, f"{name}: grad() is None after zero_grad()"
        assert ops.shape(g) == p.shape, (name, ops.shape(g), p.shape)
        assert_close(g, np.zeros(p.shape, np.float32))
    autograd.grad(lambda: ops.sum(net(ops.ones((1, 2)))), net.collect_params())
    assert_close(net.bias.grad(), np.ones(3, np.float32))  # a new gradient replaces the zeros

    assert init.Constant(-10.0) == init.Constant(-10.0)
    assert hash(init.Constant(-10.0)) == hash(init.Constant(-10))
    assert init.Constant(-10.0) != init.Constant(10.0)
    assert init.Xavier(magnitude=2) == init.Xavier(magnitude=2) != init.Xavier()
    assert init.Normal(0.01) != init.Uniform(0.01)
    assert repr(init.Constant(-10.0)) == "Constant(value=-10.0)"
    assert len({init.Normal(0.5), init.Normal(0.5), init.Zero()}) == 2
