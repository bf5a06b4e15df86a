"""Gluon spellings a line-by-line port of the book's MXNet cells uses (docs/gluon-porting.md)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

import d2lcompat
from d2lcompat import init, nn, ops


def test_ctx_is_device() -> None:
    dev = d2lcompat.cpu()
    net = nn.Sequential(nn.Dense(4, in_units=3), nn.Dense(2))
    net.initialize(init.Normal(0.01), ctx=dev)
    net.initialize(ctx=dev, force_reinit=True)
    assert net[0].weight.list_ctx() == [dev]
    np.testing.assert_array_equal(ops.to_numpy(net[0].weight.data(ctx=dev)), ops.to_numpy(net[0].weight.data()))
    x = ops.ones((2, 3), ctx=dev)
    assert d2lcompat.device_of(x) == dev  # Gluon's x.ctx
    assert ops.dtype(ops.zeros((2,), ctx=dev)) == "float32"
    assert ops.shape(ops.full((2,), 1.0, ctx=dev)) == (2,)
    assert ops.shape(ops.arange(3, ctx=dev)) == (3,)
    assert ops.shape(ops.tensor([1.0], ctx=dev)) == (1,)
    p = d2lcompat.Parameter((2,), init="ones")
    p.initialize(ctx=dev)
    p.reset_ctx(dev)
    assert p.list_ctx() == [dev]
    net.collect_params().reset_ctx(dev)
    net.reset_ctx(dev)
    assert net[1].weight.list_devices() == [dev]


def test_renamed_methods_point_to_the_d2lcompat_spelling() -> None:
    net = nn.Dense(2)
    for gluon, ours in [("copyto", "copy_to"), ("as_in_ctx", "to_device"), ("ctx", "device_of"),
                        ("list_ctx", "list_devices")]:
        with pytest.raises(AttributeError, match=ours):
            getattr(net, gluon)
        with pytest.raises(AttributeError, match=ours):
            getattr(net.collect_params(), gluon)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'$"):
        net.nonsense  # noqa: B018


def test_params_of_one_block_and_sharing() -> None:
    net = nn.Sequential(nn.Dense(8, activation="relu"), nn.Dense(4))
    assert list(net[1].params) == ["weight", "bias"]
    assert list(net.params) == []  # own parameters only, as Gluon's
    shared = nn.Dense(8, activation="relu")
    net = nn.Sequential(nn.Dense(8, activation="relu"), shared,
                        nn.Dense(8, activation="relu", params=shared.params), nn.Dense(10))
    net.initialize()
    net(ops.random.uniform((2, 20)))
    assert net[1].weight is net[2].weight
    np.testing.assert_array_equal(ops.to_numpy(net[1].weight.data()), ops.to_numpy(net[2].weight.data()))


def test_params_get_and_get_constant() -> None:
    class MyDense(nn.Block):
        def __init__(self, units: int, in_units: int) -> None:
            super().__init__()
            self.weight = self.params.get("weight", shape=(in_units, units))
            self.bias = self.params.get("bias", shape=(units,), init="zeros")
            self.scale = self.params.get_constant("scale", np.full((units,), 2.0, np.float32))

        def forward(self, x: Any) -> Any:
            return (ops.matmul(x, self.weight.data()) + self.bias.data()) * self.scale.data()

    layer = MyDense(3, 5)
    assert list(layer.collect_params()) == ["weight", "bias", "scale"]
    assert layer.params.get("weight") is layer.weight
    assert layer.params.get("missing") is None
    layer.initialize(init.One())
    np.testing.assert_allclose(ops.to_numpy(layer(ops.ones((1, 5)))), [[10.0, 10.0, 10.0]])

    class Unnamed(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            self.params.get("not-an-identifier", shape=(2,))

    assert list(Unnamed().collect_params()) == ["not-an-identifier"]
    with pytest.raises(KeyError, match="get_constant"):
        nn.Dense(1).params.get_constant("c")


def test_children_public_and_literal_gluon_sequential() -> None:
    class MySequential(nn.Block):
        def add(self, block: nn.Block) -> None:
            self._children[block.name] = block  # the book's MXNet cell, literally

        def forward(self, x: Any) -> Any:
            for block in self._children.values():
                x = block(x)
            return x

    class PublicSequential(nn.Block):
        def __init__(self, *blocks: nn.Block) -> None:
            super().__init__()
            for b in blocks:
                self.register_child(b)

        def forward(self, x: Any) -> Any:
            for block in self.children():
                x = block(x)
            return x

    net = MySequential()
    net.add(nn.Dense(256, activation="relu"))
    net.add(nn.Dense(10))
    net.initialize()
    assert ops.shape(net(ops.random.uniform((2, 20)))) == (2, 10)
    assert list(net.collect_params()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert [k for k, _ in net.named_children()] == ["0", "1"]
    pub = PublicSequential(nn.Dense(3), nn.Dense(1))
    pub.initialize()
    assert ops.shape(pub(ops.ones((2, 4)))) == (2, 1)
    assert [type(c).__name__ for c in pub.children()] == ["Dense", "Dense"]


def test_name_scope_and_deepcopy_keep_working() -> None:
    class Net(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            with self.name_scope():
                self.dense = nn.Dense(2, in_units=3)

        def forward(self, x: Any) -> Any:
            return self.dense(x)

    net = Net()
    assert list(net.collect_params()) == ["dense.weight", "dense.bias"]
    original = nn.Sequential(nn.Dense(2, in_units=3))
    clone = copy.deepcopy(original)
    clone._children["x"] = nn.Dense(1)
    assert [k for k, _ in clone.named_children()] == ["0", "x"]
    assert [k for k, _ in original.named_children()] == ["0"]
