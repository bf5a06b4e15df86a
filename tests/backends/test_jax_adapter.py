"""Unit tests of the JAX adapter: every primitive and every op against NumPy.

The adapter is used directly (not through ``d2lcompat.ops``) so that a failure
points at the adapter, not at the core. Collected only when
``D2LCOMPAT_BACKEND=jax`` (see tests/conftest.py).
"""

from __future__ import annotations

# `import d2lcompat` must come first: importing d2lcompat_jax._adapter first runs
# d2lcompat/__init__.py (through d2lcompat._backend), which activates the jax backend and
# re-imports the half-initialized adapter module (a circular import).
import d2lcompat  # noqa: F401

# isort: split
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

import jax  # noqa: TID251 - this file tests the jax adapter
import jax.numpy as jnp  # noqa: TID251
import ml_dtypes
import numpy as np
import pytest

from d2lcompat._backend import DTYPES, OP_NAMES, Backend
from d2lcompat._errors import BackendError, DeviceError, DTypeError, ShapeError
from d2lcompat_jax._adapter import JaxBackend, JaxOps

CPU0 = ("cpu", 0)


@pytest.fixture(scope="module")
def b() -> JaxBackend:
    backend = JaxBackend()
    backend.configure(1)
    return backend


@pytest.fixture
def x64() -> Any:
    """jax's 64-bit types on for one test (thread-local; the process default stays off)."""
    with jax.enable_x64(True):
        yield


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _f32(*shape: int) -> np.ndarray:
    return _rng().standard_normal(shape).astype(np.float32)


def _t(b: JaxBackend, a: np.ndarray) -> jax.Array:
    return b.from_numpy(a, None, None)


