"""Unit tests of the TensorFlow adapter: every primitive and every op against NumPy.

The adapter is used directly (not through ``d2lcompat.ops``) so that a failure
points at the adapter, not at the core. Collected only when
``D2LCOMPAT_BACKEND=tensorflow`` (see tests/conftest.py).
"""

from __future__ import annotations

# `import d2lcompat` must come first: importing d2lcompat_tensorflow._adapter first
# re-enters the package while the core loads the chosen adapter.
import d2lcompat  # noqa: F401

# isort: split
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf  # noqa: TID251 - this file tests the tensorflow adapter

from d2lcompat._backend import DTYPES, OP_NAMES, Backend
from d2lcompat._errors import DeviceError, DTypeError
from d2lcompat._registry import active
from d2lcompat_tensorflow._adapter import TensorFlowBackend, TensorFlowOps

CPU0 = ("cpu", 0)


@pytest.fixture(scope="module")
def b() -> TensorFlowBackend:
    backend = active()
    assert isinstance(backend, TensorFlowBackend)
    return backend


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _f32(*shape: int) -> np.ndarray:
    return _rng().standard_normal(shape).astype(np.float32)


def _t(b: TensorFlowBackend, a: Any) -> Any:
    return b.from_numpy(np.asarray(a), None, None)


def _np(x: Any) -> np.ndarray:
    return np.asarray(x.numpy()) if isinstance(x, (tf.Tensor, tf.Variable)) else np.asarray(x)


def _close(actual: Any, expected: Any, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    got = _np(actual)
    want = np.asarray(expected)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------- meta
def test_is_a_backend_with_the_declared_flags(b: TensorFlowBackend) -> None:
    assert isinstance(b, Backend)
    assert b.name == "tensorflow"
    assert b.SUPPORTS_MUTABLE_VARIABLES is True
    assert b.SUPPORTS_CPU_DEVICES is True
    assert b.SUPPORTS_COMPILE is True
    assert b.SUPPORTED_DTYPES == frozenset(DTYPES)
    assert b.version == tf.__version__
    assert isinstance(b.ops, TensorFlowOps)


def test_every_op_name_is_implemented(b: TensorFlowBackend) -> None:
    missing = [n for n in OP_NAMES if not callable(getattr(b.ops, n, None))]
    assert missing == []


def test_no_other_framework_is_imported() -> None:
    for other in ("torch", "jax", "paddle"):
        assert other not in sys.modules, other


def test_startup_logging_is_quiet() -> None:
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") is not None


# --------------------------------------------------------------------- devices
def test_device_counts(b: TensorFlowBackend) -> None:
    assert b.device_count("cpu") == len(tf.config.list_logical_devices("CPU")) >= 1
    assert b.device_count("gpu") == len(tf.config.list_logical_devices("GPU"))


def test_native_device_strings(b: TensorFlowBackend) -> None:
    assert b.native_device(CPU0) == "/CPU:0"
    if b.device_count("gpu"):
        assert b.native_device(("gpu", 0)) == "/GPU:0"
    # TF would silently fall back to /CPU:0 for these: the adapter refuses them.
    with pytest.raises(DeviceError):
        b.native_device(("cpu", b.device_count("cpu")))
    with pytest.raises(DeviceError):
        b.native_device(("gpu", b.device_count("gpu")))
    with pytest.raises(DeviceError):
        b.native_device(("tpu", 0))


def test_device_of_tensors_and_variables(b: TensorFlowBackend) -> None:
    x = b.from_numpy(_f32(3), None, CPU0)
    assert x.device.endswith("device:CPU:0")
    assert b.device_of(x) == CPU0
    v = b.new_variable(_f32(2), "float32", CPU0, True)
    assert b.device_of(v) == CPU0


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("/job:localhost/replica:0/task:0/device:CPU:0", ("cpu", 0)),
        ("/job:localhost/replica:0/task:0/device:CPU:3", ("cpu", 3)),
        ("/job:localhost/replica:0/task:0/device:GPU:1", ("gpu", 1)),
        ("/device:GPU:2", ("gpu", 2)),
        ("/CPU:1", ("cpu", 1)),
    ],
)
def test_device_of_parses_tf_device_strings(
    b: TensorFlowBackend, name: str, want: tuple[str, int]
) -> None:
    class Fake:
        device = name

    assert b.device_of(Fake()) == want


def test_device_of_rejects_unknown_kinds(b: TensorFlowBackend) -> None:
    class Fake:
        device = "/job:localhost/replica:0/task:0/device:TPU:0"

    with pytest.raises(DeviceError, match="TPU"):
        b.device_of(Fake())


def test_device_of_a_symbolic_tensor_is_the_default(b: TensorFlowBackend) -> None:
    seen: list[Any] = []

    @tf.function
    def f(x: tf.Tensor) -> tf.Tensor:
        seen.append(b.device_of(x))
        return x

    f(tf.ones(2))
    assert seen == [("gpu", 0) if b.device_count("gpu") else CPU0]


def test_move_without_copy_returns_the_same_object(b: TensorFlowBackend) -> None:
    x = b.from_numpy(_f32(3), None, CPU0)
    assert b.move(x, CPU0, copy=False) is x
    v = b.new_variable(_f32(3), "float32", CPU0, True)
    assert b.move(v, CPU0, copy=False) is v


def test_move_with_copy_returns_a_new_tensor(b: TensorFlowBackend) -> None:
    x = b.from_numpy(_f32(3), None, CPU0)
    y = b.move(x, CPU0, copy=True)
    assert y is not x
    assert b.device_of(y) == CPU0
    _close(y, x.numpy())
    v = b.new_variable(_f32(3), "float32", CPU0, True)
    w = b.move(v, CPU0, copy=True)
    assert w is not v and not isinstance(w, tf.Variable)
    v.assign(np.zeros(3, np.float32))
    _close(w, _f32(3))  # a snapshot, not a view of the variable


