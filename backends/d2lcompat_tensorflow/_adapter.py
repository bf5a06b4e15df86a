"""TensorFlow adapter: answers *how* for each primitive of `d2lcompat.Backend`.

Most ops call ``tf.raw_ops`` (the public, stable op-level API) rather than the
``tf.math`` / ``tf.nn`` wrappers: in eager mode the wrappers' dispatch layers cost
two to three times the op itself on the small tensors of a d2l-sized network, and
raw ops give a Python scalar the dtype of the tensor it meets whichever side it is
on (``tf.add(1.5, half_tensor)`` fails, ``AddV2(x=1.5, y=half_tensor)`` does not).
Shape, axis and permutation arguments go in as cached int32 constants, because
converting a Python tuple on every call costs more than the op.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

# Must be set before TensorFlow's C++ runtime loads, or its startup chatter reaches users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.eager import context as _context  # noqa: E402  (the device scope: _Concrete)

from d2lcompat._backend import OP_NAMES, Backend, CapturedVariables, DeviceTuple, Ops  # noqa: E402
from d2lcompat._device import mixed_devices_error  # noqa: E402
from d2lcompat._errors import D2LCompatError, DeviceError, DTypeError, UnsupportedError  # noqa: E402
from d2lcompat._semantics import index_positions, split_sizes  # noqa: E402

__all__ = ["TensorFlowBackend", "TensorFlowOps"]

_DTYPES: dict[str, tf.DType] = {
    "float16": tf.float16,
    "bfloat16": tf.bfloat16,
    "float32": tf.float32,
    "float64": tf.float64,
    "int8": tf.int8,
    "int16": tf.int16,
    "int32": tf.int32,
    "int64": tf.int64,
    "uint8": tf.uint8,
    "bool": tf.bool,
}
_NAMES: dict[tf.DType, str] = {v: k for k, v in _DTYPES.items()}
# TF's own NumPy types; bfloat16 is ml_dtypes.bfloat16, which TF ships.
_NP_DTYPES: dict[str, np.dtype[Any]] = {k: np.dtype(v.as_numpy_dtype) for k, v in _DTYPES.items()}

# Anything the raw ops accept as a tensor without a conversion step worth avoiding.
_TENSORS: tuple[type[tf.Tensor], type[tf.Variable]] = (tf.Tensor, tf.Variable)

_raw = tf.raw_ops
_AddV2 = _raw.AddV2
_Sub = _raw.Sub
_Mul = _raw.Mul
_RealDiv = _raw.RealDiv
_Exp = _raw.Exp
_Log = _raw.Log
_Abs = _raw.Abs
_Sqrt = _raw.Sqrt
_Square = _raw.Square
_Maximum = _raw.Maximum
_Minimum = _raw.Minimum
_SelectV2 = _raw.SelectV2
_Equal = _raw.Equal
_NotEqual = _raw.NotEqual
_Less = _raw.Less
_LessEqual = _raw.LessEqual
_Greater = _raw.Greater
_GreaterEqual = _raw.GreaterEqual
_Sum = _raw.Sum
_Mean = _raw.Mean
_Max = _raw.Max
_Min = _raw.Min
_Any = _raw.Any
_All = _raw.All
_Reshape = _raw.Reshape
_Transpose = _raw.Transpose
_ConcatV2 = _raw.ConcatV2
_Pack = _raw.Pack
_ExpandDims = _raw.ExpandDims
_Squeeze = _raw.Squeeze
_Relu = _raw.Relu
_Sigmoid = _raw.Sigmoid
_Tanh = _raw.Tanh
_Softmax = _raw.Softmax
_LogSoftmax = _raw.LogSoftmax
_MatMul = _raw.MatMul
_BatchMatMulV2 = _raw.BatchMatMulV2
_BatchMatMulV3 = _raw.BatchMatMulV3
_BiasAdd = _raw.BiasAdd


@functools.lru_cache(maxsize=4096)
def _i32(value: int | tuple[int, ...]) -> tf.Tensor:
    """An int32 constant for a shape, axis or permutation, made once per value.

    ``init_scope`` makes it an eager tensor even when first asked for while
    ``tf.function`` traces, so the cache never holds a graph tensor that a later
    eager call could not use. It lives on ``/CPU:0``: shape inputs are host memory
    on every TF device, so ops on other devices read it without a transfer.
    """
    with tf.init_scope(), tf.device("/CPU:0"):
        return tf.constant(value, dtype=tf.int32)


def _axes(axis: Any) -> tf.Tensor:
    """``axis`` (int, tuple or list) as a cached int32 constant."""
    if isinstance(axis, int):
        return _i32(axis)
    return _i32(tuple(int(a) for a in axis))


def _dynamic_shape(x: Any, shape: Sequence[Any]) -> tf.Tensor:
    """A reshape target with sizes only known when the graph runs.

    Inside a ``tf.function`` that has seen two batch sizes, ``reduce_retracing`` relaxes
    the batch axis to ``None``, and `shape` reports it so. A ``None`` entry stands for
    ``x``'s own size along the same axis (the batch size the graph is given); a scalar
    tensor entry is used as it is (``tf.shape(x)[0]``).
    """
    dims: list[Any] = []
    for i, d in enumerate(shape):
        if d is None:
            if i >= len(x.shape):
                raise TypeError(f"reshape: an unknown size at axis {i} of {tuple(shape)}")
            dims.append(tf.shape(x, out_type=tf.int32)[i])
        elif isinstance(d, _TENSORS):
            dims.append(tf.cast(d, tf.int32))
        else:
            dims.append(tf.constant(int(d), tf.int32))
    return tf.stack(dims)


def _tensor(x: Any) -> Any:
    """``x`` itself when it is a tensor or variable, else ``x`` converted (lists, scalars)."""
    return x if isinstance(x, _TENSORS) else tf.convert_to_tensor(x)


def _all_axes(rank: int) -> tf.Tensor:
    return _i32(tuple(range(rank)))


def _reduce(
    op: Callable[..., Any], public: Callable[..., Any], x: Any, axis: Any, keepdims: bool
) -> Any:
    """Run the raw reduction ``op``; ``axis=None`` reduces over every axis."""
    if axis is None:
        rank = x.shape.rank
        if rank is None:  # unknown rank while tracing: let TF compute the axes
            return public(x, axis=None, keepdims=keepdims)
        axis_t = _all_axes(rank)
    else:
        axis_t = _axes(axis)
    return op(input=x, axis=axis_t, keep_dims=keepdims)


def _matmul_2d(x: Any, w: Any, transpose_w: bool) -> Any:
    """``x @ w`` or ``x @ wᵀ`` of two 2-D tensors, by the faster kernel (`_large_float32`)."""
    if transpose_w and _large_float32(w):
        return _BatchMatMulV2(x=x, y=w, adj_y=True)
    return _MatMul(a=x, b=w, transpose_b=transpose_w)


def _matmul_last(x: Any, w: Any, transpose_w: bool) -> Any:
    """``x @ w`` (or ``x @ w.T``) for ``x`` of rank > 2 and a 2-D ``w``, as one 2-D GEMM.

    TF's broadcasting BatchMatMul runs one small GEMM per leading index and is
    several times slower on CPU than flattening the leading axes into one GEMM.
    """
    in_dim = w.shape[-1] if transpose_w else w.shape[0]
    out_dim = w.shape[0] if transpose_w else w.shape[-1]
    lead = x.shape[:-1]
    if lead.is_fully_defined() and in_dim is not None and out_dim is not None:
        # The row count spelled out: -1 is ambiguous when in_dim is 0.
        flat = _Reshape(tensor=x, shape=_i32((lead.num_elements(), in_dim)))
        y = _matmul_2d(flat, w, transpose_w)
        return _Reshape(tensor=y, shape=_i32((*lead.as_list(), out_dim)))
    # Traced with relaxed (unknown) dimensions: compute the shapes at run time.
    xs = tf.shape(x)
    flat = _Reshape(tensor=x, shape=tf.stack([-1, xs[-1]]))
    y = _matmul_2d(flat, w, transpose_w)
    return _Reshape(tensor=y, shape=tf.concat([xs[:-1], tf.shape(y)[-1:]], 0))


#: From this many weight entries on, `TensorFlowOps.linear` computes ``x @ wᵀ`` with
#: ``BatchMatMulV2(adj_y=True)`` rather than ``MatMul(transpose_b=True)``.
_LARGE_WEIGHT = 1 << 17


def _large_float32(w: Any) -> bool:
    """Whether ``x @ wᵀ`` is faster with ``BatchMatMulV2(x, w, adj_y=True)``.

    d2lcompat keeps Gluon's ``(out, in)`` weight (the portable file's layout); Keras
    keeps ``(in, out)``. TF's CPU ``MatMul`` reads a large transposed right operand
    slowly (64 × 1024 @ (1024 × 1024)ᵀ: 2.15 ms against 0.78 ms for ``MatMul`` on the
    weight stored transposed; the earlier ``(w @ xᵀ)ᵀ`` 1.06 ms). ``BatchMatMulV2``
    with ``adj_y`` (oneDNN's matmul on x86 CPUs) reads the stored weight at 0.81 ms, the
    gradient too (forward + backward 3.2 ms against 4.5 ms). Its fixed cost loses on
    small products (2 × 20 @ 256ᵀ: 92 µs against 14 µs; 64 × 512 @ 128ᵀ: 216 µs
    against 126 µs), hence the size threshold. Figures: docs/performance.md
    ("TensorFlow deep MLP forward").
    """
    n_w = w.shape.num_elements()
    return n_w is not None and n_w >= _LARGE_WEIGHT and w.dtype == tf.float32


def _floating(x: Any) -> Any:
    """``x`` as a floating tensor: NumPy gives float64 for the mean or norm of integers."""
    return x if x.dtype.is_floating else tf.cast(x, tf.float64)


def _bool_as_int8(a: Any, b: Any) -> tuple[Any, Any]:
    return tuple(tf.cast(v, tf.int8) if getattr(v, "dtype", None) == tf.bool else v for v in (a, b))  # type: ignore[return-value]


class TensorFlowOps(Ops):
    """Native TensorFlow ops with NumPy semantics.

    Every name of `d2lcompat._backend.OP_NAMES` is a static method here;
    ``d2lcompat.ops`` binds them directly.

    Notes
    -----
    Type promotion is TensorFlow's, not NumPy's: a Python scalar takes the dtype of
    the tensor it meets, but two tensors of different dtypes (``int32 + float32``,
    ``float32 + float64``) raise ``InvalidArgumentError``.
    """

    # ------------------------------------------------------------------ math
    @staticmethod
    def matmul(a: Any, b: Any) -> Any:
        a = _tensor(a)
        b = _tensor(b)
        ra, rb = a.shape.rank, b.shape.rank
        if ra == 2 and rb == 2:
            return _MatMul(a=a, b=b)
        if ra is None or rb is None:
            return tf.linalg.matmul(a, b)
        if ra == 1 and rb == 1:  # NumPy: the inner product, a 0-d result
            return _Sum(input=_Mul(x=a, y=b), axis=_i32(0), keep_dims=False)
        if ra == 1:  # NumPy promotes a to (1, k) and drops that axis again
            a2 = _ExpandDims(input=a, axis=_i32(0))
            y = TensorFlowOps.matmul(a2, b)
            return _Squeeze(input=y, axis=[-2])
        if rb == 1:
            return tf.linalg.matvec(a, b)
        if rb == 2:
            return _matmul_last(a, b, transpose_w=False)
        return _BatchMatMulV3(x=a, y=b, Tout=a.dtype)

    @staticmethod
    def dot(a: Any, b: Any) -> Any:
        a = _tensor(a)
        b = _tensor(b)
        if a.shape.rank == 1 and b.shape.rank == 1:
            return _Sum(input=_Mul(x=a, y=b), axis=_i32(0), keep_dims=False)
        return TensorFlowOps.matmul(a, b)

    @staticmethod
    def add(a: Any, b: Any) -> Any:
        return _AddV2(x=a, y=b)

    @staticmethod
    def subtract(a: Any, b: Any) -> Any:
        return _Sub(x=a, y=b)

    @staticmethod
    def multiply(a: Any, b: Any) -> Any:
        return _Mul(x=a, y=b)

    @staticmethod
    def divide(a: Any, b: Any) -> Any:
        t = a if isinstance(a, _TENSORS) else b
        if isinstance(b, float) and b == 0.0 and isinstance(t, _TENSORS):
            # TF's eager scalar cache holds 0.0 and -0.0 as one constant: keep the sign.
            b = np.asarray(b, dtype=t.dtype.as_numpy_dtype)
        if isinstance(t, _TENSORS) and t.dtype.is_floating:
            return _RealDiv(x=a, y=b)
        # Integers: true division to float64 (tf.math.truediv casts); d2lcompat.ops casts
        # integers to float32 before it gets here (docs/ops-semantics.md).
        return tf.math.truediv(a, b)

    @staticmethod
    def exp(x: Any) -> Any:
        return _Exp(x=x)

    @staticmethod
    def log(x: Any) -> Any:
        return _Log(x=x)

    @staticmethod
    def abs(x: Any) -> Any:
        return _Abs(x=x)

    @staticmethod
    def sqrt(x: Any) -> Any:
        return _Sqrt(x=x)

    @staticmethod
    def square(x: Any) -> Any:
        return _Square(x=x)

    @staticmethod
    def maximum(a: Any, b: Any) -> Any:
        return _Maximum(x=a, y=b)

    @staticmethod
    def minimum(a: Any, b: Any) -> Any:
        return _Minimum(x=a, y=b)

    @staticmethod
    def where(cond: Any, x: Any, y: Any) -> Any:
        if isinstance(cond, _TENSORS) and cond.dtype != tf.bool:
            cond = _NotEqual(x=cond, y=0)  # NumPy takes any truthy condition
        return _SelectV2(condition=cond, t=x, e=y)

    @staticmethod
    def equal(a: Any, b: Any) -> Any:
        return _Equal(x=a, y=b)

    @staticmethod
    def not_equal(a: Any, b: Any) -> Any:
        return _NotEqual(x=a, y=b)

    @staticmethod
    def less(a: Any, b: Any) -> Any:
        if getattr(a, "dtype", None) == tf.bool:  # TF orders no bools; NumPy does
            a, b = _bool_as_int8(a, b)
        return _Less(x=a, y=b)

    @staticmethod
    def less_equal(a: Any, b: Any) -> Any:
        if getattr(a, "dtype", None) == tf.bool:  # TF orders no bools; NumPy does
            a, b = _bool_as_int8(a, b)
        return _LessEqual(x=a, y=b)

    @staticmethod
    def greater(a: Any, b: Any) -> Any:
        if getattr(a, "dtype", None) == tf.bool:  # TF orders no bools; NumPy does
            a, b = _bool_as_int8(a, b)
        return _Greater(x=a, y=b)

    @staticmethod
    def greater_equal(a: Any, b: Any) -> Any:
        if getattr(a, "dtype", None) == tf.bool:  # TF orders no bools; NumPy does
            a, b = _bool_as_int8(a, b)
        return _GreaterEqual(x=a, y=b)

    # ------------------------------------------------------------ reductions
    @staticmethod
    def sum(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        x = _tensor(x)
        if x.dtype == tf.bool:  # TF cannot sum bools; NumPy counts them as int64
            x = tf.cast(x, tf.int64)
        return _reduce(_Sum, tf.reduce_sum, x, axis, keepdims)

    @staticmethod
    def mean(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        # TF's integer mean divides as integers; NumPy's is float64.
        return _reduce(_Mean, tf.reduce_mean, _floating(_tensor(x)), axis, keepdims)

    @staticmethod
    def max(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        x = _tensor(x)
        if x.dtype == tf.bool:
            return _reduce(_Any, tf.reduce_any, x, axis, keepdims)
        return _reduce(_Max, tf.reduce_max, x, axis, keepdims)

    @staticmethod
    def min(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        x = _tensor(x)
        if x.dtype == tf.bool:
            return _reduce(_All, tf.reduce_all, x, axis, keepdims)
        return _reduce(_Min, tf.reduce_min, x, axis, keepdims)

    @staticmethod
    def norm(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        x = _floating(_tensor(x))
        s = _reduce(_Sum, tf.reduce_sum, _Square(x=x), axis, keepdims)
        # The double `where` keeps the gradient at a zero norm 0 (as torch's) instead
        # of the NaN that sqrt'(0) = inf times 0 gives with tf.norm.
        positive = _Greater(x=s, y=0)
        safe = _SelectV2(condition=positive, t=s, e=tf.ones_like(s))
        return _SelectV2(condition=positive, t=_Sqrt(x=safe), e=tf.zeros_like(s))

    # ----------------------------------------------------------------- shape
    @staticmethod
    def reshape(x: Any, shape: Sequence[int]) -> Any:
        if isinstance(shape, int):
            shape = (shape,)
        if isinstance(shape, _TENSORS):
            shape_t = shape
        else:
            try:
                shape_t = _axes(shape)
            except TypeError:  # an unknown (None) or dynamic size: see _dynamic_shape
                shape_t = _dynamic_shape(x, shape)
        return _Reshape(tensor=x, shape=shape_t)

    @staticmethod
    def transpose(x: Any, axes: Sequence[int] | None = None) -> Any:
        x = _tensor(x)
        rank = x.shape.rank
        if rank is None:
            return tf.transpose(x, perm=None if axes is None else list(axes))
        if axes is None:
            perm = tuple(range(rank - 1, -1, -1))
        else:  # the Transpose op refuses negative axes; NumPy takes them
            perm = tuple(int(a) % rank for a in axes)
        return _Transpose(x=x, perm=_i32(perm))

    @staticmethod
    def concat(xs: Sequence[Any], axis: int = 0) -> Any:
        if len(xs) == 1:  # ConcatV2 wants two inputs or more
            x = _tensor(xs[0])
            rank = x.shape.rank
            if rank is not None and not -rank <= int(axis) < rank:
                raise IndexError(f"concat: axis {axis} is out of range for rank {rank}")
            return x
        return _ConcatV2(values=list(xs), axis=_i32(int(axis)))

    @staticmethod
    def stack(xs: Sequence[Any], axis: int = 0) -> Any:
        return _Pack(values=list(xs), axis=int(axis))

    @staticmethod
    def split(x: Any, indices_or_sections: Any, axis: int = 0) -> list[Any]:
        if isinstance(indices_or_sections, int):
            return tf.split(x, indices_or_sections, axis=axis)
        n = x.shape[axis]
        return tf.split(x, split_sizes(n, indices_or_sections), axis=axis)

    @staticmethod
    def expand_dims(x: Any, axis: Any) -> Any:
        if isinstance(axis, int):
            return _ExpandDims(input=x, axis=_i32(axis))
        # NumPy also takes a tuple: positions refer to the output's axes.
        x = _tensor(x)
        out_rank = x.shape.rank + len(axis)
        for a in sorted(int(a) % out_rank for a in axis):
            x = _ExpandDims(input=x, axis=_i32(a))
        return x

    @staticmethod
    def squeeze(x: Any, axis: Any = None) -> Any:
        if axis is None:
            dims: list[int] = []
        elif isinstance(axis, int):
            dims = [axis]
        else:
            dims = [int(a) for a in axis]
            if not dims:  # NumPy: an empty tuple squeezes nothing, TF's [] squeezes all
                return _tensor(x)
        return _Squeeze(input=x, axis=dims)

    # -------------------------------------------------------------------- nn
    @staticmethod
    def relu(x: Any) -> Any:
        return _Relu(features=x)

    @staticmethod
    def sigmoid(x: Any) -> Any:
        return _Sigmoid(x=x)

    @staticmethod
    def tanh(x: Any) -> Any:
        return _Tanh(x=x)

    @staticmethod
    def softmax(x: Any, axis: int = -1) -> Any:
        x = _tensor(x)
        rank = x.shape.rank
        if axis == -1 or (rank is not None and axis == rank - 1):
            return _Softmax(logits=x)  # the kernel works on the last axis only
        return tf.nn.softmax(x, axis=axis)

    @staticmethod
    def log_softmax(x: Any, axis: int = -1) -> Any:
        x = _tensor(x)
        rank = x.shape.rank
        if axis == -1 or (rank is not None and axis == rank - 1):
            return _LogSoftmax(logits=x)
        return tf.nn.log_softmax(x, axis=axis)

    @staticmethod
    def index_update(x: Any, index: Any, value: Any) -> Any:
        # TensorFlow tensors refuse item assignment: scatter into the flattened tensor at
        # the positions NumPy's indexing selects (differentiable in x and value).
        x = _tensor(x)
        shape = x.shape.as_list() if x.shape.rank is not None else None
        if shape is None or any(d is None for d in shape):
            raise UnsupportedError(
                f"ops.index_update on TensorFlow needs a tensor of known shape, got {x.shape} "
                "(inside tf.function with an unknown batch size): call it eagerly."
            )
        if isinstance(index, tf.Tensor) or (
            isinstance(index, tuple) and any(isinstance(i, tf.Tensor) for i in index)
        ):
            index = tuple(i.numpy() if isinstance(i, tf.Tensor) else i for i in
                          (index if isinstance(index, tuple) else (index,)))
        pos = index_positions(shape, index)
        v = tf.broadcast_to(tf.cast(value, x.dtype), pos.shape)
        flat = tf.tensor_scatter_nd_update(
            tf.reshape(x, [-1]), tf.constant(pos.reshape(-1, 1)), tf.reshape(v, [-1])
        )
        return tf.reshape(flat, shape)

    @staticmethod
    def linear(x: Any, w: Any, b: Any = None) -> Any:
        rank = x.shape.rank
        if rank == 2:  # the common case: one GEMM with w read transposed, no copy
            y = _matmul_2d(x, w, True)
        elif rank == 1:
            y = tf.linalg.matvec(w, x)
            return y if b is None else _AddV2(x=y, y=b)
        elif rank is None:
            y = tf.tensordot(x, w, [[-1], [1]])
        else:
            y = _matmul_last(x, w, transpose_w=True)
        if b is None:
            return y
        # BiasAdd has a fused gradient (BiasAddGrad), cheaper than a broadcast add's.
        return _BiasAdd(value=y, bias=b)


# ------------------------------------------------------------------ placement
# TensorFlow runs an eager op on the default device (the first GPU, else /CPU:0)
# whatever device its inputs are on, copying them there silently; torch and JAX run
# it where the inputs are and refuse to mix devices. In a process with more than one
# device the backend therefore wraps every op (see `_follow`) so it runs on its
# inputs' device and raises `DeviceError` when they disagree. With one device (the
# usual CPU-only case) nothing is wrapped and ops cost exactly one raw op.


def _describe(name: str) -> str:
    parsed = _parse_device(name)
    return f"{parsed[0]}({parsed[1]})" if parsed else name


def _placement(op_name: str, args: tuple[Any, ...], default: str) -> str | None:
    """The device the op must run on, or None when TF's default placement is right.

    Raises `DeviceError` when tensor arguments (also inside a list such as concat's)
    live on different devices. Symbolic tensors without a device are ignored.
    """
    first = ""
    for arg in args:
        items = arg if isinstance(arg, (list, tuple)) else (arg,)
        for item in items:
            if isinstance(item, _TENSORS):
                dev = item.device
                if not dev or dev == first:
                    continue
                if not first:
                    first = dev
                elif _parse_device(dev) != _parse_device(first):
                    what = op_name if " " in op_name else f"ops.{op_name}"
                    raise mixed_devices_error(_describe(first), _describe(dev), what)
    return None if not first or first == default else first


def _follow(fn: Callable[..., Any], op_name: str, default: str) -> Callable[..., Any]:
    """``fn`` run on the device of its tensor arguments (multi-device processes only)."""

    @functools.wraps(fn)
    def on_inputs_device(*args: Any, **kwargs: Any) -> Any:
        dev = _placement(op_name, args + tuple(kwargs.values()), default)
        if dev is None:
            return fn(*args, **kwargs)
        with tf.device(dev):
            return fn(*args, **kwargs)

    return on_inputs_device


def _join_cluster() -> Any:
    """A ``MultiWorkerMirroredStrategy`` when this process is one of several workers
    (``d2lcompat launch``'s variables, or ``TF_CONFIG``), else None.

    TensorFlow configures collective ops only before its runtime starts, so the
    worker joins at ``import d2lcompat``, not at `d2lcompat.parallel.init`.
    """
    import json

    from d2lcompat._cluster import Cluster

    cluster = Cluster.from_env()
    if cluster is not None and cluster.world_size > 1:
        os.environ["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": list(cluster.addresses)},
             "task": {"type": "worker", "index": cluster.rank}}
        )
        timeout: float | None = cluster.timeout
    elif "TF_CONFIG" in os.environ:
        workers = json.loads(os.environ["TF_CONFIG"]).get("cluster", {}).get("worker", [])
        if len(workers) < 2:
            return None
        timeout = None
    else:
        return None
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


@functools.lru_cache(maxsize=64)
def _parse_device(name: str) -> DeviceTuple | None:
    """``('cpu', 1)`` for ``'/job:localhost/replica:0/task:0/device:CPU:1'`` (or ``'/CPU:1'``)."""
    spec = tf.DeviceSpec.from_string(name)
    kind = (spec.device_type or "").lower()
    if kind not in ("cpu", "gpu"):
        return None
    return (kind, spec.device_index or 0)


# Layer primitives. TF's CPU kernels for convolution and pooling only take NHWC, so the
# NCHW activations of d2lcompat are transposed in and out here (what that costs is in
# docs/performance.md); 1-D layers run as 2-D ones over a height of 1.
_Conv2D = _raw.Conv2D
_BiasAdd = _raw.BiasAdd
_MaxPool = _raw.MaxPool
_AvgPool = _raw.AvgPool
_PadV2 = _raw.PadV2
_GatherV2 = _raw.GatherV2
_TO_NHWC = (0, 2, 3, 1)
_TO_NCHW = (0, 3, 1, 2)
_OIHW_TO_HWIO = (2, 3, 1, 0)


# Layout tags. A conv or pool result is returned in NCHW, but its NHWC original is kept
# (`_tag`) while the NCHW tensor lives, and the next conv or pool reads that original
# (`_nhwc`) instead of transposing back. Inside a tf.function the NCHW transposes that
# nothing else reads are then pruned, so a chain of conv / activation / pool layers
# transposes only at its two ends; eagerly each layer transposes once instead of twice.
# Keyed by id() and checked by identity through a weak reference whose callback drops
# the entry when the NCHW tensor goes.
_TAGS: dict[int, tuple[Any, Any]] = {}


def _nchw(y: Any) -> Any:
    """NHWC to NCHW. With one channel, or a 1x1 image, the memory order is the same:
    a reshape (no copy) instead of a transpose."""
    n, h, w, c = y.shape
    if h is not None and w is not None and c is not None and (c == 1 or h * w == 1):
        return _Reshape(tensor=y, shape=_i32((-1, c, h, w)))
    return _Transpose(x=y, perm=_i32(_TO_NCHW))


def _to_nhwc(x: Any) -> Any:
    """NCHW to NHWC (a reshape where the memory order is the same, as `_nchw`)."""
    n, c, h, w = x.shape
    if h is not None and w is not None and c is not None and (c == 1 or h * w == 1):
        return _Reshape(tensor=x, shape=_i32((-1, h, w, c)))
    return _Transpose(x=x, perm=_i32(_TO_NHWC))


def _tag(nhwc: Any) -> Any:
    """``nhwc`` transposed to NCHW, remembered as the NCHW tensor's original."""
    y = _nchw(nhwc)
    key = id(y)
    try:
        ref = weakref.ref(y, lambda _, key=key: _TAGS.pop(key, None))
    except TypeError:  # not weak-referenceable: no tag
        return y
    _TAGS[key] = (ref, nhwc)
    return y


def _nhwc(x: Any) -> Any:
    tagged = _TAGS.get(id(x))
    if tagged is not None and tagged[0]() is x:
        return tagged[1]
    return _to_nhwc(x)


def _conv2d(
    x: Any,
    w: Any,
    b: Any | None,
    strides: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int,
) -> Any:
    """NCHW in, **NHWC** out."""
    return _conv2d_nhwc(_nhwc(x), w, b, strides, padding, dilation, groups)


def _conv2d_nhwc(
    x: Any,
    w: Any,
    b: Any | None,
    strides: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int,
) -> Any:
    """NHWC in, NHWC out (``w`` OIHW); ``groups`` is implied by the filter's input depth."""
    if (groups > 1 or max(dilation) > 1) and not _HAS_GPU:
        # TensorFlow's CPU kernels cannot differentiate a grouped or dilated convolution
        # with respect to its input ("not supported on CPU"): run one convolution per
        # group and dilate the kernel with zeros instead (the same values, differentiable).
        return _conv2d_cpu(x, w, b, strides, padding, dilation, groups)
    (ph, pw), (sh, sw), (dh, dw) = padding, strides, dilation
    y = _Conv2D(
        input=x,
        filter=_Transpose(x=w, perm=_i32(_OIHW_TO_HWIO)),
        strides=[1, sh, sw, 1],
        padding="EXPLICIT" if ph or pw else "VALID",
        explicit_paddings=[0, 0, ph, ph, pw, pw, 0, 0] if ph or pw else [],
        data_format="NHWC",
        dilations=[1, dh, dw, 1],
    )
    if b is None:
        return y
    if groups > 1:
        # Grappler's remapper fuses Conv2D + BiasAdd (and an Add of a 1-D bias) into
        # _FusedConv2D inside a tf.function, and that kernel refuses grouped
        # convolutions: add the bias as a 4-D operand, which it does not fuse.
        return y + tf.reshape(b, (1, 1, 1, -1))
    return _BiasAdd(value=y, bias=b)


_HAS_GPU = bool(tf.config.list_physical_devices("GPU"))


def _conv2d_cpu(
    x: Any,
    w: Any,
    b: Any | None,
    strides: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int,
) -> Any:
    """`_conv2d_nhwc` of a grouped or dilated convolution from plain ones (CPU
    gradients); NHWC in and out."""
    dh, dw = dilation
    if dh > 1 or dw > 1:
        o, i, kh, kw = (int(d) for d in w.shape)
        rows, cols = np.meshgrid(np.arange(kh) * dh, np.arange(kw) * dw, indexing="ij")
        index = tf.constant(np.stack([rows.ravel(), cols.ravel()], axis=1), tf.int32)
        hwoi = tf.reshape(tf.transpose(w, (2, 3, 0, 1)), (kh * kw, o, i))
        big = tf.scatter_nd(index, hwoi, ((kh - 1) * dh + 1, (kw - 1) * dw + 1, o, i))
        w = tf.transpose(big, (2, 3, 0, 1))
    if groups > 1:
        xs = tf.split(x, groups, axis=3)
        ws = tf.split(w, groups, axis=0)
        y = tf.concat(
            [_conv2d_nhwc(a, k, None, strides, padding, (1, 1), 1) for a, k in zip(xs, ws)],
            axis=3,
        )
        if b is not None:
            y = y + tf.reshape(b, (1, 1, 1, -1))
        return y
    return _conv2d_nhwc(x, w, b, strides, padding, (1, 1), 1)


def _pool2d(
    x: Any, kind: str, window: tuple[int, ...], strides: tuple[int, ...], padding: tuple[int, ...]
) -> Any:
    """NCHW in, **NHWC** out."""
    return _pool2d_nhwc(_nhwc(x), kind, window, strides, padding)


def _pool2d_nhwc(
    h: Any, kind: str, window: tuple[int, ...], strides: tuple[int, ...], padding: tuple[int, ...]
) -> Any:
    """NHWC in and out."""
    ph, pw = padding
    if ph or pw:
        # Explicit pads: -inf for max; zeros that count in the average (TF's SAME would
        # exclude them from the count).
        low = -np.inf if kind == "max" else 0.0
        pads = _i32(((0, 0), (ph, ph), (pw, pw), (0, 0)))  # type: ignore[arg-type]
        h = _PadV2(input=h, paddings=pads, constant_values=tf.constant(low, h.dtype))
    ksize, steps = [1, *window, 1], [1, *strides, 1]
    if kind == "max":
        return _MaxPool(input=h, ksize=ksize, strides=steps, padding="VALID", data_format="NHWC")
    return _AvgPool(value=h, ksize=ksize, strides=steps, padding="VALID", data_format="NHWC")


class _Concrete:
    """A ``tf.function`` called through its concrete functions, one per input signature.

    A ``tf.function`` call spends ~0.2 ms in Python binding and matching its arguments
    to a traced graph, more than the whole graph of a small model takes to run. When
    every argument is a ``tf.Tensor``, the concrete function of that signature (shapes
    and dtypes) is looked up in a dict and called with its flat inputs (the arguments
    themselves, in order: they are all tensors, of the traced shapes and dtypes) and
    its captures, through ``ConcreteFunction._call_flat`` — what its own ``__call__``
    ends in after binding the arguments to the structured signature again (~80 µs a
    call on TF 2.21, `benchmarks/_dp_paired_tf.py`'s 1 ms step). A gradient tape
    watching the call is still recorded (``_call_flat`` does it). Anything else goes
    through the ``tf.function`` itself, which traces as usual.

    ``placed``: in a process with several devices a graph's placement follows the
    caller's device scope and its inputs' devices, which a concrete function traced
    once would freeze: both are part of the key there.
    """

    __slots__ = ("_fn", "_concrete", "_placed")

    def __init__(self, fn: Any, placed: bool = False) -> None:
        self._fn = fn
        self._concrete: dict[tuple[Any, ...], Any] = {}
        self._placed = placed

    def __call__(self, *args: Any) -> Any:
        key: list[Any] = [_context.context().device_name] if self._placed else []
        for a in args:
            if not isinstance(a, tf.Tensor):
                return self._fn(*args)
            key.append(a.shape)
            key.append(a.dtype)
            if self._placed:
                key.append(a.device)
        k = tuple(key)
        call = self._concrete.get(k)
        if call is None:
            call = self._concrete[k] = self._fn.get_concrete_function(*args)
        flat = getattr(call, "_call_flat", None)  # TF 2.x; the public call where absent
        if flat is not None:
            return flat(list(args), call.captured_inputs)
        return call(*args)


class TensorFlowBackend(Backend):
    """The TensorFlow backend.

    Parameters are `tf.Variable` objects; gradients come from `tf.GradientTape`;
    ``hybridize`` compiles with `tf.function`. ``D2LCOMPAT_CPU_DEVICES=N`` splits
    the physical CPU into N logical devices (``/CPU:0`` ... ``/CPU:N-1``).

    Examples
    --------
    >>> b = TensorFlowBackend()  # doctest: +SKIP
    >>> b.native_device(("gpu", 1))  # doctest: +SKIP
    '/GPU:1'
    """

    name: ClassVar[str] = "tensorflow"
    SUPPORTS_MUTABLE_VARIABLES: ClassVar[bool] = True
    SUPPORTS_CPU_DEVICES: ClassVar[bool] = True  # logical CPU devices
    SUPPORTS_COMPILE: ClassVar[bool] = True
    COMPILES_TRAIN_STEP: ClassVar[bool] = True
    #: What tf.function raises when Python code needs a traced tensor's value that
    #: AutoGraph could not convert (``bool(t)``, ``t.numpy()``, ``np.asarray(t)``).
    COMPILE_FALLBACK_ERRORS: ClassVar[tuple[type[BaseException], ...]] = (
        tf.errors.OperatorNotAllowedInGraphError,
        NotImplementedError,
        AttributeError,
    )

    def __init__(self) -> None:
        self.ops = TensorFlowOps()
        # Device strings are few and parsed on every device check: parse each once.
        self._parsed: dict[str, DeviceTuple] = {}
        self._counts: dict[str, int] = {}
        # Set by `configure` when the process has more than one device (see `_follow`).
        self._multi = False
        self._default = ""

    @property
    def version(self) -> str:
        return str(tf.__version__)

    def configure(self, cpu_devices: int) -> None:
        """Split the physical CPU into ``cpu_devices`` logical devices when it is > 1.

        TensorFlow fixes its devices when its runtime starts (the first tensor), so
        this must run before anything else touches TF in the process.
        """
        self._mwms = _join_cluster()  # collectives, too, are configured at startup only
        if cpu_devices > 1:
            physical = tf.config.list_physical_devices("CPU")
            try:
                tf.config.set_logical_device_configuration(
                    physical[0], [tf.config.LogicalDeviceConfiguration()] * cpu_devices
                )
            except RuntimeError as exc:
                have = len(tf.config.list_logical_devices("CPU"))
                if have != cpu_devices:
                    raise DeviceError(
                        f"D2LCOMPAT_CPU_DEVICES={cpu_devices} but TensorFlow was already "
                        f"initialized with {have} CPU device(s). Set the variable before the "
                        "first `import d2lcompat` and before any TensorFlow tensor is created."
                    ) from exc
        if self.device_count("cpu") + self.device_count("gpu") > 1:
            self._multi = True
            # The full name TF gives a tensor placed by default, e.g.
            # '/job:localhost/replica:0/task:0/device:GPU:0': ops whose inputs are
            # there need no device scope.
            with tf.init_scope():
                self._default = tf.constant(0.0).device
            ops = TensorFlowOps()
            for op_name in OP_NAMES:
                setattr(ops, op_name, _follow(getattr(ops, op_name), op_name, self._default))
            self.ops = ops

    # ---------------------------------------------------------------- devices
    def device_count(self, kind: str) -> int:
        n = self._counts.get(kind)
        if n is None:
            # Logical devices are fixed once TF's runtime is up, so one query is enough.
            n = len(tf.config.list_logical_devices(kind.upper()))
            self._counts[kind] = n
        return n

    def native_device(self, device: DeviceTuple) -> str:
        kind, index = device
        # TF's soft placement would silently run on /CPU:0 for a device that does not
        # exist, so an unknown one is refused here even though the core checks first.
        if kind not in ("cpu", "gpu") or not 0 <= index < self.device_count(kind):
            raise DeviceError(
                f"TensorFlow has no device {kind}({index}): it has "
                f"{self.device_count('cpu')} CPU and {self.device_count('gpu')} GPU device(s)."
            )
        return f"/{kind.upper()}:{index}"

    def is_traced(self, x: Any) -> bool:
        """Whether ``x`` is a symbolic tensor of a `tf.function` graph (`Backend.is_traced`):
        it has no values, so the core skips host-side checks on it (the compiled
        train step checks its labels before the call)."""
        return bool(tf.is_symbolic_tensor(x))

    def device_of(self, x: Any) -> DeviceTuple:
        name = x.device
        dev = self._parsed.get(name)
        if dev is not None:
            return dev
        if not name:
            # A symbolic tensor inside tf.function with no device constraint: it runs
            # where TF places it by default, the first GPU if any, else the CPU.
            return ("gpu", 0) if self.device_count("gpu") else ("cpu", 0)
        parsed = _parse_device(name)
        if parsed is None:
            raise DeviceError(f"d2lcompat does not know the TensorFlow device {name!r}.")
        self._parsed[name] = parsed
        return parsed

    def move(self, x: Any, device: DeviceTuple, copy: bool) -> Any:
        if not copy and self.device_of(x) == device:
            return x
        # Running identity on the target device copies the input there; in eager mode
        # it always returns a new tensor (and reads a variable into a plain tensor).
        with tf.device(self.native_device(device)):
            return tf.identity(x)

    # ---------------------------------------------------------------- tensors
    def is_tensor(self, x: Any) -> bool:
        return isinstance(x, _TENSORS)

    @contextlib.contextmanager
    def _on(self, device: DeviceTuple | None) -> Iterator[None]:
        """Place new tensors on ``device``; ``None`` keeps the caller's placement."""
        if device is None:
            yield
        else:
            with tf.device(self.native_device(device)):
                yield

    @staticmethod
    def _host(array: Any, dtype: str | None) -> np.ndarray:
        """``array`` as a NumPy array of ``dtype`` (cast on the host, NumPy's rules)."""
        arr = np.asarray(array)
        if dtype is not None:
            target = _NP_DTYPES.get(dtype)
            if target is None:
                raise DTypeError(f"TensorFlow has no dtype {dtype!r}.")
            if arr.dtype != target:
                arr = arr.astype(target)
        elif np.dtype(arr.dtype).name not in _NP_DTYPES:
            raise DTypeError(
                f"d2lcompat cannot make a TensorFlow tensor from a NumPy array of dtype "
                f"{arr.dtype}; use one of {', '.join(_DTYPES)}."
            )
        return arr

    def from_numpy(self, array: np.ndarray, dtype: str | None, device: DeviceTuple | None) -> Any:
        arr = self._host(array, dtype)
        # tf.constant copies the host buffer and, in eager mode, lands on the device of
        # the enclosing tf.device scope, so later changes to `array` do not leak in.
        with self._on(device):
            return tf.constant(arr)

    def to_numpy(self, x: Any) -> np.ndarray:
        # .numpy() already copies (bfloat16 comes back as ml_dtypes.bfloat16); asarray
        # turns the NumPy scalar a 0-d tensor gives into a 0-d array.
        return np.asarray(x.numpy())

    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(x.shape)

    def dtype(self, x: Any) -> str:
        name = _NAMES.get(x.dtype)
        if name is None:
            raise DTypeError(f"d2lcompat does not know the TensorFlow dtype {x.dtype!r}.")
        return name

    def cast(self, x: Any, dtype: str) -> Any:
        if self._multi:
            dev = _placement("cast", (x,), self._default)
            if dev is not None:
                with tf.device(dev):
                    return tf.cast(x, _DTYPES[dtype])
        return tf.cast(x, _DTYPES[dtype])

    def full(
        self, shape: tuple[int, ...], value: Any, dtype: str, device: DeviceTuple | None
    ) -> Any:
        tf_dtype = _DTYPES[dtype]
        with self._on(device):
            if isinstance(value, _TENSORS):
                fill = tf.cast(value, tf_dtype)
            else:  # NumPy's conversion rules for the fill value (np.full(..., 1.5, int32) == 1)
                fill = tf.constant(self._host(value, dtype))
            return tf.fill(_i32(tuple(int(d) for d in shape)), fill)

    def arange(
        self, start: Any, stop: Any, step: Any, dtype: str | None, device: DeviceTuple | None
    ) -> Any:
        ints = all(isinstance(v, (int, np.integer)) for v in (start, stop, step))
        if dtype is None:
            dtype = "int64" if ints else "float32"
        if step == 0:
            raise ValueError("arange: step must not be zero.")
        tf_dtype = _DTYPES[dtype]
        with self._on(device):
            if ints:
                out = tf.range(int(start), int(stop), int(step), dtype=tf.int64)
                return out if tf_dtype == tf.int64 else tf.cast(out, tf_dtype)
            # NumPy's length (ceil in float64) and values computed in float64 then
            # rounded once, so float16/bfloat16/float32 agree with NumPy's.
            n = max(0, math.ceil((float(stop) - float(start)) / float(step)))
            out = tf.range(n, dtype=tf.float64) * float(step) + float(start)
            return tf.cast(out, tf_dtype)

    # -------------------------------------------------------------- variables
    def new_variable(
        self, value: np.ndarray, dtype: str, device: DeviceTuple | None, trainable: bool
    ) -> Any:
        arr = self._host(value, dtype)
        tf_dtype = _DTYPES[dtype]
        with self._on(device):
            # Only floating variables can carry gradients; TF would warn when a tape
            # watches an integer one.
            return tf.Variable(arr, dtype=tf_dtype, trainable=trainable and tf_dtype.is_floating)

    def read(self, var: Any) -> Any:
        # Parameter.data() is the value, a tf.Tensor (the framework's tensor type, as on
        # every backend); param.native() stays the tf.Variable. A read inside a
        # GradientTape or tf.function is recorded, so gradients still reach the variable.
        return var.value() if isinstance(var, tf.Variable) else var

    def assign(self, var: Any, value: Any) -> Any:
        if isinstance(var, tf.Variable):
            # read_value=False: no read op, and the variable object (its identity in
            # captured tf.function graphs) stays the one the core keeps.
            var.assign(value, read_value=False)
            return var
        return value

    def host_view(self, x: Any) -> np.ndarray:
        t = x.value() if isinstance(x, tf.Variable) else x
        view = getattr(t, "_numpy", None)  # the tensor's own host buffer (copied off a GPU)
        if view is None or x.dtype == tf.bfloat16:
            return self.to_numpy(x)
        return np.asarray(view())

    def assign_host(self, var: Any, array: np.ndarray, dtype: str) -> Any:
        if not isinstance(var, tf.Variable) or dtype == "bfloat16":
            return super().assign_host(var, array, dtype)
        # tf.constant copies the host buffer once; the assign copies it into the
        # variable's own buffer (host to device once on a GPU).
        var.assign(tf.constant(array), read_value=False)
        return var

    def replace_host(self, var: Any, array: np.ndarray, dtype: str) -> tuple[Any, Any] | None:
        if not isinstance(var, tf.Variable) or dtype == "bfloat16" or "CPU" not in var.device:
            return None
        # A read of the variable shares its buffer, and an assign while a read is held
        # writes a new buffer (TensorFlow copies on write: a read keeps its values): the
        # read is the undo, with no copy.
        old = var.value()
        var.assign(tf.constant(array), read_value=False)
        return var, old

    def restore_buffer(self, var: Any, undo: Any) -> Any:
        var.assign(undo, read_value=False)
        return var

    # --------------------------------------------------------------- autodiff
    def value_and_grad(
        self, fn: Callable[[Sequence[Any]], Any], values: Sequence[Any]
    ) -> tuple[Any, list[Any]]:
        # A variable converts to a read of its current value: a plain tensor the tape
        # can watch, so gradients do not depend on the variables' trainable flags.
        tensors = [tf.convert_to_tensor(v) for v in values]
        # watch_accessed_variables=False: record only what depends on `values`, not
        # every variable the forward pass happens to read.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            for t in tensors:
                if t.dtype.is_floating:
                    tape.watch(t)
            out = fn(tensors)
        grads = tape.gradient(out, tensors, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        result = []
        for t, g in zip(tensors, grads):
            if g is None:
                g = tf.zeros_like(t)
            elif isinstance(g, tf.IndexedSlices):  # from gather/embedding lookups
                g = tf.convert_to_tensor(g)
            if self._multi and g.device != t.device and t.device:
                # Gradient ops run on TF's default device: bring each gradient to
                # where its value lives, as the other frameworks do.
                with tf.device(t.device):
                    g = tf.identity(g)
            result.append(g)
        return out, result

    def select_all(self, ok: Any, new: Sequence[Any], old: Sequence[Any]) -> list[Any]:
        # Inside a tf.function, one ``tf.cond`` hands on either list as it is: TF's
        # graph does not fuse, and a ``SelectV2`` per value would read both and write
        # a third copy of every parameter (3 ms of a 21 ms deep-MLP step).
        if not new or not tf.inside_function():
            return super().select_all(ok, new, old)
        return list(tf.cond(ok, lambda: list(new), lambda: list(old)))

    def stop_gradient(self, x: Any) -> Any:
        if self._multi:
            dev = _placement("stop_gradient", (x,), self._default)
            if dev is not None:
                with tf.device(dev):
                    return tf.stop_gradient(x)
        return tf.stop_gradient(x)

    def forward_scope(self, args: Sequence[Any]) -> contextlib.AbstractContextManager[None] | None:
        """``tf.device`` of the inputs when they are not on TF's default device, so that
        native operators in a forward pass (``x + 1``) run there too, not on ``/CPU:0``.

        None with one device, for inputs on the default device, or for symbolic inputs
        (a ``tf.function`` trace, placed by the caller's scope); `DeviceError` when the
        inputs themselves are on two devices.
        """
        if not self._multi:
            return None
        dev = _placement("the forward pass", tuple(args), self._default)
        return None if dev is None else tf.device(dev)

    # ------------------------------------------------------- layer primitives
    def conv(
        self,
        x: Any,
        w: Any,
        b: Any | None,
        strides: tuple[int, ...],
        padding: tuple[int, ...],
        dilation: tuple[int, ...],
        groups: int,
    ) -> Any:
        if len(strides) == 2:
            return _tag(_conv2d(x, w, b, strides, padding, dilation, groups))
        y = _nchw(_conv2d(
            _ExpandDims(input=x, axis=_i32(2)),
            _ExpandDims(input=w, axis=_i32(2)),
            b,
            (1, strides[0]),
            (0, padding[0]),
            (1, dilation[0]),
            groups,
        ))
        return _Squeeze(input=y, axis=[2])

    def conv_activation(
        self,
        x: Any,
        w: Any,
        b: Any | None,
        strides: tuple[int, ...],
        padding: tuple[int, ...],
        dilation: tuple[int, ...],
        groups: int,
        activation: Callable[[Any], Any],
    ) -> Any:
        if len(strides) != 2:
            return activation(self.conv(x, w, b, strides, padding, dilation, groups))
        # The elementwise activation on the NHWC result, before the (tagged) transpose.
        return _tag(activation(_conv2d(x, w, b, strides, padding, dilation, groups)))

    def pool(
        self,
        x: Any,
        kind: str,
        window: tuple[int, ...],
        strides: tuple[int, ...],
        padding: tuple[int, ...],
    ) -> Any:
        if len(window) == 2:
            return _tag(_pool2d(x, kind, window, strides, padding))
        y = _nchw(_pool2d(
            _ExpandDims(input=x, axis=_i32(2)),
            kind,
            (1, window[0]),
            (1, strides[0]),
            (0, padding[0]),
        ))
        return _Squeeze(input=y, axis=[2])

    # Layout chains (d2lcompat.nn._layout): a run of conv / pool / BatchNorm /
    # activation children of a Sequential stays NHWC, the kernels' own layout.
    LAYOUT_CHAINS: ClassVar[bool] = True

    def to_nhwc(self, x: Any) -> Any:
        return _nhwc(x)

    def to_nchw(self, x: Any) -> Any:
        return _nchw(x)

    def conv_nhwc(
        self,
        x: Any,
        w: Any,
        b: Any | None,
        strides: tuple[int, ...],
        padding: tuple[int, ...],
        dilation: tuple[int, ...],
        groups: int,
        activation: Callable[[Any], Any] | None,
    ) -> Any:
        y = _conv2d_nhwc(x, w, b, strides, padding, dilation, groups)
        return y if activation is None else activation(y)

    def pool_nhwc(
        self,
        x: Any,
        kind: str,
        window: tuple[int, ...],
        strides: tuple[int, ...],
        padding: tuple[int, ...],
    ) -> Any:
        return _pool2d_nhwc(x, kind, window, strides, padding)

    def take(self, weight: Any, indices: Any) -> Any:
        return _GatherV2(params=weight, indices=indices, axis=_i32(0))

    def squared_difference(self, a: Any, b: Any) -> Any:
        return _raw.SquaredDifference(x=a, y=b)  # one kernel; its gradient covers both

    def sparse_softmax_cross_entropy(self, pred: Any, label: Any, axis: int, from_logits: bool) -> Any:
        # TensorFlow's fused kernel over the last axis (the class axis moved there).
        nd = pred.shape.rank
        if axis != nd - 1:
            pred = _Transpose(x=pred, perm=[i for i in range(nd) if i != axis] + [axis])
        if label.dtype not in (tf.int32, tf.int64):
            label = tf.cast(label, tf.int32)
        if from_logits:
            return -tf.gather(pred, label, axis=nd - 1, batch_dims=nd - 1)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=label, logits=pred)

    def rnn(
        self,
        mode: str,
        x: Any,
        states: Sequence[Any],
        weights: Sequence[Any],
        num_layers: int,
        bidirectional: bool,
    ) -> tuple[Any, list[Any]]:
        # Gluon's equations scanned by a while loop inside a tf.function (one per
        # configuration; inlined into a hybridized forward or a compiled training step).
        key = (mode, num_layers, bidirectional)
        fn = _RNN_FUNCTIONS.get(key)
        if fn is None:
            fn = _RNN_FUNCTIONS[key] = _rnn_function(mode, num_layers, bidirectional)
        out, new = fn(x, list(states), [self.read(w) for w in weights])
        return out, list(new)

    # ---------------------------------------------------------------- compile
    def _tf_function(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``tf.function(fn)``, called through its concrete functions (`_Concrete`); with
        several devices, one per device scope and input devices too (placed)."""
        return _Concrete(tf.function(fn, reduce_retracing=True), placed=self._multi)

    def compile_train_step(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        # One tf.function of forward, tape, update and the variable writes: the state
        # variables are captured (CapturedVariables), the new values assigned inside the
        # graph, so a step is one graph call. The scalars travel as one float32 tensor
        # (a Python float argument would re-trace the function for every new value).
        # Called through its concrete functions (`_Concrete`).
        # Values that are no variables (tensor attributes of blocks, see d2lcompat._state)
        # cannot be assigned: they leave the graph as outputs, at the positions noted
        # while tracing.
        plain: list[int] = []

        def graph_step(values: list[Any], scalars: Any, X: Any, y: Any) -> Any:
            loss, new = fn(values, scalars, X, y)
            outputs = []
            positions = []
            for i, (var, value) in enumerate(zip(values, new)):
                if not isinstance(var, tf.Variable):
                    positions.append(i)
                    outputs.append(var if value is None else value)
                elif value is not None:
                    var.assign(value, read_value=False)
            plain[:] = positions
            return loss, outputs

        compiled = CapturedVariables(
            graph_step,
            self._tf_function,
            lambda v: isinstance(v, tf.Variable),
        )
        cache: list[Any] = [None, None]  # the scalars tensor, made again only on change

        def run(values: Sequence[Any], scalars: Sequence[float], X: Any, y: Any) -> Any:
            if scalars != cache[0]:
                cache[0], cache[1] = scalars, tf.constant(np.asarray(scalars, np.float32))
            loss, outputs = compiled(list(values), cache[1], X, y)
            return loss, _put_back(values, plain, outputs)

        return run

    def compile(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        # Captured variables (see CapturedVariables); reduce_retracing: a new input shape
        # relaxes to unknown dimensions instead of tracing a graph per batch size.
        compiled: Callable[..., Any] = CapturedVariables(
            fn,
            self._tf_function,
            lambda v: isinstance(v, tf.Variable),
        )
        if not self._multi:
            return compiled
        default = self._default

        # A tf.function runs its body on the caller's device scope: enter the device of
        # the inputs, as the eager ops do, so one trace serves every device.
        @functools.wraps(fn)
        def on_inputs_device(*args: Any) -> Any:
            dev = _placement("hybridized forward", tuple(tf.nest.flatten(args)), default)
            if dev is None:
                return compiled(*args)
            with tf.device(dev):
                return compiled(*args)

        return on_inputs_device

    # ----------------------------------------------------- native checkpoints
    NATIVE_CHECKPOINT_FORMATS: ClassVar[tuple[str, ...]] = (".weights.h5",)

    def read_native_checkpoint(self, path: str, trusted: bool) -> tuple[str, dict[str, Any]] | None:
        from ._native_io import read_keras_weights

        return read_keras_weights(path)

    # ------------------------------------------------------------ distributed
    DISTRIBUTED_ENGINE: ClassVar[str] = (
        "tf.distribute.MultiWorkerMirroredStrategy (collective ops: ring on CPU, NCCL on GPU)"
    )
    DEVICE_PARALLEL_ENGINE: ClassVar[str] = "tf.distribute.MirroredStrategy"

    def dist_init(self, cluster: Any) -> tuple[int, int, int]:
        strategy = getattr(self, "_mwms", None)
        if strategy is None:
            if cluster is not None and cluster.world_size > 1:
                raise DeviceError(
                    "TensorFlow joins its workers at `import d2lcompat` (collective ops are "
                    "configured before its runtime starts), but this process imported "
                    "d2lcompat before D2LCOMPAT_WORLD_SIZE was set. Start it with "
                    "`d2lcompat launch`."
                )
            return (0, 1, 0)
        resolver = strategy.cluster_resolver
        return int(resolver.task_id), int(strategy.num_replicas_in_sync), int(resolver.task_id)

    def dist_all_reduce_mean(self, tensors: Sequence[Any]) -> list[Any]:
        return self._collective(list(tensors), "mean")

    def dist_broadcast(self, tensors: Sequence[Any], root: int) -> list[Any]:
        rank = int(self._mwms.cluster_resolver.task_id)
        # A sum in which only the root contributes: the collective every engine has.
        masked = [t if rank == root else tf.zeros_like(t) for t in tensors]
        return self._collective(masked, "sum")

    def _collective(self, tensors: list[Any], how: str) -> list[Any]:
        strategy = self._mwms
        cache = self.__dict__.setdefault("_collectives", {})
        fn = cache.get(how)
        if fn is None:
            op = tf.distribute.ReduceOp.MEAN if how == "mean" else tf.distribute.ReduceOp.SUM
            device = strategy.extended.worker_devices[0]

            @tf.function(reduce_retracing=True)
            def fn(values: list[Any]) -> Any:
                def reduce() -> Any:
                    # Pinned to this worker's device: MWMS derives the all-reduce's
                    # destination from it, and a graph tensor has none of its own.
                    with tf.device(device):
                        pinned = [tf.identity(v) for v in values]
                    return tf.distribute.get_replica_context().all_reduce(op, pinned)

                return strategy.run(reduce)

            cache[how] = fn
        out = fn([tf.convert_to_tensor(t) for t in tensors])
        return [strategy.experimental_local_results(o)[0] for o in out]

    def _mirrored_strategy(self, devices: Sequence[DeviceTuple]) -> Any:
        names = tuple(self.native_device(d) for d in devices)
        # One strategy per device set: two MirroredStrategy objects over the same devices
        # would reuse each other's collective keys (a shape mismatch at run time).
        strategies = self.__dict__.setdefault("_mirrored", {})
        strategy = strategies.get(names)
        if strategy is None:
            strategy = strategies[names] = tf.distribute.MirroredStrategy(list(names))
        return strategy

    SUPPORTS_SHARDED_TRAIN_STEP: ClassVar[bool] = True
    SHARDED_TRAIN_STEP_PER_REPLICA: ClassVar[bool] = True
    SUPPORTS_DISTRIBUTED_TRAIN_STEP: ClassVar[bool] = True
    # The eager step's all-reduce and update as one tf.function (one flat collective,
    # the update in the graph): 9.4 against 11.9 ms a step (docs/distributed.md).
    COMPILES_DISTRIBUTED_UPDATE: ClassVar[bool] = True

    def compile_train_step_sharded(
        self, fn: Callable[..., Any], devices: Sequence[DeviceTuple]
    ) -> Callable[..., Any]:
        # MirroredStrategy over the devices: each replica takes its slice of the batch,
        # the gradients are summed by the replica context's all-reduce.
        strategy = self._mirrored_strategy(devices)
        return self._strategy_train_step(fn, strategy, tf.distribute.ReduceOp.SUM, len(devices))

    def compile_train_step_distributed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        # MultiWorkerMirroredStrategy: one replica per process, on its own batch; the mean
        # over the processes, as Trainer.step's all_reduce_mean.
        return self._strategy_train_step(fn, self._mwms, tf.distribute.ReduceOp.MEAN, 1)

    def _strategy_train_step(
        self, fn: Callable[..., Any], strategy: Any, op: Any, split: int
    ) -> Callable[..., Any]:
        """The whole training step as one ``tf.function`` around ``strategy.run``: each
        replica reads the variables, computes its shard's loss and gradient, all-reduces
        them in the replica context (``fn``'s ``reduce``) and computes the optimizer's
        update — the same on every replica — whose first copy is assigned to the
        variables inside the same graph. ``split`` > 1: the batch is sliced, in the
        graph, into one part per replica (one process's devices)."""
        device = strategy.extended.worker_devices[0]
        plain: list[int] = []  # positions of values that are no variables (outputs)

        def reduce(tensors: list[Any]) -> list[Any]:
            ctx = tf.distribute.get_replica_context()
            # One flat buffer per dtype, one collective each (as DDP's buckets): the
            # strategy would otherwise run one collective per tensor, each a round trip.
            groups: dict[Any, list[int]] = {}
            for i, t in enumerate(tensors):
                groups.setdefault(t.dtype, []).append(i)
            out: list[Any] = list(tensors)
            for idx in groups.values():
                flat = tf.concat([tf.reshape(tensors[i], [-1]) for i in idx], 0)
                if split == 1:
                    # Pinned to this worker's device: MWMS derives the all-reduce's
                    # destination from it (see `_collective`).
                    with tf.device(device):
                        flat = tf.identity(flat)
                flat = ctx.all_reduce(op, flat)
                sizes = [tensors[i].shape.num_elements() for i in idx]  # parameters: static
                if None in sizes:
                    sizes = tf.stack([tf.size(tensors[i]) for i in idx])
                for i, part in zip(idx, tf.split(flat, sizes, num=len(idx))):
                    out[i] = tf.reshape(part, tf.shape(tensors[i]))
            return out

        def graph_step(values: list[Any], scalars: Any, X: Any, y: Any) -> Any:
            if split > 1:
                with tf.device(X.device or device):
                    xs, ys = tf.split(X, split), tf.split(y, split)

            def replica() -> Any:
                ctx = tf.distribute.get_replica_context()
                if split > 1:
                    i = int(tf.get_static_value(ctx.replica_id_in_sync_group))
                    Xr, yr = tf.identity(xs[i]), tf.identity(ys[i])
                else:
                    Xr, yr = X, y
                # Every value read on this replica's device: none is read across devices
                # by the ops of the forward pass.
                here = [tf.identity(v) for v in values]
                out, new = fn(here, scalars, Xr, yr, reduce=reduce)
                changed[:] = [i for i, n in enumerate(new) if n is not None]
                return out, [n for n in new if n is not None]

            changed: list[int] = []
            out, new = strategy.run(replica)
            first = strategy.experimental_local_results
            if isinstance(out, tuple):  # (mean loss, predictions): the batch's in order
                mean, pred = out
                parts = first(pred)
                out = (first(mean)[0], parts[0] if len(parts) == 1 else tf.concat(parts, 0))
            else:
                out = first(out)[0]
            outputs, positions = [], []
            for i, value in zip(changed, new):
                value, var = first(value)[0], values[i]
                if isinstance(var, tf.Variable):
                    var.assign(value, read_value=False)
                else:
                    positions.append(i)
                    outputs.append(value)
            plain[:] = positions
            return out, outputs

        compiled = CapturedVariables(
            graph_step, self._tf_function, lambda v: isinstance(v, tf.Variable)
        )
        cache: list[Any] = [None, None]  # the scalars tensor, made again only on change

        def run(values: Sequence[Any], scalars: Sequence[float], X: Any, y: Any) -> Any:
            if scalars != cache[0]:
                cache[0], cache[1] = scalars, tf.constant(np.asarray(scalars, np.float32))
            try:
                out, outputs = compiled(list(values), cache[1], X, y)
            except Exception as exc:
                # AutoGraph re-raises an error of the traced code whose class has its own
                # constructor (UnsupportedError is a NotImplementedError) as a
                # StagingError: give d2lcompat's own error back.
                original = exc.__context__ if hasattr(exc, "ag_error_metadata") else None
                if isinstance(original, D2LCompatError):
                    raise original from None
                raise
            return out, _put_back(values, plain, outputs)

        return run

    def device_parallel(
        self, fn: Callable[..., Any], devices: Sequence[DeviceTuple], n_diff: int
    ) -> Callable[[Sequence[Any], Sequence[Sequence[Any]]], tuple[Any, list[Any]]]:
        strategy = self._mirrored_strategy(devices)
        SUM = tf.distribute.ReduceOp.SUM

        def replica(values: list[Any], *shard: Any) -> Any:
            # Each replica: its shard's loss and gradient, then the strategy's all-reduce.
            # Read on this replica's device: every value is replicated, none is read
            # across devices.
            tensors = [tf.identity(v) for v in values]
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                for t in tensors[:n_diff]:
                    tape.watch(t)
                out = fn(tensors, *shard)
            grads = tape.gradient(
                out, tensors[:n_diff], unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
            return tf.distribute.get_replica_context().all_reduce(SUM, [out, *grads])

        @tf.function(reduce_retracing=True)
        def step(values: list[Any], batch: list[Any]) -> Any:
            return strategy.run(replica, args=(values, *batch))

        def run(values: Sequence[Any], shards: Sequence[Sequence[Any]]) -> tuple[Any, list[Any]]:
            batch = [
                strategy.experimental_distribute_values_from_function(
                    lambda ctx, k=k: shards[ctx.replica_id_in_sync_group][k]
                )
                for k in range(len(shards[0]))
            ]
            reduced = step(list(values), batch)
            first = [strategy.experimental_local_results(r)[0] for r in reduced]
            grads = []
            for v, g in zip(values, first[1:]):
                home = v.device
                if home and g.device != home:
                    with tf.device(home):
                        g = tf.identity(g)
                grads.append(g)
            return first[0], grads

        return run


_RNN_FUNCTIONS: dict[tuple[str, int, bool], Any] = {}


def _tf_scan(fn: Callable[..., Any], carry: Any, xs: Any, reverse: bool) -> tuple[Any, Any]:
    # A while loop that stacks only the output (carry[0]) of each step; tf.scan would
    # stack every element of the carry (the LSTM's cell state too), which costs ~20 % of
    # the char LSTM's compiled step (benchmarks/rnn.py). ``maximum_iterations`` (the
    # static length where known) and ``parallel_iterations=32`` as Keras's ``rnn``
    # (the char LSTM's step 11.4 -> 10.6 ms in one process; docs/performance.md).
    n = tf.shape(xs)[0]
    inputs = tf.TensorArray(xs.dtype, size=n).unstack(xs)
    outputs = tf.TensorArray(carry[0].dtype, size=n, element_shape=carry[0].shape)

    def body(t: Any, out: Any, *c: Any) -> tuple[Any, ...]:
        i = n - 1 - t if reverse else t
        new = fn(tuple(c), inputs.read(i))
        return (t + 1, out.write(i, new[0]), *new)

    steps = xs.shape[0] if xs.shape[0] is not None else n
    done = tf.while_loop(lambda t, *_: t < n, body, (tf.constant(0), outputs, *carry),
                         maximum_iterations=steps, parallel_iterations=32)
    stacked = done[1].stack()
    stacked.set_shape(xs.shape[:1].concatenate(carry[0].shape))  # static where xs's is
    return tuple(done[2:]), stacked


def _rnn_function(mode: str, num_layers: int, bidirectional: bool) -> Any:
    from d2lcompat.nn._rnn import scan_layers  # the core's equations (imported late: a cycle)

    def run(x: Any, states: list[Any], weights: list[Any]) -> tuple[Any, list[Any]]:
        # hoist=False: each step projects its own input, as Keras's LSTM does. Unstacking
        # the hoisted (T, N, 4H) projection into the loop's TensorArray cost more than
        # the one GEMM saves (profile and A/B: docs/performance.md, "TensorFlow char
        # LSTM step").
        return scan_layers(mode, x, states, weights, num_layers, bidirectional, _tf_scan,
                           hoist=False)

    run.__name__ = f"rnn_{mode}"
    compiled = tf.function(run)

    def call(x: Any, states: list[Any], weights: list[Any]) -> tuple[Any, list[Any]]:
        # Eagerly: the tf.function (a while loop runs as a Python loop outside one).
        # While tracing a hybridized forward or a compiled step: the loop right in that
        # graph. A nested tf.function call is differentiated as a forward function that
        # returns its intermediates and a separate gradient function (with ZerosLike
        # of the outputs nobody differentiates); inlined it is faster (docs/performance.md,
        # "TensorFlow char LSTM step").
        if tf.inside_function():
            return run(x, states, weights)
        return compiled(x, states, weights)  # type: ignore[no-any-return]

    return call


def _put_back(values: Sequence[Any], plain: Sequence[int], outputs: Sequence[Any]) -> Any:
    """A compiled step's values with its outputs at the positions ``plain`` (the values
    that are no variables: the step returned their new values instead of assigning)."""
    if not outputs:
        return values
    values = list(values)
    for i, value in zip(plain, outputs):
        values[i] = value
    return values