def _close(actual: Any, expected: Any, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    got = np.asarray(actual)
    want = np.asarray(expected)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------- meta
def test_is_a_backend_with_the_declared_flags(b: JaxBackend) -> None:
    assert isinstance(b, Backend)
    assert b.name == "jax"
    assert b.SUPPORTS_MUTABLE_VARIABLES is False
    assert b.SUPPORTS_CPU_DEVICES is True
    assert b.SUPPORTS_COMPILE is True
    assert b.SUPPORTED_DTYPES == frozenset(DTYPES) - {"int64", "float64"}  # x64 off
    with jax.enable_x64(True):
        assert b.SUPPORTED_DTYPES == frozenset(DTYPES)
    assert b.version == jax.__version__
    assert isinstance(b.ops, JaxOps)


def test_every_op_name_is_implemented(b: JaxBackend) -> None:
    missing = [n for n in OP_NAMES if not callable(getattr(b.ops, n, None))]
    assert missing == []


def test_float32_stays_float32_with_and_without_x64(b: JaxBackend) -> None:
    assert not jax.config.read("jax_enable_x64")  # d2lcompat left jax's default alone
    with jax.enable_x64(True):
        _float32_stays_float32(b)
    _float32_stays_float32(b)


def _float32_stays_float32(b: JaxBackend) -> None:
    x = b.full((3,), 1.5, "float32", None)
    # Python scalars are weakly typed: they never widen a float32 array.
    assert (x * 2.0 + 1).dtype == jnp.float32
    assert b.ops.exp(b.ops.multiply(x, 3.0)).dtype == jnp.float32


# --------------------------------------------------------------------- devices
def test_device_counts(b: JaxBackend) -> None:
    assert b.device_count("cpu") == len(jax.devices("cpu")) >= 1
    n_gpu = b.device_count("gpu")  # must not raise on a CPU-only jaxlib
    assert n_gpu == len([d for d in jax.devices() if d.platform in ("gpu", "cuda", "rocm")])
    assert b.device_count("tpu") == 0


def test_native_device(b: JaxBackend) -> None:
    dev = b.native_device(CPU0)
    assert dev == jax.devices("cpu")[0]
    with pytest.raises(DeviceError):
        b.native_device(("cpu", 99))
    with pytest.raises(DeviceError):
        b.native_device(("gpu", b.device_count("gpu")))


def test_device_of_committed_and_uncommitted(b: JaxBackend) -> None:
    assert b.device_of(jnp.zeros(2, jnp.float32)) == (
        b.device_of(jax.device_put(jnp.zeros(2), jax.devices()[0]))
    )
    assert b.device_of(b.from_numpy(np.zeros(2), "float32", CPU0)) == CPU0
    with pytest.raises(DeviceError):
        b.device_of(np.zeros(2))


def test_device_of_a_tracer(b: JaxBackend) -> None:
    x = b.from_numpy(np.ones(3), "float32", CPU0)
    seen: list[Any] = []

    def f(v: jax.Array) -> jax.Array:
        seen.append(b.device_of(v))
        return jnp.sum(v)

    jax.grad(f)(x)  # eager autodiff: the tracer wraps a concrete array
    jax.vmap(f)(jnp.ones((2, 3), jnp.float32))
    assert seen == [CPU0, b.device_of(jnp.ones(1))]

    def g(v: jax.Array) -> jax.Array:
        assert b.is_traced(v)
        with pytest.raises(DeviceError, match="jit"):
            b.device_of(v)
        return v

    jax.jit(g)(x)
    assert not b.is_traced(x)


@pytest.mark.parametrize("make", ["committed", "uncommitted"])
def test_move_without_copy_returns_the_same_object(b: JaxBackend, make: str) -> None:
    x = b.from_numpy(_f32(3), None, CPU0 if make == "committed" else None)
    dev = b.device_of(x)
    assert b.move(x, dev, copy=False) is x


def test_move_with_copy_returns_a_new_array(b: JaxBackend) -> None:
    x = b.from_numpy(_f32(2, 3), None, CPU0)
    y = b.move(x, CPU0, copy=True)
    assert y is not x
    assert b.device_of(y) == CPU0
    assert y.unsafe_buffer_pointer() != x.unsafe_buffer_pointer()  # a real copy
    np.testing.assert_array_equal(b.to_numpy(y), b.to_numpy(x))


def test_move_under_jit_stages_a_transfer(b: JaxBackend) -> None:
    x = b.from_numpy(_f32(3), None, CPU0)
    out = jax.jit(lambda v: b.move(v, CPU0, copy=False) * 2)(x)
    _close(out, b.to_numpy(x) * 2)


# --------------------------------------------------------------------- tensors
def test_is_tensor(b: JaxBackend) -> None:
    x = jnp.ones(2)
    assert b.is_tensor(x)
    assert not b.is_tensor(np.ones(2))
    assert not b.is_tensor(1.0)
    flags: list[bool] = []

    def f(v: jax.Array) -> jax.Array:
        flags.append(b.is_tensor(v))
        return jnp.sum(v)

    jax.jit(f)(x)
    jax.grad(f)(x)
    assert flags == [True, True]


_EDGE_VALUES: dict[str, np.ndarray] = {
    "float16": np.array([0.0, -1.5, 65504.0, 6.1e-5, np.inf, -np.inf], dtype=np.float16),
    "bfloat16": np.array([0.0, -1.5, 3.0e38, 1e-30, 7.0], dtype=ml_dtypes.bfloat16),
    "float32": np.array([0.1, -3.4e38, 1.4e-45, np.nan], dtype=np.float32),
    "float64": np.array([0.1, 1e300, -1e-300, 2.0**60 + 1], dtype=np.float64),
    "int8": np.array([-128, 0, 127], dtype=np.int8),
    "int16": np.array([-32768, 7, 32767], dtype=np.int16),
    "int32": np.array([-(2**31), 5, 2**31 - 1], dtype=np.int32),
    "int64": np.array([-(2**63), 2**40 + 1, 2**63 - 1], dtype=np.int64),
    "uint8": np.array([0, 128, 255], dtype=np.uint8),
    "bool": np.array([True, False, True], dtype=np.bool_),
}


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("given", [True, False], ids=["dtype", "inferred"])
def test_numpy_round_trip_is_exact(b: JaxBackend, dtype: str, given: bool) -> None:
    src = _EDGE_VALUES[dtype].reshape(1, -1)
    x = b.from_numpy(src, dtype if given else None, None)
    assert b.dtype(x) == dtype
    assert b.shape(x) == src.shape
    back = b.to_numpy(x)
    assert back.dtype == src.dtype
    np.testing.assert_array_equal(back.view(np.uint8), src.view(np.uint8))  # bit-exact


def test_from_numpy_casts_and_copies(b: JaxBackend) -> None:
    src = np.array([1.25, -2.5, 3.75], dtype=np.float64)
    x = b.from_numpy(src, "float32", CPU0)
    assert b.dtype(x) == "float32"
    assert b.device_of(x) == CPU0
    src[0] = 99.0  # a later change to the NumPy array is not seen
    np.testing.assert_array_equal(b.to_numpy(x), np.array([1.25, -2.5, 3.75], np.float32))
    h = b.from_numpy(np.array([1.0, 2.0, 3.0], np.float32), "bfloat16", None)
    assert b.dtype(h) == "bfloat16"
    assert b.to_numpy(h).dtype == np.dtype(ml_dtypes.bfloat16)
    with pytest.raises(DTypeError):
        b.from_numpy(np.zeros(2), "complex64", None)
    with pytest.raises(DTypeError):
        b.from_numpy(np.zeros(2, np.complex64), None, None)


def test_without_x64_64_bit_requests_get_32_bits_never_another_value(b: JaxBackend) -> None:
    assert not jax.config.jax_enable_x64
    x = b.from_numpy(np.array([1, -(2**31), 2**31 - 1]), None, None)
    assert b.dtype(x) == "int32"
    assert b.to_numpy(x).tolist() == [1, -(2**31), 2**31 - 1]
    assert b.dtype(b.from_numpy(np.array([0.5]), "float64", None)) == "float32"
    assert b.dtype(b.full((2,), 3, "int64", None)) == "int32"
    assert b.dtype(b.arange(0, 3, 1, None, None)) == "int32"
    assert b.dtype(b.cast(b.arange(0, 3, 1, None, None), "float64")) == "float32"
    with pytest.raises(DTypeError, match="jax_enable_x64"):
        b.from_numpy(np.array([2**40]), "int64", None)
    assert not jax.config.jax_enable_x64


def test_to_numpy_is_a_writable_copy(b: JaxBackend) -> None:
    x = b.from_numpy(np.arange(4, dtype=np.float32), None, None)
    a = b.to_numpy(x)
    assert isinstance(a, np.ndarray)
    a[0] = 42.0
    assert float(x[0]) == 0.0


def test_shape_and_dtype(b: JaxBackend) -> None:
    x = jnp.zeros((2, 0, 3), jnp.int16)
    assert b.shape(x) == (2, 0, 3)
    assert all(type(d) is int for d in b.shape(x))
    assert b.dtype(x) == "int16"
    assert b.shape(jnp.float32(1.0)) == ()
    with pytest.raises(DTypeError):
        b.dtype(jnp.zeros(2, jnp.uint32))


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("dtype", DTYPES)
def test_cast(b: JaxBackend, dtype: str) -> None:
    # In range for every dtype: out-of-range float -> int casts are undefined (NumPy wraps
    # -3.5 to 253 as uint8, XLA saturates to 0), so the core must not rely on them.
    src = np.array([0.0, 1.0, 2.75, 3.5], np.float32)
    y = b.cast(_t(b, src), dtype)
    assert b.dtype(y) == dtype
    want = src.astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
    np.testing.assert_array_equal(b.to_numpy(y), want)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(
    ("value", "dtype"), [(1.5, "float32"), (3, "int64"), (True, "bool"), (-2, "int8")]
)
def test_full(b: JaxBackend, value: Any, dtype: str) -> None:
    x = b.full((2, 3), value, dtype, CPU0)
    assert b.dtype(x) == dtype
    assert b.device_of(x) == CPU0
    np.testing.assert_array_equal(b.to_numpy(x), np.full((2, 3), value, dtype=dtype))
    assert b.shape(b.full((), value, dtype, None)) == ()


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(
    ("args", "dtype", "want_dtype"),
    [
        ((0, 5, 1), None, "int64"),
        ((2, 11, 3), None, "int64"),
        ((np.int32(0), 4, 1), None, "int64"),
        ((0.0, 1.0, 0.25), None, "float32"),
        ((0, 2, 0.5), None, "float32"),
        ((5, 0, -1), None, "int64"),
        ((0, 5, 1), "float32", "float32"),
        ((0, 5, 2), "int8", "int8"),
        ((0.0, 1.0, 0.1), "float64", "float64"),
    ],
)
def test_arange(b: JaxBackend, args: tuple[Any, ...], dtype: str | None, want_dtype: str) -> None:
    start, stop, step = args
    x = b.arange(start, stop, step, dtype, None)
    assert b.dtype(x) == want_dtype  # never float64 by accident
    got = b.to_numpy(x)
    np.testing.assert_allclose(got, np.arange(*args, dtype=want_dtype), rtol=1e-6)
    if want_dtype.startswith("float"):  # computed in float64, rounded once
        np.testing.assert_array_equal(got, np.arange(*args, dtype=np.float64).astype(want_dtype))


def test_arange_low_precision_and_under_jit(b: JaxBackend) -> None:
    x = b.arange(-1, 1, 0.01, "bfloat16", None)
    assert b.dtype(x) == "bfloat16"
    want = np.arange(-1, 1, 0.01).astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(b.to_numpy(x), want)
    out = jax.jit(lambda v: v + b.arange(0, 3, 1, "float32", None))(jnp.zeros(3, jnp.float32))
    np.testing.assert_array_equal(b.to_numpy(out), np.arange(3, dtype=np.float32))


def test_arange_stop_none_and_device(b: JaxBackend) -> None:
    x = b.arange(4, None, None, None, CPU0)
    assert b.device_of(x) == CPU0
    np.testing.assert_array_equal(b.to_numpy(x), np.arange(4, dtype=np.int32))


# ------------------------------------------------------------------- variables
@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("trainable", [True, False])
def test_new_variable(b: JaxBackend, trainable: bool) -> None:
    src = np.arange(6, dtype=np.float64).reshape(2, 3)
    v = b.new_variable(src, "float32", CPU0, trainable)
    assert isinstance(v, jax.Array)
    assert b.dtype(v) == "float32"
    assert b.device_of(v) == CPU0
    np.testing.assert_array_equal(b.to_numpy(v), src.astype(np.float32))
    w = b.new_variable(src, "int64", None, trainable)
    assert b.dtype(w) == "int64"


def test_read_returns_its_argument(b: JaxBackend) -> None:
    v = b.new_variable(_f32(3), "float32", None, True)
    assert b.read(v) is v
    seen: list[bool] = []

    def f(t: jax.Array) -> jax.Array:
        seen.append(b.read(t) is t)  # a tracer the core substituted: unchanged
        return jnp.sum(t)

    jax.grad(f)(v)
    jax.jit(f)(v)
    assert seen == [True, True]


@pytest.mark.usefixtures("x64")
def test_assign_returns_the_new_value(b: JaxBackend) -> None:
    v = b.new_variable(np.zeros((2, 2)), "float32", CPU0, True)
    new = b.from_numpy(np.ones((2, 2), np.float32), None, CPU0)
    out = b.assign(v, new)
    assert out is new  # same device: nothing to copy, jax arrays are immutable
    np.testing.assert_array_equal(b.to_numpy(v), np.zeros((2, 2)))  # the old value is kept
    unplaced = b.assign(v, b.from_numpy(np.ones((2, 2), np.float32), None, None))
    assert b.device_of(unplaced) == CPU0
    with pytest.raises(DTypeError):
        b.assign(v, b.from_numpy(np.ones((2, 2)), "float64", None))
    with pytest.raises(ShapeError):
        b.assign(v, b.from_numpy(np.ones((4,)), "float32", None))


def test_assign_under_jit(b: JaxBackend) -> None:
    v = b.new_variable(np.zeros(3), "float32", CPU0, True)
    out = jax.jit(lambda var, x: b.assign(var, var + x))(v, jnp.ones(3, jnp.float32))
    np.testing.assert_array_equal(b.to_numpy(out), np.ones(3, np.float32))


def test_native_grad_hooks_are_noops(b: JaxBackend) -> None:
    v = b.new_variable(np.zeros(2), "float32", None, True)
    assert b.native_grad(v) is None
    b.clear_native_grad(v)


# -------------------------------------------------------------------- autodiff
def test_value_and_grad(b: JaxBackend) -> None:
    xs = _f32(3)
    ws = _f32(4, 3)
    x = _t(b, xs)
    w = _t(b, ws)

    def loss(vals: Sequence[Any]) -> jax.Array:
        (w_,) = vals
        return b.ops.sum(b.ops.square(b.ops.linear(x, w_, None)))

    value, grads = b.value_and_grad(loss, [w])
    assert isinstance(grads, list) and len(grads) == 1
    y = ws @ xs
    _close(value, np.sum(y**2), rtol=1e-5)
    _close(grads[0], 2 * np.outer(y, xs), rtol=1e-5)
    assert b.dtype(grads[0]) == "float32"


def test_value_and_grad_value_used_twice_adds(b: JaxBackend) -> None:
    a = _t(b, np.array([1.0, 2.0], np.float32))
    c = _t(b, np.array([3.0, -1.0], np.float32))

    def fn(vals: Sequence[Any]) -> jax.Array:
        p, q = vals
        # p is used twice (a tied parameter): d/dp = q + 2p
        return b.ops.sum(b.ops.multiply(p, q)) + b.ops.sum(b.ops.square(p))

    value, (gp, gq) = b.value_and_grad(fn, (a, c))
    _close(value, 1 * 3 + 2 * -1 + 1 + 4)
    _close(gp, [3 + 2, -1 + 4])
    _close(gq, [1, 2])


def test_value_and_grad_of_an_unused_value_is_zero(b: JaxBackend) -> None:
    a = _t(b, np.ones(2, np.float32))
    u = _t(b, np.ones(3, np.float32))
    _, (ga, gu) = b.value_and_grad(lambda v: b.ops.sum(v[0]), [a, u])
    _close(ga, np.ones(2))
    _close(gu, np.zeros(3))


def test_stop_gradient(b: JaxBackend) -> None:
    a = _t(b, np.array([2.0, 3.0], np.float32))

    def fn(vals: Sequence[Any]) -> jax.Array:
        (p,) = vals
        return b.ops.sum(b.ops.multiply(p, b.stop_gradient(p)))

    _, (g,) = b.value_and_grad(fn, [a])
    _close(g, [2.0, 3.0])  # only the first factor is differentiated


# --------------------------------------------------------------------- compile
def test_compile_matches_eager_and_traces_once(b: JaxBackend) -> None:
    traces = 0

    def fwd(values: list[jax.Array], x: jax.Array) -> jax.Array:
        nonlocal traces
        traces += 1
        w, bias = values
        return b.ops.relu(b.ops.linear(x, w, bias))

    w = _t(b, _f32(4, 3))
    bias = _t(b, _f32(4))
    x = _t(b, _f32(5, 3))
    eager = fwd([w, bias], x)
    fast = b.compile(fwd)
    _close(fast([w, bias], x), eager)
    _close(fast([w, bias], x + 1), fwd([w, bias], x + 1))
    assert traces == 2 + 1  # two eager calls and a single trace


def test_compile_fallback_errors_catch_value_dependent_control_flow(b: JaxBackend) -> None:
    def fwd(values: list[jax.Array]) -> jax.Array:
        (x,) = values
        return x if float(jnp.sum(x)) > 0 else -x

    with pytest.raises(b.COMPILE_FALLBACK_ERRORS):
        b.compile(fwd)([jnp.ones(2)])

    def fwd_bool(values: list[jax.Array]) -> jax.Array:
        (x,) = values
        return x if jnp.sum(x) > 0 else -x

    with pytest.raises(b.COMPILE_FALLBACK_ERRORS):
        b.compile(fwd_bool)([jnp.ones(2)])


# ------------------------------------------------------------------------- ops
def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


A = _f32(3, 4)
B = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
POS = np.abs(A) + 0.5
ROW = np.random.default_rng(2).standard_normal((4,)).astype(np.float32)

# name -> (numpy inputs, reference, kwargs)
_CASES: list[tuple[str, tuple[Any, ...], Callable[..., Any], dict[str, Any]]] = [
    ("matmul", (A, B.T), np.matmul, {}),
    ("matmul", (_f32(2, 3, 4), _f32(4, 5)), np.matmul, {}),
    ("dot", (ROW, ROW), np.dot, {}),
    ("dot", (A, B.T), np.dot, {}),
    ("dot", (_f32(2, 3, 4), _f32(2, 4, 5)), np.matmul, {}),  # N-D: matmul, not np.dot
    ("add", (A, ROW), np.add, {}),
    ("subtract", (A, B), np.subtract, {}),
    ("multiply", (A, ROW), np.multiply, {}),
    ("divide", (A, POS), np.divide, {}),
    ("exp", (A,), np.exp, {}),
    ("log", (POS,), np.log, {}),
    ("abs", (A,), np.abs, {}),
    ("sqrt", (POS,), np.sqrt, {}),
    ("square", (A,), np.square, {}),
    ("maximum", (A, B), np.maximum, {}),
    ("minimum", (A, ROW), np.minimum, {}),
    ("equal", (A, A * (B > 0)), np.equal, {}),
    ("not_equal", (A, A * (B > 0)), np.not_equal, {}),
    ("less", (A, B), np.less, {}),
    ("less_equal", (A, A * (B > 0)), np.less_equal, {}),
    ("greater", (A, B), np.greater, {}),
    ("greater_equal", (A, A * (B > 0)), np.greater_equal, {}),
    ("reshape", (A, (2, 6)), np.reshape, {}),
    ("reshape", (A, [-1]), lambda x, s: np.reshape(x, tuple(s)), {}),
    ("transpose", (A,), np.transpose, {}),
    ("transpose", (_f32(2, 3, 4),), lambda x: np.transpose(x, (1, 2, 0)), {"axes": (1, 2, 0)}),
    ("transpose", (_f32(2, 3, 4),), lambda x: np.transpose(x, (2, 0, 1)), {"axes": [2, 0, 1]}),
    ("expand_dims", (A, 1), np.expand_dims, {}),
    ("expand_dims", (A, -1), np.expand_dims, {}),
    ("squeeze", (_f32(1, 3, 1),), np.squeeze, {}),
    ("squeeze", (_f32(1, 3, 1),), lambda x: np.squeeze(x, 2), {"axis": 2}),
    ("squeeze", (_f32(1, 3, 1),), lambda x: np.squeeze(x, (0, 2)), {"axis": (0, 2)}),
    ("relu", (A,), lambda x: np.maximum(x, 0), {}),
    ("sigmoid", (A,), lambda x: 1 / (1 + np.exp(-x)), {}),
    ("tanh", (A,), np.tanh, {}),
    ("softmax", (A,), lambda x: _softmax(x, -1), {}),
    ("softmax", (A,), lambda x: _softmax(x, 0), {"axis": 0}),
    ("log_softmax", (A,), lambda x: np.log(_softmax(x, -1)), {}),
    ("log_softmax", (A,), lambda x: np.log(_softmax(x, 0)), {"axis": 0}),
    ("linear", (A, B, ROW[:3]), lambda x, w, c: x @ w.T + c, {}),
    ("linear", (A, B, None), lambda x, w, c: x @ w.T, {}),
    ("linear", (ROW, B, None), lambda x, w, c: w @ x, {}),
    ("linear", (_f32(2, 5, 4), B, ROW[:3]), lambda x, w, c: x @ w.T + c, {}),
]


def _to_native(b: JaxBackend, v: Any) -> Any:
    return _t(b, v) if isinstance(v, np.ndarray) else v


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize(
    ("name", "args", "ref", "kwargs"), _CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(_CASES)]
)
def test_op_matches_numpy(
    b: JaxBackend,
    name: str,
    args: tuple[Any, ...],
    ref: Callable[..., Any],
    kwargs: dict[str, Any],
    jit: bool,
) -> None:
    op = getattr(b.ops, name)
    tensors = [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]
    native = [_to_native(b, a) for a in args]
    if jit:

        def run(*ts: jax.Array) -> jax.Array:
            full = list(native)
            for i, t in zip(tensors, ts, strict=True):
                full[i] = t
            return op(*full, **kwargs)

        out = jax.jit(run)(*[native[i] for i in tensors])
    else:
        out = op(*native, **kwargs)
    want = np.asarray(ref(*args))
    assert isinstance(out, jax.Array)
    if want.dtype == np.bool_:
        assert b.dtype(out) == "bool"
        np.testing.assert_array_equal(b.to_numpy(out), want)
    else:
        assert b.dtype(out) == "float32"
        _close(out, want, rtol=2e-5, atol=1e-6)