# --------------------------------------------------------------------- tensors
def test_is_tensor(b: TensorFlowBackend) -> None:
    assert b.is_tensor(tf.ones(2))
    assert b.is_tensor(tf.Variable(1.0))
    assert not b.is_tensor(np.ones(2))
    assert not b.is_tensor([1.0])
    assert not b.is_tensor(1.0)


_SAMPLES: dict[str, np.ndarray] = {
    "float16": np.array([[0.1, -2.5e-4, 65504.0]], np.float16),
    "bfloat16": np.array([[0.1, -3.0e38, 1.0 / 3.0]], ml_dtypes.bfloat16),
    "float32": np.array([[0.1, -1e-30, np.pi]], np.float32),
    "float64": np.array([[0.1, -1e-300, np.pi]], np.float64),
    "int8": np.array([[-128, 0, 127]], np.int8),
    "int16": np.array([[-32768, 1, 32767]], np.int16),
    "int32": np.array([[-(2**31), 1, 2**31 - 1]], np.int32),
    "int64": np.array([[-(2**63), 1, 2**63 - 1]], np.int64),
    "uint8": np.array([[0, 1, 255]], np.uint8),
    "bool": np.array([[True, False, True]]),
}


@pytest.mark.parametrize("dtype", DTYPES)
def test_from_numpy_to_numpy_round_trip_is_exact(b: TensorFlowBackend, dtype: str) -> None:
    arr = _SAMPLES[dtype]
    x = b.from_numpy(arr, None, CPU0)
    assert type(x).__name__ == "EagerTensor"
    assert b.dtype(x) == dtype
    assert b.shape(x) == (1, 3)
    back = b.to_numpy(x)
    assert isinstance(back, np.ndarray)
    assert back.dtype == arr.dtype
    assert back.tobytes() == arr.tobytes()


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_round_trip_from_float32(b: TensorFlowBackend, dtype: str) -> None:
    src = _f32(5, 4)
    np_dtype = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(np.float16)
    x = b.from_numpy(src, dtype, None)
    assert b.dtype(x) == dtype
    back = b.to_numpy(x)
    assert back.dtype == np_dtype
    assert back.tobytes() == src.astype(np_dtype).tobytes()
    # And back through a variable.
    v = b.new_variable(back, dtype, None, True)
    assert b.to_numpy(v).tobytes() == back.tobytes()


def test_from_numpy_copies_and_casts(b: TensorFlowBackend) -> None:
    src = np.array([1.7, -2.7, 0.0])
    x = b.from_numpy(src, "int32", None)
    assert b.dtype(x) == "int32"
    np.testing.assert_array_equal(b.to_numpy(x), src.astype(np.int32))
    y = b.from_numpy(src, None, None)
    assert b.dtype(y) == "float64"
    src[0] = 100.0
    assert b.to_numpy(y)[0] == 1.7  # no aliasing of the caller's buffer
    out = b.to_numpy(y)
    out[1] = 5.0
    assert b.to_numpy(y)[1] == -2.7  # nor of the tensor's


def test_from_numpy_rejects_unknown_dtypes(b: TensorFlowBackend) -> None:
    with pytest.raises(DTypeError):
        b.from_numpy(np.ones(2, np.uint32), None, None)
    with pytest.raises(DTypeError):
        b.from_numpy(np.ones(2), "complex64", None)


def test_to_numpy_of_a_scalar_is_a_0d_array(b: TensorFlowBackend) -> None:
    out = b.to_numpy(tf.constant(2.5))
    assert isinstance(out, np.ndarray) and out.shape == () and out == 2.5


