"""Unit tests of the PyTorch adapter: every primitive and every op against NumPy.

The adapter is used directly (not through ``d2lcompat.ops``) so that a failure
points at the adapter, not at the core. Collected only when
``D2LCOMPAT_BACKEND=torch`` (see tests/conftest.py).
"""

from __future__ import annotations

# `import d2lcompat` must come first: importing d2lcompat_torch._adapter first runs
# d2lcompat/__init__.py (through d2lcompat._backend), which activates the torch backend and
# re-imports the half-initialized adapter module (a circular import).
import d2lcompat  # noqa: F401

# isort: split
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import torch  # noqa: TID251 - this file tests the torch adapter

from d2lcompat._backend import DTYPES, OP_NAMES, Backend
from d2lcompat._errors import DeviceError
from d2lcompat_torch import _adapter
from d2lcompat_torch._adapter import TorchBackend, TorchOps

CPU0 = ("cpu", 0)


@pytest.fixture(scope="module")
def b() -> TorchBackend:
    backend = TorchBackend()
    backend.configure(1)
    return backend


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _f32(*shape: int) -> np.ndarray:
    return _rng().standard_normal(shape).astype(np.float32)


def _t(b: TorchBackend, a: np.ndarray) -> torch.Tensor:
    return b.from_numpy(a, None, None)