def test_where(b: JaxBackend) -> None:
    cond = A > B
    out = b.ops.where(_t(b, cond), _t(b, A), _t(b, ROW))
    _close(out, np.where(cond, A, ROW))
    out = b.ops.where(_t(b, cond), _t(b, A), 0.0)
    assert b.dtype(out) == "float32"
    _close(out, np.where(cond, A, 0.0))


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "norm"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2), [1, 2], (0, 1, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(b: JaxBackend, name: str, axis: Any, keepdims: bool) -> None:
    x = _f32(2, 3, 4)
    ax = tuple(axis) if isinstance(axis, list) else axis
    if name == "norm":
        want = np.sqrt(np.sum(x.astype(np.float64) ** 2, axis=ax, keepdims=keepdims))
    else:
        want = getattr(np, name)(x, axis=ax, keepdims=keepdims)
    out = getattr(b.ops, name)(_t(b, x), axis=axis, keepdims=keepdims)
    assert b.dtype(out) == "float32"
    _close(out, want, rtol=1e-5, atol=1e-6)
    out_default = getattr(b.ops, name)(_t(b, x))
    assert b.shape(out_default) == ()


def test_norm_details(b: JaxBackend) -> None:
    m = _f32(3, 4)
    _close(b.ops.norm(_t(b, m)), np.linalg.norm(m))  # Frobenius
    # Zero input: gradient 0 (the subgradient torch uses), never NaN.
    z = b.from_numpy(np.zeros((2, 3)), "float32", None)
    _, (g,) = b.value_and_grad(lambda v: b.ops.sum(b.ops.norm(v[0], axis=1)), [z])
    np.testing.assert_array_equal(b.to_numpy(g), np.zeros((2, 3), np.float32))
    # Away from zero the gradient is x / |x|.
    _, (g,) = b.value_and_grad(lambda v: b.ops.norm(v[0]), [_t(b, m)])
    _close(g, m / np.linalg.norm(m))
    # float16: squares above 65504 must not overflow; the result stays float16.
    h = b.from_numpy(np.array([300.0, 400.0]), "float16", None)
    out = b.ops.norm(h)
    assert b.dtype(out) == "float16"
    assert float(out) == 500.0


def test_split_with_checked_arguments(b: JaxBackend) -> None:
    # The adapter's contract (`Ops`): an int dividing the axis, or normalized indices.
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    for args in ((2, 0), (3, 1), (4, -1), (2, 2), ((1, 3), -1), ((), 1), ((0, 0, 2), 1),
                 ((4,), 2)):
        got = b.ops.split(_t(b, a), *args)
        want = np.split(a, *args)
        assert isinstance(got, list) and len(got) == len(want), args
        for g, w in zip(got, want):
            _close(g, w)


def test_concat_and_stack(b: JaxBackend) -> None:
    parts = [_f32(2, 3), _f32(2, 3) + 1, _f32(2, 3) - 1]
    for axis in (0, 1, -1):
        _close(b.ops.concat([_t(b, p) for p in parts], axis=axis), np.concatenate(parts, axis))
        _close(b.ops.stack(tuple(_t(b, p) for p in parts), axis=axis), np.stack(parts, axis))
    _close(b.ops.concat([_t(b, p) for p in parts]), np.concatenate(parts))
    _close(b.ops.stack([_t(b, p) for p in parts]), np.stack(parts))


@pytest.mark.usefixtures("x64")
def test_reduction_of_integers_keeps_numpy_dtypes(b: JaxBackend) -> None:
    x = b.from_numpy(np.array([[1, 2], [3, 4]]), "int64", None)
    assert b.dtype(b.ops.sum(x)) == "int64"
    assert int(b.ops.sum(x)) == 10
    assert b.dtype(b.ops.max(x, axis=0)) == "int64"
    assert b.dtype(b.ops.divide(x, x)) == "float64"  # true division, as NumPy


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_ops_keep_the_float_dtype(b: JaxBackend, dtype: str) -> None:
    x = b.from_numpy(A, dtype, None)
    w = b.from_numpy(B, dtype, None)
    assert b.dtype(b.ops.linear(x, w, None)) == dtype
    assert b.dtype(b.ops.matmul(x, b.ops.transpose(w))) == dtype
    assert b.dtype(b.ops.softmax(x)) == dtype
    assert b.dtype(b.ops.sum(x)) == dtype


# ----------------------------------------------------- several CPU devices
_TWO_CPU_SCRIPT = textwrap.dedent(
    """
    import d2lcompat  # configures the active backend with 2 CPU devices
    import jax
    import numpy as np
    from d2lcompat_jax._adapter import JaxBackend

    b = JaxBackend()
    b.configure(2)
    assert b.device_count("cpu") == 2 == len(jax.devices("cpu")), jax.devices("cpu")
    assert d2lcompat.cpu(1).exists
    c0, c1 = ("cpu", 0), ("cpu", 1)
    assert b.native_device(c1) == jax.devices("cpu")[1]

    x = b.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3), None, c0)
    assert b.device_of(x) == c0
    y = b.move(x, c1, copy=False)
    assert y is not x and b.device_of(y) == c1
    assert b.move(y, c1, copy=False) is y
    z = b.move(y, c1, copy=True)
    assert z is not y and b.device_of(z) == c1
    back = b.move(z, c0, copy=False)
    assert b.device_of(back) == c0
    np.testing.assert_array_equal(b.to_numpy(back), b.to_numpy(x))

    # Creation on cpu(1) and ops that stay there.
    v = b.new_variable(np.ones((4, 3)), "float32", c1, True)
    assert b.device_of(v) == c1
    assert b.device_of(b.full((2,), 1.0, "float32", c1)) == c1
    assert b.device_of(b.arange(0, 3, 1, None, c1)) == c1
    out = b.ops.linear(y, v, None)
    assert b.device_of(out) == c1
    _, (g,) = b.value_and_grad(lambda vals: b.ops.sum(b.ops.linear(y, vals[0], None)), [v])
    assert b.device_of(g) == c1

    # assign places the new value on the variable's device.
    new = b.assign(v, b.from_numpy(np.zeros((4, 3)), "float32", c0))
    assert b.device_of(new) == c1

    # device_of sees through eager autodiff tracers on cpu(1).
    seen = []
    jax.grad(lambda t: (seen.append(b.device_of(t)), t.sum())[1])(v)
    assert seen == [c1], seen
    print("OK")
    """
)


def _run(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "D2LCOMPAT_CPU_DEVICES")}
    full.update(D2LCOMPAT_BACKEND="jax", JAX_PLATFORMS="cpu", **env)
    return subprocess.run(
        [sys.executable, "-c", script], env=full, capture_output=True, text=True, timeout=300
    )