def test_dtype_of_an_unknown_tf_dtype_raises(b: TensorFlowBackend) -> None:
    with pytest.raises(DTypeError):
        b.dtype(tf.constant([1 + 2j]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cast(b: TensorFlowBackend, dtype: str) -> None:
    src = np.array([0.0, 1.5, -2.5, 3.0], np.float32)
    if dtype == "uint8":
        src = np.abs(src)
    x = b.cast(_t(b, src), dtype)
    assert b.dtype(x) == dtype
    want = src.astype(np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else dtype)
    np.testing.assert_array_equal(b.to_numpy(x), want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_full(b: TensorFlowBackend, dtype: str) -> None:
    x = b.full((2, 3), 1, dtype, CPU0)
    assert b.dtype(x) == dtype and b.shape(x) == (2, 3)
    assert b.device_of(x) == CPU0
    np.testing.assert_array_equal(b.to_numpy(x).astype(np.float64), np.ones((2, 3)))


def test_full_follows_numpy_conversion(b: TensorFlowBackend) -> None:
    np.testing.assert_array_equal(b.to_numpy(b.full((3,), 1.7, "int32", None)), [1, 1, 1])
    np.testing.assert_array_equal(b.to_numpy(b.full((), 0.5, "float32", None)), 0.5)
    assert b.shape(b.full((), 0.5, "float32", None)) == ()
    np.testing.assert_array_equal(b.to_numpy(b.full((2,), True, "bool", None)), [True, True])
    assert b.shape(b.full((0, 3), 2.0, "float32", None)) == (0, 3)
    _close(b.full((2,), tf.constant(3.0, tf.float64), "float32", None), [3.0, 3.0])


@pytest.mark.parametrize(
    ("start", "stop", "step", "dtype"),
    [
        (0, 5, 1, None),
        (2, 11, 3, None),
        (5, 0, -2, None),
        (3, 3, 1, None),
        (0, 5, 1, "float32"),
        (0.0, 1.0, 0.1, None),
        (-1.0, 1.0, 0.25, "float64"),
        (1.0, -1.0, -0.3, None),
        (0, 2, 0.5, "float16"),
        (0, 2, 0.25, "bfloat16"),
        (0, 7, 2, "int32"),
    ],
)
def test_arange_matches_numpy(
    b: TensorFlowBackend, start: Any, stop: Any, step: Any, dtype: str | None
) -> None:
    x = b.arange(start, stop, step, dtype, CPU0)
    ints = all(isinstance(v, int) for v in (start, stop, step))
    want_dtype = dtype or ("int64" if ints else "float32")
    assert b.dtype(x) == want_dtype
    np_dtype = np.dtype(ml_dtypes.bfloat16) if want_dtype == "bfloat16" else np.dtype(want_dtype)
    want = np.arange(start, stop, step, dtype=np.float64).astype(np_dtype)
    got = b.to_numpy(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=1e-6)


def test_arange_rejects_a_zero_step(b: TensorFlowBackend) -> None:
    with pytest.raises(ValueError):
        b.arange(0, 3, 0, None, None)


# ------------------------------------------------------------------- variables
def test_new_variable(b: TensorFlowBackend) -> None:
    v = b.new_variable(np.arange(6.0).reshape(2, 3), "float32", CPU0, True)
    assert isinstance(v, tf.Variable) and v.trainable
    assert b.dtype(v) == "float32" and b.shape(v) == (2, 3) and b.device_of(v) == CPU0
    _close(v, np.arange(6.0).reshape(2, 3))
    c = b.new_variable(np.ones(2), "float32", None, False)
    assert not c.trainable
    i = b.new_variable(np.ones(2), "int64", None, True)
    assert b.dtype(i) == "int64" and not i.trainable  # only floats carry gradients


def test_read_gives_the_value(b: TensorFlowBackend) -> None:
    # Parameter.data() is the framework's tensor type on every backend: a tf.Tensor
    v = b.new_variable(np.ones(2), "float32", None, True)
    r = b.read(v)
    assert isinstance(r, tf.Tensor) and not isinstance(r, tf.Variable)
    _close(r, np.ones(2))
    t = tf.ones(2)
    assert b.read(t) is t  # a tensor substituted by functional_call / autograd


def test_assign_keeps_the_variable(b: TensorFlowBackend) -> None:
    v = b.new_variable(np.zeros((2, 2)), "float32", CPU0, True)
    ref = v.ref()
    out = b.assign(v, _t(b, np.full((2, 2), 7.0, np.float32)))
    assert out is v and v.ref() == ref
    _close(v, np.full((2, 2), 7.0))


def test_assign_inside_tf_function_is_seen_by_it(b: TensorFlowBackend) -> None:
    v = b.new_variable(np.zeros(2), "float32", None, True)
    f = b.compile(lambda values, x: b.ops.add(b.read(v), x))
    _close(f([], tf.ones(2)), [1.0, 1.0])
    b.assign(v, tf.constant([5.0, 6.0]))
    _close(f([], tf.ones(2)), [6.0, 7.0])  # same trace, new value


# -------------------------------------------------------------------- autodiff
def test_value_and_grad_matches_the_analytic_gradient(b: TensorFlowBackend) -> None:
    w0, x0 = _f32(4, 3), _f32(5, 4)

    def fn(vals: Sequence[Any]) -> Any:
        w, x = vals
        h = b.ops.tanh(b.ops.matmul(x, w))
        return b.ops.sum(b.ops.square(h))

    out, (gw, gx) = b.value_and_grad(fn, [_t(b, w0), _t(b, x0)])
    h = np.tanh(x0 @ w0)
    _close(out, np.sum(h**2), rtol=1e-5)
    dz = 2 * h * (1 - h**2)
    _close(gw, x0.T @ dz, rtol=1e-4, atol=1e-5)
    _close(gx, dz @ w0.T, rtol=1e-4, atol=1e-5)


def test_value_and_grad_through_linear_and_variables(b: TensorFlowBackend) -> None:
    w = b.new_variable(_f32(3, 4), "float32", None, True)
    bias = b.new_variable(np.zeros(3), "float32", None, False)  # trainable flag ignored
    x = _t(b, _f32(2, 4))

    def fn(vals: Sequence[Any]) -> Any:
        return b.ops.sum(b.ops.linear(x, vals[0], vals[1]))

    out, (gw, gb) = b.value_and_grad(fn, [w, bias])
    _close(out, np.sum(x.numpy() @ w.numpy().T))
    _close(gw, np.tile(np.sum(x.numpy(), axis=0), (3, 1)), rtol=1e-5)
    _close(gb, np.full(3, 2.0))


def test_value_and_grad_unused_and_integer_inputs_get_zeros(b: TensorFlowBackend) -> None:
    a, unused, idx = _t(b, _f32(3)), _t(b, _f32(2, 2)), _t(b, np.array([1, 2], np.int64))

    def fn(vals: Sequence[Any]) -> Any:
        return b.ops.sum(b.ops.multiply(vals[0], 2.0))

    out, grads = b.value_and_grad(fn, [a, unused, idx])
    _close(grads[0], np.full(3, 2.0))
    _close(grads[1], np.zeros((2, 2)))
    assert b.dtype(grads[2]) == "int64"
    np.testing.assert_array_equal(b.to_numpy(grads[2]), [0, 0])


def test_value_and_grad_densifies_gather_gradients(b: TensorFlowBackend) -> None:
    table = _t(b, _f32(4, 2))

    def fn(vals: Sequence[Any]) -> Any:
        return b.ops.sum(tf.gather(vals[0], [0, 2, 2]))

    _, (g,) = b.value_and_grad(fn, [table])
    assert isinstance(g, tf.Tensor) and not isinstance(g, tf.IndexedSlices)
    _close(g, [[1, 1], [0, 0], [2, 2], [0, 0]])


def test_value_and_grad_of_a_tied_use_sums(b: TensorFlowBackend) -> None:
    x = _t(b, _f32(3))

    def fn(vals: Sequence[Any]) -> Any:
        return b.ops.sum(b.ops.add(b.ops.multiply(vals[0], 3.0), vals[0]))

    _, (g,) = b.value_and_grad(fn, [x])
    _close(g, np.full(3, 4.0))


def test_stop_gradient(b: TensorFlowBackend) -> None:
    x = _t(b, _f32(3))

    def fn(vals: Sequence[Any]) -> Any:
        return b.ops.sum(b.ops.multiply(vals[0], b.stop_gradient(vals[0])))

    _, (g,) = b.value_and_grad(fn, [x])
    _close(g, x.numpy())


def test_compile_matches_eager(b: TensorFlowBackend) -> None:
    def forward(values: dict[str, Any], x: Any) -> Any:
        return b.ops.softmax(b.ops.relu(b.ops.linear(x, values["w"], values["b"])))

    values = {"w": _t(b, _f32(3, 4)), "b": _t(b, _f32(3))}
    compiled = b.compile(forward)
    for batch in (2, 5, 7):  # new shapes relax instead of piling up traces
        x = _t(b, _rng().standard_normal((batch, 4)).astype(np.float32))
        _close(compiled(values, x), forward(values, x).numpy(), rtol=1e-5)


def test_compile_fallback_errors_cover_value_dependent_python(b: TensorFlowBackend) -> None:
    def needs_a_value(values: list[Any], x: Any) -> Any:
        return x * float(x.numpy().sum())  # .numpy() does not exist on a traced tensor

    with pytest.raises(b.COMPILE_FALLBACK_ERRORS):
        b.compile(needs_a_value)([], tf.ones(2))

    @tf.function(autograph=False)
    def as_bool(x: tf.Tensor) -> tf.Tensor:
        return x if bool(tf.reduce_sum(x) > 0) else -x

    with pytest.raises(b.COMPILE_FALLBACK_ERRORS):
        as_bool(tf.ones(2))


def test_autograph_traces_tensor_control_flow_without_fallback(b: TensorFlowBackend) -> None:
    def halve_until_small(values: list[Any], x: Any) -> Any:
        while b.ops.sum(b.ops.abs(x)) > 1:
            x = b.ops.divide(x, 2.0)
        return x

    x = _t(b, np.full(4, 3.0, np.float32))
    _close(b.compile(halve_until_small)([], x), halve_until_small([], x).numpy())


def test_forward_scope_with_one_device_is_none(b: TensorFlowBackend) -> None:
    if b.device_count("cpu") + b.device_count("gpu") == 1:
        assert b.forward_scope([tf.ones(2)]) is None


# ------------------------------------------------------------------------- ops
A = _f32(3, 4)
B_ = _f32(3, 4) + 0.5
POS = np.abs(_f32(3, 4)) + 0.1
ROW = _f32(4)


@pytest.mark.parametrize(
    ("name", "np_fn"),
    [
        ("add", np.add),
        ("subtract", np.subtract),
        ("multiply", np.multiply),
        ("divide", np.divide),
        ("maximum", np.maximum),
        ("minimum", np.minimum),
    ],
)
def test_binary_ops_with_broadcasting(
    b: TensorFlowBackend, name: str, np_fn: Callable[..., Any]
) -> None:
    op = getattr(b.ops, name)
    _close(op(_t(b, A), _t(b, B_)), np_fn(A, B_))
    _close(op(_t(b, A), _t(b, ROW)), np_fn(A, ROW))
    _close(op(_t(b, A), 2.0), np_fn(A, np.float32(2.0)))
    _close(op(2.0, _t(b, B_)), np_fn(np.float32(2.0), B_))


def test_python_scalars_take_the_tensor_dtype_on_either_side(b: TensorFlowBackend) -> None:
    h = b.from_numpy(np.array([1.0, 2.0]), "float16", None)
    for name in ("add", "subtract", "multiply", "divide", "maximum", "minimum"):
        op = getattr(b.ops, name)
        assert b.dtype(op(h, 1.5)) == "float16", name
        assert b.dtype(op(1.5, h)) == "float16", name


def test_divide_of_integers_is_true_division(b: TensorFlowBackend) -> None:
    a, c = np.array([1, 7, -3], np.int32), np.array([2, 2, 2], np.int32)
    out = b.ops.divide(_t(b, a), _t(b, c))
    assert b.dtype(out) == "float64"
    _close(out, a / c)


@pytest.mark.parametrize(
    ("name", "np_fn", "data"),
    [
        ("exp", np.exp, A),
        ("log", np.log, POS),
        ("abs", np.abs, A),
        ("sqrt", np.sqrt, POS),
        ("square", np.square, A),
        ("relu", lambda v: np.maximum(v, 0), A),
        ("sigmoid", lambda v: 1 / (1 + np.exp(-v)), A),
        ("tanh", np.tanh, A),
    ],
)
def test_unary_ops(
    b: TensorFlowBackend, name: str, np_fn: Callable[..., Any], data: np.ndarray
) -> None:
    out = getattr(b.ops, name)(_t(b, data))
    assert b.dtype(out) == "float32"
    _close(out, np_fn(data), rtol=1e-5)


def test_unary_ops_take_variables(b: TensorFlowBackend) -> None:
    v = b.new_variable(A, "float32", None, True)
    _close(b.ops.exp(v), np.exp(A), rtol=1e-5)


@pytest.mark.parametrize(
    ("name", "np_fn"),
    [
        ("equal", np.equal),
        ("not_equal", np.not_equal),
        ("less", np.less),
        ("less_equal", np.less_equal),
        ("greater", np.greater),
        ("greater_equal", np.greater_equal),
    ],
)
def test_comparisons(b: TensorFlowBackend, name: str, np_fn: Callable[..., Any]) -> None:
    a = np.array([[1, 2, 3], [3, 2, 1]], np.float32)
    c = np.array([2, 2, 2], np.float32)
    out = getattr(b.ops, name)(_t(b, a), _t(b, c))
    assert b.dtype(out) == "bool"
    np.testing.assert_array_equal(b.to_numpy(out), np_fn(a, c))
    np.testing.assert_array_equal(b.to_numpy(getattr(b.ops, name)(_t(b, a), 2.0)), np_fn(a, 2))


def test_where(b: TensorFlowBackend) -> None:
    cond = A > 0
    _close(b.ops.where(_t(b, cond), _t(b, A), _t(b, B_)), np.where(cond, A, B_))
    _close(b.ops.where(_t(b, cond), _t(b, A), 0.0), np.where(cond, A, np.float32(0)))
    _close(b.ops.where(_t(b, cond[0]), _t(b, A), _t(b, ROW)), np.where(cond[0], A, ROW))
    numeric = np.array([0, 2, 0, -1], np.int32)
    _close(b.ops.where(_t(b, numeric), _t(b, ROW), 1.0), np.where(numeric, ROW, np.float32(1)))


X3 = _f32(2, 3, 4)
AXES: list[Any] = [None, 0, 1, -1, (0, 2), (1, -1), (0, 1, 2), ()]


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize(
    ("name", "np_fn"), [("sum", np.sum), ("mean", np.mean), ("max", np.max), ("min", np.min)]
)
def test_reductions(
    b: TensorFlowBackend, name: str, np_fn: Callable[..., Any], axis: Any, keepdims: bool
) -> None:
    out = getattr(b.ops, name)(_t(b, X3), axis=axis, keepdims=keepdims)
    _close(out, np_fn(X3, axis=axis, keepdims=keepdims), rtol=1e-5)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_norm(b: TensorFlowBackend, axis: Any, keepdims: bool) -> None:
    want = np.sqrt(np.sum(np.square(X3), axis=axis, keepdims=keepdims))
    _close(b.ops.norm(_t(b, X3), axis=axis, keepdims=keepdims), want, rtol=1e-5)


def test_norm_matches_numpy_linalg(b: TensorFlowBackend) -> None:
    _close(b.ops.norm(_t(b, A)), np.linalg.norm(A), rtol=1e-6)
    _close(b.ops.norm(_t(b, A), axis=1), np.linalg.norm(A, axis=1), rtol=1e-6)


def test_norm_gradient_at_zero_is_zero(b: TensorFlowBackend) -> None:
    x = _t(b, np.zeros(3, np.float32))
    _, (g,) = b.value_and_grad(lambda v: b.ops.norm(v[0]), [x])
    _close(g, np.zeros(3))
    y = _t(b, np.array([3.0, 4.0], np.float32))
    _, (g,) = b.value_and_grad(lambda v: b.ops.norm(v[0]), [y])
    _close(g, [0.6, 0.8])


def test_reductions_of_integers_and_bools(b: TensorFlowBackend) -> None:
    ints = np.array([[1, 2], [3, 4]], np.int32)
    mean = b.ops.mean(_t(b, ints), axis=0)
    assert b.dtype(mean) == "float64"  # NumPy's, not TF's integer division
    _close(mean, np.mean(ints, axis=0))
    _close(b.ops.norm(_t(b, ints)), np.linalg.norm(ints))
    _close(b.ops.sum(_t(b, ints), axis=1), np.sum(ints, axis=1))
    bools = np.array([[True, False], [True, True]])
    _close(b.ops.sum(_t(b, bools)), 3)
    np.testing.assert_array_equal(b.to_numpy(b.ops.max(_t(b, bools), axis=1)), [True, True])
    np.testing.assert_array_equal(b.to_numpy(b.ops.min(_t(b, bools), axis=1)), [False, True])


@pytest.mark.parametrize(
    ("sa", "sb"),
    [
        ((3, 4), (4, 5)),
        ((2, 3, 4), (2, 4, 5)),
        ((2, 3, 4), (4, 5)),
        ((2, 1, 3, 4), (5, 4, 2)),
        ((4,), (4, 5)),
        ((4,), (2, 4, 5)),
        ((3, 4), (4,)),
        ((2, 3, 4), (4,)),
        ((4,), (4,)),
    ],
)
def test_matmul_follows_numpy(
    b: TensorFlowBackend, sa: tuple[int, ...], sb: tuple[int, ...]
) -> None:
    a, c = _f32(*sa), _rng().standard_normal(sb).astype(np.float32)
    _close(b.ops.matmul(_t(b, a), _t(b, c)), np.matmul(a, c), rtol=1e-5, atol=1e-5)


def test_dot(b: TensorFlowBackend) -> None:
    u, v = _f32(5), _f32(5) + 1
    out = b.ops.dot(_t(b, u), _t(b, v))
    assert b.shape(out) == ()
    _close(out, np.dot(u, v), rtol=1e-5)
    _close(b.ops.dot(_t(b, A), _t(b, A.T)), A @ A.T, rtol=1e-5)
    _close(b.ops.dot(_t(b, X3), _t(b, A.T)), X3 @ A.T, rtol=1e-5)


@pytest.mark.parametrize("shape", [(4,), (2, 4), (2, 3, 4), (2, 2, 3, 4)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear(b: TensorFlowBackend, shape: tuple[int, ...], with_bias: bool) -> None:
    x, w, bias = _f32(*shape), _f32(3, 4), _f32(3)
    want = x @ w.T + (bias if with_bias else 0)
    out = b.ops.linear(_t(b, x), _t(b, w), _t(b, bias) if with_bias else None)
    _close(out, want, rtol=1e-5, atol=1e-5)


def test_linear_with_variables(b: TensorFlowBackend) -> None:
    x, w, bias = _f32(2, 4), _f32(3, 4), _f32(3)
    vw = b.new_variable(w, "float32", None, True)
    vb = b.new_variable(bias, "float32", None, True)
    _close(b.ops.linear(_t(b, x), vw, vb), x @ w.T + bias, rtol=1e-5, atol=1e-5)


def test_ops_trace_with_unknown_dimensions(b: TensorFlowBackend) -> None:
    w, bias = _t(b, _f32(3, 4)), _t(b, _f32(3))

    @tf.function(input_signature=[tf.TensorSpec([None, None, 4], tf.float32)])
    def f(x: tf.Tensor) -> tuple[tf.Tensor, ...]:
        return (
            b.ops.linear(x, w, bias),
            b.ops.matmul(x, b.ops.transpose(w)),
            b.ops.sum(x, keepdims=True),
            b.ops.norm(x, axis=(0, 1)),
            b.ops.softmax(x, axis=1),
        )

    x = _f32(2, 5, 4)
    lin, mm, s, n, sm = f(tf.constant(x))
    _close(lin, x @ w.numpy().T + bias.numpy(), rtol=1e-5, atol=1e-5)
    _close(mm, x @ w.numpy().T, rtol=1e-5, atol=1e-5)
    _close(s, np.sum(x, keepdims=True), rtol=1e-5)
    _close(n, np.sqrt(np.sum(x**2, axis=(0, 1))), rtol=1e-5)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    _close(sm, e / e.sum(axis=1, keepdims=True), rtol=1e-5)

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)])
    def g(x: tf.Tensor) -> tuple[tf.Tensor, ...]:  # unknown rank
        return b.ops.sum(x), b.ops.transpose(x), b.ops.linear(x, w, bias)

    s, t, lin = g(tf.constant(x))
    _close(s, np.sum(x), rtol=1e-5)
    _close(t, x.T)
    _close(lin, x @ w.numpy().T + bias.numpy(), rtol=1e-5, atol=1e-5)


def test_reshape(b: TensorFlowBackend) -> None:
    _close(b.ops.reshape(_t(b, X3), (6, 4)), X3.reshape(6, 4))
    _close(b.ops.reshape(_t(b, X3), (-1,)), X3.reshape(-1))
    _close(b.ops.reshape(_t(b, X3), [4, -1]), X3.reshape(4, -1))
    _close(b.ops.reshape(_t(b, X3), 24), X3.reshape(24))
    _close(b.ops.reshape(_t(b, np.ones(1)), ()), np.ones(1).reshape(()))


@pytest.mark.parametrize("axes", [None, (0, 2, 1), (2, 0, 1), (-1, 0, -2)])
def test_transpose(b: TensorFlowBackend, axes: Any) -> None:
    _close(b.ops.transpose(_t(b, X3), axes), np.transpose(X3, axes))


def test_transpose_of_a_matrix_and_a_vector(b: TensorFlowBackend) -> None:
    _close(b.ops.transpose(_t(b, A)), A.T)
    _close(b.ops.transpose(_t(b, ROW)), ROW)


def test_split_with_checked_arguments(b: TensorFlowBackend) -> None:
    # The adapter's contract (`Ops`): an int dividing the axis, or normalized indices.
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    for args in ((2, 0), (3, 1), (4, -1), (2, 2), ((1, 3), -1), ((), 1), ((0, 0, 2), 1),
                 ((4,), 2)):
        got = b.ops.split(_t(b, a), *args)
        want = np.split(a, *args)
        assert isinstance(got, list) and len(got) == len(want), args
        for g, w in zip(got, want):
            _close(g, w)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_and_stack(b: TensorFlowBackend, axis: int) -> None:
    xs = [A, B_, A * 2]
    ts = [_t(b, v) for v in xs]
    _close(b.ops.concat(ts, axis=axis), np.concatenate(xs, axis=axis))
    _close(b.ops.concat(tuple(ts), axis), np.concatenate(xs, axis=axis))
    _close(b.ops.stack(ts, axis=axis), np.stack(xs, axis=axis))


def test_concat_and_stack_default_axis(b: TensorFlowBackend) -> None:
    _close(b.ops.concat([_t(b, A), _t(b, B_)]), np.concatenate([A, B_]))
    _close(b.ops.stack([_t(b, A), _t(b, B_)]), np.stack([A, B_]))


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3, (0, 1), (0, -1), (1, 3)])
def test_expand_dims(b: TensorFlowBackend, axis: Any) -> None:
    _close(b.ops.expand_dims(_t(b, A), axis), np.expand_dims(A, axis))


