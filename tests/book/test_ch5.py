"""Chapter 5 (Builders' Guide) as the book's MXNet tab writes it, ported line by line to
d2lcompat (``np``/``npx`` become ``ops``; ``x.ctx`` becomes ``device_of(x)``), plus the
course notes' PyTorch-tab ``MyListDense``/``MyDictDense`` spellings. Each test is one
section; the asserted values are the ones the book prints."""

from __future__ import annotations

import os
from typing import Any

import numpy as onp
import pytest

import d2lcompat
from d2lcompat import Parameter, autograd, init, nn, ops


def _np(x: Any) -> onp.ndarray:
    return ops.to_numpy(x)


# ------------------------------------------------------------- model construction
def test_model_construction() -> None:
    net = nn.Sequential()
    net.add(nn.Dense(256, activation="relu"))
    net.add(nn.Dense(10))
    net.initialize()
    X = ops.random.uniform((2, 20))
    assert ops.shape(net(X)) == (2, 10)

    class MLP(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            self.hidden = nn.Dense(256, activation="relu")
            self.out = nn.Dense(10)

        def forward(self, X: Any) -> Any:
            return self.out(self.hidden(X))

    net = MLP()
    net.initialize()
    assert ops.shape(net(X)) == (2, 10)

    class MySequential(nn.Block):
        def add(self, block: Any) -> None:
            # Here, `block` is an instance of a `Block` subclass, and we assume that it
            # has a unique name. We save it in the member variable `_children`.
            self._children[block.name] = block

        def forward(self, X: Any) -> Any:
            for block in self._children.values():
                X = block(X)
            return X

    net = MySequential()
    net.add(nn.Dense(256, activation="relu"))
    net.add(nn.Dense(10))
    net.initialize()
    assert ops.shape(net(X)) == (2, 10)
    assert list(net.collect_params()) == ["0.weight", "0.bias", "1.weight", "1.bias"]

    class FixedHiddenMLP(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            # Random weight parameters created with `get_constant` are not updated
            # during training (i.e., constant parameters)
            self.rand_weight = self.params.get_constant("rand_weight", onp.random.uniform(size=(20, 20)))
            self.dense = nn.Dense(20, activation="relu")

        def forward(self, X: Any) -> Any:
            X = self.dense(X)
            # Use the created constant parameters, as well as the `relu` and `dot` functions
            X = ops.relu(ops.dot(X, self.rand_weight.data()) + 1)
            # Reuse the fully connected layer. This is equivalent to sharing parameters
            X = self.dense(X)
            # Control flow
            while ops.item(ops.sum(ops.abs(X))) > 1:
                X /= 2
            return ops.sum(X)

    net = FixedHiddenMLP()
    net.initialize()
    out = ops.item(net(X))
    assert 0 < abs(out) <= 1 or out == 0.0

    class NestMLP(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential()
            self.net.add(nn.Dense(64, activation="relu"), nn.Dense(32, activation="relu"))
            self.dense = nn.Dense(16, activation="relu")

        def forward(self, X: Any) -> Any:
            return self.dense(self.net(X))

    chimera = nn.Sequential()
    chimera.add(NestMLP(), nn.Dense(20), FixedHiddenMLP())
    chimera.initialize()
    assert ops.shape(chimera(X)) == ()


# ------------------------------------------------------------- parameter management
def test_parameters() -> None:
    net = nn.Sequential()
    net.add(nn.Dense(8, activation="relu"))
    net.add(nn.Dense(1))
    net.initialize()  # Use the default initialization method
    X = ops.random.uniform((2, 4))
    assert ops.shape(net(X)) == (2, 1)

    assert list(net[1].params) == ["weight", "bias"]
    assert net[1].weight.shape == (1, 8) and net[1].bias.shape == (1,)
    assert type(net[1].bias).__name__ == "Parameter"
    assert _np(net[1].bias.data()).tolist() == [0.0]
    # The book prints zeros: MXNet allocates the gradient at initialization. d2lcompat's
    # grad() is None before any gradient (PA05) and zeros after zero_grad() (GL05).
    assert net[1].weight.grad() is None
    net.zero_grad()
    assert _np(net[1].weight.grad()).tolist() == [[0.0] * 8]

    assert list(net[0].collect_params()) == ["weight", "bias"]
    assert list(net.collect_params()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert _np(net.collect_params()["1.bias"].data()).tolist() == [0.0]

    def block1() -> Any:
        net = nn.Sequential()
        net.add(nn.Dense(32, activation="relu"))
        net.add(nn.Dense(16, activation="relu"))
        return net

    def block2() -> Any:
        net = nn.Sequential()
        for _ in range(4):
            # Nested here
            net.add(block1())
        return net

    rgnet = nn.Sequential()
    rgnet.add(block2())
    rgnet.add(nn.Dense(10))
    rgnet.initialize()
    assert ops.shape(rgnet(X)) == (2, 10)
    assert rgnet[0][1][0].bias.shape == (32,)
    assert _np(rgnet[0][1][0].bias.data()).tolist() == [0.0] * 32

    # Parameter initialization
    net.initialize(init=init.Normal(sigma=0.01), force_reinit=True)
    assert abs(float(_np(net[0].weight.data()).std()) - 0.01) < 0.006
    net.initialize(init=init.Constant(1), force_reinit=True)
    assert _np(net[0].weight.data())[0].tolist() == [1.0, 1.0, 1.0, 1.0]
    net[0].weight.initialize(init=init.Xavier(), force_reinit=True)
    net[1].initialize(init=init.Constant(42), force_reinit=True)
    assert _np(net[1].weight.data()).tolist() == [[42.0] * 8]

    class MyInit(init.Initializer):
        def _init_weight(self, name: str, data: Any) -> None:
            data[:] = onp.random.uniform(-10, 10, data.shape)
            data *= onp.abs(data) >= 5

    net.initialize(MyInit(), force_reinit=True)
    w = _np(net[0].weight.data())
    assert ((w == 0) | (onp.abs(w) >= 5)).all()
    net[0].weight.set_data(net[0].weight.data() + 1)
    net[0].weight.set_data(ops.index_update(net[0].weight.data(), (0, 0), 42))
    assert _np(net[0].weight.data())[0, 0] == 42

    # Tied parameters
    net = nn.Sequential()
    # We need to give the shared layer a name so that we can refer to its parameters
    shared = nn.Dense(8, activation="relu")
    net.add(nn.Dense(8, activation="relu"), shared,
            nn.Dense(8, activation="relu", params=shared.params), nn.Dense(10))
    net.initialize()
    X = ops.random.uniform((2, 20))
    net(X)
    # Check whether the parameters are the same
    assert (_np(net[1].weight.data())[0] == _np(net[2].weight.data())[0]).all()
    net[1].weight.set_data(ops.index_update(net[1].weight.data(), (0, 0), 100))
    # Make sure that they are actually the same object rather than just having the same value
    assert _np(net[1].weight.data())[0, 0] == _np(net[2].weight.data())[0, 0] == 100


# ------------------------------------------------------------- deferred initialization
def test_deferred_init() -> None:
    def get_net() -> Any:
        net = nn.Sequential()
        net.add(nn.Dense(256, activation="relu"))
        net.add(nn.Dense(10))
        return net

    net = get_net()
    # MXNet prints -1 for an unknown dimension; d2lcompat marks it 0
    assert [p.shape for p in net.collect_params().values()] == [(256, 0), (256,), (10, 0), (10,)]
    net.initialize()
    assert [p.shape for p in net.collect_params().values()] == [(256, 0), (256,), (10, 0), (10,)]
    X = ops.random.uniform((2, 20))
    net(X)
    assert [p.shape for p in net.collect_params().values()] == [(256, 20), (256,), (10, 256), (10,)]


# ------------------------------------------------------------- custom layers
def test_custom_layers() -> None:
    class CenteredLayer(nn.Block):
        def forward(self, X: Any) -> Any:
            return X - ops.mean(X)

    layer = CenteredLayer()
    assert _np(layer(ops.tensor([1.0, 2, 3, 4, 5]))).tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]
    net = nn.Sequential()
    net.add(nn.Dense(128), CenteredLayer())
    net.initialize()
    Y = net(ops.random.uniform((4, 8)))
    assert abs(ops.item(ops.mean(Y))) < 1e-6

    class MyDense(nn.Block):
        def __init__(self, units: int, in_units: int) -> None:
            super().__init__()
            self.weight = self.params.get("weight", shape=(in_units, units))
            self.bias = self.params.get("bias", shape=(units,))

        def forward(self, x: Any) -> Any:
            dev = d2lcompat.device_of(x)  # MXNet: x.ctx
            linear = ops.dot(x, self.weight.data(ctx=dev)) + self.bias.data(ctx=dev)
            return ops.relu(linear)

    dense = MyDense(units=3, in_units=5)
    assert list(dense.params) == ["weight", "bias"]
    dense.initialize()
    out = _np(dense(ops.random.uniform((2, 5))))
    assert out.shape == (2, 3) and (out >= 0).all()
    net = nn.Sequential()
    net.add(MyDense(8, in_units=64), MyDense(1, in_units=8))
    net.initialize()
    assert ops.shape(net(ops.random.uniform((2, 64)))) == (2, 1)


def test_course_notes_list_and_dict_dense() -> None:
    d2lcompat.seed(5)
    # The chapter-5 course notes (PyTorch tab): self.params = ParameterList / ParameterDict
    class MyListDense(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            self.params = nn.ParameterList([Parameter((4, 4), init=init.Normal(1.0)) for _ in range(3)])
            self.params.append(Parameter((4, 1), init=init.Normal(1.0)))

        def forward(self, x: Any) -> Any:
            for i in range(len(self.params)):
                x = ops.matmul(x, self.params[i].data())
            return x

    net = MyListDense()
    net.initialize()
    assert list(net.collect_params()) == ["params.0", "params.1", "params.2", "params.3"]
    x = ops.ones((1, 4))
    want = onp.ones((1, 4), onp.float32)
    for p in net.params:
        want = want @ _np(p.data())
    onp.testing.assert_allclose(_np(net(x)), want, rtol=1e-4, atol=1e-4)

    class MyDictDense(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            self.params = nn.ParameterDict({
                "linear1": Parameter((4, 4), init=init.Normal(1.0)),
                "linear2": Parameter((4, 1), init=init.Normal(1.0)),
            })
            self.params.update({"linear3": Parameter((4, 2), init=init.Normal(1.0))})

        def forward(self, x: Any, choice: str = "linear1") -> Any:
            return ops.matmul(x, self.params[choice].data())

    net = MyDictDense()
    net.initialize()
    assert list(net.collect_params()) == ["params.linear1", "params.linear2", "params.linear3"]
    for choice, n in (("linear1", 4), ("linear2", 1), ("linear3", 2)):
        assert ops.shape(net(x, choice)) == (1, n)
    onp.testing.assert_allclose(_np(net(x, "linear3")), _np(net.params["linear3"].data()).sum(0, keepdims=True),
                                rtol=1e-4, atol=1e-4)

    model = nn.Sequential(MyDictDense(), MyListDense())
    model.initialize()
    assert ops.shape(model(x)) == (1, 1)
    assert list(model.collect_params())[:2] == ["0.params.linear1", "0.params.linear2"]


# ------------------------------------------------------------- file I/O
def test_read_write(tmp_path: Any) -> None:
    x = ops.arange(4)
    d2lcompat.save(os.path.join(tmp_path, "x-file"), [x])  # npx.save('x-file', x)
    x2 = d2lcompat.load(os.path.join(tmp_path, "x-file"))
    assert _np(x2[0]).tolist() == [0, 1, 2, 3]
    y = ops.zeros(4)
    d2lcompat.save(os.path.join(tmp_path, "x-files"), [x, y])
    x2, y2 = d2lcompat.load(os.path.join(tmp_path, "x-files"))
    assert _np(x2).tolist() == [0, 1, 2, 3] and _np(y2).tolist() == [0.0] * 4
    mydict = {"x": x, "y": y}
    d2lcompat.save(os.path.join(tmp_path, "mydict"), mydict)
    mydict2 = d2lcompat.load(os.path.join(tmp_path, "mydict"))
    assert _np(mydict2["x"]).tolist() == [0, 1, 2, 3]

    class MLP(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            self.hidden = nn.Dense(256, activation="relu")
            self.output = nn.Dense(10)

        def forward(self, x: Any) -> Any:
            return self.output(self.hidden(x))

    net = MLP()
    net.initialize()
    X = ops.random.uniform((2, 20))
    Y = net(X)
    net.save_parameters(os.path.join(tmp_path, "mlp.params"))
    clone = MLP()
    clone.load_parameters(os.path.join(tmp_path, "mlp.params"))
    Y_clone = clone(X)
    assert (_np(Y_clone) == _np(Y)).all()


# ------------------------------------------------------------- GPUs
def test_gpus() -> None:
    assert d2lcompat.cpu() == d2lcompat.Device("cpu", 0)
    n = d2lcompat.num_gpus()
    assert n >= 0

    def try_gpu(i: int = 0) -> Any:
        """Return gpu(i) if exists, otherwise return cpu()."""
        return d2lcompat.gpu(i) if d2lcompat.num_gpus() >= i + 1 else d2lcompat.cpu()

    assert try_gpu() == d2lcompat.try_gpu()
    assert try_gpu(10) == d2lcompat.cpu()
    x = ops.tensor([1, 2, 3])
    assert d2lcompat.device_of(x) == d2lcompat.default_device()  # x.ctx
    X = ops.ones((2, 3), device=try_gpu())
    assert d2lcompat.device_of(X) == try_gpu()
    net = nn.Sequential()
    net.add(nn.Dense(1))
    net.initialize(ctx=try_gpu())
    assert ops.shape(net(X)) == (2, 1)
    assert net[0].weight.data().shape is not None and net[0].weight.list_ctx() == [try_gpu()]


@pytest.mark.parametrize("reader", ["data", "native"])
def test_parameter_data_is_the_value(reader: str) -> None:
    # One rule on every backend: data() is the framework's tensor (the value, what ops
    # take), native() is the framework's variable object.
    net = nn.Dense(2, in_units=3)
    net.initialize(init.One())
    got = getattr(net.weight, reader)()
    assert _np(got).tolist() == [[1.0] * 3] * 2
    with autograd.record():
        assert ops.shape(net(ops.ones((1, 3)))) == (1, 2)