def test_two_cpu_devices_in_a_subprocess() -> None:
    proc = _run(
        _TWO_CPU_SCRIPT,
        D2LCOMPAT_CPU_DEVICES="2",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-4000:]


def test_two_cpu_devices_without_xla_flags() -> None:
    # configure() alone (jax_num_cpu_devices) gives the devices when jax is still unused.
    # d2lcompat is imported with one device, so neither it nor the environment sets XLA_FLAGS.
    script = textwrap.dedent(
        """
        import os
        import d2lcompat
        import jax
        from d2lcompat_jax._adapter import JaxBackend
        assert "XLA_FLAGS" not in os.environ
        b = JaxBackend()
        b.configure(2)
        assert b.device_count("cpu") == 2 == len(jax.devices("cpu")), jax.devices("cpu")
        print("OK")
        """
    )
    proc = _run(script)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-4000:]


def test_configure_too_late_raises(b: JaxBackend) -> None:
    # jax is initialized with one CPU device in this process: asking for 3 must say why.
    if b.device_count("cpu") >= 3:
        pytest.skip("this process already has 3 CPU devices")
    with pytest.raises(BackendError, match="D2LCOMPAT_CPU_DEVICES=3"):
        JaxBackend().configure(3)


def test_import_leaves_jax_global_config_as_found() -> None:
    # A fresh process: importing d2lcompat (and using it) changes no jax setting; the
    # user's own jnp code keeps jax's 32-bit defaults.
    script = textwrap.dedent(
        """
        import jax
        before = {k: getattr(jax.config, k) for k in ("jax_enable_x64", "jax_default_matmul_precision",
                                                     "jax_numpy_dtype_promotion")}
        import d2lcompat
        from d2lcompat import nn, ops
        net = nn.Dense(2, in_units=3); net.initialize(); net(ops.ones((1, 3)))
        import jax.numpy as jnp
        assert jnp.zeros(3).dtype == jnp.float32, jnp.zeros(3).dtype
        assert jnp.arange(3).dtype == jnp.int32, jnp.arange(3).dtype
        after = {k: getattr(jax.config, k) for k in before}
        assert after == before, (before, after)
        assert jax.config.jax_enable_x64 is False
        print("OK")
        """
    )
    proc = _run(script)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-4000:]