@pytest.mark.parametrize("axis", [None, 0, 2, -1, (0, 2), ()])
def test_squeeze(b: TensorFlowBackend, axis: Any) -> None:
    x = _f32(1, 3, 1, 4, 1)
    _close(b.ops.squeeze(_t(b, x), axis), np.squeeze(x, axis))


def test_squeeze_of_a_non_unit_axis_raises(b: TensorFlowBackend) -> None:
    with pytest.raises(tf.errors.InvalidArgumentError):
        b.ops.squeeze(_t(b, A), 0)


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("axis", [-1, 2, 1, 0, -2])
def test_softmax_and_log_softmax(b: TensorFlowBackend, axis: int) -> None:
    _close(b.ops.softmax(_t(b, X3), axis=axis), _softmax(X3, axis), rtol=1e-5)
    _close(b.ops.log_softmax(_t(b, X3), axis=axis), np.log(_softmax(X3, axis)), rtol=1e-5)


def test_softmax_default_axis_is_last(b: TensorFlowBackend) -> None:
    _close(b.ops.softmax(_t(b, X3)), _softmax(X3, -1), rtol=1e-5)
    _close(b.ops.log_softmax(_t(b, X3)), np.log(_softmax(X3, -1)), rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_ops_keep_low_and_high_precision_dtypes(b: TensorFlowBackend, dtype: str) -> None:
    x = b.from_numpy(A, dtype, None)
    w = b.from_numpy(_f32(3, 4), dtype, None)
    bias = b.from_numpy(_f32(3), dtype, None)
    for out in (
        b.ops.linear(x, w, bias),
        b.ops.relu(x),
        b.ops.add(x, 1.0),
        b.ops.softmax(x),
        b.ops.mean(x),
        b.ops.norm(x, axis=1),
        b.ops.matmul(x, b.ops.transpose(w)),
    ):
        assert b.dtype(out) == dtype
    tol = 1e-2 if dtype in ("float16", "bfloat16") else 1e-6
    want = A.astype(np.float64) @ _f32(3, 4).T.astype(np.float64) + _f32(3)
    got = b.to_numpy(b.ops.linear(x, w, bias)).astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=tol * 5, atol=tol * 5)


