"""Core semantics of blocks and parameters beyond the catalogue: errors, edge cases, sharing."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import d2lcompat
from d2lcompat import Constant, Parameter, autograd, init, nn, ops, optim


def np_(x: Any) -> np.ndarray:
    return ops.to_numpy(x)


def test_forgetting_super_init_is_a_clear_error() -> None:
    class Bad(nn.Block):
        def __init__(self) -> None:
            self.dense = nn.Dense(2)

    with pytest.raises(d2lcompat.D2LCompatError, match=r"super\(\).__init__\(\)"):
        Bad()


def test_reassigning_an_attribute_replaces_the_registration() -> None:
    class M(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Dense(2, in_units=2)
            self.a = nn.Dense(3, in_units=2)
            self.b = Parameter((2,))
            with pytest.raises(TypeError, match="'b'.*Parameter to NoneType"):
                self.b = None  # Gluon's rule (GL02): never silently unregistered
            del self.b
            self.b = None

    names = list(M().collect_params())
    assert names == ["a.weight", "a.bias"]
    assert M().collect_params()["a.weight"].shape == (3, 2)


def test_use_bias_false_has_no_bias() -> None:
    d = nn.Dense(3, in_units=2, use_bias=False)
    assert list(d.collect_params()) == ["weight"] and d.bias is None


def test_shared_block_keeps_its_first_name() -> None:
    shared = nn.Dense(4, in_units=4)
    net = nn.Sequential(nn.Dense(4, in_units=4), shared, nn.Activation("relu"), shared)
    assert list(net.collect_params()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert net[3].weight.name == "1.weight"


def test_unnamed_parameter_repr_and_name() -> None:
    p = Parameter((2, 3))
    assert p.name == "" and repr(p) == "Parameter (shape=(2, 3), dtype=float32)"


def test_parameter_initialize_own_init_precedence() -> None:
    net = nn.Dense(2, in_units=2, weight_initializer=init.Constant(5.0))
    net.initialize(init.One())
    np.testing.assert_array_equal(np_(net.weight.data()), 5.0)  # own init beats the default
    net.weight.initialize(init.Constant(7.0), force_reinit=True)  # explicit beats own
    np.testing.assert_array_equal(np_(net.weight.data()), 7.0)


def test_initializer_specs() -> None:
    net = nn.Dense(2, in_units=2, weight_initializer="ones", bias_initializer=3)
    net.initialize()
    np.testing.assert_array_equal(np_(net.weight.data()), 1.0)
    np.testing.assert_array_equal(np_(net.bias.data()), 3.0)
    with pytest.raises(d2lcompat.D2LCompatError, match="Unknown initializer 'glorot'"):
        nn.Dense(2, weight_initializer="glorot")


def test_initializers_statistics() -> None:
    d2lcompat.seed(0)
    p = Parameter((400, 600))
    p.initialize(init.MSRAPrelu(slope=0.0))
    assert abs(np_(p.data()).std() - np.sqrt(2 / 600)) < 0.002
    p.initialize(init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=1), force_reinit=True)
    assert abs(np_(p.data()).std() - np.sqrt(1 / 600)) < 0.002
    p.initialize(init.Uniform(0.5), force_reinit=True)
    w = np_(p.data())
    assert w.max() <= 0.5 and w.min() >= -0.5 and w.max() > 0.49


def test_reinitialize_keeps_the_native_variable_when_mutable() -> None:
    net = nn.Dense(2, in_units=2)
    net.initialize()
    before = net.weight.native()
    net.initialize(init.One(), force_reinit=True)
    if d2lcompat._registry.active().SUPPORTS_MUTABLE_VARIABLES:
        assert net.weight.native() is before
    np.testing.assert_array_equal(np_(net.weight.data()), 1.0)


def test_second_initialize_warns_once() -> None:
    net = nn.Sequential(nn.Dense(2, in_units=2), nn.Dense(2, in_units=2))
    net.initialize()
    with pytest.warns(d2lcompat.D2LCompatWarning, match="4 parameter"):
        net.initialize()


def test_constant_is_ready_without_initialize_and_never_warns() -> None:
    c = Constant(np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(np_(c.data()), np.arange(6).reshape(2, 3))
    with pytest.raises(ValueError):
        c.grad_req = "write"

    class M(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            self.c = c

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M().initialize()


def test_set_data_on_deferred_parameter_takes_the_shape() -> None:
    p = Parameter((3, 0))
    p.set_data(np.ones((3, 5), np.float32))
    assert p.shape == (3, 5)
    with pytest.raises(d2lcompat.ShapeError):
        Parameter((3, 0)).set_data(np.ones((4, 5)))


def test_set_data_refuses_float_into_int() -> None:
    p = Parameter((2,), dtype="int32", init="zeros")
    p.initialize()
    with pytest.raises(d2lcompat.DTypeError):
        p.set_data(np.array([1.5, 2.5]))
    p.set_data([1, 2])
    np.testing.assert_array_equal(np_(p.data()), [1, 2])


def test_shape_setter_refuses_known_dimensions() -> None:
    p = Parameter((3, 0))
    with pytest.raises(d2lcompat.ShapeError, match=r"\(3, 0\)"):
        p.shape = (4, 2)


def test_infer_shape_missing_is_a_clear_error() -> None:
    class NoInfer(nn.Block):
        def __init__(self) -> None:
            super().__init__()
            self.w = Parameter((0, 2))

        def forward(self, x: Any) -> Any:
            return ops.matmul(x, self.w.data())

    with pytest.raises(d2lcompat.DeferredInitializationError, match="infer_shape"):
        NoInfer()(ops.ones((1, 3)))


def test_uninitialized_known_shape_error() -> None:
    p = Parameter((2,))
    with pytest.raises(d2lcompat.DeferredInitializationError, match="initialize"):
        p.data()


def test_share_parameters_between_distinct_blocks() -> None:
    a = nn.Dense(3, in_units=2)
    b = nn.Dense(3, in_units=2).share_parameters(a.collect_params())
    net = nn.Sequential(a, b)
    assert list(net.collect_params()) == ["0.weight", "0.bias"]
    net.initialize(init.One())
    np.testing.assert_array_equal(np_(b.weight.data()), 1.0)
    with pytest.raises(d2lcompat.ShapeError):
        nn.Dense(4, in_units=2).share_parameters(a.collect_params())


def test_functional_call_leaves_the_stored_values() -> None:
    net = nn.Dense(1, in_units=2, use_bias=False)
    net.initialize(init.One())
    x = ops.ones((1, 2))
    assert ops.item(net.functional_call({"weight": ops.full((1, 2), 2.0)}, x)) == 4.0
    assert ops.item(net(x)) == 2.0
    with pytest.raises(d2lcompat.D2LCompatError, match="no parameter"):
        net.functional_call({"bias": ops.ones((1,))}, x)


def test_grad_req_add_accumulates_and_zero_grad_resets() -> None:
    lin = nn.Dense(1, in_units=1, use_bias=False)
    lin.initialize(init.Constant(3.0))
    net = nn.Sequential(lin, lin)
    lin.weight.grad_req = "add"
    x = ops.ones((1, 1))
    for _ in range(2):
        autograd.grad(lambda: ops.sum(net(x)), net.collect_params())
    assert ops.item(lin.weight.grad()) == 12.0
    lin.weight.zero_grad()
    assert ops.to_numpy(lin.weight.grad()).tolist() == [[0.0]]  # Gluon: zeros (GL05)
    autograd.grad(lambda: ops.sum(net(x)), net.collect_params())
    assert ops.item(lin.weight.grad()) == 6.0  # accumulation starts again from zero


def test_sgd_momentum_and_weight_decay() -> None:
    p = Parameter((1,), init=init.Constant(1.0))
    p.initialize()
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.5)
    g = {p.name: ops.ones((1,))}
    opt.step(g)  # v = 1 + 0.5*1 = 1.5; w = 1 - 0.15
    assert abs(ops.item(p.data()) - 0.85) < 1e-6
    opt.step(g)  # v = 0.9*1.5 + 1 + 0.5*0.85 = 2.775; w = 0.85 - 0.2775
    assert abs(ops.item(p.data()) - 0.5725) < 1e-6


def test_dropout_uses_the_seeded_mask_in_training_only() -> None:
    drop = nn.Dropout(0.5)
    x = ops.ones((4, 8))
    np.testing.assert_array_equal(np_(drop(x)), 1.0)
    d2lcompat.seed(3)
    with autograd.record():
        y = np_(drop(x))
    keep = np.random.default_rng(3).random((4, 8)) >= 0.5
    np.testing.assert_array_equal(y, np.where(keep, 2.0, 0.0))


def test_flatten_lambda_activation() -> None:
    x = ops.tensor(np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 12)
    assert ops.shape(nn.Flatten()(x)) == (2, 12)
    np.testing.assert_array_equal(np_(nn.Lambda(ops.abs)(x)), np.abs(np_(x)))
    np.testing.assert_allclose(np_(nn.Activation("sigmoid")(x)), 1 / (1 + np.exp(-np_(x))), rtol=1e-6)
    with pytest.raises(d2lcompat.D2LCompatError, match="Unknown activation 'gelu2'"):
        nn.Activation("gelu2")


def test_sequential_index_errors_and_iteration() -> None:
    net = nn.Sequential(nn.Dense(2), nn.Dense(3))
    assert [type(b).__name__ for b in net] == ["Dense", "Dense"]
    assert net[-1] is list(net)[1]
    with pytest.raises(IndexError, match="out of range"):
        net[5]


def test_collect_params_select_list_and_keys_order() -> None:
    net = nn.Sequential(nn.Dense(2, in_units=1), nn.Dense(1, in_units=2))
    assert list(net.collect_params(["1.*", ".*0.bias"])) == ["0.bias", "1.weight", "1.bias"]


def test_parameter_dict_helpers() -> None:
    net = nn.Sequential(nn.Dense(2, in_units=1))
    params = net.collect_params()
    params.setattr("grad_req", "null")
    assert all(p.grad_req == "null" for p in params.values())
    assert params.get("nope") is None and "0.weight" in params
    with pytest.raises(KeyError, match="0.weight"):
        params["nope"]
