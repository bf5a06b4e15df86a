"""`d2lcompat.ops` against NumPy, on the backend of this process."""

from __future__ import annotations

import numpy as np
import pytest

import d2lcompat
from d2lcompat import ops

RNG = np.random.default_rng(0)
A = RNG.normal(size=(3, 4)).astype(np.float32)
B = RNG.normal(size=(3, 4)).astype(np.float32)
P = np.abs(A) + 0.5


def t(a: np.ndarray) -> object:
    return ops.tensor(a)


def close(x: object, want: np.ndarray, **kw: float) -> None:
    got = ops.to_numpy(x)
    assert got.shape == np.shape(want), (got.shape, np.shape(want))
    np.testing.assert_allclose(got, want, rtol=kw.get("rtol", 1e-5), atol=kw.get("atol", 1e-6))


@pytest.mark.parametrize(
    "name, ref",
    [("add", np.add), ("subtract", np.subtract), ("multiply", np.multiply), ("divide", np.divide),
     ("maximum", np.maximum), ("minimum", np.minimum)],
)
def test_binary(name: str, ref: object) -> None:
    close(getattr(ops, name)(t(A), t(B)), ref(A, B))  # type: ignore[operator]
    close(getattr(ops, name)(t(A), t(B[0])), ref(A, B[0]))  # type: ignore[operator]  # broadcasting


@pytest.mark.parametrize("name, ref", [("exp", np.exp), ("abs", np.abs), ("square", np.square),
                                       ("tanh", np.tanh)])
def test_unary(name: str, ref: object) -> None:
    close(getattr(ops, name)(t(A)), ref(A))  # type: ignore[operator]


def test_log_sqrt_relu_sigmoid() -> None:
    close(ops.log(t(P)), np.log(P))
    close(ops.sqrt(t(P)), np.sqrt(P))
    close(ops.relu(t(A)), np.maximum(A, 0))
    close(ops.sigmoid(t(A)), 1 / (1 + np.exp(-A)))


@pytest.mark.parametrize("name, ref", [("equal", np.equal), ("not_equal", np.not_equal),
                                       ("less", np.less), ("less_equal", np.less_equal),
                                       ("greater", np.greater), ("greater_equal", np.greater_equal)])
def test_comparisons(name: str, ref: object) -> None:
    b = B.copy()
    b[0] = A[0]
    out = getattr(ops, name)(t(A), t(b))
    assert ops.dtype(out) == "bool"
    np.testing.assert_array_equal(ops.to_numpy(out), ref(A, b))  # type: ignore[operator]


