"""PA — parameter access (§5.2)."""

from __future__ import annotations

from typing import Any

import numpy as np

import d2lcompat
from d2lcompat import Parameter, nn, ops

from .._registry import Context, scenario
from ..models import assert_close, rgnet, to_np


def _three_layer() -> nn.Sequential:
    return nn.Sequential(nn.Dense(8), nn.Activation("relu"), nn.Dense(1))


@scenario("PA01", "a layer's parameters: names weight and bias, shapes, float32")
def pa01(ctx: Context) -> None:
    d2lcompat.seed(11)
    net = _three_layer()
    net.initialize()
    net(ops.random.uniform((2, 4)))
    params = net[2].collect_params()
    assert list(params) == ["weight", "bias"]
    assert params["weight"].shape == (1, 8) and params["bias"].shape == (1,)
    assert params["weight"].dtype == "float32" and ops.dtype(net[2].weight.data()) == "float32"
    assert net[2].weight is params["weight"] and net[2].bias is params["bias"]
    np.testing.assert_array_equal(to_np(net[2].bias.data()), np.zeros(1, np.float32))
    assert net[1].collect_params().keys() == {}.keys()


@scenario("PA02", "collect_params() lists 0.weight, 0.bias, 2.weight, 2.bias in order")
def pa02(ctx: Context) -> None:
    net = _three_layer()
    net.initialize()
    net(ops.ones((2, 4)))
    params = net.collect_params()
    assert list(params) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert [p.shape for p in params.values()] == [(8, 4), (8,), (1, 8), (1,)]
    assert all(params[k] is v for k, v in zip(params, params.values()))


@scenario("PA03", "collect_params('.*weight') selects only weights")
def pa03(ctx: Context) -> None:
    net = _three_layer()
    assert list(net.collect_params(".*weight")) == ["0.weight", "2.weight"]
    assert list(net.collect_params(".*bias")) == ["0.bias", "2.bias"]
    assert list(net.collect_params([".*0.weight", ".*bias"])) == ["0.weight", "0.bias", "2.bias"]
    assert len(net.collect_params("nothing")) == 0


@scenario("PA04", "nested rgnet: names like 0.block0.0.weight; indexing reaches the same parameter")
def pa04(ctx: Context) -> None:
    d2lcompat.seed(14)
    net = rgnet()
    net.initialize()
    X = ops.random.uniform((2, 4))
    assert ops.shape(net(X)) == (2, 10)
    params = net.collect_params()
    assert list(params)[:4] == ["0.block0.0.weight", "0.block0.0.bias", "0.block0.1.weight", "0.block0.1.bias"]
    assert list(params)[-2:] == ["1.weight", "1.bias"]
    assert len(params) == 4 * 4 + 2
    bias = net[0][1][0].bias
    assert bias is params["0.block1.0.bias"] and bias.name == "0.block1.0.bias"
    assert_close(bias.data(), params["0.block1.0.bias"].data(), rtol=0, atol=0)
    assert net[0].block1 is net[0][1]


@scenario("PA05", "grad() is None before any backward pass")
def pa05(ctx: Context) -> None:
    net = _three_layer()
    net.initialize()
    net(ops.ones((2, 4)))
    for name, p in net.collect_params().items():
        assert p.grad() is None, name


@scenario("PA06", "set_data: weight[0, 0] = 42 is visible in data() and in the next forward")
def pa06(ctx: Context) -> None:
    d2lcompat.seed(16)
    net = nn.Sequential(nn.Dense(3, in_units=2, use_bias=False))
    net.initialize()
    x = ops.tensor([[1.0, 0.0]])
    w = ops.to_numpy(net[0].weight.data()).copy()
    w[0, 0] = 42
    net[0].weight.set_data(w)
    assert float(to_np(net[0].weight.data())[0, 0]) == 42.0
    assert_close(net(x), w[:, 0][None, :], rtol=0, atol=0)
    # a native tensor works too; a wrong shape or kind is refused and changes nothing
    net[0].weight.set_data(ops.ones((3, 2)))
    assert_close(net(x), np.ones((1, 3)), rtol=0, atol=0)
    for bad in (np.ones((2, 3), np.float32), ops.ones((3, 2), dtype="int32") > 0):
        try:
            net[0].weight.set_data(bad)
        except d2lcompat.D2LCompatError:
            pass
        else:
            raise AssertionError(f"set_data accepted {bad!r}")
    assert_close(net(x), np.ones((1, 3)), rtol=0, atol=0)


@scenario("PA07", "ParameterList / ParameterDict in a custom layer, used with a chosen key")
def pa07(ctx: Context) -> None:
    class Mixture(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            self.scales = nn.ParameterList([Parameter((3,), init=d2lcompat.init.Constant(float(i + 1))) for i in range(2)])
            self.heads = nn.ParameterDict({
                "left": Parameter((3, 2), init=d2lcompat.init.One()),
                "right": Parameter((3, 2), init=d2lcompat.init.Constant(2.0)),
            })

        def forward(self, x: Any, key: str = "left") -> Any:
            return ops.matmul(x * self.scales[1].data(), self.heads[key].data())

    net = Mixture()
    assert list(net.collect_params()) == ["scales.0", "scales.1", "heads.left", "heads.right"]
    assert net.heads["right"].name == "heads.right" and net.scales[0].name == "scales.0"
    net.initialize()
    x = ops.ones((1, 3))
    assert_close(net(x, "left"), np.full((1, 2), 6.0))
    assert_close(net(x, "right"), np.full((1, 2), 12.0))
    assert len(net.scales) == 2 and "left" in net.heads
