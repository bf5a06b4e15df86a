"""Unit tests of the PaddlePaddle adapter's primitives and ops against NumPy.

Collected only in the paddle environment. The adapter is instantiated directly, so these
tests do not depend on the rest of the core beyond `d2lcompat._backend`.
"""

from __future__ import annotations  # noqa: I001 - d2lcompat must be imported first

from typing import Any

# `import d2lcompat` must come first: importing d2lcompat_paddle._adapter first would re-enter
# d2lcompat/__init__ (via d2lcompat._backend), which activates this very adapter half-loaded.
import d2lcompat  # noqa: F401
import numpy as np
import paddle  # noqa: TID251 - this file tests the paddle adapter
import pytest

from d2lcompat._backend import DTYPES, OP_NAMES, Backend, Ops
from d2lcompat_paddle import _adapter
from d2lcompat_paddle._adapter import PaddleBackend, PaddleOps

CPU = ("cpu", 0)
RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def be() -> PaddleBackend:
    return PaddleBackend()


@pytest.fixture(scope="module")
def ops(be: PaddleBackend) -> Ops:
    return be.ops


def _t(be: PaddleBackend, a: Any, dtype: str | None = None) -> Any:
    return be.from_numpy(np.asarray(a), dtype, CPU)


def _n(be: PaddleBackend, x: Any) -> np.ndarray:
    return be.to_numpy(x)


def _close(actual: Any, expected: Any, be: PaddleBackend, rtol: float = 1e-5) -> None:
    got = _n(be, actual)
    exp = np.asarray(expected)
    assert got.shape == exp.shape, (got.shape, exp.shape)
    np.testing.assert_allclose(got, exp, rtol=rtol, atol=1e-6)


# ----------------------------------------------------------------------- meta


def test_class_contract(be: PaddleBackend) -> None:
    assert issubclass(PaddleBackend, Backend)
    assert be.name == "paddle"
    assert PaddleBackend.SUPPORTS_MUTABLE_VARIABLES
    assert not PaddleBackend.SUPPORTS_CPU_DEVICES
    assert PaddleBackend.SUPPORTS_COMPILE
    assert be.version == paddle.__version__
    assert isinstance(be.ops, PaddleOps)
    missing = [n for n in OP_NAMES if not callable(getattr(be.ops, n, None))]
    assert missing == []
    be.configure(1)  # the optional hook is a no-op


def test_dtype_tables_cover_contract() -> None:
    assert set(_adapter._DTYPES) == set(DTYPES) == PaddleBackend.SUPPORTED_DTYPES


# -------------------------------------------------------------------- devices


def test_device_count(be: PaddleBackend) -> None:
    assert be.device_count("cpu") == 1
    expected = paddle.device.cuda.device_count() if paddle.is_compiled_with_cuda() else 0
    assert be.device_count("gpu") == expected


def test_native_device_and_device_of(be: PaddleBackend) -> None:
    place = be.native_device(CPU)
    assert isinstance(place, paddle.CPUPlace)
    x = be.from_numpy(np.zeros(3, np.float32), "float32", CPU)
    assert x.place.is_cpu_place()
    assert be.device_of(x) == CPU
    assert be.device_of(be.full((2,), 1.0, "float32", CPU)) == CPU
    assert be.device_of(be.arange(0, 3, 1, None, CPU)) == CPU
    assert be.device_of(be.new_variable(np.zeros(2), "float32", CPU, True)) == CPU


def test_move_same_device_copy_semantics(be: PaddleBackend) -> None:
    x = _t(be, np.arange(4, dtype=np.float32))
    assert be.move(x, CPU, copy=False) is x
    y = be.move(x, CPU, copy=True)
    assert y is not x
    np.testing.assert_array_equal(_n(be, y), _n(be, x))
    # A real copy: writing into y leaves x alone.
    be.assign(y, be.full((4,), 9.0, "float32", CPU))
    np.testing.assert_array_equal(_n(be, x), np.arange(4, dtype=np.float32))


def test_move_copy_keeps_gradient_path(be: PaddleBackend) -> None:
    v = be.new_variable(np.ones(3), "float32", CPU, True)
    out = be.ops.sum(be.ops.multiply(be.move(v, CPU, copy=True), 2.0))
    out.backward()
    np.testing.assert_allclose(_n(be, be.native_grad(v)), np.full(3, 2.0))


def test_differentiable_transfer_layer(be: PaddleBackend) -> None:
    # The PyLayer used for cross-device moves, exercised CPU->CPU (no GPU needed).
    v = be.new_variable(np.ones(3), "float32", CPU, True)
    moved = _adapter._DifferentiableMove.apply(v, paddle.CPUPlace())
    assert moved is not v and be.device_of(moved) == CPU
    (moved * 3.0).sum().backward()
    np.testing.assert_allclose(_n(be, be.native_grad(v)), np.full(3, 3.0))


