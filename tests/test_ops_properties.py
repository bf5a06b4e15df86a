"""Property-based tests: every op of `d2lcompat.ops` against NumPy, on this process's backend.

Random shapes (0-sized dimensions included), dtypes float32/float64/int32/int64/bool (those
the backend supports), axes and keepdims. The expected dtype comes from the documented
rules (`d2lcompat._semantics`, docs/ops-semantics.md), the expected values from NumPy.

Examples per op: ``D2LCOMPAT_PROPS_EXAMPLES`` (default 15, the short profile of every tox
env); ``tox -e props`` runs the long profile (2,000 per op).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import d2lcompat
from d2lcompat import ops
from d2lcompat._dtypes import numpy_dtype
from d2lcompat._registry import active
from d2lcompat._semantics import float_result, is_float, promote, scalar_result, sum_result

EXAMPLES = int(os.environ.get("D2LCOMPAT_PROPS_EXAMPLES", "15"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=EXAMPLES <= 50,  # the short profile is the same run every time
    suppress_health_check=list(HealthCheck),
)

SUPPORTED = active().SUPPORTED_DTYPES
NUMBERS = [d for d in ("float32", "float64", "int32", "int64") if d in SUPPORTED]
FLOATS = [d for d in NUMBERS if is_float(d)]
ALL = [*NUMBERS, "bool"]

number_dtypes = st.sampled_from(NUMBERS)
all_dtypes = st.sampled_from(ALL)
float_dtypes = st.sampled_from(FLOATS)


def elements(dtype: str) -> st.SearchStrategy[Any]:
    if dtype == "bool":
        return st.booleans()
    if is_float(dtype):
        # Nothing in (0, 1e-6): Paddle's float comparisons take |a - b| < 1e-15 as equal
        # (docs/divergences.md); every other op is tested with these values as well.
        return st.floats(-8, 8, width=32, allow_nan=False, allow_infinity=False).map(
            lambda v: v if abs(v) >= 1e-6 else 0.0
        )
    return st.integers(-20, 20)


def arrays(dtype: str, shape: Any) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(numpy_dtype(dtype), shape, elements=elements(dtype))


shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
nonempty_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def t(a: np.ndarray, dtype: str) -> Any:
    return ops.tensor(a, dtype=dtype)


# Where the backend lacks a 64-bit dtype (JAX without x64), it holds the 32-bit sibling.
NARROW = {"int64": "int32", "float64": "float32"}


def check(out: Any, want: np.ndarray, dtype: str, *, exact: bool = False, rtol: float = 0.0) -> None:
    if dtype not in SUPPORTED:
        dtype = NARROW.get(dtype, dtype)
    assert ops.dtype(out) == dtype, (ops.dtype(out), dtype)
    got = ops.to_numpy(out)
    want = np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    if exact or not is_float(dtype):
        np.testing.assert_array_equal(got, want.astype(got.dtype))
        return
    tol = rtol or (2e-6 if dtype == "float64" else 2e-5)
    with np.errstate(all="ignore"):  # rounded to the result dtype: 4 / 1.2e-38 is inf in float32
        want = want.astype(got.dtype).astype(np.float64)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol, equal_nan=True)


def np_of(dtype: str) -> np.dtype[Any]:
    return numpy_dtype(dtype)


@st.composite
def axes(draw: st.DrawFn, ndim: int) -> Any:
    """None, one int (maybe negative) or a tuple of distinct axes."""
    if ndim == 0:
        return None
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    picked = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(a - ndim if draw(st.booleans()) else a for a in picked)


# ----------------------------------------------------------------- elementwise binary
BINARY = {
    "add": np.add,
    "subtract": np.subtract,
    "multiply": np.multiply,
    "divide": np.divide,
    "maximum": np.maximum,
    "minimum": np.minimum,
}
COMPARE = {
    "equal": np.equal,
    "not_equal": np.not_equal,
    "less": np.less,
    "less_equal": np.less_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
}


@pytest.mark.parametrize("name", sorted(BINARY))
@SETTINGS
@given(data=st.data(), da=number_dtypes, db=number_dtypes,
       sh=hnp.mutually_broadcastable_shapes(num_shapes=2, min_side=0, max_side=4))
def test_binary(name: str, data: st.DataObject, da: str, db: str, sh: Any) -> None:
    a = data.draw(arrays(da, sh.input_shapes[0]))
    b = data.draw(arrays(db, sh.input_shapes[1]))
    dtype = promote(da, db)
    if name == "divide":
        dtype = float_result(dtype)
    with np.errstate(all="ignore"):
        want = BINARY[name](a.astype(np.float64), b.astype(np.float64))
    out = getattr(ops, name)(t(a, da), t(b, db))
    check(out, want, dtype)


@pytest.mark.parametrize("name", sorted(BINARY))
@SETTINGS
@given(data=st.data(), da=all_dtypes, shape=shapes,
       scalar=st.one_of(st.integers(-5, 5), st.floats(-4, 4, width=32), st.booleans()),
       left=st.booleans())
def test_binary_with_python_scalar(
    name: str, data: st.DataObject, da: str, shape: Any, scalar: Any, left: bool
) -> None:
    if da == "bool" and isinstance(scalar, bool):
        scalar = int(scalar)  # arithmetic on two bools is not specified (docs/ops-semantics.md)
    a = data.draw(arrays(da, shape))
    dtype = scalar_result(da, scalar)
    if name == "divide":
        dtype = float_result(dtype)
    x = t(a, da)
    args = (scalar, x) if left else (x, scalar)
    nargs = (float(scalar), a.astype(np.float64))
    with np.errstate(all="ignore"):
        want = BINARY[name](*(nargs if left else nargs[::-1]))
    check(getattr(ops, name)(*args), want, dtype)


@pytest.mark.parametrize("name", sorted(COMPARE))
@SETTINGS
@given(data=st.data(), da=all_dtypes, db=all_dtypes,
       sh=hnp.mutually_broadcastable_shapes(num_shapes=2, min_side=0, max_side=4))
def test_comparison(name: str, data: st.DataObject, da: str, db: str, sh: Any) -> None:
    a = data.draw(arrays(da, sh.input_shapes[0]))
    b = data.draw(arrays(db, sh.input_shapes[1]))
    want = COMPARE[name](a.astype(np.float64), b.astype(np.float64))
    check(getattr(ops, name)(t(a, da), t(b, db)), want, "bool")


@SETTINGS
@given(data=st.data(), dx=all_dtypes, dy=all_dtypes,
       sh=hnp.mutually_broadcastable_shapes(num_shapes=3, min_side=0, max_side=4))
def test_where(data: st.DataObject, dx: str, dy: str, sh: Any) -> None:
    c = data.draw(arrays("bool", sh.input_shapes[0]))
    x = data.draw(arrays(dx, sh.input_shapes[1]))
    y = data.draw(arrays(dy, sh.input_shapes[2]))
    want = np.where(c, x.astype(np.float64), y.astype(np.float64))
    check(ops.where(t(c, "bool"), t(x, dx), t(y, dy)), want, promote(dx, dy))


@pytest.mark.parametrize("name", sorted(BINARY) + sorted(COMPARE))
@SETTINGS
@given(data=st.data(), dtype=number_dtypes,
       sa=hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=4))
def test_broadcast_error_names_both_shapes(name: str, data: st.DataObject, dtype: str, sa: Any) -> None:
    sb = (*sa[:-1], sa[-1] + 1)
    a = data.draw(arrays(dtype, sa))
    b = data.draw(arrays(dtype, sb))
    with pytest.raises(d2lcompat.ShapeError, match=rf"ops\.{name}.*{tuple(sa)}.*{tuple(sb)}".replace("(", r"\(").replace(")", r"\)")):
        getattr(ops, name)(t(a, dtype), t(b, dtype))


# ------------------------------------------------------------------- elementwise unary
UNARY_FLOAT = {
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "tanh": np.tanh,
    "sigmoid": lambda a: 1 / (1 + np.exp(-a)),
}
UNARY_SAME = {"abs": np.abs, "square": np.square, "relu": lambda a: np.maximum(a, 0)}


@pytest.mark.parametrize("name", sorted(UNARY_FLOAT) + sorted(UNARY_SAME))
@SETTINGS
@given(data=st.data(), dtype=number_dtypes, shape=shapes)
def test_unary(name: str, data: st.DataObject, dtype: str, shape: Any) -> None:
    a = data.draw(arrays(dtype, shape))
    if name in UNARY_FLOAT:
        out_dtype = float_result(dtype)
        with np.errstate(all="ignore"):
            want = UNARY_FLOAT[name](a.astype(np.float64))
    else:
        out_dtype = dtype
        want = UNARY_SAME[name](a.astype(np.float64))
    check(getattr(ops, name)(t(a, dtype)), want, out_dtype)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@SETTINGS
@given(data=st.data(), dtype=number_dtypes, shape=nonempty_shapes)
def test_softmax(name: str, data: st.DataObject, dtype: str, shape: Any) -> None:
    a = data.draw(arrays(dtype, shape))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    a64 = a.astype(np.float64)
    z = a64 - a64.max(axis=axis, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=axis, keepdims=True))
    want = np.exp(z - lse) if name == "softmax" else z - lse
    check(getattr(ops, name)(t(a, dtype), axis=axis), want, float_result(dtype))


# ------------------------------------------------------------------------- reductions
@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "norm"])
@SETTINGS
@given(data=st.data(), dtype=all_dtypes, shape=shapes, keepdims=st.booleans())
def test_reduction(name: str, data: st.DataObject, dtype: str, shape: Any, keepdims: bool) -> None:
    a = data.draw(arrays(dtype, shape))
    axis = data.draw(axes(len(shape)))
    a64 = a.astype(np.float64)
    x = t(a, dtype)
    if name in ("max", "min"):
        reduced = range(len(shape)) if axis is None else ((axis,) if isinstance(axis, int) else axis)
        if any(shape[i] == 0 for i in reduced):
            with pytest.raises(d2lcompat.ShapeError, match=f"ops.{name}.*{shape}"):
                getattr(ops, name)(x, axis=axis, keepdims=keepdims)
            return
        want = getattr(np, name)(a64, axis=axis, keepdims=keepdims)
        check(getattr(ops, name)(x, axis=axis, keepdims=keepdims), want, dtype)
        return
    with np.errstate(all="ignore"):
        if name == "sum":
            want, out_dtype = a64.sum(axis=axis, keepdims=keepdims), sum_result(dtype)
        elif name == "mean":
            n = a64.size if axis is None else int(np.prod([shape[i] for i in np.atleast_1d(axis)]))
            s = a64.sum(axis=axis, keepdims=keepdims)
            want = s / n if n else np.full_like(s, np.nan)
            out_dtype = float_result(dtype)
        else:
            want = np.sqrt(np.square(a64).sum(axis=axis, keepdims=keepdims))
            out_dtype = float_result(dtype)
    check(getattr(ops, name)(x, axis=axis, keepdims=keepdims), want, out_dtype)


# ----------------------------------------------------------------- linear algebra
@st.composite
def matmul_shapes(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    n, k, m = (draw(st.integers(0, 4)) for _ in range(3))
    kind = draw(st.sampled_from(["mm", "vv", "vm", "mv", "batched"]))
    if kind == "vv":
        return (k,), (k,)
    if kind == "vm":
        return (k,), (k, m)
    if kind == "mv":
        return (n, k), (k,)
    if kind == "batched":
        b = draw(st.integers(0, 3))
        return (b, n, k), (b, k, m)
    return (n, k), (k, m)


@pytest.mark.parametrize("name", ["matmul", "dot"])
@SETTINGS
@given(data=st.data(), dtype=number_dtypes, sh=matmul_shapes())
def test_matmul(name: str, data: st.DataObject, dtype: str, sh: Any) -> None:
    a = data.draw(arrays(dtype, sh[0]))
    b = data.draw(arrays(dtype, sh[1]))
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    check(getattr(ops, name)(t(a, dtype), t(b, dtype)), want, dtype, rtol=1e-4 if dtype == "float32" else 0.0)


@SETTINGS
@given(data=st.data(), dtype=float_dtypes, lead=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4),
       out=st.integers(0, 4), bias=st.booleans())
def test_linear(data: st.DataObject, dtype: str, lead: Any, out: int, bias: bool) -> None:
    x = data.draw(arrays(dtype, lead))
    w = data.draw(arrays(dtype, (out, lead[-1])))
    b = data.draw(arrays(dtype, (out,))) if bias else None
    want = x.astype(np.float64) @ w.astype(np.float64).T + (0 if b is None else b.astype(np.float64))
    got = ops.linear(t(x, dtype), t(w, dtype), None if b is None else t(b, dtype))
    check(got, want, dtype, rtol=1e-4 if dtype == "float32" else 0.0)


# ------------------------------------------------------------------------------ shape
@SETTINGS
@given(data=st.data(), dtype=all_dtypes, shape=shapes)
def test_reshape(data: st.DataObject, dtype: str, shape: Any) -> None:
    a = data.draw(arrays(dtype, shape))
    flat = (a.size,)
    target = data.draw(st.sampled_from([flat, (*shape[::-1],), (1, *shape), (a.size, 1)]))
    if a.size and data.draw(st.booleans()):
        target = (*target[:-1], -1) if target else target
    check(ops.reshape(t(a, dtype), target), a.reshape(target), dtype, exact=True)


@SETTINGS
@given(data=st.data(), dtype=all_dtypes, shape=shapes)
def test_transpose(data: st.DataObject, dtype: str, shape: Any) -> None:
    a = data.draw(arrays(dtype, shape))
    perm = data.draw(st.one_of(st.none(), st.permutations(range(len(shape))).map(tuple)))
    check(ops.transpose(t(a, dtype), perm), np.transpose(a, perm), dtype, exact=True)


@pytest.mark.parametrize("name", ["concat", "stack"])
@SETTINGS
@given(data=st.data(), dtype=all_dtypes, shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=3),
       n=st.integers(1, 3))
def test_concat_stack(name: str, data: st.DataObject, dtype: str, shape: Any, n: int) -> None:
    rank = len(shape) + (name == "stack")
    axis = data.draw(st.integers(-rank, rank - 1))
    parts = []
    for _ in range(n):
        s = list(shape)
        if name == "concat":
            s[axis] = data.draw(st.integers(0, 3))
        parts.append(data.draw(arrays(dtype, tuple(s))))
    ref = np.concatenate if name == "concat" else np.stack
    out = getattr(ops, name)([t(p, dtype) for p in parts], axis=axis)
    check(out, ref(parts, axis=axis), dtype, exact=True)


@SETTINGS
@given(data=st.data(), dtype=all_dtypes,
       shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=6))
def test_split(data: st.DataObject, dtype: str, shape: Any) -> None:
    a = data.draw(arrays(dtype, shape))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    if data.draw(st.booleans()):  # equal parts: a divisor of the axis (any count for size 0)
        arg: Any = data.draw(st.sampled_from([k for k in range(1, 7) if n % k == 0]))
    else:  # indices: non-decreasing once negatives count from the end; may run past the end
        raw = sorted(data.draw(st.lists(st.integers(0, n + 2), max_size=4)))
        arg = [i - n if i < n and data.draw(st.booleans()) else i for i in raw]
    got = ops.split(t(a, dtype), arg, axis=axis)
    want = np.split(a, arg, axis=axis)
    assert isinstance(got, list) and len(got) == len(want)
    for g, w in zip(got, want):
        check(g, w, dtype, exact=True)


@SETTINGS
@given(data=st.data(), dtype=all_dtypes, shape=shapes)
def test_expand_dims_squeeze(data: st.DataObject, dtype: str, shape: Any) -> None:
    a = data.draw(arrays(dtype, shape))
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    e = ops.expand_dims(t(a, dtype), axis)
    check(e, np.expand_dims(a, axis), dtype, exact=True)
    check(ops.squeeze(e, axis=axis), a, dtype, exact=True)
    check(ops.squeeze(t(a, dtype)), np.squeeze(a), dtype, exact=True)
    ones = tuple(i for i, d in enumerate(shape) if d == 1)
    if ones:
        sub = tuple(data.draw(st.lists(st.sampled_from(ones), min_size=1, unique=True)))
        check(ops.squeeze(t(a, dtype), axis=sub), np.squeeze(a, axis=sub), dtype, exact=True)


# ---------------------------------------------------------------- creation, casts, host
@SETTINGS
@given(data=st.data(), src=all_dtypes, dst=all_dtypes, shape=shapes)
def test_cast_and_to_numpy(data: st.DataObject, src: str, dst: str, shape: Any) -> None:
    a = data.draw(arrays(src, shape))
    x = t(a, src)
    check(x, a, src, exact=True)
    want = a.astype(np_of(dst))  # float -> int truncates toward zero, as NumPy
    check(ops.cast(x, dst), want, dst, exact=True)
    host = ops.to_numpy(x)
    if host.size:  # an independent copy: writing to it leaves x alone
        host.flat[0] = not host.flat[0] if src == "bool" else host.flat[0] + 1
        check(x, a, src, exact=True)


@SETTINGS
@given(dtype=all_dtypes, shape=shapes, fill=st.integers(-3, 3))
def test_creation(dtype: str, shape: Any, fill: int) -> None:
    value = bool(fill) if dtype == "bool" else fill
    check(ops.full(shape, value, dtype=dtype), np.full(shape, value, np_of(dtype)), dtype, exact=True)
    check(ops.zeros(shape, dtype=dtype), np.zeros(shape, np_of(dtype)), dtype, exact=True)
    check(ops.ones(shape, dtype=dtype), np.ones(shape, np_of(dtype)), dtype, exact=True)
    x = ops.zeros(shape, dtype=dtype)
    check(ops.ones_like(x), np.ones(shape, np_of(dtype)), dtype, exact=True)
    check(ops.zeros_like(x), np.zeros(shape, np_of(dtype)), dtype, exact=True)


@SETTINGS
@given(start=st.integers(-10, 10), stop=st.integers(-10, 10), step=st.integers(1, 4),
       dtype=st.sampled_from([None, *NUMBERS]))
def test_arange(start: int, stop: int, step: int, dtype: str | None) -> None:
    want = np.arange(start, stop, step, dtype=np.int64 if dtype is None else np_of(dtype))
    out = ops.arange(start, stop, step, dtype=dtype)
    check(out, want, "int64" if dtype is None else dtype, exact=True)


@SETTINGS
@given(data=st.data(), dtype=all_dtypes)
def test_item(data: st.DataObject, dtype: str) -> None:
    a = data.draw(arrays(dtype, data.draw(st.sampled_from([(), (1,), (1, 1)]))))
    got = ops.item(t(a, dtype))
    assert got == a.item() and type(got) is type(a.item())