def test_configure_after_startup() -> None:
    # TF's runtime is up (tensors exist): its devices can no longer change.
    n = len(tf.config.list_logical_devices("CPU"))
    fresh = TensorFlowBackend()
    fresh.configure(n)  # asking for what is there is fine
    assert fresh.device_count("cpu") == n
    with pytest.raises(DeviceError, match="D2LCOMPAT_CPU_DEVICES"):
        TensorFlowBackend().configure(n + 1)


# ---------------------------------------------------------- several CPU devices
_TWO_CPU_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import d2lcompat
    import tensorflow as tf
    from d2lcompat._registry import active
    from d2lcompat._errors import DeviceError

    b = active()
    assert b.name == "tensorflow"
    assert b.device_count("cpu") == 2 == len(tf.config.list_logical_devices("CPU"))
    c0, c1 = ("cpu", 0), ("cpu", 1)
    assert b.native_device(c1) == "/CPU:1"
    x = b.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3), None, c1)
    assert type(x).__name__ == "EagerTensor"
    assert b.device_of(x) == c1, x.device
    assert b.move(x, c1, copy=False) is x
    y = b.move(x, c0, copy=False)
    assert y is not x and b.device_of(y) == c0
    z = b.move(y, c1, copy=True)
    assert b.device_of(z) == c1 and np.array_equal(b.to_numpy(z), b.to_numpy(x))

    # Ops run where their inputs are (TF itself would use /CPU:0) ...
    w = b.new_variable(np.ones((4, 3), np.float32), "float32", c1, True)
    bias = b.new_variable(np.zeros(4, np.float32), "float32", c1, True)
    assert b.device_of(w) == c1
    outs = [
        b.ops.linear(x, w, bias), b.ops.exp(x), b.ops.add(x, 1.0), b.ops.sum(x),
        b.ops.reshape(x, (3, 2)), b.ops.concat([x, x]), b.ops.softmax(x),
        b.ops.where(b.ops.greater(x, 2.0), x, 0.0), b.cast(x, "float16"),
        b.stop_gradient(x), b.ops.norm(x, axis=1),
    ]
    for out in outs:
        assert b.device_of(out) == c1, out.device
    assert b.device_of(b.ops.exp(y)) == c0

    # ... and refuse to mix devices, naming both.
    for bad in (lambda: b.ops.add(x, y), lambda: b.ops.concat([x, y]),
                lambda: b.ops.linear(y, w, bias)):
        try:
            bad()
        except DeviceError as e:
            assert "cpu(0)" in str(e) and "cpu(1)" in str(e), str(e)
        else:
            raise AssertionError("mixing devices did not raise")

    # Gradients come back on their values' devices.
    out, grads = b.value_and_grad(
        lambda v: b.ops.sum(b.ops.linear(x, v[0], v[1])), [w, bias]
    )
    assert [b.device_of(g) for g in grads] == [c1, c1]
    assert np.allclose(b.to_numpy(grads[1]), [2, 2, 2, 2])

    # A compiled forward runs on its inputs' device too, with one trace for both.
    f = b.compile(lambda vals, inp: b.ops.relu(b.ops.linear(inp, vals[0], vals[1])))
    assert b.device_of(f([w, bias], x)) == c1
    w0 = b.move(w, c0, copy=True)
    b0 = b.move(bias, c0, copy=True)
    assert b.device_of(f([w0, b0], y)) == c0

    # The core's forward scope: native operators (x + 1) run on the inputs' device.
    scope = b.forward_scope((x,))
    assert scope is not None
    with scope:
        assert b.device_of(x + 1.0) == c1
    assert b.forward_scope((y,)) is None  # inputs on TF's default device need none
    try:
        b.forward_scope((x, y))
    except DeviceError as e:
        assert "cpu(0)" in str(e) and "cpu(1)" in str(e), str(e)
    else:
        raise AssertionError("forward_scope accepted inputs on two devices")

    # Assign keeps the variable on its device.
    b.assign(w, b.full((4, 3), 2.0, "float32", c0))
    assert b.device_of(w) == c1 and float(b.to_numpy(w)[0, 0]) == 2.0
    print("OK")
    """
)


def _run(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "D2LCOMPAT_CPU_DEVICES"}
    full.update(D2LCOMPAT_BACKEND="tensorflow", **env)
    return subprocess.run(
        [sys.executable, "-c", script], env=full, capture_output=True, text=True, timeout=300
    )


def test_two_cpu_devices_in_a_subprocess() -> None:
    proc = _run(_TWO_CPU_SCRIPT, D2LCOMPAT_CPU_DEVICES="2")
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-4000:]


def test_one_cpu_device_leaves_ops_unwrapped() -> None:
    script = textwrap.dedent(
        """
        import d2lcompat
        import tensorflow as tf
        from d2lcompat._registry import active
        from d2lcompat_tensorflow._adapter import TensorFlowOps
        b = active()
        if not tf.config.list_logical_devices("GPU"):
            assert b.device_count("cpu") == 1
            # No per-op device bookkeeping on a single-device machine: the hot path
            # is the raw op itself.
            assert b.ops.linear is TensorFlowOps.linear
        print("OK")
        """
    )
    proc = _run(script)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-4000:]


# ------------------------------------------------------------- conv layout (issue 22)
def _lenet_chain() -> Any:
    from d2lcompat import nn

    return nn.Sequential(
        nn.Conv2D(4, kernel_size=3, padding=1, activation="sigmoid"), nn.AvgPool2D(2),
        nn.Conv2D(6, kernel_size=3, activation="relu"), nn.MaxPool2D(2), nn.Flatten(),
    )


def test_a_conv_pool_chain_transposes_only_at_its_ends_when_compiled(b: TensorFlowBackend) -> None:
    # Each conv/pool result is the NCHW transpose of an NHWC original the next layer
    # reads instead; in a graph the transposes nothing reads are pruned.
    from d2lcompat import init, ops

    d2lcompat.seed(3)
    net = _lenet_chain()
    net.initialize(init.Xavier())
    x = ops.random.uniform((2, 1, 12, 12))
    eager = _np(net(x))
    want = np.asarray(x.numpy()).transpose(0, 2, 3, 1)  # the same chain, native NHWC
    for layer in net:
        if hasattr(layer, "weight"):
            w = layer.weight.data().numpy().transpose(2, 3, 1, 0)
            pad = layer._padding[0]
            y = tf.nn.conv2d(want, w, 1, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
            y = y + layer.bias.data().numpy()
            want = (tf.sigmoid if layer._act_name == "sigmoid" else tf.nn.relu)(y)
        elif type(layer).__name__ == "AvgPool2D":
            want = tf.nn.avg_pool2d(want, 2, 2, "VALID")
        elif type(layer).__name__ == "MaxPool2D":
            want = tf.nn.max_pool2d(want, 2, 2, "VALID")
    flat = _np(tf.reshape(tf.transpose(want, (0, 3, 1, 2)), (2, -1)))
    np.testing.assert_allclose(eager, flat, rtol=1e-5, atol=1e-6)

    graph = tf.function(lambda t: net(t)).get_concrete_function(x).graph
    data = [op for op in graph.get_operations() if op.type == "Transpose"
            and op.inputs[0].shape.rank == 4 and op.outputs[0].consumers()]
    # The Sequential's layout chain: the one-channel NCHW input becomes NHWC by a
    # reshape (the same memory order), one transpose out (read by Flatten); the
    # kernels' OIHW -> HWIO transposes are of the weights.
    kinds = sorted(op.inputs[0].op.type for op in data)
    assert kinds.count("MaxPool") == 1
    assert len([k for k in kinds if k not in ("ReadVariableOp", "Identity")]) == 1, kinds


def test_an_eager_chain_converts_only_at_its_ends(
    b: TensorFlowBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Eagerly too (issue 22): the Sequential hands its conv/pool run to the adapter as
    # one NHWC chain; the per-layer path converts every layer's result back to NCHW.
    from d2lcompat import init, ops
    from d2lcompat.nn import _layers
    from d2lcompat_tensorflow import _adapter

    d2lcompat.seed(3)
    net = _lenet_chain()
    net.initialize(init.Xavier())
    x = ops.random.uniform((2, 3, 12, 12))
    net(x)
    ops_run: list[tuple[str, int]] = []
    for name in ("_Transpose", "_Reshape"):
        real = getattr(_adapter, name)

        def counted(real: Any = real, name: str = name, **kw: Any) -> Any:
            arg = kw.get("x", kw.get("tensor"))
            to_4d = "shape" not in kw or int(tf.size(kw["shape"])) == 4  # not Flatten's
            if arg.shape.rank == 4 and arg.shape[0] == 2 and to_4d:  # activations, not weights
                ops_run.append((name, arg.shape[-1]))
            return real(**kw)

        monkeypatch.setattr(_adapter, name, counted)
    chained = _np(net(x))
    assert ops_run == [("_Transpose", 12), ("_Transpose", 6)]  # in (NCHW), out (NHWC)
    ops_run.clear()
    monkeypatch.setattr(_layers, "_CHAINS", False)
    np.testing.assert_array_equal(_np(net(x)), chained)
    assert len(ops_run) == 5  # in, and each of the four layers' results back to NCHW


def test_gradients_flow_through_the_nhwc_originals(b: TensorFlowBackend) -> None:
    from d2lcompat import autograd, init, ops

    d2lcompat.seed(4)
    net = _lenet_chain()
    net.initialize(init.Xavier())
    x = ops.random.uniform((2, 1, 12, 12))
    params = net.collect_params()
    _, grads = autograd.grad(lambda: ops.sum(net(x)), params)
    first = params["0.weight"]
    # Central differences on one weight entry: the gradient reaches the first conv
    # through the pool's read of the NHWC original.
    w0 = first.data().numpy()
    eps = 1e-2
    moved = []
    for sign in (1.0, -1.0):
        w = w0.copy()
        w[0, 0, 1, 1] += sign * eps
        first.set_data(ops.tensor(w))
        moved.append(float(ops.sum(net(x)).numpy()))
    first.set_data(ops.tensor(w0))
    numeric = (moved[0] - moved[1]) / (2 * eps)
    assert abs(float(grads["0.weight"].numpy()[0, 0, 1, 1]) - numeric) < 1e-2 * max(1.0, abs(numeric))


def test_parameter_data_is_the_tensor_and_native_the_variable() -> None:
    # One rule on every backend (docs/gluon-porting.md): data() is the value, a tf.Tensor;
    # native() is the tf.Variable (what Keras optimizers and tf.GradientTape watch).
    p = d2lcompat.Parameter((2,), init="ones")
    p.initialize()
    assert isinstance(p.data(), tf.Tensor) and not isinstance(p.data(), tf.Variable)
    assert isinstance(p.native(), tf.Variable)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(p.data() * 3.0)
    np.testing.assert_allclose(tape.gradient(y, p.native()).numpy(), [3.0, 3.0])