@pytest.mark.skipif(
    not paddle.is_compiled_with_cuda() or paddle.device.cuda.device_count() == 0,
    reason="needs a GPU",
)
def test_move_to_gpu_and_back(be: PaddleBackend) -> None:  # pragma: no cover - GPU only
    gpu = ("gpu", 0)
    assert isinstance(be.native_device(gpu), paddle.CUDAPlace)
    x = _t(be, np.arange(3, dtype=np.float32))
    g = be.move(x, gpu, copy=False)
    assert be.device_of(g) == gpu
    assert be.move(g, gpu, copy=False) is g
    assert be.device_of(be.from_numpy(np.zeros(2), "float32", gpu)) == gpu
    assert be.device_of(be.full((2,), 0.0, "float32", gpu)) == gpu
    v = be.new_variable(np.ones(3), "float32", gpu, True)
    back = be.move(v, CPU, copy=False)
    assert be.device_of(back) == CPU
    (back * 2.0).sum().backward()
    assert be.device_of(be.native_grad(v)) == gpu
    np.testing.assert_allclose(_n(be, be.native_grad(v)), np.full(3, 2.0))


# -------------------------------------------------------------------- tensors


def test_is_tensor(be: PaddleBackend) -> None:
    assert be.is_tensor(_t(be, [1.0]))
    assert be.is_tensor(be.new_variable(np.zeros(1), "float32", CPU, True))
    assert not be.is_tensor(np.zeros(1))
    assert not be.is_tensor(1.0)


@pytest.mark.parametrize(
    "dtype", ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"]
)
def test_numpy_round_trip_exact(be: PaddleBackend, dtype: str) -> None:
    if dtype == "bool":
        a = RNG.random((3, 4)) > 0.5
    elif dtype.startswith("float"):
        a = (RNG.standard_normal((3, 4)) * 100).astype(dtype)
    else:
        a = RNG.integers(0, 100, (3, 4)).astype(dtype)
    x = be.from_numpy(a, None, CPU)
    assert be.dtype(x) == dtype
    back = be.to_numpy(x)
    assert back.dtype == a.dtype
    np.testing.assert_array_equal(back, a)
    # Cast on the way in as well.
    y = be.from_numpy(a, dtype, CPU)
    np.testing.assert_array_equal(be.to_numpy(y), a)


def test_from_numpy_copies_and_handles_views(be: PaddleBackend) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    x = be.from_numpy(a[:, ::2], None, CPU)  # non-contiguous view
    a[0, 0] = 100.0
    np.testing.assert_array_equal(_n(be, x), [[0.0, 2.0], [3.0, 5.0]])
    out = be.to_numpy(x)
    out[0, 0] = -1.0  # the host array is a copy: the tensor keeps its value
    assert _n(be, x)[0, 0] == 0.0
    s = be.from_numpy(np.float32(3.5), None, CPU)
    assert be.shape(s) == ()
    assert be.to_numpy(s).shape == ()


def test_from_numpy_casts(be: PaddleBackend) -> None:
    x = be.from_numpy(np.array([1.0, 2.0]), "float32", CPU)  # float64 in
    assert be.dtype(x) == "float32"
    y = be.from_numpy(np.array([1, 2]), "float16", CPU)
    assert be.dtype(y) == "float16"
    np.testing.assert_array_equal(be.to_numpy(y), np.array([1, 2], np.float16))