@pytest.mark.parametrize("n", [1, 16, 1000, 40_000])
@pytest.mark.parametrize("offset", [0, 4])
def test_tensor_copies_its_numpy_input(n: int, offset: int) -> None:
    # Whatever the array's alignment (jax.device_put keeps a 64-byte aligned NumPy array
    # as it is on the CPU, issue 22) or size, a later write to it is not seen.
    raw = np.zeros(4 * n + 128, np.uint8)
    start = -raw.ctypes.data % 64 + offset
    host = raw[start : start + 4 * n].view(np.float32)
    host[:] = np.arange(n)
    x, col = ops.tensor(host), ops.tensor(host[: n // 2 * 2].reshape(-1, 2).T)
    host[:] = -1
    np.testing.assert_array_equal(ops.to_numpy(x), np.arange(n, dtype=np.float32))
    np.testing.assert_array_equal(ops.to_numpy(col), np.arange(n // 2 * 2, dtype=np.float32).reshape(-1, 2).T)


def test_where() -> None:
    close(ops.where(ops.greater(t(A), t(B)), t(A), t(B)), np.where(A > B, A, B))


def test_matmul_dot_linear() -> None:
    close(ops.matmul(t(A), t(B.T)), A @ B.T)
    close(ops.dot(t(A[0]), t(B[0])), np.dot(A[0], B[0]))
    close(ops.dot(t(A), t(B.T)), A @ B.T)
    w = RNG.normal(size=(5, 4)).astype(np.float32)
    b = RNG.normal(size=(5,)).astype(np.float32)
    close(ops.linear(t(A), t(w), t(b)), A @ w.T + b)
    close(ops.linear(t(A), t(w), None), A @ w.T)
    x3 = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    close(ops.linear(t(x3), t(w), t(b)), x3 @ w.T + b)


@pytest.mark.parametrize("name, ref", [("sum", np.sum), ("mean", np.mean), ("max", np.max),
                                       ("min", np.min)])
@pytest.mark.parametrize("axis", [None, 0, 1, (0, 1)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(name: str, ref: object, axis: object, keepdims: bool) -> None:
    close(getattr(ops, name)(t(A), axis=axis, keepdims=keepdims), ref(A, axis=axis, keepdims=keepdims))  # type: ignore[operator]


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_norm(axis: object) -> None:
    close(ops.norm(t(A), axis=axis), np.linalg.norm(A) if axis is None else np.linalg.norm(A, axis=axis))  # type: ignore[arg-type]
    close(ops.norm(t(A), axis=axis, keepdims=True),
          np.sqrt(np.sum(A * A, axis=axis, keepdims=True)))  # type: ignore[call-overload]


def test_shape_ops() -> None:
    close(ops.reshape(t(A), (4, 3)), A.reshape(4, 3))
    close(ops.reshape(t(A), (2, -1)), A.reshape(2, -1))
    close(ops.transpose(t(A)), A.T)
    x3 = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    close(ops.transpose(t(x3), (1, 0, 2)), x3.transpose(1, 0, 2))
    close(ops.concat([t(A), t(B)], axis=0), np.concatenate([A, B], 0))
    close(ops.concat([t(A), t(B)], axis=1), np.concatenate([A, B], 1))
    close(ops.stack([t(A), t(B)], axis=1), np.stack([A, B], 1))
    close(ops.expand_dims(t(A), 1), A[:, None, :])
    for args in ((3, 0), (4, 1), (2, -1), ([1, 3], 1), ([-1], 0), ([0, 9], 1), ([], 0)):
        got = ops.split(t(A), *args)
        want = np.split(A, *args)
        assert isinstance(got, list) and len(got) == len(want)
        for g, w in zip(got, want):
            close(g, w)
    close(ops.squeeze(t(A[None, :, None, :])), A)
    close(ops.squeeze(t(A[None]), axis=0), A)


def test_softmax() -> None:
    e = np.exp(A - A.max(axis=-1, keepdims=True))
    sm = e / e.sum(axis=-1, keepdims=True)
    close(ops.softmax(t(A)), sm)
    close(ops.log_softmax(t(A)), np.log(sm), atol=1e-5)
    e0 = np.exp(A - A.max(axis=0, keepdims=True))
    close(ops.softmax(t(A), axis=0), e0 / e0.sum(axis=0, keepdims=True))


def _held(dtype: str) -> str:
    """The dtype the backend holds ``dtype`` in (int64 -> int32 without 64-bit types)."""
    from d2lcompat._dtypes import stored_as
    from d2lcompat._registry import active

    return stored_as(dtype, active().SUPPORTED_DTYPES)


def test_creation_and_dtypes() -> None:
    assert ops.dtype(ops.zeros((2, 3))) == "float32"
    np.testing.assert_array_equal(ops.to_numpy(ops.ones((2,), dtype="int32")), np.ones(2, np.int32))
    assert ops.dtype(ops.ones((2,), dtype="int32")) == "int32"
    np.testing.assert_array_equal(ops.to_numpy(ops.full((2, 2), 7.5)), np.full((2, 2), 7.5, np.float32))
    assert ops.dtype(ops.full((1,), 3)) == _held("int64")
    np.testing.assert_array_equal(ops.to_numpy(ops.arange(4)), np.arange(4))
    assert ops.dtype(ops.arange(4)) == _held("int64")
    close(ops.arange(1.0, 2.0, 0.25), np.arange(1.0, 2.0, 0.25, dtype=np.float32))
    close(ops.arange(0, 6, 2, dtype="float32"), np.array([0, 2, 4], np.float32))
    x = ops.tensor([[1.0, 2.0]])
    assert ops.shape(x) == (1, 2) and ops.dtype(x) == "float32"
    assert ops.dtype(ops.tensor([1, 2])) == _held("int64")
    assert ops.dtype(ops.tensor([True])) == "bool"
    assert ops.dtype(ops.zeros_like(x)) == "float32" and ops.shape(ops.ones_like(x)) == (1, 2)
    assert ops.dtype(ops.cast(x, "float64")) == _held("float64")
    assert ops.item(ops.sum(x)) == 3.0
    assert ops.tensor(x) is x


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64", "int8", "int16",
                                   "int32", "int64", "uint8", "bool"])
def test_dtype_round_trip(dtype: str) -> None:
    from d2lcompat._dtypes import numpy_dtype

    arr = (np.arange(6).reshape(2, 3) % 3).astype(numpy_dtype(dtype))
    x = ops.tensor(arr, dtype=dtype)
    assert ops.dtype(x) == _held(dtype)
    back = ops.to_numpy(x)
    assert back.dtype == numpy_dtype(_held(dtype))
    np.testing.assert_array_equal(back.astype(np.float64), arr.astype(np.float64))


def test_native_operators_keep_working() -> None:
    x, y = t(A), t(B)
    close(x + y, A + B)
    close(x * 2 - y / 2, A * 2 - B / 2)
    close(x @ t(B.T), A @ B.T)
    close(x[1:, :2], A[1:, :2])


def test_unknown_dtype_is_a_clear_error() -> None:
    with pytest.raises(d2lcompat.DTypeError, match="complex128"):
        ops.zeros((2,), dtype="complex128")