def test_import_keeps_x64_when_the_user_turned_it_on() -> None:
    script = textwrap.dedent(
        """
        import jax
        jax.config.update("jax_enable_x64", True)
        import d2lcompat
        from d2lcompat import ops
        assert jax.config.jax_enable_x64 is True
        assert ops.dtype(ops.arange(3)) == "int64"
        assert ops.dtype(ops.zeros(3)) == "float32"
        print("OK")
        """
    )
    proc = _run(script)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-4000:]


def test_parameter_data_is_the_tensor_and_native_the_variable() -> None:
    p = d2lcompat.Parameter((2,), init="ones")
    p.initialize()
    assert isinstance(p.data(), jax.Array) and p.native() is p.data()


def test_rnn_hoisting_rule_follows_the_measured_crossover() -> None:
    # docs/performance.md, "Recurrent layers": the differentiated LSTM scan hoists the
    # input projection while T·N·H <= 200,000 (faster there), not beyond; GRU never (the
    # loop was level or faster at every size measured); the plain RNN always.
    from d2lcompat_jax._adapter import hoists_input_projection

    assert hoists_input_projection("lstm", 35, 32, 32, 128)  # the char LSTM of benchmarks.rnn
    assert hoists_input_projection("lstm", 35, 16, 32, 128)
    assert not hoists_input_projection("lstm", 35, 128, 32, 128)
    assert not hoists_input_projection("lstm", 35, 32, 28, 512)
    assert not hoists_input_projection("gru", 35, 32, 32, 128)
    assert not hoists_input_projection("gru", 35, 8, 32, 64)
    for mode in ("rnn_tanh", "rnn_relu"):
        assert hoists_input_projection(mode, 35, 32, 32, 128)
        assert hoists_input_projection(mode, 35, 128, 256, 512)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_rnn_forward_grad_and_jvp_agree_across_the_two_scans(mode: str) -> None:
    # The forward runs the in-loop scan, jax.grad and jax.jvp the hoisted one (at this
    # size): the values, the gradient and a directional derivative must all agree.
    from d2lcompat.nn._rnn import scan_layers
    from d2lcompat_jax._adapter import _lax_scan, _rnn_jit

    rng = np.random.default_rng(0)
    g = 4 if mode == "lstm" else 3
    x = jnp.asarray(rng.uniform(-1, 1, (6, 3, 5)), jnp.float32)
    ws = [jnp.asarray(rng.uniform(-0.5, 0.5, s), jnp.float32)
          for s in ((g * 4, 5), (g * 4, 4), (g * 4,), (g * 4,))]
    states = [jnp.asarray(rng.uniform(-1, 1, (1, 3, 4)), jnp.float32)
              for _ in range(2 if mode == "lstm" else 1)]

    def ours(w: list[jax.Array]) -> jax.Array:
        out, new = _rnn_jit(mode, x, states, w, 1, False)
        return jnp.sum(out * out) + sum(jnp.sum(s) for s in new)

    def plain(w: list[jax.Array], hoist: bool) -> jax.Array:
        out, new = scan_layers(mode, x, states, w, 1, False, _lax_scan, hoist)
        return jnp.sum(out * out) + sum(jnp.sum(s) for s in new)

    for hoist in (True, False):
        _close(ours(ws), plain(ws, hoist))
        for a, b in zip(jax.grad(ours)(ws), jax.grad(plain)(ws, hoist)):
            _close(a, b)
    direction = [jnp.ones_like(w) for w in ws]
    value, slope = jax.jvp(ours, (ws,), (direction,))
    _close(value, ours(ws))
    _close(slope, sum(jnp.sum(d) for d in jax.grad(ours)(ws)), rtol=1e-4)


