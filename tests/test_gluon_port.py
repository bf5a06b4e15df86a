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


# ---------------------------------------------------------------- issue 18 (GL01–GL05)
def test_dense_flatten_default_and_last_axis() -> None:
    d = nn.Dense(4)
    d.initialize()
    assert ops.shape(d(ops.ones((2, 3, 5)))) == (2, 4) and d.weight.shape == (4, 15)
    with pytest.raises(d2lcompat.ShapeError, match="expects inputs with 15 features"):
        d(ops.ones((2, 4, 5)))
    last = nn.Dense(4, flatten=False)
    last.initialize()
    assert ops.shape(last(ops.ones((2, 3, 5)))) == (2, 3, 4) and last.weight.shape == (4, 5)
    assert "flatten=False" in repr(last) and "flatten" not in repr(d)
    net = nn.Sequential(nn.Conv2D(2, 3), nn.Dense(3)).hybridize()
    net.initialize()
    for n in (2, 2, 1):
        assert ops.shape(net(ops.ones((n, 1, 6, 6)))) == (n, 3)


def test_gluon_positional_dense_arguments() -> None:
    d = nn.Dense(3, "relu", False, False, "float32")  # units, activation, use_bias, flatten, dtype
    assert d.bias is None and d._flatten is False and d.weight.dtype == "float32"


def test_attribute_type_rule_keeps_the_registration() -> None:
    class Net(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Dense(2, in_units=2)

    net = Net()
    with pytest.raises(d2lcompat.BlockAttributeError, match="'layer' of Net from Dense to int"):
        net.layer = 1
    assert list(net.collect_params()) == ["layer.weight", "layer.bias"]
    with pytest.raises(TypeError):
        net.layer = nn.Sequential()  # another block type: Gluon raises too
    blocks = nn.BlockDict({"a": nn.Dense(2)})
    blocks["a"] = nn.Conv2D(2, 3)  # a container's keys may change type (register_child)
    assert type(blocks["a"]).__name__ == "Conv2D"


def test_params_assignment_and_deletion() -> None:
    class M(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            self.params = nn.ParameterDict({"w": d2lcompat.Parameter((2,))})

    m = M()
    assert list(m.collect_params()) == ["params.w"] and isinstance(m.params, nn.ParameterDict)
    with pytest.raises(TypeError):
        m.params = 3
    del m.params
    assert list(m.collect_params()) == [] and list(m.params) == []


def test_lambda_names_and_dropout_rates() -> None:
    assert ops.to_numpy(nn.Lambda("exp")(ops.zeros((1,)))).tolist() == [1.0]
    with pytest.raises(d2lcompat.D2LCompatError, match="no op 'tanhh'"):
        nn.Lambda("tanhh")
    with pytest.raises(d2lcompat.D2LCompatError, match=r"\[0, 1\]"):
        nn.Dropout(1.5)
    with pytest.raises(d2lcompat.D2LCompatError, match="Unknown activation"):
        nn.Activation("swish")


def test_zero_grad_zeros_are_not_a_gradient_for_optimizers() -> None:
    net = nn.Dense(1, in_units=1)
    net.initialize(init.One())
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "wd": 0.5})
    net.zero_grad()
    assert ops.to_numpy(net.weight.grad()).tolist() == [[0.0]]
    with pytest.raises(d2lcompat.D2LCompatError, match="no gradient"):
        trainer.step(1)  # a zeroed gradient is stale: no silent weight-decay step
    assert ops.to_numpy(net.weight.data()).tolist() == [[1.0]]
    p = d2lcompat.Parameter((2,), grad_req="null")
    p.initialize()
    assert p.grad() is None
    p.grad_req = "write"  # Gluon allocates a zero gradient
    assert ops.to_numpy(p.grad()).tolist() == [0.0, 0.0]


def test_initializer_equality_and_constant_dtypes() -> None:
    assert init.Constant(np.array([1.0, 2.0])) == init.Constant([1, 2])
    assert init.Constant([1, 2]) != init.Constant([1, 3]) and init.Zero() != init.One()
    assert init.Uniform() == init.Uniform(0.07) and hash(init.Uniform()) == hash(init.Uniform(0.07))
    assert (init.Normal(0.5) == 3) is False
    assert d2lcompat.Constant([[1, 2]]).dtype == "float32"
    assert d2lcompat.Constant(np.array([1, 2])).dtype == "float32"
    assert d2lcompat.Constant(ops.tensor([1, 2])).dtype == ops.dtype(ops.tensor([1, 2]))
    assert d2lcompat.Constant([1, 2], dtype="int32").dtype == "int32"
    c = d2lcompat.Constant([[1, 2], [3, 4]])
    assert ops.to_numpy(ops.ones((2, 2)) + c.data()).tolist() == [[2.0, 3.0], [4.0, 5.0]]
