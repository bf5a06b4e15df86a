"""`ops.index_update` (API.md §2): a new tensor with ``x[index] = value`` applied, the
same on every backend, differentiable; the book's corr2d/pool2d spelling."""

from __future__ import annotations

import numpy as np
import pytest

from d2lcompat import Parameter, ShapeError, TensorWriteError, autograd, nn, ops

CASES = [
    ((1, 2), 7.0),
    ((slice(None), slice(1, 3)), np.full((3, 2), -1.0, np.float32)),
    ((Ellipsis, 0), np.arange(3, dtype=np.float32)),
    (1, np.arange(4, dtype=np.float32)),
    ((np.array([0, 2]), np.array([3, 1])), np.array([5.0, 6.0], np.float32)),
    ((slice(None, None, 2), slice(None)), 0.5),
]


@pytest.mark.parametrize("index,value", CASES)
def test_matches_numpy_and_leaves_x_alone(index, value) -> None:  # type: ignore[no-untyped-def]
    host = np.arange(12, dtype=np.float32).reshape(3, 4)
    x = ops.tensor(host)
    v = value if np.isscalar(value) else ops.tensor(value)
    y = ops.index_update(x, index, v)
    want = host.copy()
    want[index] = value
    np.testing.assert_array_equal(ops.to_numpy(y), want)
    np.testing.assert_array_equal(ops.to_numpy(x), host)  # x unchanged
    assert ops.dtype(y) == "float32" and ops.shape(y) == (3, 4)


def test_int_tensor_and_python_int_value() -> None:
    x = ops.zeros((2, 2), dtype="int64")
    y = ops.index_update(x, (0, 1), 3)
    assert ops.to_numpy(y).tolist() == [[0, 3], [0, 0]] and ops.dtype(y) == ops.dtype(x)


def test_differentiable_in_x_and_value() -> None:
    w = Parameter((3,), init="ones")
    v = Parameter((), init="ones")
    w.initialize()
    v.initialize()
    weights = ops.tensor([1.0, 2.0, 3.0])
    autograd.grad(lambda: ops.sum(ops.index_update(w.data(), 1, v.data() * 4.0) * weights), [w, v])
    assert ops.to_numpy(w.grad()).tolist() == [1.0, 0.0, 3.0]  # the overwritten entry gets none
    assert ops.item(v.grad()) == 8.0


def test_bad_index_and_value_raise_shape_error() -> None:
    x = ops.zeros((3, 4))
    with pytest.raises(ShapeError, match="does not fit"):
        ops.index_update(x, (5, 0), 1.0)
    with pytest.raises(ShapeError, match="does not broadcast"):
        ops.index_update(x, (0, slice(None)), ops.ones((3,)))


def test_book_corr2d() -> None:
    def corr2d(X, K):  # type: ignore[no-untyped-def]
        h, w = ops.shape(K)
        Y = ops.zeros((ops.shape(X)[0] - h + 1, ops.shape(X)[1] - w + 1))
        for i in range(ops.shape(Y)[0]):
            for j in range(ops.shape(Y)[1]):
                Y = ops.index_update(Y, (i, j), ops.sum(X[i:i + h, j:j + w] * K))
        return Y

    X = ops.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    K = ops.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert ops.to_numpy(corr2d(X, K)).tolist() == [[19.0, 25.0], [37.0, 43.0]]


def test_item_assignment_in_a_forward_names_index_update() -> None:
    class Writes(nn.Block):
        def forward(self, x):  # type: ignore[no-untyped-def]
            y = ops.zeros((2, 2))
            y[0, 0] = 1.0  # refused by TensorFlow and JAX tensors
            return y + x

    x = ops.ones((2, 2))
    try:
        out = Writes()(x)
    except TensorWriteError as exc:
        assert "ops.index_update" in str(exc) and "Writes.forward" in str(exc)
        assert isinstance(exc, TypeError)
    else:  # torch and paddle tensors accept the write
        assert ops.to_numpy(out).tolist() == [[2.0, 1.0], [1.0, 1.0]]