def test_lstm_in_loop_gradient_is_rematerialised_and_unchanged(monkeypatch: Any) -> None:
    # Above the hoisting threshold the differentiated LSTM scan projects inside the loop
    # and checkpoints its step (`LSTM_REMAT`: only the carry and the pre-activation gates
    # are kept for the backward pass). The gradient must equal the plain scans' (in the
    # loop without rematerialisation, and hoisted), for 2 bidirectional layers with states.
    from d2lcompat.nn._rnn import scan_layers
    from d2lcompat_jax import _adapter
    from d2lcompat_jax._adapter import _lax_scan, _rnn_jit

    monkeypatch.setattr(_adapter, "HOIST_MAX_STEPS_BATCH_HIDDEN", 0)  # never hoist: remat
    rng = np.random.default_rng(3)
    T, N, C, H = 7, 3, 5, 4
    x = jnp.asarray(rng.uniform(-1, 1, (T, N, C)), jnp.float32)
    ws = []
    for layer in range(2):
        for _ in range(2):
            c = C if layer == 0 else 2 * H
            ws += [jnp.asarray(rng.uniform(-0.5, 0.5, s), jnp.float32)
                   for s in ((4 * H, c), (4 * H, H), (4 * H,), (4 * H,))]
    states = [jnp.asarray(rng.uniform(-1, 1, (4, N, H)), jnp.float32) for _ in range(2)]
    r = jnp.asarray(rng.normal(size=(T, N, 2 * H)), jnp.float32)

    def ours(w: list[jax.Array], s: list[jax.Array]) -> jax.Array:
        out, new = _rnn_jit("lstm", x, s, w, 2, True)
        return jnp.sum(out * r) + jnp.sum(new[0] * new[0]) + jnp.sum(new[1])

    def plain(w: list[jax.Array], s: list[jax.Array], hoist: bool) -> jax.Array:
        out, new = scan_layers("lstm", x, s, w, 2, True, _lax_scan, hoist)
        return jnp.sum(out * r) + jnp.sum(new[0] * new[0]) + jnp.sum(new[1])

    jaxpr = str(jax.make_jaxpr(jax.grad(ours))(ws, states))
    assert "checkpoint" in jaxpr or "remat" in jaxpr, "the in-loop LSTM step is not checkpointed"
    got_w, got_s = jax.grad(ours, argnums=(0, 1))(ws, states)
    for hoist in (False, True):
        want_w, want_s = jax.grad(plain, argnums=(0, 1))(ws, states, hoist)
        for a, b in zip(list(got_w) + list(got_s), list(want_w) + list(want_s)):
            _close(a, b, rtol=1e-5, atol=1e-5)
    value, slope = jax.jvp(lambda w: ours(w, states), (ws,), ([jnp.ones_like(w) for w in ws],))
    _close(value, plain(ws, states, False))
    _close(slope, sum(jnp.sum(d) for d in got_w), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------- the eager update
def _counting_sgd(traced: list[bool]) -> Any:
    from d2lcompat import optim

    class CountingSGD(optim.SGD):
        name = ""  # not registered under a name

        def rule(self, w: Any, g: Any, slots: Any, s: Any) -> Any:
            traced.append(isinstance(w, jax.core.Tracer))
            return super().rule(w, g, slots, s)

    return CountingSGD


def test_fused_update_is_one_jit_that_a_learning_rate_schedule_does_not_retrace() -> None:
    # fused_update_values traces the optimizer's rule once per structure; the learning
    # rate is an argument (no retrace), momentum a constant of the trace (a change
    # retraces). Values: the rule applied parameter by parameter with the same schedule.
    from d2lcompat import init, loss, nn, ops

    X = ops.tensor(_f32(6, 3))
    y = ops.tensor(_f32(6, 2))
    out, traces = [], []
    for fused in (True, False):
        traced: list[bool] = []
        d2lcompat.seed(2)
        net = nn.Sequential(nn.Dense(4, in_units=3, activation="relu"), nn.Dense(2, in_units=4))
        net.initialize(init.Xavier())
        opt = _counting_sgd(traced)(lr=0.1, momentum=0.9)
        opt.fused = fused
        trainer = d2lcompat.Trainer(net.collect_params(), opt)
        step = d2lcompat.train_step(net, loss.L2Loss(), trainer)
        for i in range(5):
            step(X, y)
            trainer.set_learning_rate(0.1 / (i + 2))
        first = list(traced)
        opt.momentum = 0.5  # a constant of the trace: traced again, then used
        for _ in range(2):
            step(X, y)
        traces.append((first, traced[len(first):]))
        out.append([np.asarray(p.data()) for p in net.collect_params().values()])
    assert traces[0] == ([True] * 4, [True] * 4), traces[0]  # 4 parameters, one trace each
    assert traces[1] == ([False] * 20, [False] * 8), traces[1]  # the plain rule, eagerly
    for a, b_ in zip(*out, strict=True):
        np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-7)