def _close(actual: Any, expected: Any, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    got = actual.detach().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    want = np.asarray(expected)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------- meta
def test_is_a_backend_with_the_declared_flags(b: TorchBackend) -> None:
    assert isinstance(b, Backend)
    assert b.name == "torch"
    assert b.SUPPORTS_MUTABLE_VARIABLES is True
    assert b.SUPPORTS_CPU_DEVICES is False  # torch has one CPU device
    assert b.SUPPORTS_COMPILE is True
    assert b.SUPPORTED_DTYPES == frozenset(DTYPES)
    assert b.DEVICE_MISMATCH_ERRORS == (RuntimeError,)
    assert b.version == str(torch.__version__)
    assert isinstance(b.ops, TorchOps)


def test_every_op_name_is_implemented(b: TorchBackend) -> None:
    missing = [n for n in OP_NAMES if not callable(getattr(b.ops, n, None))]
    assert missing == []


def test_dtype_table_covers_the_contract() -> None:
    assert set(_adapter._DTYPES) == set(DTYPES)
    assert {v: k for k, v in _adapter._DTYPES.items()} == _adapter._NAMES


# --------------------------------------------------------------------- devices
def test_device_counts(b: TorchBackend) -> None:
    assert b.device_count("cpu") == 1
    want = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert b.device_count("gpu") == want


def test_native_device(b: TorchBackend) -> None:
    assert b.native_device(CPU0) == torch.device("cpu")
    assert b.native_device(("gpu", 1)) == torch.device("cuda", 1)  # translated, not checked


def test_device_of(b: TorchBackend) -> None:
    assert b.device_of(torch.zeros(2)) == CPU0
    assert b.device_of(b.from_numpy(np.zeros(2), "float32", CPU0)) == CPU0
    with pytest.raises(DeviceError, match="meta"):
        b.device_of(torch.zeros(2, device="meta"))


def test_move_without_copy_returns_the_same_object(b: TorchBackend) -> None:
    x = _t(b, _f32(3))
    assert b.move(x, CPU0, copy=False) is x


def test_move_with_copy_returns_a_new_tensor(b: TorchBackend) -> None:
    x = _t(b, _f32(2, 3))
    y = b.move(x, CPU0, copy=True)
    assert y is not x and y.data_ptr() != x.data_ptr()  # a real copy
    assert b.device_of(y) == CPU0
    np.testing.assert_array_equal(b.to_numpy(y), b.to_numpy(x))


def test_move_keeps_the_gradient_path(b: TorchBackend) -> None:
    v = b.new_variable(np.ones(3), "float32", CPU0, True)
    (b.move(v, CPU0, copy=True) * 2.0).sum().backward()
    np.testing.assert_array_equal(b.to_numpy(b.native_grad(v)), np.full(3, 2.0, np.float32))


# --------------------------------------------------------------------- tensors
def test_is_tensor(b: TorchBackend) -> None:
    assert b.is_tensor(torch.ones(2))
    assert b.is_tensor(torch.nn.Parameter(torch.ones(2)))
    assert not b.is_tensor(np.ones(2))
    assert not b.is_tensor(1.0)


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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("given", [True, False], ids=["dtype", "inferred"])
def test_numpy_round_trip_is_exact(b: TorchBackend, dtype: str, given: bool) -> None:
    src = _EDGE_VALUES[dtype].reshape(1, -1)
    x = b.from_numpy(src, dtype if given else None, None)
    assert b.dtype(x) == dtype
    assert b.shape(x) == src.shape
    back = b.to_numpy(x)
    assert back.dtype == src.dtype
    np.testing.assert_array_equal(back.view(np.uint8), src.view(np.uint8))  # bit-exact


def test_from_numpy_casts_and_copies(b: TorchBackend) -> None:
    src = np.array([1.25, -2.5, 3.75], dtype=np.float64)
    x = b.from_numpy(src, "float32", CPU0)
    assert b.dtype(x) == "float32"
    assert b.device_of(x) == CPU0
    src[0] = 99.0  # a later change to the NumPy array is not seen
    np.testing.assert_array_equal(b.to_numpy(x), np.array([1.25, -2.5, 3.75], np.float32))
    h = b.from_numpy(np.array([1.0, 2.0, 3.0], np.float32), "bfloat16", None)
    assert b.dtype(h) == "bfloat16"
    assert b.to_numpy(h).dtype == np.dtype(ml_dtypes.bfloat16)
    strided = np.arange(12, dtype=np.float32).reshape(3, 4).T  # not C-contiguous
    np.testing.assert_array_equal(b.to_numpy(b.from_numpy(strided, None, None)), strided)


def test_to_numpy_is_detached_and_does_not_alias_a_variable(b: TorchBackend) -> None:
    v = b.new_variable(np.arange(4, dtype=np.float32), "float32", None, True)
    a = b.to_numpy(v * 1.0)  # a tensor that requires grad
    assert isinstance(a, np.ndarray)
    np.testing.assert_array_equal(a, np.arange(4, dtype=np.float32))


def test_shape_and_dtype(b: TorchBackend) -> None:
    x = torch.zeros((2, 0, 3), dtype=torch.int16)
    assert b.shape(x) == (2, 0, 3)
    assert all(type(d) is int for d in b.shape(x))
    assert b.dtype(x) == "int16"
    assert b.shape(torch.tensor(1.0)) == ()


@pytest.mark.parametrize("dtype", DTYPES)
def test_cast(b: TorchBackend, dtype: str) -> None:
    # In range for every dtype: out-of-range float -> int casts are undefined.
    src = np.array([0.0, 1.0, 2.75, 3.5], np.float32)
    y = b.cast(_t(b, src), dtype)
    assert b.dtype(y) == dtype
    want = src.astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
    np.testing.assert_array_equal(b.to_numpy(y), want)


@pytest.mark.parametrize(
    ("value", "dtype"), [(1.5, "float32"), (3, "int64"), (True, "bool"), (-2, "int8")]
)
def test_full(b: TorchBackend, value: Any, dtype: str) -> None:
    x = b.full((2, 3), value, dtype, CPU0)
    assert b.dtype(x) == dtype
    assert b.device_of(x) == CPU0
    np.testing.assert_array_equal(b.to_numpy(x), np.full((2, 3), value, dtype=dtype))
    assert b.shape(b.full((), value, dtype, None)) == ()


@pytest.mark.parametrize(
    ("args", "dtype", "want_dtype"),
    [
        ((0, 5, 1), None, "int64"),
        ((2, 11, 3), None, "int64"),
        ((0.0, 1.0, 0.25), None, "float32"),
        ((0, 2, 0.5), None, "float32"),
        ((5, 0, -1), None, "int64"),
        ((0, 5, 1), "float32", "float32"),
        ((0, 5, 2), "int8", "int8"),
        ((0.0, 1.0, 0.125), "float64", "float64"),
    ],
)
def test_arange(b: TorchBackend, args: tuple[Any, ...], dtype: str | None, want_dtype: str) -> None:
    start, stop, step = args
    x = b.arange(start, stop, step, dtype, CPU0)
    assert b.dtype(x) == want_dtype  # never float64 by accident
    assert b.device_of(x) == CPU0
    np.testing.assert_allclose(b.to_numpy(x), np.arange(*args, dtype=want_dtype), rtol=1e-6)


# ------------------------------------------------------------------- variables
@pytest.mark.parametrize("trainable", [True, False])
def test_new_variable(b: TorchBackend, trainable: bool) -> None:
    src = np.arange(6, dtype=np.float64).reshape(2, 3)
    v = b.new_variable(src, "float32", CPU0, trainable)
    assert isinstance(v, torch.nn.Parameter)
    assert v.requires_grad is trainable
    assert b.dtype(v) == "float32"
    assert b.device_of(v) == CPU0
    np.testing.assert_array_equal(b.to_numpy(v), src.astype(np.float32))
    w = b.new_variable(src, "int64", None, trainable)
    assert b.dtype(w) == "int64" and w.requires_grad is False  # ints never require grad


def test_read_returns_its_argument(b: TorchBackend) -> None:
    v = b.new_variable(_f32(3), "float32", None, True)
    assert b.read(v) is v
    leaf = v.detach().requires_grad_(True)  # what autograd.grad substitutes
    assert b.read(leaf) is leaf


def test_assign_writes_in_place(b: TorchBackend) -> None:
    v = b.new_variable(np.zeros((2, 2)), "float32", CPU0, True)
    out = b.assign(v, b.from_numpy(np.ones((2, 2), np.float32), None, CPU0))
    assert out is v  # the same variable: sharing and native optimizers keep working
    assert v.requires_grad and v.grad_fn is None  # no graph recorded by the write
    np.testing.assert_array_equal(b.to_numpy(v), np.ones((2, 2), np.float32))


def test_native_grad_and_clear(b: TorchBackend) -> None:
    v = b.new_variable(np.ones(2), "float32", None, True)
    assert b.native_grad(v) is None
    (v * 3.0).sum().backward()
    np.testing.assert_array_equal(b.to_numpy(b.native_grad(v)), np.full(2, 3.0, np.float32))
    b.clear_native_grad(v)
    assert b.native_grad(v) is None
    b.clear_native_grad(np.zeros(2))  # not a tensor: nothing to clear


# -------------------------------------------------------------------- autodiff
def test_value_and_grad(b: TorchBackend) -> None:
    xs = _f32(3)
    ws = _f32(4, 3)
    x = _t(b, xs)
    w = b.new_variable(ws, "float32", None, True)

    def loss(vals: Sequence[Any]) -> torch.Tensor:
        (w_,) = vals
        return b.ops.sum(b.ops.square(b.ops.linear(x, w_, None)))

    value, grads = b.value_and_grad(loss, [w])
    assert isinstance(grads, list) and len(grads) == 1
    y = ws @ xs
    _close(value, np.sum(y**2), rtol=1e-5)
    _close(grads[0], 2 * np.outer(y, xs), rtol=1e-5)
    assert not value.requires_grad  # detached
    assert w.grad is None  # the variable's own .grad is left alone


def test_value_and_grad_value_used_twice_adds(b: TorchBackend) -> None:
    a = _t(b, np.array([1.0, 2.0], np.float32))
    c = _t(b, np.array([3.0, -1.0], np.float32))

    def fn(vals: Sequence[Any]) -> torch.Tensor:
        p, q = vals
        # p is used twice (a tied parameter): d/dp = q + 2p
        return b.ops.sum(b.ops.multiply(p, q)) + b.ops.sum(b.ops.square(p))

    value, (gp, gq) = b.value_and_grad(fn, (a, c))
    _close(value, 1 * 3 + 2 * -1 + 1 + 4)
    _close(gp, [3 + 2, -1 + 4])
    _close(gq, [1, 2])


def test_value_and_grad_of_an_unused_value_is_zero(b: TorchBackend) -> None:
    a = _t(b, np.ones(2, np.float32))
    u = _t(b, np.ones(3, np.float32))
    _, (ga, gu) = b.value_and_grad(lambda v: b.ops.sum(v[0]), [a, u])
    _close(ga, np.ones(2))
    _close(gu, np.zeros(3))


def test_value_and_grad_under_no_grad(b: TorchBackend) -> None:
    a = _t(b, np.array([2.0], np.float32))
    with torch.no_grad():  # a caller's no_grad does not break autograd.grad
        _, (g,) = b.value_and_grad(lambda v: b.ops.sum(b.ops.square(v[0])), [a])
    _close(g, [4.0])


def test_stop_gradient(b: TorchBackend) -> None:
    a = _t(b, np.array([2.0, 3.0], np.float32))

    def fn(vals: Sequence[Any]) -> torch.Tensor:
        (p,) = vals
        return b.ops.sum(b.ops.multiply(p, b.stop_gradient(p)))

    _, (g,) = b.value_and_grad(fn, [a])
    _close(g, [2.0, 3.0])  # only the first factor is differentiated


# --------------------------------------------------------------------- compile
def test_compile_matches_eager(b: TorchBackend) -> None:
    def fwd(values: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        w, bias = values
        return b.ops.relu(b.ops.linear(x, w, bias))

    w = _t(b, _f32(4, 3))
    bias = _t(b, _f32(4))
    x = _t(b, _f32(5, 3))
    fast = b.compile(fwd)
    _close(fast([w, bias], x), fwd([w, bias], x))
    _close(fast([w * 2, bias], x + 1), fwd([w * 2, bias], x + 1))  # new values, same graph


# ----------------------------------------------------------- native checkpoints
def test_reads_a_state_dict(b: TorchBackend, tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    assert b.NATIVE_CHECKPOINT_FORMATS == (".pt", ".pth")
    assert b.NATIVE_CHECKPOINT_NEEDS_TRUST is False  # weights_only: no code runs
    got = b.read_native_checkpoint(str(path), trusted=False)
    assert got is not None
    layout, tensors = got
    assert layout == "structural"
    assert list(tensors) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    np.testing.assert_array_equal(
        b.to_numpy(tensors["2.weight"]), model[2].weight.detach().numpy()
    )


def test_a_file_that_is_not_torch_is_not_read(b: TorchBackend, tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    assert b.read_native_checkpoint(str(path), trusted=False) is None


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


@pytest.mark.parametrize(
    ("name", "args", "ref", "kwargs"), _CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(_CASES)]
)
def test_op_matches_numpy(
    b: TorchBackend,
    name: str,
    args: tuple[Any, ...],
    ref: Callable[..., Any],
    kwargs: dict[str, Any],
) -> None:
    op = getattr(b.ops, name)
    native = [_t(b, a) if isinstance(a, np.ndarray) else a for a in args]
    out = op(*native, **kwargs)
    want = np.asarray(ref(*args))
    assert isinstance(out, torch.Tensor)
    if want.dtype == np.bool_:
        assert b.dtype(out) == "bool"
        np.testing.assert_array_equal(b.to_numpy(out), want)
    else:
        assert b.dtype(out) == "float32"
        _close(out, want, rtol=2e-5, atol=1e-6)


def test_where(b: TorchBackend) -> None:
    cond = A > B
    out = b.ops.where(_t(b, cond), _t(b, A), _t(b, ROW))
    _close(out, np.where(cond, A, ROW))
    out = b.ops.where(_t(b, cond), _t(b, A), 0.0)
    assert b.dtype(out) == "float32"
    _close(out, np.where(cond, A, 0.0))


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "norm"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2), [1, 2], (0, 1, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(b: TorchBackend, name: str, axis: Any, keepdims: bool) -> None:
    x = _f32(2, 3, 4)
    ax = tuple(axis) if isinstance(axis, list) else axis
    if name == "norm":
        want = np.sqrt(np.sum(x.astype(np.float64) ** 2, axis=ax, keepdims=keepdims))
    else:
        want = getattr(np, name)(x, axis=ax, keepdims=keepdims)
    out = getattr(b.ops, name)(_t(b, x), axis=axis, keepdims=keepdims)
    assert b.dtype(out) == "float32"
    _close(out, want, rtol=1e-5, atol=1e-6)
    assert b.shape(getattr(b.ops, name)(_t(b, x))) == ()


def test_norm_details(b: TorchBackend) -> None:
    m = _f32(3, 4)
    _close(b.ops.norm(_t(b, m)), np.linalg.norm(m))  # Frobenius
    z = b.from_numpy(np.zeros((2, 3)), "float32", None)
    _, (g,) = b.value_and_grad(lambda v: b.ops.sum(b.ops.norm(v[0], axis=1)), [z])
    np.testing.assert_array_equal(b.to_numpy(g), np.zeros((2, 3), np.float32))  # never NaN
    _, (g,) = b.value_and_grad(lambda v: b.ops.norm(v[0]), [_t(b, m)])
    _close(g, m / np.linalg.norm(m))


def test_split_with_checked_arguments(b: TorchBackend) -> None:
    # The adapter's contract (`Ops`): an int dividing the axis, or normalized indices.
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    for args in ((2, 0), (3, 1), (4, -1), (2, 2), ((1, 3), -1), ((), 1), ((0, 0, 2), 1),
                 ((4,), 2)):
        got = b.ops.split(_t(b, a), *args)
        want = np.split(a, *args)
        assert isinstance(got, list) and len(got) == len(want), args
        for g, w in zip(got, want):
            _close(g, w)


def test_concat_and_stack(b: TorchBackend) -> None:
    parts = [_f32(2, 3), _f32(2, 3) + 1, _f32(2, 3) - 1]
    for axis in (0, 1, -1):
        _close(b.ops.concat([_t(b, p) for p in parts], axis=axis), np.concatenate(parts, axis))
        _close(b.ops.stack(tuple(_t(b, p) for p in parts), axis=axis), np.stack(parts, axis))
    _close(b.ops.concat([_t(b, p) for p in parts]), np.concatenate(parts))
    _close(b.ops.stack([_t(b, p) for p in parts]), np.stack(parts))


def test_reduction_of_integers_keeps_numpy_dtypes(b: TorchBackend) -> None:
    x = b.from_numpy(np.array([[1, 2], [3, 4]]), "int64", None)
    assert b.dtype(b.ops.sum(x)) == "int64"
    assert int(b.ops.sum(x)) == 10
    assert b.dtype(b.ops.max(x, axis=0)) == "int64"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_ops_keep_the_float_dtype(b: TorchBackend, dtype: str) -> None:
    x = b.from_numpy(A, dtype, None)
    w = b.from_numpy(B, dtype, None)
    assert b.dtype(b.ops.linear(x, w, None)) == dtype
    assert b.dtype(b.ops.matmul(x, b.ops.transpose(w))) == dtype
    assert b.dtype(b.ops.softmax(x)) == dtype
    assert b.dtype(b.ops.sum(x)) == dtype


def test_parameter_data_is_the_tensor_and_native_the_variable() -> None:
    p = d2lcompat.Parameter((2,), init="ones")
    p.initialize()
    assert isinstance(p.data(), torch.Tensor) and isinstance(p.native(), torch.nn.Parameter)
    assert p.native().requires_grad
