"""MC — model construction (§5.1 "layers and blocks")."""

from __future__ import annotations

from typing import Any

import numpy as np

import d2lcompat
from d2lcompat import autograd, nn, ops, optim

from .._registry import Context, scenario
from ..models import (
    MLP,
    FixedHiddenMLP,
    MySequential,
    NestMLP,
    assert_close,
    mlp_sequential,
    to_np,
)


@scenario("MC01", "Sequential(Dense(256, relu), Dense(10)) on (2, 20)")
def mc01(ctx: Context) -> None:
    d2lcompat.seed(1)
    net = mlp_sequential()
    net.initialize()
    X = ops.random.uniform((2, 20))
    Y = net(X)
    assert ops.shape(Y) == (2, 10)
    assert len(net) == 2
    assert isinstance(net[0], nn.Dense) and net[0] is list(net)[0]
    # the value is what the chapter's formula gives from the parameters
    w0, b0 = to_np(net[0].weight.data()), to_np(net[0].bias.data())
    w1, b1 = to_np(net[1].weight.data()), to_np(net[1].bias.data())
    expected = np.maximum(to_np(X) @ w0.T + b0, 0) @ w1.T + b1
    assert_close(Y, expected, rtol=1e-5, atol=1e-6)


@scenario("MC02", "custom MLP(Block) with hidden/out children")
def mc02(ctx: Context) -> None:
    d2lcompat.seed(2)
    net = MLP()
    net.initialize()
    X = ops.random.uniform((2, 20))
    Y = net(X)
    assert ops.shape(Y) == (2, 10)
    assert list(net._children) == ["hidden", "out"]
    assert list(net.collect_params()) == ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    h = np.maximum(to_np(X) @ to_np(net.hidden.weight.data()).T + to_np(net.hidden.bias.data()), 0)
    assert_close(Y, h @ to_np(net.out.weight.data()).T + to_np(net.out.bias.data()))