def _bf16_bits(a: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 -> bfloat16 bit patterns (finite inputs)."""
    u = a.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def test_bfloat16_from_float_and_back(be: PaddleBackend) -> None:
    a = np.array([1.0, 1.00390625, 1.01171875, -3.3, 1e-3, 65504.0], np.float32)
    x = be.from_numpy(a, "bfloat16", CPU)
    assert be.dtype(x) == "bfloat16"
    back = be.to_numpy(x)
    assert back.dtype.name in ("bfloat16", "float32")  # float32 only without ml_dtypes
    expected = (_bf16_bits(a).astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(back.astype(np.float32), expected)
    # And a bfloat16 tensor made by paddle itself reads back the same.
    np.testing.assert_array_equal(
        be.to_numpy(be.cast(_t(be, a), "bfloat16")).astype(np.float32), expected
    )


def test_bfloat16_without_ml_dtypes_is_exact_float32(
    be: PaddleBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_adapter, "_ml_dtypes", None)
    a = np.array([0.5, -2.0, 3.140625, 1e30], np.float32)
    back = be.to_numpy(be.from_numpy(a, "bfloat16", CPU))
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, (_bf16_bits(a).astype(np.uint32) << 16).view(np.float32))


def test_bfloat16_ml_dtypes_round_trip(be: PaddleBackend) -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")  # not a paddle dependency
    a = np.array([[1.5, -2.0], [3.140625, 1e-30]], np.float32).astype(ml_dtypes.bfloat16)
    x = be.from_numpy(a, None, CPU)
    assert be.dtype(x) == "bfloat16"
    back = be.to_numpy(x)
    assert back.dtype == a.dtype
    np.testing.assert_array_equal(back.view(np.uint16), a.view(np.uint16))
    y = be.from_numpy(a, "float32", CPU)
    np.testing.assert_array_equal(be.to_numpy(y), a.astype(np.float32))


def test_float16_round_trip_bits(be: PaddleBackend) -> None:
    a = np.array([65504.0, 6.1e-5, 5.96e-8, -0.0, np.inf], np.float16)
    back = be.to_numpy(be.from_numpy(a, "float16", CPU))
    np.testing.assert_array_equal(back.view(np.uint16), a.view(np.uint16))


def test_shape_dtype_cast(be: PaddleBackend) -> None:
    x = _t(be, np.zeros((2, 3, 4), np.float32))
    s = be.shape(x)
    assert s == (2, 3, 4) and type(s) is tuple and all(type(d) is int for d in s)
    assert be.dtype(x) == "float32"
    for name in DTYPES:
        y = be.cast(x, name)
        assert be.dtype(y) == name
        assert be.shape(y) == (2, 3, 4)
    z = be.cast(_t(be, [1.7, -1.7]), "int32")
    np.testing.assert_array_equal(_n(be, z), np.array([1.7, -1.7]).astype(np.int32))


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "bool", "bfloat16"])
def test_full(be: PaddleBackend, dtype: str) -> None:
    value = True if dtype == "bool" else 3
    x = be.full((2, 3), value, dtype, CPU)
    assert be.dtype(x) == dtype and be.shape(x) == (2, 3)
    np.testing.assert_array_equal(_n(be, x).astype(np.float64), np.full((2, 3), float(value)))
    assert be.shape(be.full((), 1.5, "float32", None)) == ()


def test_arange(be: PaddleBackend) -> None:
    x = be.arange(0, 5, 1, None, CPU)
    assert be.dtype(x) == "int64"
    np.testing.assert_array_equal(_n(be, x), np.arange(5))
    y = be.arange(2, 11, 3, "int64", CPU)
    np.testing.assert_array_equal(_n(be, y), np.arange(2, 11, 3))
    z = be.arange(0, 1, 0.1, None, CPU)
    assert be.dtype(z) == "float32"
    # Same rounding as NumPy computing in float64: exactly float32(k * 0.1).
    np.testing.assert_array_equal(_n(be, z), np.arange(0, 1, 0.1).astype(np.float32))
    w = be.arange(5, 0, -2, "float64", None)
    np.testing.assert_array_equal(_n(be, w), np.arange(5, 0, -2, dtype=np.float64))
    assert be.dtype(be.arange(np.int64(0), np.int64(3), 1, None, None)) == "int64"
    np.testing.assert_array_equal(_n(be, be.arange(4, None, 1, None, None)), np.arange(4))
    h = be.arange(0, 4, 1, "float16", CPU)
    assert be.dtype(h) == "float16"


# ------------------------------------------------------------------ variables


def test_new_variable_is_parameter_and_backward_fills_grad(be: PaddleBackend) -> None:
    value = RNG.standard_normal((3, 2))
    v = be.new_variable(value, "float32", CPU, True)
    assert isinstance(v, paddle.Tensor) and v.is_leaf and not v.stop_gradient
    assert isinstance(v, paddle.base.framework.EagerParamBase)
    assert be.dtype(v) == "float32" and be.shape(v) == (3, 2)
    np.testing.assert_allclose(_n(be, v), value.astype(np.float32))
    assert be.read(v) is v
    assert be.native_grad(v) is None
    loss = be.ops.sum(be.ops.square(be.read(v)))
    loss.backward()
    np.testing.assert_allclose(_n(be, be.native_grad(v)), 2 * value.astype(np.float32), rtol=1e-6)
    # backward accumulates, as in torch
    be.ops.sum(be.read(v)).backward()
    np.testing.assert_allclose(
        _n(be, be.native_grad(v)), 2 * value.astype(np.float32) + 1, rtol=1e-6
    )
    be.clear_native_grad(v)
    assert be.native_grad(v) is None


def test_new_variable_not_trainable_and_integer(be: PaddleBackend) -> None:
    c = be.new_variable(np.ones(3), "float32", CPU, False)
    assert c.stop_gradient
    i = be.new_variable(np.arange(3), "int64", CPU, True)
    assert i.stop_gradient and be.dtype(i) == "int64"
    assert be.native_grad(c) is None
    be.clear_native_grad(c)  # no gradient: a no-op
    be.clear_native_grad(_t(be, [1.0]))


def test_read_returns_substitute_unchanged(be: PaddleBackend) -> None:
    x = _t(be, [1.0, 2.0])
    assert be.read(x) is x


def test_assign_in_place(be: PaddleBackend) -> None:
    v = be.new_variable(np.zeros((2, 2)), "float32", CPU, True)
    y = be.ops.multiply(v, 2.0)  # v already used in a graph
    src = _t(be, np.full((2, 2), 5.0, np.float32))
    out = be.assign(v, src)
    assert out is v
    assert not v.stop_gradient and v.is_leaf
    np.testing.assert_array_equal(_n(be, v), np.full((2, 2), 5.0))
    # The variable holds a copy, not an alias of src.
    be.assign(src, be.full((2, 2), 1.0, "float32", CPU))
    np.testing.assert_array_equal(_n(be, v), np.full((2, 2), 5.0))
    be.ops.sum(y).backward()
    np.testing.assert_array_equal(_n(be, be.native_grad(v)), np.full((2, 2), 2.0))
    # A value that is itself part of a graph is written without joining it.
    w = be.new_variable(np.ones((2, 2)), "float32", CPU, True)
    be.assign(v, be.ops.multiply(w, 3.0))
    assert v.is_leaf and be.native_grad(w) is None


# ------------------------------------------------------------------- autodiff


def test_value_and_grad_tied_variable(be: PaddleBackend) -> None:
    ops = be.ops
    w_np = RNG.standard_normal((3, 3)).astype(np.float32)
    x_np = RNG.standard_normal((2, 3)).astype(np.float32)
    w = be.new_variable(w_np, "float32", CPU, True)
    x = _t(be, x_np)

    def fn(vals: list[Any]) -> Any:
        (wt,) = vals
        h = ops.matmul(ops.matmul(x, wt), wt)  # w used twice
        return ops.sum(h)

    out, grads = be.value_and_grad(fn, [be.read(w)])
    expected = (x_np @ w_np @ w_np).sum()
    np.testing.assert_allclose(_n(be, out), expected, rtol=1e-5)
    assert out.stop_gradient
    # d/dW sum(x W W) = x^T 1 W^T + (x W)^T 1
    ones = np.ones((2, 3), np.float32)
    g_expected = x_np.T @ ones @ w_np.T + (x_np @ w_np).T @ ones
    assert len(grads) == 1
    np.testing.assert_allclose(_n(be, grads[0]), g_expected, rtol=1e-4, atol=1e-5)
    # The stored variable is untouched and its native grad is not filled.
    assert be.native_grad(w) is None


def test_value_and_grad_unused_and_constant(be: PaddleBackend) -> None:
    a = _t(be, np.array([1.0, 2.0], np.float32))
    b = _t(be, np.array([3.0, 4.0, 5.0], np.float32))
    out, (ga, gb) = be.value_and_grad(lambda v: be.ops.sum(be.ops.exp(v[0])), [a, b])
    np.testing.assert_allclose(_n(be, ga), np.exp([1.0, 2.0]), rtol=1e-6)
    np.testing.assert_array_equal(_n(be, gb), np.zeros(3))
    # fn that ignores every input.
    k = _t(be, np.float32(7.0))
    out, (g,) = be.value_and_grad(lambda v: k, [a])
    assert float(_n(be, out)) == 7.0
    np.testing.assert_array_equal(_n(be, g), np.zeros(2))


def test_value_and_grad_under_no_grad(be: PaddleBackend) -> None:
    a = _t(be, np.array([1.0, 2.0], np.float32))
    with paddle.no_grad():
        _, (g,) = be.value_and_grad(lambda v: be.ops.sum(be.ops.square(v[0])), [a])
    np.testing.assert_allclose(_n(be, g), [2.0, 4.0])


def test_value_and_grad_step_backward_path_matches_and_touches_nothing_else(
    be: PaddleBackend,
) -> None:
    # The eager train step's differentiation (issue 22): loss.backward() on fresh leaves
    # where they are the only leaves of the graph, with value_and_grad's numbers; a held
    # variable (a frozen parameter) is out of the graph during the step and gets its
    # stop_gradient back; a tied use sums; nothing gets a native .grad.
    ops = be.ops
    w_np = RNG.standard_normal((3, 3)).astype(np.float32)
    x_np = RNG.standard_normal((2, 3)).astype(np.float32)
    w = be.new_variable(w_np, "float32", CPU, True)
    frozen = be.new_variable(np.full((3,), 0.5, np.float32), "float32", CPU, True)
    x = _t(be, x_np)

    def fn(vals: list[Any]) -> Any:
        (wt,) = vals
        return ops.sum(ops.matmul(ops.matmul(x, wt), wt) * frozen), "aux"

    plan: dict[str, Any] = {}
    for _ in range(2):
        out, grads, aux = be.value_and_grad_step(fn, [be.read(w)], [frozen], (x,), plan)
        want_out, want_grads, _ = be.value_and_grad_aux(fn, [be.read(w)])
        assert plan == {"backward": True} and aux == "aux"
        np.testing.assert_allclose(_n(be, out), _n(be, want_out), rtol=1e-6)
        np.testing.assert_allclose(_n(be, grads[0]), _n(be, want_grads[0]), rtol=1e-5)
        assert grads[0].stop_gradient and out.stop_gradient
        assert be.native_grad(w) is None and be.native_grad(frozen) is None
        assert not frozen.stop_gradient  # given back


def test_value_and_grad_step_keeps_paddle_grad_for_foreign_leaves(be: PaddleBackend) -> None:
    # A native tensor of the user's with stop_gradient=False in the graph: backward()
    # would fill its .grad, so the structure keeps paddle.grad (decided once); a batch
    # tensor that wants a gradient keeps paddle.grad for that call.
    ops = be.ops
    w = be.new_variable(np.array([1.0, 2.0], np.float32), "float32", CPU, True)
    foreign = paddle.to_tensor(np.array([3.0, 4.0], np.float32), stop_gradient=False)

    def fn(vals: list[Any]) -> Any:
        return ops.sum(vals[0] * vals[0] * foreign), None

    plan: dict[str, Any] = {}
    for _ in range(2):
        out, (g,), _ = be.value_and_grad_step(fn, [be.read(w)], [], (), plan)
        assert plan == {"backward": False}
        np.testing.assert_allclose(_n(be, g), [6.0, 16.0])
        assert foreign.grad is None
    x = paddle.to_tensor(np.array([1.0, 1.0], np.float32), stop_gradient=False)

    def fx(vals: list[Any]) -> Any:
        return ops.sum(vals[0] * x), None

    plan = {}
    out, (g,), _ = be.value_and_grad_step(fx, [be.read(w)], [], (x,), plan)
    np.testing.assert_allclose(_n(be, g), [1.0, 1.0])
    assert x.grad is None and plan == {}


def test_nonfinite_mean(be: PaddleBackend) -> None:
    # total * scale when every gradient is finite, NaN when one value is inf or NaN;
    # the gradients are left as they were. On the CPU the finite case is read from
    # squared norms; a norm that overflows (finite values, squares above float32's
    # range) takes the exact form, coalesce_tensor + Σ(flat·0), and stays finite.
    total = _t(be, np.float32(6.0))

    def mean(grads: list[Any]) -> float:
        out = be.nonfinite_mean(total, 0.25, grads)
        assert out is not None and out.dtype == paddle.float32 and tuple(out.shape) == ()
        return float(_n(be, out))

    grads = [_t(be, np.arange(6, dtype=np.float32).reshape(2, 3)), _t(be, np.ones(4, np.float32))]
    assert mean(grads) == 6.0 * 0.25
    for bad in (np.inf, -np.inf, np.nan):
        values = np.ones(4, np.float32)
        values[2] = bad
        grads[1] = _t(be, values)
        assert np.isnan(mean(grads))
        np.testing.assert_array_equal(_n(be, grads[1]), values)
    big = [_t(be, np.full(3, 3e38, np.float32)), _t(be, np.full(2, 3e38, np.float32))]
    assert mean(big) == 6.0 * 0.25  # finite values whose squares and sum overflow
    big[1] = _t(be, np.array([3e38, np.nan], np.float32))  # overflow, then a NaN
    assert np.isnan(mean(big))
    np.testing.assert_array_equal(_n(be, big[0]), np.full(3, 3e38, np.float32))
    # float64 gradients: the same; mixed or half-float dtypes: left to the core (None).
    wide = be.nonfinite_mean(_t(be, np.float64(6.0)), 0.5, [_t(be, np.ones(3))])
    assert wide is not None and wide.dtype == paddle.float64 and float(_n(be, wide)) == 3.0
    assert be.nonfinite_mean(total, 0.5, [_t(be, np.ones(3)), grads[0]]) is None
    half = _t(be, np.ones(3, np.float16))
    assert be.nonfinite_mean(_t(be, np.float16(6.0)), 0.5, [half]) is None


def test_stop_gradient(be: PaddleBackend) -> None:
    v = be.new_variable(np.ones(2), "float32", CPU, True)
    y = be.stop_gradient(be.ops.multiply(v, 2.0))
    assert y.stop_gradient
    np.testing.assert_array_equal(_n(be, y), [2.0, 2.0])


def test_compile_forward(be: PaddleBackend) -> None:
    ops = be.ops
    w = be.new_variable(RNG.standard_normal((4, 3)), "float32", CPU, True)
    b = be.new_variable(RNG.standard_normal(4), "float32", CPU, True)

    def forward(values: list[Any], x: Any) -> Any:
        wt, bt = values
        return ops.relu(ops.linear(x, wt, bt))

    compiled = be.compile(forward)
    for batch in (2, 5):  # a new shape must still work
        x = _t(be, RNG.standard_normal((batch, 3)).astype(np.float32))
        _close(compiled([w, b], x), _n(be, forward([w, b], x)), be)
    out = compiled([w, b], _t(be, np.ones((2, 3), np.float32)))
    ops.sum(out).backward()
    assert be.native_grad(w) is not None


def test_to_static_runs_what_sot_declines_as_python(be: PaddleBackend) -> None:
    # SOT compiles no graph of fewer than its MIN_GRAPH_SIZE (10) ops: it runs the
    # function's Python behind its guards. `_to_static` then calls the Python itself
    # (`plain`); a function of more ops stays SOT's. The same values before and after
    # the decision, for one, two and more arguments.
    def small(*xs: Any) -> Any:
        return sum(xs) * 2.0 + 1.0

    def big(*xs: Any) -> Any:
        y = sum(xs)
        for _ in range(12):  # 24 ops
            y = y * 1.5 + 0.5
        return y

    def small_np(*xs: np.ndarray) -> np.ndarray:
        return sum(xs) * 2.0 + 1.0

    def big_np(*xs: np.ndarray) -> np.ndarray:
        y = sum(xs)
        for _ in range(12):
            y = y * 1.5 + 0.5
        return y

    for fn, ref, declined in ((small, small_np, True), (big, big_np, False)):
        call = _adapter._to_static(fn)
        assert call.plain == [None, None, None]  # type: ignore[attr-defined]
        for n in (1, 2, 3):
            hosts = [_arr(2, 3) for _ in range(n)]
            for _ in range(3):
                _close(call(*[_t(be, h) for h in hosts]), ref(*hosts), be)
            assert call.plain[min(n, 3) - 1] is declined, (fn.__name__, n)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------ ops


def _arr(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def test_math_binary(be: PaddleBackend, ops: Ops) -> None:
    a, b = _arr(2, 3), _arr(3)  # broadcasting
    ta, tb = _t(be, a), _t(be, b)
    _close(ops.add(ta, tb), a + b, be)
    _close(ops.subtract(ta, tb), a - b, be)
    _close(ops.multiply(ta, tb), a * b, be)
    _close(ops.divide(ta, tb), a / b, be, rtol=1e-4)
    _close(ops.maximum(ta, tb), np.maximum(a, b), be)
    _close(ops.minimum(ta, tb), np.minimum(a, b), be)
    # Python scalars on either side
    _close(ops.add(ta, 1.0), a + 1.0, be)
    _close(ops.subtract(2.0, ta), 2.0 - a, be)
    _close(ops.multiply(3, ta), 3 * a, be)
    _close(ops.divide(1.0, tb), 1.0 / b, be, rtol=1e-4)
    _close(ops.maximum(ta, 0.0), np.maximum(a, 0.0), be)
    _close(ops.minimum(0.5, ta), np.minimum(0.5, a), be)


def test_math_unary(be: PaddleBackend, ops: Ops) -> None:
    a = _arr(3, 4)
    pos = np.abs(a) + 0.1
    _close(ops.exp(_t(be, a)), np.exp(a), be)
    _close(ops.log(_t(be, pos)), np.log(pos), be)
    _close(ops.abs(_t(be, a)), np.abs(a), be)
    _close(ops.sqrt(_t(be, pos)), np.sqrt(pos), be)
    _close(ops.square(_t(be, a)), np.square(a), be)
    _close(ops.relu(_t(be, a)), np.maximum(a, 0), be)
    _close(ops.sigmoid(_t(be, a)), 1 / (1 + np.exp(-a)), be)
    _close(ops.tanh(_t(be, a)), np.tanh(a), be)


def test_matmul_and_dot(be: PaddleBackend, ops: Ops) -> None:
    a, b = _arr(2, 3), _arr(3, 4)
    _close(ops.matmul(_t(be, a), _t(be, b)), a @ b, be)
    u, v = _arr(5), _arr(5)
    d = ops.dot(_t(be, u), _t(be, v))
    assert be.shape(d) == ()
    _close(d, np.dot(u, v), be, rtol=1e-5)
    _close(ops.dot(_t(be, a), _t(be, b)), a @ b, be)
    m = _arr(3)
    _close(ops.dot(_t(be, a), _t(be, m)), a @ m, be)
    bat1, bat2 = _arr(4, 2, 3), _arr(4, 3, 5)
    _close(ops.matmul(_t(be, bat1), _t(be, bat2)), bat1 @ bat2, be, rtol=1e-4)


def test_where_and_comparisons(be: PaddleBackend, ops: Ops) -> None:
    a, b = _arr(3, 4), _arr(3, 4)
    ta, tb = _t(be, a), _t(be, b)
    _close(ops.where(ops.greater(ta, tb), ta, tb), np.where(a > b, a, b), be)
    checks = {
        "equal": np.equal,
        "not_equal": np.not_equal,
        "less": np.less,
        "less_equal": np.less_equal,
        "greater": np.greater,
        "greater_equal": np.greater_equal,
    }
    b[0, 0] = a[0, 0]  # make equality happen at least once
    tb = _t(be, b)
    for name, ref in checks.items():
        r = getattr(ops, name)(ta, tb)
        assert be.dtype(r) == "bool", name
        np.testing.assert_array_equal(_n(be, r), ref(a, b), err_msg=name)
        np.testing.assert_array_equal(_n(be, getattr(ops, name)(ta, 0.0)), ref(a, 0.0))
    _close(ops.where(ops.less(ta, 0.0), 0.0, ta), np.where(a < 0, 0.0, a), be)


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "norm"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2), [0, 1]])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(be: PaddleBackend, ops: Ops, name: str, axis: Any, keepdims: bool) -> None:
    a = _arr(2, 3, 4)
    np_axis = tuple(axis) if isinstance(axis, list) else axis
    if name == "norm":
        expected = np.sqrt(np.sum(a * a, axis=np_axis, keepdims=keepdims))
    else:
        expected = getattr(np, {"max": "amax", "min": "amin"}.get(name, name))(
            a, axis=np_axis, keepdims=keepdims
        )
    got = getattr(ops, name)(_t(be, a), axis=axis, keepdims=keepdims)
    _close(got, expected, be, rtol=1e-5)


def test_reduction_defaults(be: PaddleBackend, ops: Ops) -> None:
    a = _arr(3, 4)
    for name, ref in [("sum", np.sum), ("mean", np.mean), ("max", np.max), ("min", np.min)]:
        r = getattr(ops, name)(_t(be, a))
        assert be.shape(r) == ()
        _close(r, ref(a), be, rtol=1e-5)
    _close(ops.norm(_t(be, a)), np.linalg.norm(a), be, rtol=1e-5)
    i = _t(be, np.array([[1, 2], [3, 4]], np.int64))
    np.testing.assert_array_equal(_n(be, ops.sum(i, axis=0)), [4, 6])
    np.testing.assert_array_equal(_n(be, ops.max(i)), 4)


def test_max_gradient_split_among_ties(be: PaddleBackend, ops: Ops) -> None:
    x = _t(be, np.array([1.0, 3.0, 3.0], np.float32))
    _, (g,) = be.value_and_grad(lambda v: ops.max(v[0]), [x])
    np.testing.assert_allclose(_n(be, g), [0.0, 0.5, 0.5])


def test_norm_gradient_at_zero_is_finite(be: PaddleBackend, ops: Ops) -> None:
    _, (g,) = be.value_and_grad(lambda v: ops.norm(v[0]), [_t(be, np.zeros(3, np.float32))])
    assert np.all(np.isfinite(_n(be, g)))


def test_split_with_checked_arguments(be: PaddleBackend, ops: Ops) -> None:
    # The adapter's contract (`Ops`): an int dividing the axis, or normalized indices.
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    for args in ((2, 0), (3, 1), (4, -1), (2, 2), ((1, 3), -1), ((), 1), ((0, 0, 2), 1),
                 ((4,), 2)):
        got = ops.split(_t(be, a), *args)
        want = np.split(a, *args)
        assert isinstance(got, list) and len(got) == len(want), args
        for g, w in zip(got, want):
            _close(g, w, be)


def test_shape_ops(be: PaddleBackend, ops: Ops) -> None:
    a = _arr(2, 3, 4)
    ta = _t(be, a)
    _close(ops.reshape(ta, (4, 6)), a.reshape(4, 6), be)
    _close(ops.reshape(ta, [-1, 4]), a.reshape(-1, 4), be)
    _close(ops.reshape(ta, (24,)), a.reshape(24), be)
    _close(ops.transpose(ta), a.transpose(), be)
    _close(ops.transpose(ta, (1, 0, 2)), a.transpose(1, 0, 2), be)
    _close(ops.transpose(ta, [2, 0, 1]), a.transpose(2, 0, 1), be)
    b = _arr(2, 3, 4)
    tb = _t(be, b)
    _close(ops.concat([ta, tb]), np.concatenate([a, b]), be)
    _close(ops.concat((ta, tb), axis=-1), np.concatenate([a, b], axis=-1), be)
    _close(ops.stack([ta, tb]), np.stack([a, b]), be)
    _close(ops.stack((ta, tb), axis=2), np.stack([a, b], axis=2), be)
    _close(ops.expand_dims(ta, 0), np.expand_dims(a, 0), be)
    _close(ops.expand_dims(ta, -1), np.expand_dims(a, -1), be)
    _close(ops.expand_dims(ta, (0, 2)), np.expand_dims(a, (0, 2)), be)
    c = _arr(1, 3, 1)
    tc = _t(be, c)
    _close(ops.squeeze(tc), np.squeeze(c), be)
    _close(ops.squeeze(tc, 0), np.squeeze(c, 0), be)
    _close(ops.squeeze(tc, (0, 2)), np.squeeze(c, (0, 2)), be)
    s = _t(be, np.float32(2.0))
    assert be.shape(ops.transpose(s)) == ()


def test_softmax(be: PaddleBackend, ops: Ops) -> None:
    a = _arr(3, 5)

    def softmax(x: np.ndarray, axis: int) -> np.ndarray:
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    _close(ops.softmax(_t(be, a)), softmax(a, -1), be)
    _close(ops.softmax(_t(be, a), axis=0), softmax(a, 0), be)
    _close(ops.log_softmax(_t(be, a)), np.log(softmax(a, -1)), be, rtol=1e-4)
    _close(ops.log_softmax(_t(be, a), axis=0), np.log(softmax(a, 0)), be, rtol=1e-4)


def test_linear(be: PaddleBackend, ops: Ops) -> None:
    x, w, b = _arr(5, 3), _arr(4, 3), _arr(4)
    _close(ops.linear(_t(be, x), _t(be, w), _t(be, b)), x @ w.T + b, be, rtol=1e-5)
    _close(ops.linear(_t(be, x), _t(be, w), None), x @ w.T, be, rtol=1e-5)
    x3 = _arr(2, 5, 3)
    _close(ops.linear(_t(be, x3), _t(be, w), _t(be, b)), x3 @ w.T + b, be, rtol=1e-5)
    # gradients of the hot path, against the closed form
    wv = be.new_variable(w, "float32", CPU, True)
    bv = be.new_variable(b, "float32", CPU, True)
    _, (gw, gb) = be.value_and_grad(lambda v: ops.sum(ops.linear(_t(be, x), v[0], v[1])), [wv, bv])
    np.testing.assert_allclose(_n(be, gw), np.ones((5, 4), np.float32).T @ x, rtol=1e-5)
    np.testing.assert_allclose(_n(be, gb), np.full(4, 5.0))


# ------------------------------------------------- SOT graph breaks (issue 22 item 5)
_COUNT_BREAKS = r'''
import sys, warnings
warnings.simplefilter("error", DeprecationWarning)
from paddle.jit.sot.utils import info_collector
seen = []
_orig = info_collector.BreakGraphReasonInfo.collect_break_graph_reason
def _spy(reason):
    seen.append(reason)
    return _orig(reason)
info_collector.BreakGraphReasonInfo.collect_break_graph_reason = staticmethod(_spy)
import numpy as np
import d2lcompat
from d2lcompat import nn, ops, init
from d2lcompat_conformance.models import lenet
which = sys.argv[1]
if which == "lenet":
    net, shape = lenet(), (1, 28, 28)
elif which == "mlp":
    net, shape = nn.Sequential(nn.Dense(256, activation="relu"), nn.Dense(10)), (20,)
else:
    net = nn.Sequential(
        nn.Conv2D(6, 3, padding=1), nn.BatchNorm(), nn.Activation("relu"), nn.MaxPool2D(2),
        nn.Conv2D(8, 3, strides=2), nn.BatchNorm(), nn.Activation("tanh"), nn.GlobalAvgPool2D(),
        nn.Flatten(), nn.Dropout(0.5), nn.Dense(10, activation="sigmoid"), nn.LayerNorm())
    shape = (3, 16, 16)
d2lcompat.seed(0)
net.initialize(init.Xavier())
xs = [ops.random.uniform((n,) + shape) for n in (4, 4, 3, 5, 4)]
eager = [ops.to_numpy(net(x)) for x in xs]
net.hybridize()
with warnings.catch_warnings():
    warnings.simplefilter("error", d2lcompat.D2LCompatWarning)
    for x, want in zip(xs, eager):
        np.testing.assert_allclose(ops.to_numpy(net(x)), want, rtol=1e-5, atol=1e-6)
print("BREAKS", len(seen), [str(r).splitlines()[0] for r in seen])
'''


@pytest.mark.parametrize("model", ["lenet", "mlp", "conv_bn"])
def test_no_sot_graph_break_in_d2lcompat_model_paths(model: str) -> None:
    """Hybridized models built from d2lcompat's layers (Dense, Conv2D, pooling,
    BatchNorm, LayerNorm, Sequential, Flatten, Dropout, activations) compile whole under
    Paddle's SOT, the last smaller batch included: SOT records no graph break. Counted
    by SOT's own break-reason collector, in a fresh process (SOT caches translations)."""
    import os
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _COUNT_BREAKS, model],
        capture_output=True, text=True, timeout=300, env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("BREAKS")][-1]
    assert line.startswith("BREAKS 0 "), line


def test_parameter_data_is_the_tensor_and_native_the_variable() -> None:
    p = d2lcompat.Parameter((2,), init="ones")
    p.initialize()
    assert isinstance(p.data(), paddle.Tensor)
    assert p.native() is p.data() and not p.native().stop_gradient