def test_fused_update_falls_back_to_the_plain_rule_and_holds_no_optimizer(b: JaxBackend) -> None:
    # A rule with Python control flow on a scalar cannot be traced: the plain rule runs.
    import gc

    from d2lcompat import optim

    class Threshold(optim.SGD):
        name = ""

        def rule(self, w: Any, g: Any, slots: Any, s: Any) -> Any:
            return (w - s[0] * g if s[0] > 0.05 else w), []

    w = d2lcompat.Parameter((3,), init="ones")
    w.initialize()
    opt = Threshold({"w": w}, lr=0.1)
    opt.step({"w": jnp.full((3,), 2.0)})
    np.testing.assert_allclose(np.asarray(w.data()), [0.8] * 3, rtol=1e-6)  # 1 - 0.1·2
    opt.lr = 0.01
    opt.step({"w": jnp.full((3,), 2.0)})
    np.testing.assert_allclose(np.asarray(w.data()), [0.8] * 3, rtol=1e-6)
    # The backend's table of compiled updates is keyed weakly by the optimizer.
    active_b = d2lcompat._registry.active()
    assert opt in active_b._fused_rules
    n = len(active_b._fused_rules)
    del opt
    gc.collect()
    assert len(active_b._fused_rules) == n - 1


_MIXED_SCRIPT = textwrap.dedent(
    """
    import numpy as np, d2lcompat
    from d2lcompat import optim
    a = d2lcompat.Parameter((3,), init="ones"); a.initialize(device="cpu:0")
    b = d2lcompat.Parameter((2,), init="ones"); b.initialize(device="cpu:1")
    opt = optim.SGD({"a": a, "b": b}, lr=0.5, momentum=0.9)
    for _ in range(2):
        opt.step({"a": a.data() * 0 + 2.0, "b": b.data() * 0 + 4.0})
    # v = 2, w = 1 - 0.5·2 = 0; v = 0.9·2 + 2 = 3.8, w = -1.9 (b: 4, -1; 7.6, -4.8)
    np.testing.assert_allclose(np.asarray(a.data()), [-1.9] * 3, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(b.data()), [-4.8] * 2, rtol=1e-6)
    assert [d.id for d in a.data().devices()] == [0] and [d.id for d in b.data().devices()] == [1]
    print("OK")
    """
)