@scenario("MC03", "MySequential registering children in a loop equals Sequential")
def mc03(ctx: Context) -> None:
    d2lcompat.seed(3)
    a, b = nn.Dense(256, activation="relu"), nn.Dense(10)
    mine = MySequential(a, b)
    mine.initialize()
    X = ops.random.uniform((2, 20))
    Y = mine(X)
    assert list(mine.collect_params()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    ref = nn.Sequential(a, b)  # the very same children, so the same parameters
    assert ref.collect_params()["0.weight"] is mine.collect_params()["0.weight"]
    assert_close(Y, ref(X), rtol=0, atol=0)


@scenario("MC04", "FixedHiddenMLP: Constant weight, reused Dense, while loop; SGD leaves the constant")
def mc04(ctx: Context) -> None:
    d2lcompat.seed(4)
    net = FixedHiddenMLP()
    net.initialize()
    X = ops.random.uniform((2, 20))
    y = net(X)
    assert ops.shape(y) == ()
    # recompute by hand from the parameters
    w, b = to_np(net.dense.weight.data()), to_np(net.dense.bias.data())
    c = to_np(net.rand_weight.data())
    h = np.maximum(to_np(X) @ w.T + b, 0)
    h = np.maximum(h @ c + 1, 0)
    h = np.maximum(h @ w.T + b, 0)
    while np.abs(h).sum() > 1:
        h = h / 2
    assert_close(y, h.sum(), rtol=1e-4, atol=1e-5)
    params = net.collect_params()
    assert list(params) == ["rand_weight", "dense.weight", "dense.bias"]
    assert net.rand_weight.grad_req == "null"
    const_before = to_np(net.rand_weight.data()).copy()
    w_before = to_np(net.dense.weight.data()).copy()
    _, grads = autograd.grad(lambda: net(X), params)
    assert "rand_weight" not in grads
    optim.SGD(params, lr=0.1).step(grads)
    np.testing.assert_array_equal(to_np(net.rand_weight.data()), const_before)
    assert not np.array_equal(to_np(net.dense.weight.data()), w_before)


@scenario("MC05", "chimera: NestMLP inside Sequential with Dense and FixedHiddenMLP")
def mc05(ctx: Context) -> None:
    d2lcompat.seed(5)
    chimera = nn.Sequential(NestMLP(), nn.Dense(20), FixedHiddenMLP())
    chimera.initialize()
    X = ops.random.uniform((2, 20))
    y = chimera(X)
    assert ops.shape(y) == ()
    assert np.isfinite(to_np(y)).all()
    names = list(chimera.collect_params())
    assert names == [
        "0.net.0.weight", "0.net.0.bias", "0.net.1.weight", "0.net.1.bias",
        "0.dense.weight", "0.dense.bias", "1.weight", "1.bias",
        "2.rand_weight", "2.dense.weight", "2.dense.bias",
    ], names
    assert chimera[0].net[1].weight.name == "0.net.1.weight"
    # the nested parts compute what they compute alone
    inner = chimera[2](chimera[1](chimera[0](X)))
    assert_close(y, inner, rtol=0, atol=0)


@scenario("MC06", "BlockList registers, a plain list does not; calling it raises")
def mc06(ctx: Context) -> None:
    class WithList(nn.Block):
        def __init__(self, registered: bool) -> None:
            super().__init__()
            layers: Any = [nn.Dense(4, in_units=3), nn.Dense(2, in_units=4)]
            self.layers = nn.BlockList(layers) if registered else layers

        def forward(self, x: Any) -> Any:
            for layer in self.layers:
                x = layer(x)
            return x

    good, plain = WithList(True), WithList(False)
    assert list(good.collect_params()) == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    assert len(plain.collect_params()) == 0
    good.layers.append(nn.Dense(1, in_units=2))
    assert len(good.layers) == 3 and isinstance(good.layers[2], nn.Dense)
    assert "layers.2.weight" in good.collect_params()
    good.initialize()
    assert ops.shape(good(ops.ones((5, 3)))) == (5, 1)
    try:
        good.layers(ops.ones((5, 3)))
    except NotImplementedError:
        pass
    else:
        raise AssertionError("calling a BlockList must raise NotImplementedError")


@scenario("MC07", "BlockDict: add by key, access by key and attribute, parameters collected")
def mc07(ctx: Context) -> None:
    d = nn.BlockDict({"encoder": nn.Dense(4, in_units=3)})
    d["decoder"] = nn.Dense(3, in_units=4)
    assert d.encoder is d["encoder"] and d.decoder is d["decoder"]
    assert list(d.keys()) == ["encoder", "decoder"] and "decoder" in d and len(d) == 2
    assert list(d.collect_params()) == ["encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"]
    d.initialize(d2lcompat.init.One())
    y = d["decoder"](d["encoder"](ops.ones((1, 3))))
    assert_close(y, np.full((1, 3), 12.0))


@scenario("MC08", "repr(net) shows the tree with names, types and shapes")
def mc08(ctx: Context) -> None:
    net = nn.Sequential(nn.Dense(8, activation="relu", in_units=4), MLP())
    text = repr(net)
    for piece in ("Sequential(", "(0): Dense(4 -> 8, Activation(relu))", "(1): MLP(",
                  "(hidden): Dense(None -> 256, Activation(relu))", "(out): Dense(None -> 10, linear)"):
        assert piece in text, (piece, text)
    net.initialize()
    net(ops.ones((2, 4)))
    assert "(hidden): Dense(8 -> 256, Activation(relu))" in repr(net)
    assert repr(net[0].weight) == "Parameter 0.weight (shape=(8, 4), dtype=float32)"


@scenario("MC09", "net[0:2] is a Sequential sharing the same parameters")
def mc09(ctx: Context) -> None:
    d2lcompat.seed(9)
    net = nn.Sequential(nn.Dense(8, activation="relu"), nn.Dense(4), nn.Dense(1))
    net.initialize()
    X = ops.random.uniform((3, 5))
    net(X)
    head = net[0:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2
    assert head[0] is net[0] and head[1] is net[1]
    assert head[0].weight is net[0].weight
    assert net[0].weight.name == "0.weight"  # slicing does not rename
    new = np.full(net[0].weight.shape, 0.5, np.float32)
    head[0].weight.set_data(new)
    np.testing.assert_array_equal(to_np(net[0].weight.data()), new)
    assert_close(net[2](head(X)), net(X), rtol=0, atol=0)


@scenario("MC10", "a parallel block concatenating two nets' outputs")
def mc10(ctx: Context) -> None:
    class Parallel(nn.Block):
        def __init__(self, a: nn.Block, b: nn.Block) -> None:
            super().__init__()
            self.a, self.b = a, b

        def forward(self, x: Any) -> Any:
            return ops.concat([self.a(x), self.b(x)], axis=1)

    d2lcompat.seed(10)
    net = Parallel(nn.Dense(3), nn.Dense(5))
    net.initialize()
    X = ops.random.uniform((2, 4))
    Y = net(X)
    assert ops.shape(Y) == (2, 8)
    assert_close(Y[:, :3], net.a(X), rtol=0, atol=0)
    assert_close(Y[:, 3:], net.b(X), rtol=0, atol=0)
    assert list(net.collect_params()) == ["a.weight", "a.bias", "b.weight", "b.bias"]
