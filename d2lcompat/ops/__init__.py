"""A small NumPy-flavoured op namespace, implemented natively by every backend.

Tensors in and out are the backend's native tensors. The math, reduction, shape
and nn ops are bound directly to the adapter's functions at import, so a call
costs exactly one native call. Creation ops take ``dtype=`` and ``device=``.

Examples
--------
>>> from d2lcompat import ops
>>> x = ops.arange(6, dtype="float32")
>>> ops.to_numpy(ops.sum(ops.reshape(x, (2, 3)), axis=1)).tolist()
[3.0, 12.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._backend import OP_NAMES
from .._device import resolve as _resolve
from .._dtypes import canonical as _canonical
from .._gluon import ctx_alias as _ctx_alias
from .._registry import active as _active
from .._semantics import wrap_ops as _wrap_ops
from . import random
from ._sequence import masked_softmax, sequence_mask

_B = _active()

matmul: Callable[..., Any]
dot: Callable[..., Any]
add: Callable[..., Any]
subtract: Callable[..., Any]
multiply: Callable[..., Any]
divide: Callable[..., Any]
exp: Callable[..., Any]
log: Callable[..., Any]
abs: Callable[..., Any]
sqrt: Callable[..., Any]
square: Callable[..., Any]
maximum: Callable[..., Any]
minimum: Callable[..., Any]
where: Callable[..., Any]
equal: Callable[..., Any]
not_equal: Callable[..., Any]
less: Callable[..., Any]
less_equal: Callable[..., Any]
greater: Callable[..., Any]
greater_equal: Callable[..., Any]
sum: Callable[..., Any]
mean: Callable[..., Any]
max: Callable[..., Any]
min: Callable[..., Any]
norm: Callable[..., Any]
reshape: Callable[..., Any]
transpose: Callable[..., Any]
concat: Callable[..., Any]
stack: Callable[..., Any]
split: Callable[..., Any]
expand_dims: Callable[..., Any]
squeeze: Callable[..., Any]
relu: Callable[..., Any]
sigmoid: Callable[..., Any]
tanh: Callable[..., Any]
softmax: Callable[..., Any]
log_softmax: Callable[..., Any]
linear: Callable[..., Any]
index_update: Callable[..., Any]

_missing = [n for n in OP_NAMES if not callable(getattr(_B.ops, n, None))]
if _missing:  # pragma: no cover - an adapter author's error, caught by the conformance suite
    from .._errors import BackendError

    raise BackendError(f"The {_B.name} adapter lacks the ops: {', '.join(_missing)}")
globals().update({n: getattr(_B.ops, n) for n in OP_NAMES})
# The broadcasting ops raise ShapeError naming both shapes, max/min raise it over an
# empty axis (docs/ops-semantics.md); every other op stays the adapter's own function.
globals().update(_wrap_ops(_B))


def _dtype_or(dtype: Any, default: str) -> str:
    return default if dtype is None else _canonical(dtype)


def tensor(data: Any, dtype: Any = None, device: Any = None, ctx: Any = None) -> Any:
    """A native tensor from data (lists, NumPy arrays, scalars or native tensors).

    Python floats become float32 and Python ints int64, as in PyTorch.

    Examples
    --------
    >>> from d2lcompat import ops
    >>> ops.dtype(ops.tensor([1.0, 2.0])), ops.dtype(ops.tensor([1, 2]))
    ('float32', 'int64')
    """
    dev = _resolve(_ctx_alias(device, ctx, "ops"))
    if _B.is_tensor(data):
        out = data if dtype is None else _B.cast(data, _canonical(dtype))
        return out if dev is None else _B.move(out, dev, copy=False)
    arr = np.asarray(data)
    if arr.dtype == object:
        from .._errors import DTypeError

        kinds = sorted({type(v).__name__ for v in arr.flat})
        raise DTypeError(
            f"ops.tensor: cannot make a tensor from Python objects of type "
            f"{', '.join(kinds)}; pass numbers, bools, NumPy arrays or native tensors."
        )
    if dtype is None:
        if arr.dtype.kind == "f" and arr.dtype == np.float64:
            dtype = "float32"
        elif arr.dtype.kind in "iu" and arr.dtype.itemsize == 8:
            dtype = "int64"
        else:
            dtype = _canonical(arr.dtype)
    return _B.from_numpy(arr, _canonical(dtype), dev)


def zeros(shape: Any, dtype: Any = None, device: Any = None, ctx: Any = None) -> Any:
    """A tensor of zeros (float32 by default)."""
    return _B.full(_shape(shape), 0, _dtype_or(dtype, "float32"), _resolve(_ctx_alias(device, ctx, "ops")))


def ones(shape: Any, dtype: Any = None, device: Any = None, ctx: Any = None) -> Any:
    """A tensor of ones (float32 by default)."""
    return _B.full(_shape(shape), 1, _dtype_or(dtype, "float32"), _resolve(_ctx_alias(device, ctx, "ops")))


def full(shape: Any, value: Any, dtype: Any = None, device: Any = None, ctx: Any = None) -> Any:
    """A tensor filled with ``value`` (float32 for a float, int64 for an int, bool for a bool)."""
    if dtype is None:
        dtype = "bool" if isinstance(value, bool) else "int64" if isinstance(value, int) else "float32"
    return _B.full(_shape(shape), value, _canonical(dtype), _resolve(_ctx_alias(device, ctx, "ops")))


def arange(start: Any, stop: Any = None, step: Any = 1, dtype: Any = None, device: Any = None, ctx: Any = None) -> Any:
    """``numpy.arange``: int64 for int arguments, float32 otherwise.

    Examples
    --------
    >>> from d2lcompat import ops
    >>> ops.to_numpy(ops.arange(4)).tolist()
    [0, 1, 2, 3]
    """
    if stop is None:
        start, stop = 0, start
    if step == 0:
        raise ValueError("ops.arange: step must not be 0.")
    if (stop - start) * step <= 0:  # empty, as numpy.arange (torch and paddle would raise)
        ints = all(isinstance(v, int) for v in (start, stop, step))
        name = _canonical(dtype) if dtype is not None else "int64" if ints else "float32"
        return _B.full((0,), 0, name, _resolve(_ctx_alias(device, ctx, "ops")))
    return _B.arange(start, stop, step, None if dtype is None else _canonical(dtype), _resolve(_ctx_alias(device, ctx, "ops")))


def zeros_like(x: Any, dtype: Any = None) -> Any:
    """Zeros of ``x``'s shape, dtype and device."""
    return _B.full(_B.shape(x), 0, _dtype_or(dtype, _B.dtype(x)), _B.device_of(x))