def test_fused_update_with_parameters_on_two_devices() -> None:
    # One jit cannot take arrays of two devices: the update falls back to the plain
    # rule, and each parameter stays where it is.
    proc = _run(_MIXED_SCRIPT, D2LCOMPAT_CPU_DEVICES="2")
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-4000:]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_fused_update_keeps_a_low_precision_dtype(dtype: str) -> None:
    # The scalars enter the jit weakly typed, as Python floats do in the eager rule: a
    # bfloat16/float16 parameter and its slots stay in their dtype, with the same values.
    from d2lcompat import ops, optim

    res = []
    for fused in (True, False):
        w = d2lcompat.Parameter((3,), init="ones", dtype=dtype)
        w.initialize()
        opt = optim.Adam({"w": w}, lr=0.1, weight_decay=0.01)
        opt.fused = fused
        for _ in range(3):
            opt.step({"w": jnp.asarray([1.0, -2.0, 3.0], dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float16)})
        assert ops.dtype(w.data()) == dtype and {ops.dtype(s) for s in opt._slots["w"]} == {dtype}
        res.append(np.asarray(w.data()).astype(np.float32))
    # XLA may keep a fused chain's intermediates wider than the eager ops: one ulp.
    np.testing.assert_allclose(res[0], res[1], rtol=1e-2 if dtype == "bfloat16" else 1e-3)