def ones_like(x: Any, dtype: Any = None) -> Any:
    """Ones of ``x``'s shape, dtype and device."""
    return _B.full(_B.shape(x), 1, _dtype_or(dtype, _B.dtype(x)), _B.device_of(x))


def to_numpy(x: Any, copy: bool = True) -> np.ndarray:
    """``x``'s values as a host NumPy array.

    With ``copy=True`` (the default) the array is an independent, writable copy on
    every backend: writing to it never changes ``x`` (nor the parameter ``x`` is the
    data of), and a later change to ``x`` is never seen in it. ``copy=False`` is the
    zero-copy path for code that only reads: the array may share memory with ``x``
    (torch, CPU) or be read-only (JAX); never write to it.

    Examples
    --------
    >>> from d2lcompat import ops
    >>> x = ops.ones((2,)); a = ops.to_numpy(x); a[0] = 5.0
    >>> ops.to_numpy(x).tolist()
    [1.0, 1.0]
    """
    if not _B.is_tensor(x):
        raise TypeError(
            f"ops.to_numpy expects a {_B.name} tensor, got {type(x).__name__}; "
            "use numpy.asarray for other data."
        )
    if not copy:
        return _B.host_view(x)
    return _B.to_numpy_copy(x)


def shape(x: Any) -> tuple[int, ...]:
    """``x``'s shape as a tuple of ints."""
    return _B.shape(x)


def dtype(x: Any) -> str:
    """``x``'s dtype as a canonical string (``'float32'``)."""
    return _B.dtype(x)


def cast(x: Any, dtype: Any) -> Any:
    """``x`` converted to ``dtype``."""
    return _B.cast(x, _canonical(dtype))


def item(x: Any) -> Any:
    """The Python scalar in a one-element tensor.

    It reads the tensor's value, so Python code that uses it (``if ops.item(x) > 0``)
    cannot be traced: see `autograd.grad` and ``hybridize`` for what JAX needs.

    Examples
    --------
    >>> from d2lcompat import ops
    >>> ops.item(ops.tensor([2.5]))
    2.5
    """
    if _B.is_tensor(x) and not _B.is_traced(x):
        shape = _B.shape(x)
        if all(isinstance(d, int) for d in shape) and math.prod(shape) != 1:  # not np.prod: 8 µs
            from .._errors import ShapeError

            raise ShapeError(
                f"ops.item needs a tensor with exactly one element, got shape {tuple(shape)}; "
                "reduce it first (ops.sum, ops.mean) or index it."
            )
    return _B.item(x)


def _shape(shape: Any) -> tuple[int, ...]:
    try:
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
    except TypeError:
        dims = (None,)
    if not all(isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= 0 for d in dims):
        from .._errors import ShapeError

        raise ShapeError(f"A shape is a tuple of non-negative ints, got {shape!r}.")
    return tuple(int(d) for d in dims)


__all__ = [
    *OP_NAMES,
    "arange",
    "cast",
    "dtype",
    "full",
    "item",
    "masked_softmax",
    "ones",
    "ones_like",
    "random",
    "sequence_mask",
    "shape",
    "tensor",
    "to_numpy",
    "zeros",
    "zeros_like",
]
